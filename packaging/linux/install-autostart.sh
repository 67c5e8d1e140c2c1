#!/usr/bin/env bash
# Starts the vcam tray app at login through XDG autostart (GNOME, KDE, Xfce, ...).
# Undo: delete ~/.config/autostart/vcam-tray.desktop.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
autostart="${XDG_CONFIG_HOME:-$HOME/.config}/autostart"

mkdir -p "$autostart"
install -m 0644 "$here/vcam-tray.desktop" "$autostart/vcam-tray.desktop"
echo "installed $autostart/vcam-tray.desktop: the vcam tray starts at your next login (delete that file to undo)"
if ! command -v vcam >/dev/null; then
    echo "warning: 'vcam' is not on PATH, so the entry cannot start it: install vcam or edit Exec= in that file" >&2
fi
