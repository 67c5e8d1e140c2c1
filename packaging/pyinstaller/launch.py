"""Entry point of the frozen app: the `vcam-tray` executable runs `vcam tray`, `vcam` is the whole CLI."""

import sys
from pathlib import Path

from vcam.cli import command

if Path(sys.executable).stem.lower() == "vcam-tray":
    sys.argv.insert(1, "tray")
command()
