"""A recording double of the pipeline controller (vcam.pipeline.Controller) for the tray tests."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from vcam.pipeline import PipelineState, PipelineStatus
from vcam.sinks import PreviewSink

RUNNING = PipelineStatus(
    state=PipelineState.RUNNING,
    fps=29.8,
    latency_ms=41.2,
    backend="tensorrt",
    camera="camera 0",
    profile="default",
    message="",
)


class FakeController:
    """Keeps the state it is told and records every call as (method name, *arguments).

    Listeners are called from a thread of their own, as the pipeline's threads would.
    """

    def __init__(self, root: Path, profiles: tuple[str, ...] = ("default", "alice", "bob")) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.settings_path = root / "settings.toml"
        self.profiles_dir = root / "profiles"
        self._profiles = list(profiles)
        self._status = RUNNING
        self._listeners: list[Callable[[], None]] = []
        self.frontalize = False
        self.frontalize_strength = 1.0
        self.expression_friendly = False
        self.preview = False
        self.weights_download = None  # the real one offers a WeightsDownload while the demo model runs
        self.receiving = False  # True: a call's sender drives the avatar
        self.preview_feed = PreviewSink()
        self.finished = threading.Event()

    # --- the Controller interface ---------------------------------------------------------

    def profiles(self) -> list[str]:
        return list(self._profiles)

    @property
    def active_profile(self) -> str:
        return self._status.profile

    @property
    def paused(self) -> bool:
        return self._status.state is PipelineState.PAUSED

    def switch_profile(self, name: str) -> None:
        self.calls.append(("switch_profile", name))
        self.set_status(profile=name)

    def set_frontalize(self, on: bool) -> None:
        self.calls.append(("set_frontalize", on))
        self.frontalize = on

    def set_frontalize_strength(self, value: float) -> None:
        self.calls.append(("set_frontalize_strength", value))
        self.frontalize_strength = value

    def set_expression_friendly(self, on: bool) -> None:
        self.calls.append(("set_expression_friendly", on))
        self.expression_friendly = on

    def pause(self) -> None:
        self.calls.append(("pause",))
        self.set_status(state=PipelineState.PAUSED)

    def resume(self) -> None:
        self.calls.append(("resume",))
        self.set_status(state=PipelineState.RUNNING)

    def recalibrate(self) -> None:
        self.calls.append(("recalibrate",))

    def set_preview(self, on: bool) -> None:
        self.calls.append(("set_preview", on))
        self.preview = on

    def preview_closed(self) -> None:
        self.calls.append(("preview_closed",))
        self.preview = False

    def status(self) -> PipelineStatus:
        return self._status

    def stop(self) -> None:
        self.calls.append(("stop",))
        self.set_status(state=PipelineState.STOPPED)

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    # --- what the pipeline would do on its own ---------------------------------------------

    def set_status(self, **changes: Any) -> None:
        self._status = replace(self._status, **changes)
        self._notify()

    def set_profiles(self, names: list[str]) -> None:
        self._profiles = list(names)
        self._notify()

    def _notify(self) -> None:
        listeners = list(self._listeners)
        thread = threading.Thread(target=lambda: [listener() for listener in listeners])
        thread.start()
        thread.join()
