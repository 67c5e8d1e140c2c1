"""The ``vcam`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import VcamError
from .models import CONFIGS
from .settings import Settings, load_settings, run_flags


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The settings marked as flags (see :func:`vcam.settings.run_flags`), and ``--yes``."""
    for option in run_flags():
        if option.kind is bool:
            p.add_argument(option.flag, dest=option.field, action=argparse.BooleanOptionalAction, default=None, help=option.help)
        else:
            choices = list(option.choices()) if option.choices is not None else None
            metavar = None if choices else option.flag.lstrip("-").upper()
            p.add_argument(option.flag, dest=option.field, type=option.kind, choices=choices, metavar=metavar, help=option.help)
    p.add_argument("-y", "--yes", action="store_true", help="download missing model weights without asking")


def _settings(args: argparse.Namespace) -> Settings:
    """The settings with the flags given on the command line."""
    return load_settings(**{option.field: getattr(args, option.field) for option in run_flags() if hasattr(args, option.field)})


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _status_line(pipeline: Any) -> str:
    s = pipeline.status()
    stages = " ".join(f"{k} {v:.1f}" for k, v in s.stage_ms.items())
    return f"{s.state.value:9} {s.fps:5.1f} fps  latency {s.latency_ms:6.1f} ms  [{stages}] ms  {s.profile}  {s.message}"


# -- commands -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .app import check_profile, running_pipeline
    from .first_use import offer_weights
    from .pipeline.controller import CAMERA_OFF
    from .preview import PreviewView

    if args.frames is not None and args.frames < 1:
        raise VcamError(f"--frames must be 1 or more (got {args.frames}): it is how many output frames to write")
    settings = _settings(args)
    check_profile(settings)
    offer_weights(settings, args.yes)
    lossless = args.frames is not None and not settings.sink.startswith("virtual") and not args.realtime
    with running_pipeline(settings, lossless=lossless, on_ready=lambda reason: _say(f"vcam: renderer {reason}")) as pipeline:
        pipeline.max_frames = args.frames
        _say(f"vcam: {pipeline.status().camera} → {pipeline.sink.description} as {settings.profile!r}; Ctrl-C stops")
        view = PreviewView(pipeline)  # the window belongs to this (the main) thread
        last = 0.0
        said_first_frame = False

        def say_first_frame() -> None:
            nonlocal said_first_frame
            first_frame_s = None if said_first_frame else pipeline.status().first_frame_s
            if first_frame_s is not None:
                said_first_frame = True
                _say(f"vcam: first frame out {first_frame_s:.1f} s after start")

        try:
            while not pipeline.wait(timeout=0):
                view.update(wait_s=0.2)
                say_first_frame()
                if sys.stderr.isatty() and time.monotonic() - last > 1.0:
                    last = time.monotonic()
                    print("\r" + _status_line(pipeline), end="", file=sys.stderr, flush=True)
        finally:
            view.close()
        say_first_frame()
        status = pipeline.status()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    # a lossless run keeps no live pace
    latency = "" if lossless else f", latency {status.latency_p50_ms:.0f} ms median, {status.latency_p99_ms:.0f} ms p99"
    came_in = " (camera off)" if status.camera == CAMERA_OFF else f" of {status.frames_in} in"
    _say(f"vcam: {status.frames_out} frames out{came_in}, {status.fps:.1f} fps{latency}")
    if status.state.value == "error":
        raise VcamError(status.message)
    return 0


def cmd_tray(args: argparse.Namespace) -> int:
    try:
        from vcam_tray import app as tray_app  # installed: the repository's tray/ folder is vcam_tray
    except ModuleNotFoundError as exc:
        if exc.name != "vcam_tray":
            raise
        from tray import app as tray_app  # a checkout

    from .app import check_profile, running_pipeline
    from .first_use import offer_weights
    from .stream.cli import tray_call

    settings, call = tray_call(args, _settings(args))
    check_profile(settings)
    tray_app.choose_backend()  # no tray on this desktop: say so before the camera starts
    offer_weights(settings, args.yes)
    with running_pipeline(settings, call=call) as pipeline:
        tray_app.run_tray(pipeline)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from .app import open_model, open_renderer, profile_store

    settings = load_settings()
    store = profile_store(settings)
    if args.action == "list":
        good, bad = store.scan()
        for profile in good:
            mark = "*" if profile.name == settings.profile else " "
            print(f"{mark} {profile.name}")
        for problem in bad:
            print(f"! {problem.name}: {problem.message}")
        if not good and not bad:
            print(f"no profiles in {store.root}; create one with `vcam profile create NAME PHOTO`")
    elif args.action == "show":
        profile = store.load(args.name)
        h, w = profile.keyframe.shape[:2]
        print(f"name:     {profile.name}\nfolder:   {profile.folder}\ncreated:  {profile.created}\nkeyframe: {w}x{h}")
        print(f"face box: centre ({profile.box.cx:.0f}, {profile.box.cy:.0f}), side {profile.box.size:.0f} px")
        if profile.credit:
            print(f"credit:   {profile.credit}")
    elif args.action == "remove":
        store.remove(args.name)
        print(f"removed profile {args.name}")
    elif args.action == "create":
        loaded = open_model(settings)
        renderer, _ = open_renderer(settings, loaded)
        profile = store.create(
            args.name, Path(args.photo), renderer.prepare_source, loaded.weights_id, loaded.model.cfg.input_size,
            credit=args.credit or "", replace=args.replace,
        )
        print(f"created profile {profile.name} in {profile.folder}; use it with `vcam run --profile {profile.name}`")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from . import weights
    from .download import terminal_progress
    from .models import CONFIGS

    settings = load_settings(model=args.model)
    dest = settings.weights_dir / settings.model
    if args.action == "fetch":
        weights.fetch(settings.model, dest, progress=lambda name: terminal_progress(f"  {name}"))
        print(f"installed {settings.model} weights in {dest}")
    elif args.action == "import":
        weights.import_and_install(CONFIGS[settings.model], [Path(p) for p in args.files], dest)
        print(f"imported {weights.read_manifest(dest)['model']} weights into {dest}")
    elif args.action == "verify":
        bad = weights.verify(dest)
        if bad:
            raise VcamError(f"damaged weight files in {dest}: {', '.join(bad)}; run `vcam weights fetch` again")
        print(f"{settings.model} weights in {dest} are intact")
    return 0


def cmd_engines(args: argparse.Namespace) -> int:
    from .app import open_model
    from .render.engines import build_engines
    from .render.onnx_export import export_onnx

    settings = load_settings()
    loaded = open_model(settings)
    if args.onnx_only:
        manifest = export_onnx(loaded.model, settings.engines_dir, loaded.weights_id)
    else:
        manifest = build_engines(loaded.model, settings.engines_dir, loaded.weights_id, precision=settings.precision, rebuild=args.rebuild)
    for name, graph in manifest.graphs.items():
        print(f"{name:<18} {graph.precision:<5} max |Δ| vs torch float32 {graph.max_abs_diff:.2e}  {graph.file}")
    print(f"{manifest.kind} engines for {manifest.model} written to {settings.engines_dir}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_checks

    for line in run_checks(load_settings()):
        print(line)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .render.bench import TerminalFrameProgress, run_bench

    settings = load_settings(model=args.model)
    if args.end_to_end:
        from .frame_bench import run_frame_bench

        if args.backends:
            raise VcamError("--end-to-end times the configured backend (settings' backend, or VCAM_BACKEND); leave out --backends")
        run_frame_bench(settings, settings.model, args.source, args.frames, args.json)
        return 0
    if args.source is not None:
        raise VcamError("--source is the clip of an --end-to-end run; add --end-to-end, or leave it out")
    run_bench(
        model_name=settings.model, backends=args.backends, frames=args.frames,
        weights_dir=settings.weights_dir / settings.model, engines_dir=settings.engines_dir, json_path=args.json,
        progress=TerminalFrameProgress,
    )
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    from .track_command import run_track

    print(run_track(args.source, args.json, args.frames).line())
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from .settings import settings_path, settings_toml

    print(f"# effective settings; the file is {settings_path()}")
    print(settings_toml(load_settings()), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcam", description="Neural-avatar virtual camera.")
    parser.add_argument("--version", action="version", version=f"vcam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the avatar camera in this terminal")
    _add_run_options(run)
    run.add_argument("--frames", type=int, help="stop after this many output frames")
    run.add_argument("--realtime", action="store_true", help="with --frames and a file output, still drop frames like a live camera")
    run.set_defaults(func=cmd_run)

    tray = sub.add_parser("tray", help="run the avatar camera with a tray icon")
    _add_run_options(tray)
    tray.set_defaults(func=cmd_tray)

    profile = sub.add_parser("profile", help="manage avatar profiles")
    psub = profile.add_subparsers(dest="action", required=True)
    create = psub.add_parser("create", help="make a profile from a photo")
    create.add_argument("name")
    create.add_argument("photo")
    create.add_argument("--credit", help="where the photo comes from")
    create.add_argument("--replace", action="store_true", help="overwrite a profile of the same name")
    psub.add_parser("list", help="list profiles")
    for action in ("show", "remove"):
        psub.add_parser(action, help=f"{action} a profile").add_argument("name")
    profile.set_defaults(func=cmd_profile)

    weights = sub.add_parser("weights", help="get, import and verify model weights")
    wsub = weights.add_subparsers(dest="action", required=True)
    for action, text in (("fetch", "download the official weights"), ("verify", "check installed files against their sha256")):
        wsub.add_parser(action, help=text).add_argument("--model", choices=list(CONFIGS))
    imp = wsub.add_parser("import", help="import checkpoint files you downloaded")
    imp.add_argument("--model", choices=list(CONFIGS))
    imp.add_argument("files", nargs="+")
    weights.set_defaults(func=cmd_weights)

    engines = sub.add_parser("engines", help="TensorRT engines")
    build = engines.add_subparsers(dest="action", required=True).add_parser("build", help="export ONNX and build TensorRT plans")
    build.add_argument("--rebuild", action="store_true", help="rebuild plans even when cached ones match")
    build.add_argument("--onnx-only", action="store_true", help="export and check the ONNX graphs only (for the onnxruntime backend)")
    engines.set_defaults(func=cmd_engines)

    sub.add_parser("doctor", help="check camera, virtual camera, GPU, weights and profiles").set_defaults(func=cmd_doctor)

    bench = sub.add_parser("bench", help="measure render speed per backend, or the whole frame path (--end-to-end)")
    bench.add_argument("--backends", nargs="*", help="backends to measure (default: all available)")
    bench.add_argument("--end-to-end", action="store_true",
                       help="time the whole frame path as `vcam run` runs it (clip → tracking → render → output), with the configured backend")
    bench.add_argument("--source", type=Path, help="the clip for --end-to-end (default: the profile's keyframe, as a still)")
    bench.add_argument("--frames", type=int, help="timed frames per backend or row (default: 100 with a GPU, 12 on a CPU; --end-to-end 300 with a GPU)")
    bench.add_argument("--model", choices=list(CONFIGS))
    bench.add_argument("--json", type=Path, help="also write the results as JSON")
    bench.set_defaults(func=cmd_bench)

    track = sub.add_parser("track", help="measure how well your face is tracked in a clip or camera")
    track.add_argument("source", help="video file, image or camera index (a camera runs until --frames or Ctrl-C)")
    track.add_argument("--json", type=Path, help="write every frame's crop, eye/lip ratios and pose as JSON")
    track.add_argument("--frames", type=int, help="stop after this many frames")
    track.set_defaults(func=cmd_track)

    sub.add_parser("settings", help="show the effective settings and their file").set_defaults(func=cmd_settings)

    from .stream.cli import add_parsers as add_stream_parsers, add_tray_options

    add_stream_parsers(sub, _add_run_options)
    add_tray_options(tray)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: every output is closed and every file finished."""


def _raise_terminated(_signum: int, _frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # vcam's own messages at INFO (DEBUG with -v); other libraries only when they warn
    logging.basicConfig(level=logging.WARNING, format="vcam: %(message)s")
    for name in ("vcam", "tray"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    func: Callable[[argparse.Namespace], int] = args.func
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if on_main_thread else None
    try:
        return func(args)
    except VcamError as exc:
        print(f"vcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def command() -> None:
    """The ``vcam`` command: :func:`main`, then exit with its status. A renderer still starting or
    compiling on its thread cannot be stopped, and tearing the interpreter down under it aborts the
    process ("terminate called without an active exception"): with everything of ours closed and
    written, such a run leaves without that teardown."""
    status = main()
    app = sys.modules.get("vcam.app")  # only a run that imported it can have started a renderer
    starting = (app.RENDERER_THREAD, app.COMPILE_THREAD) if app is not None else ()
    if any(thread.name in starting and thread.is_alive() for thread in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    command()
