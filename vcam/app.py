"""Wiring: from :class:`Settings` to a running :class:`Pipeline` (used by ``vcam run`` and ``vcam tray``)."""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .audio import Microphone
from .background import in_background
from .capture import FrameSource, Webcam, open_source
from .errors import VcamError
from .first_use import WeightsDownload, weights_missing
from .models import CONFIGS, TalkingHeadModel, build_model, demo_config
from .pipeline import Pipeline
from .pipeline.controller import Link
from .profiles import ProfileStore
from .render.base import Renderer
from .render.registry import candidates
from .render.select import StartedRenderer
from .render.warm_up import warm_up_cuda
from .settings import Settings
from .sinks import open_sink
from .weights import MANIFEST, load_model, weights_id

log = logging.getLogger("vcam")

DEMO_SEED = 0
DEMO_BANNER = "DEMO MODEL (random weights) - run `vcam weights fetch` for real avatars"
RENDERER_THREAD, COMPILE_THREAD = "vcam-renderer-start", "vcam-compile"
"""The threads that start the renderer while the camera opens, and build the full-speed one while
the quick one renders: both may be inside CUDA or the compiler when a run ends."""


@dataclass(frozen=True)
class LoadedModel:
    model: TalkingHeadModel
    weights_id: str
    demo: bool


def weights_folder(settings: Settings) -> Path:
    return settings.weights_dir / settings.model


def open_model(settings: Settings) -> LoadedModel:
    """The installed weights, or the clearly labelled demo model (seeded weights) when there are none."""
    folder = weights_folder(settings)
    if (folder / MANIFEST).is_file():
        return LoadedModel(load_model(folder), weights_id(folder), demo=False)
    log.warning(
        "no %s weights in %s: using the built-in demo model. Get the real weights with %s.",
        settings.model, folder,
        "`vcam weights fetch` (or start with --yes)" if settings.model == "liveportrait" else f"`vcam weights import --model {settings.model} FILE`",
    )
    cfg = demo_config(CONFIGS[settings.model])
    return LoadedModel(build_model(cfg, seed=DEMO_SEED), f"{cfg.name}-seed{DEMO_SEED}", demo=True)


def open_renderer(settings: Settings, loaded: LoadedModel) -> tuple[Renderer, str]:
    """The backend ``settings.backend`` asks for (``auto``: the fastest here) and why it was chosen."""
    from .render import select_renderer

    return select_renderer(settings.backend, loaded.model, settings.engines_dir, loaded.weights_id, settings.precision)


def open_renderer_quickly(settings: Settings, loaded: LoadedModel) -> StartedRenderer:
    """As :func:`open_renderer`, but a backend that compiles first gives a quick stand-in to start with."""
    from .render.select import start_renderer

    return start_renderer(settings.backend, loaded.model, settings.engines_dir, loaded.weights_id, settings.precision)


def profile_store(settings: Settings) -> ProfileStore:
    """The profile folder; an installed vcam seeds it with the bundled default avatar on first use."""
    store = ProfileStore(settings.profiles_dir)
    unfinished = store.remove_unfinished()
    if unfinished:
        log.warning("removed the unfinished profile(s) %s that an interrupted `vcam profile create` left in %s",
                    ", ".join(unfinished), store.root)
    if "default" not in store.names():
        bundled = importlib.resources.files("vcam") / "bundled_profiles" / "default"
        if bundled.is_dir():
            with importlib.resources.as_file(bundled) as folder, store.writing("add the bundled default avatar"):
                store.root.mkdir(parents=True, exist_ok=True)
                shutil.copytree(folder, store.root / "default")
    return store


OpenCall = Callable[[LoadedModel, Callable[[], Renderer]], contextlib.AbstractContextManager[Link]]
"""Opens a call's link (see :mod:`vcam.stream.call`) for the model and the pipeline's renderer of the moment."""


@contextlib.contextmanager
def running_pipeline(
    settings: Settings, lossless: bool = False, on_ready: Callable[[str], None] | None = None, call: OpenCall | None = None,
) -> Iterator[Pipeline]:
    """A started pipeline; on exit, or when starting fails, everything opened so far is released:
    renderer, camera, virtual camera, microphone and the call's link.

    The renderer starts on a thread of its own while the camera, the output and the microphone
    open (a webcam takes up to seconds). A live run starts with a backend's quick stand-in where it
    has one (uncompiled CUDA graphs: the first frame in seconds) and swaps in the full-speed
    renderer once it is compiled in the background; ``on_ready`` hears of both. A lossless run (a
    clip to a file) renders at full speed from its first frame."""
    say = on_ready or (lambda line: None)
    if any(backend.needs_cuda for backend in candidates(settings.backend)):
        warm_up_cuda()  # while the weights load
    loaded = open_model(settings)
    starting = in_background(
        (lambda: StartedRenderer(*open_renderer(settings, loaded))) if lossless else (lambda: open_renderer_quickly(settings, loaded)),
        RENDERER_THREAD,
    )

    def started_renderer() -> Renderer:
        started = starting.result()
        say(started.reason)
        return started.renderer

    pipeline: Pipeline | None = None
    try:
        with pipeline_over(settings, loaded, started_renderer, lossless, call=call) as pipeline:
            full_speed = starting.result().full_speed
            if full_speed is not None:
                _full_speed_in_background(pipeline, full_speed, loaded.weights_id, say)
            yield pipeline
    finally:  # the last renderer: the model may have changed while running
        if pipeline is not None:
            pipeline.renderer.close()
        elif starting.exception() is None:  # the start failed elsewhere: the renderer started meanwhile
            starting.result().renderer.close()


def _full_speed_in_background(pipeline: Pipeline, build: Callable[[], Renderer], weights_id: str, say: Callable[[str], None]) -> None:
    """Build the full-speed renderer on a thread of its own while the quick one renders, then swap it in.
    The build starts once the first frame is out: compiling holds the interpreter for seconds."""

    def run() -> None:
        pipeline.first_frame_out.wait()
        if pipeline.finished.is_set():
            return
        began = time.monotonic()
        try:
            renderer = build()
        except Exception as exc:  # the quick renderer goes on: slower, but it works
            if not pipeline.finished.is_set():
                log.warning("the full-speed renderer could not be built (%s); going on with the quick one", exc)
            return
        if pipeline.finished.is_set():
            renderer.close()
        elif pipeline.use_renderer(renderer, weights_id):
            say(f"{renderer.name} at full speed (compiled in the background in {time.monotonic() - began:.0f} s)")

    threading.Thread(target=run, name=COMPILE_THREAD, daemon=True).start()


@contextlib.contextmanager
def pipeline_over(
    settings: Settings, loaded: LoadedModel, renderer: Callable[[], Renderer], lossless: bool = False, source: FrameSource | None = None,
    call: OpenCall | None = None,
) -> Iterator[Pipeline]:
    """A started pipeline rendering with what ``renderer()`` gives once the camera (unless an opened
    ``source`` is given), sink and microphone are open (a renderer still starting is waited for only
    then); it stays open afterwards (its caller's). Those and the call's link are opened here and
    released on exit."""
    with contextlib.ExitStack() as stack:
        store = profile_store(settings)
        if source is None and not settings.camera_off:
            source = _enter_source(stack, open_source(settings.camera, settings.camera_width, settings.camera_height, settings.camera_fps,
                                                      loop=settings.loop_clip and not lossless, realtime=not lossless))
        sink = stack.enter_context(open_sink(settings.sink, settings.output_width, settings.output_height, settings.output_fps, settings.virtual_camera_backend))
        microphone = stack.enter_context(Microphone(device=settings.audio_device)) if settings.audio else None
        first_renderer = renderer()
        pipeline: Pipeline | None = None
        link = stack.enter_context(call(loaded, lambda: pipeline.renderer if pipeline is not None else first_renderer)) if call is not None else None
        pipeline = Pipeline(
            settings, loaded.model.cfg, first_renderer, store, loaded.weights_id, source, sink,
            microphone=microphone, banner=DEMO_BANNER if loaded.demo else None, lossless=lossless, link=link,
        )
        receiving = link is not None and link.replaces_camera  # renders with the sender's model: no switch mid-call
        if loaded.demo and weights_missing(settings) and not receiving:
            _offer_weights_download(pipeline, settings)
        pipeline.start()
        try:
            yield pipeline
        finally:
            pipeline.stop()
            pipeline.join(timeout=10)


def _offer_weights_download(pipeline: Pipeline, settings: Settings) -> None:
    """While the demo model runs: the tray's download, then the switch to the weights it installed."""
    pipeline.offer_weights_download(WeightsDownload(settings, on_installed=lambda _: use_installed_weights(pipeline, settings)))


def use_installed_weights(pipeline: Pipeline, settings: Settings) -> None:
    """Switch a running pipeline from the demo model to the weights just installed."""
    loaded = open_model(settings)
    renderer, reason = open_renderer(settings, loaded)
    log.info("renderer %s", reason)
    pipeline.switch_model(loaded.model.cfg, renderer, loaded.weights_id)


def _enter_source(stack: contextlib.ExitStack, source: FrameSource) -> FrameSource | None:
    """The opened source; a webcam that cannot be opened leaves the avatar on voice and idle motion."""
    try:
        return stack.enter_context(source)
    except VcamError:
        if not isinstance(source, Webcam):
            raise
        log.warning(
            "no camera %s: the avatar moves with your voice and idle motion; pick a camera with --source N "
            "(`vcam doctor` lists them) or play a clip with --source FILE", source.device,
        )
        return None


def check_profile(settings: Settings) -> None:
    """Fail early, with the fix, when the chosen profile is missing or damaged."""
    store = profile_store(settings)
    if settings.profile not in store.names():
        raise VcamError(
            f"no profile named {settings.profile!r} in {store.root} (have: {', '.join(store.names()) or 'none'}); "
            f"create it with `vcam profile create {settings.profile} PHOTO`"
        )
    store.load(settings.profile)
