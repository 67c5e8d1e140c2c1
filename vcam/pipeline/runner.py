"""The frame path on three threads joined by one-slot queues.

*capture* reads the camera and runs the camera stages (tracking) on each frame, *inference* runs
the frame stages (motion, render, compose), *output* runs the output stages (send). Tracking a
frame on the capture thread overlaps the rendering of the one before it, and on a GPU the output
thread waits for a frame's download while the inference thread starts on the next frame. In live
mode a slot keeps only the newest item (a slow renderer drops old camera frames instead of
building a backlog, so latency stays bounded) and the output repeats the last frame to keep the
virtual camera at a steady rate. In lossless mode (rendering a clip to a file) every slot waits
instead, so every input frame comes out exactly once.
Without a camera the inference thread makes frames at the output rate.

The runner takes no orders in the middle of a frame: the controller's commands wait in a queue
that the inference thread applies to the :class:`Scene` between two frames.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from .. import started_at
from ..capture import FrameSource
from ..motion import MotionStage
from .avatars import Avatar, Model
from .slots import Slot
from .stages import FrameWork, Stage
from .status import Measures

log = logging.getLogger("vcam.pipeline")


class Scene:
    """What the next frame is made of: model, avatar, the user's motion state, and whether frames are
    paused. Only the inference thread changes it, between frames, by applying commands."""

    def __init__(self, model: Model, avatar: Avatar, motion: MotionStage) -> None:
        self.model = model
        self.avatar = avatar
        self.motion = motion
        self.paused = False

    def use_avatar(self, avatar: Avatar) -> None:
        log.info("avatar %r", avatar.profile.name)
        self.avatar = avatar
        self.motion.set_source(avatar.source, avatar.ratios)

    def use_model(self, model: Model, avatar: Avatar) -> None:
        """Model, renderer and avatar change together; the old renderer is closed."""
        retired = self.model.renderer
        self.model = model
        self.use_avatar(avatar)
        if retired is not model.renderer:
            retired.close()


Command = Callable[[Scene], None]


class Ewma:
    def __init__(self, weight: float = 0.1) -> None:
        self.weight, self.value = weight, 0.0
        self._seen = False

    def add(self, x: float) -> None:
        self.value = x if not self._seen else self.value + self.weight * (x - self.value)
        self._seen = True


LATENCY_WINDOW = 900
"""Latencies kept for the percentiles: the last 30 s at 30 fps."""


class Runner:
    """Runs ``camera_stages`` on every camera frame (on the capture thread), ``stages`` on every
    frame and ``outputs`` on every output frame, timing each by name.

    The camera stages see the frame's model and avatar as they were when it was captured; the
    inference thread binds the scene's current ones before its own stages run.
    ``on_frame`` hears of every finished frame (the controller derives running / face lost from it),
    ``on_error`` of a failure that ended the run.
    """

    def __init__(
        self,
        scene: Scene,
        source: FrameSource | None,
        stages: Sequence[Stage],
        outputs: Sequence[Stage],
        output_fps: float,
        camera_fps: float,
        lossless: bool,
        on_frame: Callable[[FrameWork], None],
        on_error: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        camera_stages: Sequence[Stage] = (),
    ) -> None:
        self.scene = scene
        self.source = source
        self.camera_stages, self.stages, self.outputs = tuple(camera_stages), tuple(stages), tuple(outputs)
        self.period = 1.0 / output_fps
        self.idle_s = 0.5 / max(camera_fps, 1.0)
        """How long the capture thread waits when the camera has no frame yet."""
        self.lossless = lossless
        self.on_frame, self.on_error = on_frame, on_error
        self.clock = clock
        self.max_frames: int | None = None
        self.finished = threading.Event()
        self.first_frame_out = threading.Event()
        """Set once the first frame is out, or when the run ends before one."""
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._frames: Slot[FrameWork] = Slot(lossless)
        self._outputs: Slot[FrameWork] = Slot(lossless)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stage_s = {stage.name: Ewma() for stage in (*self.camera_stages, *self.stages, *self.outputs)}
        self._fps, self._latency = Ewma(0.05), Ewma(0.1)
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._latencies_lock = threading.Lock()  # the output thread adds, any thread reads
        self._frames_in = self._frames_out = 0
        self._last_sent_at: float | None = None
        self._first_frame_s: float | None = None

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        workers: list[tuple[str, Callable[[], None], Slot[FrameWork] | None]] = [
            ("vcam-inference", self._inference_loop, self._outputs), ("vcam-output", self._output_loop, None),
        ]
        if self.source is not None:
            workers.insert(0, ("vcam-capture", self._capture_loop, None))
        else:
            self._frames.close()
        for name, target, feeds in workers:
            thread = threading.Thread(target=self._guard(target, feeds), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Ask every thread to finish; :meth:`join` waits for them."""
        self._stop.set()
        self._frames.close()
        self._outputs.close()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def submit(self, command: Command) -> None:
        """Apply ``command`` to the scene before the next frame (in the order submitted)."""
        self._commands.put(command)

    def forget_latencies(self) -> None:
        with self._latencies_lock:
            self._latencies.clear()

    def measures(self) -> Measures:
        with self._latencies_lock:
            latencies = list(self._latencies)
        p50, p99 = np.percentile(latencies, [50, 99]) if latencies else (0.0, 0.0)
        return Measures(
            fps=self._fps.value,
            latency_ms=self._latency.value * 1000,
            latency_p50_ms=float(p50) * 1000,
            latency_p99_ms=float(p99) * 1000,
            stage_ms={name: ewma.value * 1000 for name, ewma in self._stage_s.items()},
            frames_in=self._frames_in,
            frames_out=self._frames_out,
            dropped=self._frames.dropped + self._outputs.dropped,
            first_frame_s=self._first_frame_s,
        )

    def _guard(self, loop: Callable[[], None], feeds: Slot[FrameWork] | None = None) -> Callable[[], None]:
        """``loop`` with its failure reported; the slot it ``feeds`` is closed after that report, so
        the thread downstream never sees the run end before its failure is known."""

        def run() -> None:
            try:
                loop()
            except Exception as exc:  # a broken device or backend: report, stop cleanly
                log.exception("%s failed", threading.current_thread().name)
                self.on_error(str(exc) or type(exc).__name__)
                self.stop()
                self._finish()
            finally:
                if feeds is not None:
                    feeds.close()

        return run

    # -- threads ----------------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        assert self.source is not None
        while not self._stop.is_set():
            frame = self.source.read()
            if frame is None:
                if self.source.finished:
                    break
                self._stop.wait(self.idle_s)
                continue
            self._frames_in += 1
            work = FrameWork(frame.timestamp, self.scene.model, self.scene.avatar, frame)
            self._run(self.camera_stages, work)
            if not self._frames.put(work):
                break
        self._frames.close()

    def _inference_loop(self) -> None:
        next_tick = self.clock()
        try:
            while not self._stop.is_set():
                self._apply_commands()
                if self.source is None:  # the clock makes the frames
                    now = self.clock()
                    if now > next_tick + self.period:  # after a slow frame the pace starts again, no burst makes up for it
                        next_tick = now
                    self._stop.wait(max(0.0, next_tick - now))
                    next_tick += self.period
                    work = FrameWork(self.clock(), self.scene.model, self.scene.avatar)
                else:
                    captured = self._frames.get(timeout=0.1)
                    if captured is None:
                        if self._frames.closed:
                            break
                        continue
                    work = captured
                    self._apply_commands()  # those that came while the frame waited
                if self.scene.paused:
                    continue
                work.model, work.avatar = self.scene.model, self.scene.avatar
                self._run(self.stages, work)
                self.on_frame(work)
                if not self._outputs.put(work):
                    break
        finally:
            self._apply_commands()  # a model swapped in after the last frame is the one closed at the end

    def _output_loop(self) -> None:
        last: FrameWork | None = None
        while True:
            work = self._outputs.get(timeout=None if self.lossless else self.period)
            if work is None:
                if self._outputs.closed or self._stop.is_set():
                    break
                if last is not None and not self.lossless:
                    self._send(last, fresh=False)  # keep the virtual camera fed at a steady rate
                continue
            last = work
            self._send(work, fresh=True)
            if self.max_frames is not None and self._frames_out >= self.max_frames:
                self.stop()
                break
        self._finish()

    def _finish(self) -> None:
        self.finished.set()
        self.first_frame_out.set()

    # -- one frame --------------------------------------------------------------------------------

    def _apply_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command(self.scene)

    def _run(self, stages: Sequence[Stage], work: FrameWork) -> None:
        for stage in stages:
            start = self.clock()
            stage.run(work)
            self._stage_s[stage.name].add(self.clock() - start)

    def _send(self, work: FrameWork, fresh: bool) -> None:
        if work.output is not None:
            work.output.wait()  # a frame is handed over once its download from the GPU is done
        now = self.clock()
        self._run(self.outputs, work)
        if not fresh:
            return
        self._frames_out += 1
        if self._first_frame_s is None:
            self._first_frame_s = time.monotonic() - started_at
            self.first_frame_out.set()
        if not self.lossless:  # a lossless run works through the clip at its own pace
            self._latency.add(now - work.t)
            with self._latencies_lock:
                self._latencies.append(now - work.t)
        if self._last_sent_at is not None and now > self._last_sent_at:
            self._fps.add(1.0 / (now - self._last_sent_at))
        self._last_sent_at = now
