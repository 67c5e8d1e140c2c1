"""A call inside the running pipeline: the receiving end is the pipeline's motion source (a real
pipeline, the demo model, a sender on loopback), and both ends report the link through the
controller's status — which the tray's menu and tooltip show, here on a real tray host (Xvfb)."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from clips import placed, write_clip
from test_stream_codec import head
from test_tray_app import SystemTray, shown_as, start, system_tray, window_name  # noqa: F401 (a fixture)
import waiting
from Xlib import X

from tray.app import TrayApp
from tray.menu import build_menu, status_line, status_text
from vcam.app import open_model, profile_store, running_pipeline
from vcam.pipeline import FrameWork, Pipeline, PipelineState
from vcam.pipeline.runner import Runner, Scene
from vcam.settings import Settings, load_settings
from vcam.stream.call import receiving, sending
from vcam.stream.ends import model_id, profile_id
from vcam.stream.motion_vector import motion_to_vector
from vcam.stream.packet import pairing_key
from vcam.stream.transport import ReceivedFrame, ReceiverLink, SenderLink, StreamIdentity

CODE = "call-test-code-0001"
TIMEOUT = 30.0
RECEIVING = re.compile(r"Receiving from 127\.0\.0\.1 · \d+\.\d kbit/s · loss \d+\.\d %")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    waiting.wait_until(condition, what, timeout)


def call_settings(home, **changes) -> Settings:
    return load_settings(**{"sink": f"file:{home / 'out.y4m'}", "output_width": 320, "output_height": 180, "camera_off": True, "audio": False, **changes})


@contextmanager
def receiving_pipeline(settings: Settings) -> Iterator[tuple[Pipeline, ReceiverLink]]:
    links: list[ReceiverLink] = []
    with running_pipeline(settings, call=receiving(settings, ("127.0.0.1", 0), CODE, on_listening=links.append)) as pipeline:
        yield pipeline, links[0]


@contextmanager
def streaming_sender(settings: Settings, port: int, profile: str = "default") -> Iterator[SenderLink]:
    """A sender in this process, streaming a moving head for ``profile`` at 30 fps until the block ends."""
    identity = StreamIdentity(profile_id(profile_store(settings).load(profile)), model_id(open_model(settings)), 21)
    stop = threading.Event()
    with SenderLink(("127.0.0.1", port), pairing_key(CODE), identity) as link:
        def stream() -> None:
            step = 0
            while not stop.wait(1 / 30):
                link.send_motion(motion_to_vector(head(step)), time.monotonic())
                step += 1

        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        try:
            yield link
        finally:
            stop.set()
            thread.join()


def add_twin_profile(home) -> None:
    """A profile "twin": the default avatar with its face box 2 px larger, so another avatar to a call."""
    twin = home / "profiles" / "twin"
    shutil.copytree(home / "profiles" / "default", twin)
    meta = (twin / "profile.toml").read_text()
    (twin / "profile.toml").write_text(re.sub(r"size = ([\d.]+)", lambda m: f"size = {float(m.group(1)) + 2}", meta, count=1))


def newest_frame(pipeline: Pipeline) -> np.ndarray:
    frame = pipeline.preview_feed.take(timeout=TIMEOUT)
    assert frame is not None
    return frame


def is_waiting_frame(frame: np.ndarray) -> bool:
    """The dark grey "waiting for the sender" frame (its banner strip aside)."""
    return bool((frame[: frame.shape[0] * 3 // 4] == 40).all())


def test_receiving_pipeline_waits_renders_the_sender_and_waits_again(home):
    with receiving_pipeline(call_settings(home)) as (pipeline, link):
        pipeline.set_preview(True)  # the output frames, as the preview window gets them
        waiting = pipeline.status()
        assert waiting.state is PipelineState.WAITING
        assert waiting.message == f"Waiting for the sender on port {link.port} · code {CODE}"
        assert is_waiting_frame(newest_frame(pipeline))

        with streaming_sender(pipeline.settings, link.port):
            wait_until(lambda: pipeline.status().state is PipelineState.RUNNING, "the sender to connect")
            wait_until(lambda: not is_waiting_frame(newest_frame(pipeline)), "the sender's avatar")
            time.sleep(2.5)  # a full window of the rate meter
            status = pipeline.status()
            assert RECEIVING.fullmatch(status.message), status.message
            kbit_s = float(status.message.split(" · ")[1].split()[0])
            assert 3 < kbit_s < 40, status.message  # a few dozen bytes a frame at 30 fps
            assert status.fps > 5 and "receive" in status.stage_ms and "render" in status.stage_ms
            first = newest_frame(pipeline)
            time.sleep(0.5)
            second = newest_frame(pipeline)
            assert np.abs(first.astype(int) - second.astype(int)).mean() > 0.05  # the avatar moves

        # the sender hung up (its BYE): back to waiting, in the status and in the output
        wait_until(lambda: pipeline.status().state is PipelineState.WAITING, "the receiver to notice the hang-up")
        wait_until(lambda: is_waiting_frame(newest_frame(pipeline)), "the waiting frame")
        assert pipeline.status().message.startswith(f"Waiting for the sender on port {link.port}")


def test_menu_status_line_follows_the_call(home, tmp_path):
    with receiving_pipeline(call_settings(home)) as (pipeline, link):
        def first_line() -> str:
            return build_menu(pipeline, lambda path: None, lambda: None)[0].text

        assert first_line().startswith(f"● Waiting for the sender on port {link.port} · code {CODE}")
        texts = [entry.text for entry in build_menu(pipeline, lambda path: None, lambda: None)]
        assert pipeline.receiving and "Pause" in texts and "Show preview" in texts and "Quit" in texts
        assert not {"Avatar", "Frontalize", "Frontalize strength", "Recalibrate neutral"} & set(texts)  # the sender's to choose
        assert "Download avatar weights" not in texts  # the model is the sender's too: none is swapped in mid-call
        with streaming_sender(pipeline.settings, link.port):
            wait_until(lambda: RECEIVING.search(first_line()) is not None, "the menu to show the call")
            assert first_line() == status_line(pipeline.status())
            assert re.fullmatch(RECEIVING.pattern + r" · \d+\.\d fps · \d+ ms · [\w-]+ · camera off", first_line()[2:])


def test_the_status_names_the_avatar_the_sender_drives(home):
    add_twin_profile(home)
    with receiving_pipeline(call_settings(home)) as (pipeline, link):
        assert pipeline.status().profile == "default"  # the receiver's own setting
        with streaming_sender(pipeline.settings, link.port, profile="twin"):
            wait_until(lambda: pipeline.status().profile == "twin", "the sender's avatar in the status")
        wait_until(lambda: pipeline.status().state is PipelineState.WAITING, "the sender to be gone")
        wait_until(lambda: pipeline.status().profile == "default", "the receiver's own avatar again")


def test_sending_pipeline_reports_the_link_and_calls_again_as_another_avatar(home):
    """The tray's sending end: the camera pipeline streams its motion, says so in its status, and
    when the user picks another avatar the receiver is asked for that one."""
    add_twin_profile(home)
    clip = write_clip(home / "talk.mp4", [placed(dx=30 * math.sin(i / 6)) for i in range(60)])
    got: list[ReceivedFrame] = []
    asked: list[bytes] = []

    def accept(identity: StreamIdentity) -> None:
        asked.append(identity.profile_id)

    settings = call_settings(home, camera=str(clip), camera_off=False)
    store = profile_store(settings)
    with ReceiverLink(("127.0.0.1", 0), pairing_key(CODE), got.append, accept) as receiver:
        with running_pipeline(settings, call=sending(settings, ("127.0.0.1", receiver.port), CODE, level=8)) as pipeline:
            wait_until(lambda: len(got) >= 10, "motion to arrive")
            wait_until(lambda: pipeline.status().message.startswith(f"Sending to 127.0.0.1:{receiver.port} · "), "the status")
            status = pipeline.status()
            assert status.state in (PipelineState.RUNNING, PipelineState.FACE_LOST)  # the pipeline's own state
            assert "stream" in status.stage_ms
            assert re.search(r"Sending to 127\.0\.0\.1:\d+ · \d+\.\d kbit/s · loss \d+\.\d %", status_line(status))
            assert set(asked) == {profile_id(store.load("default"))}

            pipeline.switch_profile("twin").result(TIMEOUT)
            wait_until(lambda: profile_id(store.load("twin")) in asked, "the call as the other avatar")
            sessions = receiver.sessions
            wait_until(lambda: got[-1].session == sessions, "motion in the new session")
    assert len({(frame.session, frame.seq) for frame in got}) == len(got)


def test_tray_shows_the_call_in_its_tooltip_and_icon(home, system_tray: SystemTray):  # noqa: F811
    with receiving_pipeline(call_settings(home)) as (pipeline, link):
        app = TrayApp(pipeline)
        thread = start(app)
        try:
            icon = system_tray.wait_for_dock()
            waiting = f"vcam: {status_text(pipeline.status())}"
            assert waiting.startswith(f"vcam: Waiting for the sender on port {link.port} · code {CODE}")
            system_tray.wait_for_title(icon, waiting)
            assert shown_as(system_tray.picture(), PipelineState.WAITING)
            with streaming_sender(pipeline.settings, link.port):
                system_tray.wait_for(
                    lambda e: e.type == X.PropertyNotify and RECEIVING.match(window_name(icon)[len("vcam: "):]) is not None,
                    "the tooltip to show the call", timeout=TIMEOUT,
                )
                assert shown_as(system_tray.picture(), PipelineState.RUNNING)
                assert RECEIVING.match(app.icon.menu.items[0].text[2:])  # the real pystray menu's status line
            app.quit()
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        finally:
            app.quit()
            thread.join(TIMEOUT)


def test_tray_call_mistakes_are_one_line(home, capsys):
    from vcam.cli import main

    assert main(["tray", "--send", "127.0.0.1"]) == 2
    assert "--code" in capsys.readouterr().err
    assert main(["tray", "--receive", "--code", "short"]) == 2
    err = capsys.readouterr().err.strip()
    assert "at least 12" in err and "\n" not in err
    assert main(["tray", "--send", "127.0.0.1:99999", "--code", CODE]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_vcam_tray_receive_takes_a_call(home, system_tray: SystemTray):  # noqa: F811
    """`vcam tray --receive` as a user starts it: docked, waiting with its port and code, then showing the call."""
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", "import sys; from vcam.cli import main; sys.exit(main(sys.argv[1:]))", "tray", "--receive",
               "--listen", "127.0.0.1:0", "--code", CODE, "--sink", f"file:{home / 'tray.y4m'}", "--width", "320", "--height", "180"]
    child = subprocess.Popen(command, cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        icon = system_tray.wait_for_dock(timeout=120)
        waiting = re.compile(rf"vcam: Waiting for the sender on port (\d+) · code {CODE}")
        if not waiting.match(window_name(icon)):
            system_tray.wait_for(lambda e: e.type == X.PropertyNotify and waiting.match(window_name(icon)) is not None, "the waiting tooltip")
        port = int(waiting.match(window_name(icon)).group(1))
        with streaming_sender(call_settings(home), port):
            system_tray.wait_for(
                lambda e: e.type == X.PropertyNotify and RECEIVING.match(window_name(icon)[len("vcam: "):]) is not None,
                "the tooltip to show the call", timeout=TIMEOUT,
            )
        child.send_signal(signal.SIGINT)  # quits like the menu's Quit
        _, err = child.communicate(timeout=TIMEOUT)
        assert child.returncode == 0, err
    finally:
        child.kill()


def test_a_slow_frame_is_not_made_up_for_by_a_burst(tmp_path):
    """With no camera the clock makes the frames (a receiver): after one slow frame (a render
    while a sender drove the avatar) the next cheap ones (waiting frames) keep the output's pace."""
    period = 1 / 30
    late = [0.0]
    made: list[float] = []

    class Frames:
        name = "frames"

        def run(self, work: FrameWork) -> None:
            if len(made) == 3:
                late[0] += 10 * period  # as if this frame took ten periods
            made.append(time.monotonic())
            work.image = np.zeros((8, 8, 3), np.uint8)

    runner = Runner(Scene(None, None, None), None, [Frames()], [], output_fps=1 / period, camera_fps=30.0, lossless=False,
                    on_frame=lambda work: None, on_error=print, clock=lambda: time.monotonic() + late[0])
    runner.start()
    wait_until(lambda: len(made) >= 16, "frames")
    runner.stop()
    runner.join(5)
    after = np.diff(made[3:16])
    assert sum(after < period / 3) <= 2, after  # a burst would make the next ten frames at once


def test_the_links_status_in_words():
    from vcam.stream.status_text import receiving_text, sending_text
    from vcam.stream.transport import LinkState, LinkStatus

    def link(state: LinkState, peer: str, rejected: int = 0) -> LinkStatus:
        return LinkStatus(state, peer, kbit_s=12.34, loss=0.004, packets=300, rejected=rejected)

    assert receiving_text(link(LinkState.WAITING, "-"), 50505, "abcd-efgh") == "Waiting for the sender on port 50505 · code abcd-efgh"
    assert receiving_text(link(LinkState.CONNECTED, "192.168.1.5:40001"), 50505, "x") == "Receiving from 192.168.1.5 · 12.3 kbit/s · loss 0.4 %"
    assert receiving_text(link(LinkState.CONNECTED, "::1:40001", rejected=3), 1, "x") == "Receiving from ::1 · 12.3 kbit/s · loss 0.4 % · 3 rejected"
    assert receiving_text(link(LinkState.SILENT, "192.168.1.5:40001"), 50505, "x") == "Lost the sender 192.168.1.5 · waiting on port 50505"
    assert sending_text(link(LinkState.WAITING, "10.0.0.2:47470")) == "Calling 10.0.0.2:47470"
    assert sending_text(link(LinkState.CONNECTED, "10.0.0.2:47470")) == "Sending to 10.0.0.2:47470 · 12.3 kbit/s · loss 0.4 %"
    assert sending_text(link(LinkState.SILENT, "10.0.0.2:47470")) == "No answer from 10.0.0.2:47470 · calling again"
