"""``vcam send ADDRESS``, ``vcam receive [--listen ADDRESS]`` and ``vcam tray --send/--receive``: their options and status line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vcam.errors import VcamError

from .codec import DEFAULT_LEVEL, MAX_LEVEL
from .transport import DEFAULT_PORT

if TYPE_CHECKING:
    from vcam.pipeline import PipelineStatus
    from vcam.settings import Settings

    from vcam.app import OpenCall


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

    from .ends import RunControl, run_send
    from .packet import pairing_key

    settings = _settings(args)
    check_profile(settings)
    address, code = _send_target(args, settings, args.address)
    status = run_send(settings, address, pairing_key(code), args.level, RunControl(args.frames, on_status=_status_printer()))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    _say(f"vcam: sent {status.packets} frames to {status.peer}, receiver counted {100 * status.loss:.1f} % loss")
    return 0


def _receive_settings(settings: Settings) -> Settings:
    """A receiving end has no camera and no microphone: the sender drives the avatar."""
    return settings.model_copy(update={"camera_off": True, "audio": False})


def _receive_code(args: argparse.Namespace, settings: Settings) -> str:
    from .packet import new_pairing_code

    code = args.code or settings.stream_code
    if not code:
        code = new_pairing_code()
        _say(f"vcam: pairing code {code} — on the sending machine run `vcam send THIS-HOST --code {code}`")
    return code


def _send_target(args: argparse.Namespace, settings: Settings, address_text: str) -> tuple[tuple[str, int], str]:
    from .transport import parse_address

    code = args.code or settings.stream_code
    if not code:
        raise VcamError("no pairing code: pass --code with the code `vcam receive` printed")
    if not 0 <= args.level <= MAX_LEVEL:
        raise VcamError(f"--level must be 0..{MAX_LEVEL}, not {args.level}")
    address = parse_address(address_text)
    if not address[0] or not address[1]:
        raise VcamError(f"bad address {address_text!r}: name the receiving machine, e.g. 192.168.1.20:{DEFAULT_PORT}")
    return address, code


def status_line(status: PipelineStatus) -> str:
    """A call's status line: the link (state, peer, kbit/s, loss), then the frames."""
    return f"{status.message}  ·  {status.fps:4.1f} fps"


def cmd_receive(args: argparse.Namespace) -> int:
    from vcam.app import check_profile, running_pipeline
    from vcam.cli import _settings
    from vcam.pipeline import PipelineState
    from vcam.preview import PreviewView

    from .call import receiving
    from .transport import ReceiverLink, parse_address

    settings = _receive_settings(_settings(args))
    check_profile(settings)  # the avatar shown until the sender's is known
    code = _receive_code(args, settings)
    listen = parse_address(args.listen)
    lossless = args.frames is not None and settings.sink.startswith("file:")
    links: list[ReceiverLink] = []

    def listening(link: ReceiverLink) -> None:
        links.append(link)
        _say(f"vcam: listening on UDP {link.address_text} → {settings.sink}; Ctrl-C stops")

    show = _status_printer()
    with running_pipeline(settings, lossless=lossless, call=receiving(settings, listen, code, lossless, listening)) as pipeline:
        pipeline.max_frames = args.frames
        view = PreviewView(pipeline)  # the window belongs to this (the main) thread
        last = 0.0
        try:
            while not pipeline.wait(timeout=0):
                view.update(wait_s=0.2)
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    show(status_line(pipeline.status()))
        finally:
            view.close()
        failed = pipeline.status()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    status = links[0].status()
    _say(f"vcam: received {status.packets} packets, {100 * status.loss:.1f} % lost, {status.rejected} rejected")
    if failed.state is PipelineState.ERROR:
        raise VcamError(failed.message)
    return 0


def add_tray_options(tray: argparse.ArgumentParser) -> None:
    """``vcam tray --receive`` / ``--send ADDRESS``: the tray runs one end of a call."""
    call = tray.add_mutually_exclusive_group()
    call.add_argument("--receive", action="store_true", help="take a call: show the avatar a paired `vcam send` drives")
    call.add_argument("--send", metavar="ADDRESS", help="call a receiving vcam at HOST[:PORT] with your motion")
    tray.add_argument("--listen", default=f":{DEFAULT_PORT}", help=f"with --receive: HOST:PORT to listen on (default :{DEFAULT_PORT})")
    tray.add_argument("--code", help="with --receive or --send: the pairing code (default: settings' stream_code)")
    tray.add_argument("--level", type=int, default=DEFAULT_LEVEL, help=f"with --send: quantisation level 0..{MAX_LEVEL}")


def tray_call(args: argparse.Namespace, settings: Settings) -> tuple[Settings, OpenCall | None]:
    """The settings and the call's end that ``vcam tray`` runs with (None: no call)."""
    from .call import receiving, sending
    from .transport import parse_address

    if args.receive:
        settings = _receive_settings(settings)
        return settings, receiving(settings, parse_address(args.listen), _receive_code(args, settings))
    if args.send:
        address, code = _send_target(args, settings, args.send)
        return settings, sending(settings, address, code, args.level)
    return settings, None
