"""The tray menu as plain data, built from the pipeline controller.

No GUI toolkit here: `tray.app` turns these entries into pystray items, and tests read them
directly. Every action calls the controller; the menu holds no pipeline logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vcam.pipeline import PipelineState, PipelineStatus

if TYPE_CHECKING:
    from vcam.pipeline import Controller

STRENGTHS_PERCENT = (25, 50, 75, 100)


@dataclass(frozen=True)
class MenuEntry:
    """One menu item. `checked` is None for plain items, True/False for checkable ones;
    radio items are shown as a group where one is checked."""

    text: str
    action: Callable[[], None] | None = None
    checked: bool | None = None
    radio: bool = False
    enabled: bool = True
    submenu: tuple[MenuEntry, ...] = ()


SEPARATOR = MenuEntry("-", enabled=False)
"""A line between groups of entries (compare with `is`)."""


def status_text(status: PipelineStatus) -> str:
    """The status in words: "Running · 29.8 fps · 41 ms · tensorrt · camera 0"; in a call the
    pipeline's message says what the call does: "Receiving from 192.168.1.5 · 12.3 kbit/s · loss 0.4 %"."""
    label = status.state.value.replace("_", " ").capitalize()
    if status.state is PipelineState.ERROR:
        return f"{label}: {status.message}"
    running = status.state in (PipelineState.RUNNING, PipelineState.WAITING)
    parts = [status.message if status.message and running else label]
    if status.state in (PipelineState.RUNNING, PipelineState.FACE_LOST):
        parts += [f"{status.fps:.1f} fps", f"{status.latency_ms:.0f} ms"]
    parts += [status.backend, status.camera]
    return " · ".join(part for part in parts if part)


def status_line(status: PipelineStatus) -> str:
    """The menu's first line: "● Running · 29.8 fps · 41 ms · tensorrt · camera 0"."""
    return f"● {status_text(status)}"


def build_menu(
    controller: Controller,
    open_path: Callable[[Path], None],
    on_quit: Callable[[], None],
) -> tuple[MenuEntry, ...]:
    """The whole menu for the controller's current state. Toggles act on what the entry shows:
    clicking a checked "Frontalize" turns it off. While receiving a call the sender's avatar and
    motion are shown, so the entries that steer the camera's are left out."""
    paused = controller.paused
    return (
        MenuEntry(status_line(controller.status()), enabled=False),
        SEPARATOR,
        *_weights_entries(controller),
        *(() if controller.receiving else _motion_entries(controller)),
        MenuEntry("Resume" if paused else "Pause", controller.resume if paused else controller.pause),
        *(() if controller.receiving else (MenuEntry("Recalibrate neutral", controller.recalibrate),)),
        MenuEntry(
            "Show preview",
            partial(controller.set_preview, not controller.preview),
            checked=controller.preview,
        ),
        SEPARATOR,
        MenuEntry("Open settings file", partial(open_path, controller.settings_path)),
        MenuEntry("Open profiles folder", partial(open_path, controller.profiles_dir)),
        SEPARATOR,
        MenuEntry("Quit", on_quit),
    )


def _motion_entries(controller: Controller) -> tuple[MenuEntry, ...]:
    """The avatar and how the camera's motion drives it (in a received call the sender chooses both)."""
    return (
        MenuEntry("Avatar", submenu=_profile_entries(controller)),
        MenuEntry(
            "Frontalize",
            partial(controller.set_frontalize, not controller.frontalize),
            checked=controller.frontalize,
        ),
        MenuEntry("Frontalize strength", submenu=_strength_entries(controller)),
        MenuEntry(
            "Expression-friendly motion",
            partial(controller.set_expression_friendly, not controller.expression_friendly),
            checked=controller.expression_friendly,
        ),
    )


def _weights_entries(controller: Controller) -> tuple[MenuEntry, ...]:
    """While the demo model runs: "Download avatar weights", then its progress and its result."""
    download = controller.weights_download
    if download is None:
        return ()
    return (MenuEntry(download.text, download.start if download.available else None, enabled=download.available), SEPARATOR)


def _profile_entries(controller: Controller) -> tuple[MenuEntry, ...]:
    active = controller.active_profile
    entries = tuple(
        MenuEntry(name, partial(controller.switch_profile, name), checked=name == active, radio=True)
        for name in controller.profiles()
    )
    return entries or (MenuEntry("No profiles: see `vcam profile create`", enabled=False),)


def _strength_entries(controller: Controller) -> tuple[MenuEntry, ...]:
    current = round(controller.frontalize_strength * 100)
    return tuple(
        MenuEntry(
            f"{percent} %",
            partial(controller.set_frontalize_strength, percent / 100),
            checked=percent == current,
            radio=True,
        )
        for percent in STRENGTHS_PERCENT
    )
