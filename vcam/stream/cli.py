"""``vcam send ADDRESS`` and ``vcam receive [--listen ADDRESS]``: their options and status line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .codec import DEFAULT_LEVEL, MAX_LEVEL
from .transport import DEFAULT_PORT


def add_parsers(sub: Any, add_run_options: Callable[[argparse.ArgumentParser], None]) -> None:
    send = sub.add_parser("send", help="stream your head motion to a receiving vcam (a call at a few kbit/s)")
    send.add_argument("address", help=f"the receiver's HOST[:PORT] (port {DEFAULT_PORT} by default)")
    add_run_options(send)
    send.add_argument("--code", help="the pairing code `vcam receive` printed (or settings' stream_code)")
    send.add_argument("--level", type=int, default=DEFAULT_LEVEL, help=f"quantisation level 0..{MAX_LEVEL}, coarser and smaller upwards (default {DEFAULT_LEVEL})")
    send.add_argument("--frames", type=int, help="stop after sending this many frames")
    send.set_defaults(func=cmd_send)

    receive = sub.add_parser("receive", help="render the avatar a paired `vcam send` drives")
    receive.add_argument("--listen", default=f":{DEFAULT_PORT}", help=f"HOST:PORT to listen on (default :{DEFAULT_PORT}, all interfaces)")
    add_run_options(receive)
    receive.add_argument("--code", help="pairing code (default: settings' stream_code, else a new one is printed)")
    receive.add_argument("--frames", type=int, help="stop after rendering this many frames (a file output then gets every frame once)")
    receive.set_defaults(func=cmd_receive)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _status_printer() -> Callable[[str], None]:
    def show(line: str) -> None:
        if sys.stderr.isatty():
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            _say(line)

    return show


def cmd_send(args: argparse.Namespace) -> int:
    from vcam.app import check_profile
    from vcam.cli import _settings
    from vcam.errors import VcamError

    from .ends import RunControl, run_send
    from .packet import pairing_key
    from .transport import parse_address

    settings = _settings(args)
    check_profile(settings)
    code = args.code or settings.stream_code
    if not code:
        raise VcamError("no pairing code: pass --code with the code `vcam receive` printed")
    if not 0 <= args.level <= MAX_LEVEL:
        raise VcamError(f"--level must be 0..{MAX_LEVEL}, not {args.level}")
    address = parse_address(args.address)
    if not address[0] or not address[1]:
        raise VcamError(f"bad address {args.address!r}: name the receiving machine, e.g. 192.168.1.20:{DEFAULT_PORT}")
    status = run_send(settings, address, pairing_key(code), args.level, RunControl(args.frames, on_status=_status_printer()))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    _say(f"vcam: sent {status.packets} frames to {status.peer}, receiver counted {100 * status.loss:.1f} % loss")
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    from vcam.cli import _settings

    from .ends import RunControl, run_receive
    from .packet import new_pairing_code, pairing_key
    from .transport import parse_address

    settings = _settings(args)
    code = args.code or settings.stream_code
    if not code:
        code = new_pairing_code()
        _say(f"vcam: pairing code {code} — on the sending machine run `vcam send THIS-HOST --code {code}`")
    listen = parse_address(args.listen)
    control = RunControl(args.frames, on_status=_status_printer())
    status = run_receive(
        settings, listen, pairing_key(code), control,
        on_listening=lambda link: _say(f"vcam: listening on UDP {link.address_text} → {settings.sink}; Ctrl-C stops"),
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    _say(f"vcam: received {status.packets} packets, {100 * status.loss:.1f} % lost, {status.rejected} rejected")
    return 0
