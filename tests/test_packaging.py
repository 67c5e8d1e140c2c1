"""packaging/: the OS set-up scripts, the desktop entry, the installer scripts, and the wheel as a user installs it."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
LINUX = PACKAGING / "linux"
SPEC = PACKAGING / "pyinstaller" / "vcam.spec"
DEFAULT_PROFILE = REPO / "profiles" / "default"


def run(command: list[str | Path], timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command that must succeed; on failure the assertion shows its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{command} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


# -- Linux --------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["install-v4l2loopback.sh", "install-autostart.sh"])
def test_shell_scripts_parse_and_are_executable(script: str) -> None:
    run(["bash", "-n", LINUX / script])
    assert os.access(LINUX / script, os.X_OK)


def test_module_snippets_configure_one_vcam_device() -> None:
    def lines(name: str) -> list[str]:
        text = (LINUX / name).read_text().splitlines()
        return [line for line in text if line.strip() and not line.startswith("#")]

    assert lines("v4l2loopback.conf") == ['options v4l2loopback devices=1 video_nr=10 card_label="vcam" exclusive_caps=1']
    assert lines("v4l2loopback-modules-load.conf") == ["v4l2loopback"]


def test_v4l2loopback_dry_run_prints_the_steps_and_changes_nothing(tmp_path: Path) -> None:
    shims, calls = tmp_path / "bin", tmp_path / "calls.log"
    shims.mkdir()
    for command in ("sudo", "apt-get", "dnf", "pacman", "modprobe", "install"):  # every command that changes the system
        (shims / command).write_text(f'#!/bin/sh\necho "{command} $*" >> "{calls}"\n')
    (shims / "modinfo").write_text("#!/bin/sh\nexit 1\n")  # the module is missing, so installing it is planned
    for shim in shims.iterdir():
        shim.chmod(0o755)

    result = run([LINUX / "install-v4l2loopback.sh", "--dry-run"], env={**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"})

    assert 'options v4l2loopback devices=1 video_nr=10 card_label="vcam" exclusive_caps=1' in result.stdout
    assert "apt-get install -y v4l2loopback-dkms" in result.stdout
    assert "install -D -m 0644" in result.stdout and "/etc/modules-load.d/v4l2loopback.conf" in result.stdout
    assert not calls.exists(), calls.read_text()


def test_v4l2loopback_script_rejects_unknown_options() -> None:
    result = subprocess.run([LINUX / "install-v4l2loopback.sh", "--yes"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage:" in result.stderr


def test_desktop_entry_parses_with_the_autostart_keys() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # desktop entry keys are case-sensitive
    parser.read_string((LINUX / "vcam-tray.desktop").read_text())

    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "vcam tray"
    assert entry["Name"] and entry["Icon"]
    assert entry["Terminal"] == "false"
    assert entry["X-GNOME-Autostart-enabled"] == "true"


def test_install_autostart_copies_the_entry_into_the_users_autostart(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "XDG_CONFIG_HOME"}

    run([LINUX / "install-autostart.sh"], env={**env, "HOME": str(tmp_path)})

    installed = tmp_path / ".config" / "autostart" / "vcam-tray.desktop"
    assert installed.read_bytes() == (LINUX / "vcam-tray.desktop").read_bytes()


# -- PyInstaller, Windows installer, docs -------------------------------------------------------------


def test_pyinstaller_spec_bundles_the_default_profile_and_no_tensorrt() -> None:
    compile(SPEC.read_text(), str(SPEC), "exec")
    strings = string_constants(SPEC)

    assert {"profiles", "default", "vcam/bundled_profiles/default"} <= strings
    assert (DEFAULT_PROFILE / "keyframe.jpg").is_file() and (DEFAULT_PROFILE / "profile.toml").is_file()
    assert "tensorrt" in strings
    assert {"vcam", "vcam-tray", "launch.py"} <= strings


def test_pyinstaller_hidden_imports_name_real_backend_modules() -> None:
    strings = string_constants(SPEC)
    this_os = {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")

    def package_dir(name: str) -> Path:
        spec = importlib.util.find_spec(name)  # finds the package without importing it (pystray needs a display)
        assert spec is not None and spec.submodule_search_locations
        return Path(next(iter(spec.submodule_search_locations)))

    tray_backends = {name for name in strings if name.startswith("pystray._")}
    assert {"pystray._win32", "pystray._darwin", "pystray._xorg"} <= tray_backends
    assert all((package_dir("pystray") / f"{name.split('.')[1]}.py").is_file() for name in tray_backends)
    native = [name.split(".")[1] for name in strings if name.startswith(f"pyvirtualcam._native_{this_os}")]
    assert native and all(any(package_dir("pyvirtualcam").glob(f"{module}.*")) for module in native)


def test_pyinstaller_launcher_runs_the_cli() -> None:
    tree = ast.parse((SPEC.parent / "launch.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert any(node.module == "vcam.cli" and [alias.name for alias in node.names] == ["command"] for node in imports)
    assert "vcam-tray" in string_constants(SPEC.parent / "launch.py")


def test_windows_installer_installs_the_pyinstaller_folder() -> None:
    iss = (PACKAGING / "windows" / "vcam.iss").read_text()

    assert 'Source: "..\\..\\dist\\vcam\\*"' in iss
    assert 'Filename: "{app}\\vcam-tray.exe"' in iss and 'Filename: "{app}\\vcam.exe"' in iss
    assert 'Name: "{autostartup}\\vcam"; Filename: "{app}\\vcam-tray.exe"; Tasks: autostart' in iss
    assert "InfoBeforeFile=virtual-camera.txt" in iss
    note = (PACKAGING / "windows" / "virtual-camera.txt").read_text()
    assert "OBS Studio" in note and "Unity Capture" in note


def test_packaging_readme_names_every_file_and_the_build_commands() -> None:
    readme = (PACKAGING / "README.md").read_text()

    for path in PACKAGING.rglob("*"):
        if path.is_file() and path != PACKAGING / "README.md" and "__pycache__" not in path.parts:
            assert path.relative_to(PACKAGING).as_posix() in readme, path
    for command in ("python -m build", "pyinstaller packaging/pyinstaller/vcam.spec", "iscc packaging\\windows\\vcam.iss"):
        assert command in readme


# -- the wheel, installed into a fresh virtual environment --------------------------------------------


@dataclass(frozen=True)
class Installed:
    python: Path
    vcam: Path
    site_packages: Path
    workdir: Path
    env: dict[str, str]

    def vcam_run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([self.vcam, *args], timeout=timeout, cwd=self.workdir, env=self.env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Builds the sdist and, from it, the wheel (offline, with the installed setuptools), then installs
    the wheel into a new venv that sees this interpreter's packages through a .pth file."""
    root = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", root / "dist", REPO], timeout=600)
    (wheel,) = (root / "dist").glob("vcam-*.whl")

    run([sys.executable, "-m", "venv", "--without-pip", root / "venv"])
    python = root / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    paths = json.loads(run([python, "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"]).stdout)
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (Path(paths["purelib"]) / "vcam-test-deps.pth").write_text("\n".join(ours) + "\n")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel], timeout=300)

    workdir = root / "work"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("VCAM_") and key != "PYTHONPATH"}
    env |= {"VCAM_DATA_DIR": str(root / "data"), "VCAM_SETTINGS_FILE": str(root / "config" / "settings.toml")}
    vcam = shutil.which("vcam", path=paths["scripts"])
    assert vcam, f"the wheel installed no `vcam` command into {paths['scripts']}"
    return Installed(python, Path(vcam), Path(paths["purelib"]), workdir, env)


def test_wheel_installs_vcam_and_its_tray_into_the_venv(installed: Installed) -> None:
    code = "import vcam, vcam_tray.app; print(vcam.__file__); print(vcam_tray.app.__file__)"
    files = run([installed.python, "-c", code], cwd=installed.workdir, env=installed.env).stdout.split()
    assert all(Path(file).is_relative_to(installed.site_packages) for file in files), files
    top_level = {path.name for path in installed.site_packages.iterdir()}
    assert "tray" not in top_level, "a generic top-level `tray` module would collide with other projects"


def test_installed_vcam_help_lists_the_commands(installed: Installed) -> None:
    usage = installed.vcam_run("--help").stdout
    for command in ("run", "tray", "profile", "weights", "engines", "doctor", "bench"):
        assert command in usage


def test_installed_vcam_doctor_succeeds(installed: Installed) -> None:
    installed.vcam_run("doctor")


def test_installed_vcam_renders_a_clip_to_a_file(installed: Installed) -> None:
    keyframe = cv2.imread(str(DEFAULT_PROFILE / "keyframe.jpg"))
    height, width = keyframe.shape[:2]
    clip = installed.workdir / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    assert writer.isOpened()
    for i in range(12):  # the face drifts a few pixels per frame
        shift = np.float32([[1, 0, 2 * i], [0, 1, i]])
        writer.write(cv2.warpAffine(keyframe, shift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    writer.release()

    installed.vcam_run("run", "--source", str(clip), "--sink", "file:OUT.mp4", "--frames", "8", timeout=600)

    capture = cv2.VideoCapture(str(installed.workdir / "OUT.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 8
