"""vcam.device_compose: the paste-back on the render's device draws what OpenCV's compositor draws
(placement, rotation, mirror, feather, banner), in every sink format, on the CPU and on CUDA; on
CUDA straight from the renderer's own buffer."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from clips import PORTRAIT_CROP, portrait

from vcam.compose import Compositor, PasteLayout, draw_banner
from vcam.device_compose import DeviceCompositor
from vcam.models import LIVEPORTRAIT, build_model, demo_config
from vcam.pipeline.avatars import Avatar, AvatarLoader, Model
from vcam.pipeline.stages import Compose, FrameWork
from vcam.pixel_formats import PixelFormat, from_bgr
from vcam.profiles import ProfileStore
from vcam.render.torch_backend import TorchRenderer
from vcam.settings import Settings
from vcam.tracking import CropBox

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
BANNER = "DEMO MODEL (random weights) - run `vcam weights fetch` for real avatars"
BOXES = {
    "upright": CropBox(*PORTRAIT_CROP[:3]),
    "rotated": CropBox(PORTRAIT_CROP[0] + 13.3, PORTRAIT_CROP[1] - 7.1, PORTRAIT_CROP[2] * 0.8, 17.0),
    "at the corner": CropBox(20.0, 20.0, 120.0),  # the render's edges repeat past the keyframe
}


def renders(box: CropBox) -> list[np.ndarray]:
    """RGB renders: the keyframe's own crop at 512 and 256, and noise (the hardest case for sampling)."""
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    return [cv2.cvtColor(box.crop(portrait(), size), cv2.COLOR_BGR2RGB) for size in (512, 256)] + [noise]


def opencv_frame(compositor: Compositor, rendered_rgb: np.ndarray, banner: str | None) -> np.ndarray:
    """The output frame as the OpenCV path draws it, BGR."""
    image = compositor.compose(cv2.cvtColor(rendered_rgb, cv2.COLOR_RGB2BGR))
    if banner:
        draw_banner(image, banner)
    return image


OPENCV_WARP_LEVELS = 2 if cv2.__version__.startswith("4.") else 8
"""How far OpenCV's own warp may be: the device compositor reproduces OpenCV 4's 1/32-pixel fixed
point; OpenCV 5.0's warpAffine rounds otherwise (measured: a few edge pixels up to 7 levels apart,
mean 0.06)."""


def assert_close(got: np.ndarray, expected: np.ndarray, max_levels: int = OPENCV_WARP_LEVELS, mean_levels: float = 0.5) -> None:
    assert got.shape == expected.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= max_levels and diff.mean() <= mean_levels, (diff.max(), diff.mean())


@pytest.mark.parametrize("banner", [None, BANNER], ids=["plain", "banner"])
@pytest.mark.parametrize("mirror", [False, True], ids=["", "mirrored"])
@pytest.mark.parametrize("box", BOXES.values(), ids=BOXES.keys())
def test_draws_what_the_opencv_compositor_draws(box: CropBox, mirror: bool, banner: str | None) -> None:
    compositor = Compositor(PasteLayout(portrait(), box, (640, 360), mirror=mirror))
    device = DeviceCompositor(compositor.layout, "cpu", banner)
    for rendered in renders(box):
        frame = device.frame(torch.from_numpy(rendered))
        assert_close(frame.numpy()[..., ::-1], opencv_frame(compositor, rendered, banner))


@pytest.mark.parametrize("fmt", list(PixelFormat))
def test_composes_into_each_sink_format_as_a_frame_of_its_own(fmt: PixelFormat) -> None:
    box = BOXES["rotated"]
    compositor = Compositor(PasteLayout(portrait(), box, (640, 360)))
    device = DeviceCompositor(compositor.layout, "cpu", BANNER)
    first, second = renders(box)[0], renders(box)[2]
    image = device.compose(torch.from_numpy(first), fmt)
    kept = image.copy()
    device.compose(torch.from_numpy(second), fmt)
    assert isinstance(image, np.ndarray) and np.array_equal(image, kept)  # the next frame leaves it alone
    assert_close(image, from_bgr(opencv_frame(compositor, first, BANNER), fmt))


def test_the_banner_is_draw_banners_own() -> None:
    compositor = Compositor(PasteLayout(portrait(), BOXES["upright"], (1280, 720)))
    rendered = renders(BOXES["upright"])[2]
    got = DeviceCompositor(compositor.layout, "cpu", BANNER).frame(torch.from_numpy(rendered)).numpy()[..., ::-1]
    expected = opencv_frame(compositor, rendered, BANNER)
    strip = slice(650, 720)  # the banner's strip and a little above
    assert_close(got[strip], expected[strip], max_levels=1, mean_levels=0.01)
    plain = compositor.compose(cv2.cvtColor(rendered, cv2.COLOR_RGB2BGR))
    assert np.abs(got[strip].astype(int) - plain[strip]).mean() > 10  # there is a banner to match


# -- on CUDA ---------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("fmt", list(PixelFormat))
@pytest.mark.parametrize("box", BOXES.values(), ids=BOXES.keys())
def test_on_cuda_it_draws_what_it_draws_on_the_cpu(box: CropBox, fmt: PixelFormat) -> None:
    compositor = Compositor(PasteLayout(portrait(), box, (1280, 720), mirror=True))
    on_cpu = DeviceCompositor(compositor.layout, "cpu", BANNER)
    on_cuda = DeviceCompositor(compositor.layout, "cuda", BANNER)
    for rendered in renders(box):
        got = on_cuda.compose(torch.from_numpy(rendered).cuda(), fmt)
        assert_close(got, on_cpu.compose(torch.from_numpy(rendered), fmt), max_levels=1, mean_levels=0.05)


@pytest.fixture(scope="module")
def liveportrait():
    return build_model(demo_config(LIVEPORTRAIT), seed=0)


@needs_cuda
@pytest.mark.parametrize("fmt", [PixelFormat.I420, PixelFormat.BGR])
def test_cuda_renderer_hands_its_image_to_the_device_compositor(liveportrait, fmt: PixelFormat) -> None:
    """render_device + DeviceCompositor (no download of the render) against render + OpenCV, over
    frames rendered and composed back to back, so a missing wait on the renderer's stream would show."""
    model = liveportrait
    rng = np.random.default_rng(1)
    size = model.cfg.input_size
    box = BOXES["rotated"]
    compositor = Compositor(PasteLayout(portrait(), box, (1280, 720)))
    with TorchRenderer(model, "cuda") as renderer:
        source = renderer.prepare_source(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        heads = [model.head_motion(renderer.extract_motion(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))) for _ in range(4)]
        avatar = Avatar(None, source, compositor, None, DeviceCompositor(compositor.layout, renderer.device, BANNER))  # type: ignore[arg-type]
        work_model = Model(model.cfg, renderer, "demo", BANNER)
        composed = []
        for head in heads:
            work = FrameWork(0.0, work_model, avatar, head=head)
            work.rendered = renderer.render_device(source, head)
            assert work.rendered.device.type == "cuda"
            Compose(fmt).run(work)
            composed.append(work.image)
        expected = [from_bgr(opencv_frame(compositor, renderer.render(source, head), BANNER), fmt) for head in heads]
    assert not np.array_equal(composed[0], composed[1])  # the heads differ, so do the frames
    for got, want in zip(composed, expected):
        assert_close(got, want)


@needs_cuda
@pytest.mark.parametrize("gpu_compose", [True, False])
def test_avatars_of_a_cuda_model_compose_on_the_gpu_unless_told_not_to(liveportrait, tmp_path, gpu_compose: bool) -> None:
    shutil.copytree(Path(__file__).resolve().parents[1] / "profiles" / "default", tmp_path / "default")
    settings = Settings(profiles_dir=tmp_path, gpu_compose=gpu_compose)
    with TorchRenderer(liveportrait, "cuda") as renderer:
        avatar = AvatarLoader(ProfileStore(tmp_path), settings).load("default", Model(liveportrait.cfg, renderer, "demo"))
    assert (avatar.device_compositor is not None) is gpu_compose


@needs_cuda
def test_frames_started_back_to_back_each_arrive_whole() -> None:
    """The pipeline queues the next frame before the last one's download is waited for: each
    download lands in memory of its own."""
    compositor = Compositor(PasteLayout(portrait(), BOXES["rotated"], (1280, 720)))
    device = DeviceCompositor(compositor.layout, "cuda")
    rendered = [torch.from_numpy(r).cuda() for r in renders(BOXES["rotated"])]
    started = [device.start(r, PixelFormat.I420) for r in rendered]
    assert all(s.copied is not None for s in started)
    for download, render in zip(started, rendered):
        assert np.array_equal(download.wait(), device.compose(render, PixelFormat.I420))
