"""tray.menu: the menu model read directly, with a recording controller double."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import pytest
from tray_fakes import RUNNING, FakeController

from tray.menu import SEPARATOR, MenuEntry, build_menu, status_line
from vcam.pipeline import Controller, Pipeline, PipelineState


CONTROLLER_METHODS = (
    "profiles", "switch_profile", "set_frontalize", "set_frontalize_strength", "set_expression_friendly", "pause", "resume",
    "recalibrate", "set_preview", "preview_closed", "status", "stop", "add_listener",
)
CONTROLLER_PROPERTIES = (
    "active_profile", "frontalize", "frontalize_strength", "expression_friendly", "paused", "preview", "weights_download",
    "preview_feed", "finished", "receiving",
)


@pytest.mark.parametrize("implementation", [Pipeline, FakeController])
def test_the_pipeline_and_the_double_have_the_controllers_interface(implementation: type) -> None:
    for name in CONTROLLER_METHODS:
        interface, real = inspect.signature(getattr(Controller, name)), inspect.signature(getattr(implementation, name))
        assert list(interface.parameters) == list(real.parameters), name
    for name in CONTROLLER_PROPERTIES:
        assert isinstance(getattr(Controller, name), property), name
    if implementation is Pipeline:
        assert all(isinstance(getattr(Pipeline, name), property) for name in CONTROLLER_PROPERTIES)


@pytest.fixture
def controller(tmp_path: Path) -> FakeController:
    return FakeController(tmp_path)


class Menu:
    """The menu built for a controller, with the paths it asked to open and the quits it made."""

    def __init__(self, controller: FakeController) -> None:
        self.opened: list[Path] = []
        self.quits = 0
        self.entries = build_menu(controller, self.opened.append, self._quit)

    def _quit(self) -> None:
        self.quits += 1

    def __getitem__(self, path: str) -> MenuEntry:
        """An entry by its text; "Avatar/alice" looks inside a submenu."""
        entries, entry = self.entries, None
        for text in path.split("/"):
            [entry] = [e for e in entries if e.text == text]
            entries = entry.submenu
        assert entry is not None
        return entry

    def texts(self) -> list[str]:
        return [e.text for e in self.entries]


def click(controller: FakeController, path: str) -> Menu:
    """Build the menu, click an entry, and return that menu."""
    menu = Menu(controller)
    action = menu[path].action
    assert action is not None, f"{path} is not clickable"
    action()
    return menu


def test_status_line_while_running() -> None:
    assert status_line(RUNNING) == "● Running · 29.8 fps · 41 ms · tensorrt · camera 0"


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"state": PipelineState.FACE_LOST}, "● Face lost · 29.8 fps · 41 ms · tensorrt · camera 0"),
        ({"state": PipelineState.PAUSED}, "● Paused · tensorrt · camera 0"),
        ({"state": PipelineState.STARTING, "backend": ""}, "● Starting · camera 0"),
        ({"camera": "camera off"}, "● Running · 29.8 fps · 41 ms · tensorrt · camera off"),
        (
            {"state": PipelineState.ERROR, "message": "Camera 0 unplugged; plug it back in."},
            "● Error: Camera 0 unplugged; plug it back in.",
        ),
    ],
)
def test_status_line_in_other_states(changes: dict, line: str) -> None:
    assert status_line(replace(RUNNING, **changes)) == line


def test_menu_layout(controller: FakeController) -> None:
    menu = Menu(controller)
    assert menu.texts() == [
        "● Running · 29.8 fps · 41 ms · tensorrt · camera 0",
        "-",
        "Avatar",
        "Frontalize",
        "Frontalize strength",
        "Expression-friendly motion",
        "Pause",
        "Recalibrate neutral",
        "Show preview",
        "-",
        "Open settings file",
        "Open profiles folder",
        "-",
        "Quit",
    ]
    assert sum(e is SEPARATOR for e in menu.entries) == 3
    status = menu.entries[0]
    assert (status.enabled, status.action, status.checked) == (False, None, None)
    assert menu["Frontalize"].checked is False and menu["Show preview"].checked is False
    assert menu["Quit"].checked is None and not menu["Quit"].radio


def test_download_entry_is_offered_while_the_demo_model_runs(controller: FakeController, tmp_path: Path) -> None:
    from vcam.first_use import WeightsDownload
    from vcam.settings import Settings

    controller.weights_download = WeightsDownload(Settings(weights_dir=tmp_path / "weights"))
    menu = Menu(controller)
    assert menu.texts()[2:5] == ["Download avatar weights", "-", "Avatar"]
    entry = menu["Download avatar weights"]
    assert entry.enabled and entry.action == controller.weights_download.start


def test_avatar_submenu_is_a_radio_group_of_the_profiles(controller: FakeController) -> None:
    avatar = Menu(controller)["Avatar"]
    assert [e.text for e in avatar.submenu] == ["default", "alice", "bob"]
    assert all(e.radio for e in avatar.submenu)
    assert [e.checked for e in avatar.submenu] == [True, False, False]

    click(controller, "Avatar/bob")

    assert controller.calls == [("switch_profile", "bob")]
    assert [e.checked for e in Menu(controller)["Avatar"].submenu] == [False, False, True]


def test_avatar_submenu_follows_added_and_removed_profiles(controller: FakeController) -> None:
    controller.set_profiles(["default", "carol"])
    assert [e.text for e in Menu(controller)["Avatar"].submenu] == ["default", "carol"]

    controller.set_profiles([])
    [placeholder] = Menu(controller)["Avatar"].submenu
    assert not placeholder.enabled and placeholder.action is None
    assert "vcam profile create" in placeholder.text


def test_expression_friendly_motion_is_a_toggle(controller: FakeController) -> None:
    assert Menu(controller)["Expression-friendly motion"].checked is False
    click(controller, "Expression-friendly motion")
    assert controller.calls == [("set_expression_friendly", True)]
    assert Menu(controller)["Expression-friendly motion"].checked is True
    click(controller, "Expression-friendly motion")
    assert controller.calls[-1] == ("set_expression_friendly", False)


def test_frontalize_strength_is_a_radio_group(controller: FakeController) -> None:
    controller.frontalize_strength = 0.75
    strength = Menu(controller)["Frontalize strength"]
    assert [e.text for e in strength.submenu] == ["25 %", "50 %", "75 %", "100 %"]
    assert all(e.radio for e in strength.submenu)
    assert [e.checked for e in strength.submenu] == [False, False, True, False]

    click(controller, "Frontalize strength/50 %")
    assert controller.calls == [("set_frontalize_strength", 0.5)]
    assert [e.checked for e in Menu(controller)["Frontalize strength"].submenu] == [False, True, False, False]

    controller.frontalize_strength = 0.6  # set in the settings file: no preset matches
    assert not any(e.checked for e in Menu(controller)["Frontalize strength"].submenu)


@pytest.mark.parametrize(
    ("entry", "setter", "attribute"),
    [("Frontalize", "set_frontalize", "frontalize"), ("Show preview", "set_preview", "preview")],
)
def test_checkable_entries_toggle(controller: FakeController, entry: str, setter: str, attribute: str) -> None:
    click(controller, entry)
    assert Menu(controller)[entry].checked is True
    click(controller, entry)
    assert Menu(controller)[entry].checked is False
    assert controller.calls == [(setter, True), (setter, False)]
    assert getattr(controller, attribute) is False


def test_pause_and_resume_are_one_entry(controller: FakeController) -> None:
    click(controller, "Pause")
    menu = Menu(controller)
    assert "Pause" not in menu.texts()
    assert menu.texts()[0].startswith("● Paused")
    click(controller, "Resume")
    assert "Pause" in Menu(controller).texts()
    assert controller.calls == [("pause",), ("resume",)]


def test_recalibrate_calls_the_controller(controller: FakeController) -> None:
    click(controller, "Recalibrate neutral")
    assert controller.calls == [("recalibrate",)]


def test_open_entries_open_the_settings_file_and_the_profiles_folder(controller: FakeController) -> None:
    settings = click(controller, "Open settings file")
    profiles = click(controller, "Open profiles folder")
    assert settings.opened == [controller.settings_path]
    assert profiles.opened == [controller.profiles_dir]
    assert controller.calls == []


def test_quit_calls_the_quit_callback(controller: FakeController) -> None:
    menu = click(controller, "Quit")
    assert menu.quits == 1
    assert controller.calls == []


def test_menu_follows_pipeline_state(controller: FakeController) -> None:
    controller.set_status(state=PipelineState.ERROR, message="No GPU found; set backend = \"torch\".")
    assert Menu(controller).texts()[0] == '● Error: No GPU found; set backend = "torch".'
    controller.set_status(state=PipelineState.FACE_LOST, fps=12.0, latency_ms=80.4)
    assert Menu(controller).texts()[0] == "● Face lost · 12.0 fps · 80 ms · tensorrt · camera 0"
