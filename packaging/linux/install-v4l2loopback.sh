#!/usr/bin/env bash
# Sets up the Linux virtual camera vcam writes to: installs the v4l2loopback kernel module when it
# is missing, configures one device (/dev/video10, labelled "vcam") for every boot, and loads it now.
# Safe to run again: steps already done are skipped.
# With Secure Boot on, the freshly built module must be signed (DKMS asks to enrol its key on reboot).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dry_run=false

usage() {
    echo "usage: $(basename "$0") [--dry-run]"
    echo "  --dry-run  print the steps without changing anything"
}

case "$*" in
    "") ;;
    --dry-run) dry_run=true ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac

# Print a step, then run it as root (through sudo when needed) unless this is a dry run.
as_root() {
    local step=("$@")
    if ((EUID != 0)); then
        step=(sudo "${step[@]}")
    fi
    echo "+ ${step[*]}"
    if ! $dry_run; then
        "${step[@]}"
    fi
}

install_module() {
    if modinfo v4l2loopback >/dev/null 2>&1; then
        echo "v4l2loopback kernel module: already installed"
    elif command -v apt-get >/dev/null; then
        as_root apt-get update
        as_root apt-get install -y v4l2loopback-dkms
    elif command -v dnf >/dev/null; then
        echo "note: Fedora ships the module in RPM Fusion (https://rpmfusion.org/Configuration)"
        as_root dnf install -y akmod-v4l2loopback
    elif command -v pacman >/dev/null; then
        as_root pacman -S --needed --noconfirm v4l2loopback-dkms
    else
        echo "no apt-get, dnf or pacman here: install v4l2loopback with your package manager, then run this again" >&2
        exit 1
    fi
}

# install_config SOURCE DESTINATION: show the snippet, copy it unless the same file is already there.
install_config() {
    echo "$2:"
    sed 's/^/    /' "$1"
    if cmp -s "$1" "$2"; then
        echo "    (already in place)"
    else
        as_root install -D -m 0644 "$1" "$2"
    fi
}

load_module() {
    if [[ ! -d /sys/module/v4l2loopback ]]; then
        as_root modprobe v4l2loopback
    elif grep -qsx vcam /sys/class/video4linux/*/name; then
        echo "v4l2loopback: loaded, the \"vcam\" device is present"
    else
        echo "v4l2loopback is loaded with other options; to apply these, close every app using a camera and run:"
        echo "    sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback"
    fi
}

if $dry_run; then
    echo "dry run: printing the steps, changing nothing"
fi
install_module
install_config "$here/v4l2loopback.conf" /etc/modprobe.d/v4l2loopback.conf
install_config "$here/v4l2loopback-modules-load.conf" /etc/modules-load.d/v4l2loopback.conf
load_module
if $dry_run; then
    echo "dry run finished: run without --dry-run to apply these steps"
else
    echo "done: vcam sends its picture to /dev/video10 (\"vcam\")"
fi
