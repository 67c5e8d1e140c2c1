"""vcam.render: the gather grid sample, the torch backends, backend selection and the benchmark."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vcam.errors import VcamError
from vcam.models import FACEVID2VID, FACEVID2VID_BETA, LIVEPORTRAIT, HeadMotion, MotionEstimate, SourceState, TalkingHeadModel, build_model, demo_config
from vcam.models.blocks import SPADE
from vcam.models.config import SpadeDecoderConfig
from vcam.render import select_renderer
from vcam.render.bench import run_bench
from vcam.render.compile_cache import CompileCache, CompileKey, compile_folder
from vcam.render.gridsample import grid_sample_3d_gather
from vcam.render.base import Renderer, image_to_uint8, to_host
from vcam.render.fast import FastConv, FusedSPADE, PointwiseConv, TapConv, autotune_convs, speed_up
from vcam.render.graphs import DrivingKeypointsGraph, head_tensors, inference_copy, make_sample
from vcam.render.select import start_renderer
from vcam.render.warm_up import warm_up_cuda
from vcam.render.torch_backend import TorchRenderer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module", params=[LIVEPORTRAIT, FACEVID2VID, FACEVID2VID_BETA], ids=["liveportrait", "facevid2vid", "facevid2vid-beta"])
def model(request: pytest.FixtureRequest) -> TalkingHeadModel:
    return build_model(demo_config(request.param), seed=0)


def crops(model: TalkingHeadModel, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    size = model.cfg.input_size
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8), rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def as_image(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255


# -- grid sample ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gather_grid_sample_matches_torch_inside_and_outside(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(2, 3, 5, 6, 7, generator=generator, dtype=dtype)
    # Out-of-range coordinates on every axis: partly outside cells blend with the zero padding.
    grid = (torch.rand(2, 4, 5, 3, 3, generator=generator, dtype=dtype) * 2.8 - 1.4)
    expected = F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(grid_sample_3d_gather(volume, grid), expected)


def test_gather_grid_sample_at_the_border() -> None:
    volume = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    # Exactly ±1 (half a voxel outside the outer centres), ±(1 + 1/size) (a full voxel outside:
    # zero) and the outer voxel centres ±(1 − 1/size).
    values = torch.tensor([-1.25, -1.0, -0.75, 0.0, 0.75, 1.0, 1.25])
    grid = torch.stack(torch.meshgrid(values, values, values, indexing="ij"), dim=-1)[None]
    out = grid_sample_3d_gather(volume, grid)
    torch.testing.assert_close(out, F.grid_sample(volume, grid, align_corners=False))
    assert out[..., 0, :, :].abs().max() == 0 and out[..., -1, :, :].abs().max() == 0


def test_gather_grid_sample_inside_the_warp(model: TalkingHeadModel) -> None:
    sample = make_sample(model)
    nets = inference_copy(model, grid_sample_3d_gather)
    with torch.no_grad():
        expected = model.warp_decode(sample.source.f_s, sample.source.x_s, sample.x_d)
        torch.testing.assert_close(nets.warp_decode(sample.source.f_s, sample.source.x_s, sample.x_d), expected, atol=1e-4, rtol=1e-4)


# -- the torch backend on the CPU ------------------------------------------------------------------


@pytest.mark.parametrize(("eye_open", "mouth_open"), [(None, None), (0.3, None), (None, 0.2), (0.1, 0.5)])
def test_driving_keypoints_graph_equals_the_model(model: TalkingHeadModel, eye_open: float | None, mouth_open: float | None) -> None:
    sample = make_sample(model)
    head = sample.head
    head.eye_open, head.mouth_open = eye_open, mouth_open
    graph = DrivingKeypointsGraph(inference_copy(model))
    given = {"x_c": sample.source.x_c, "x_s": sample.source.x_s} | head_tensors(head)
    with torch.no_grad():
        x_d = graph(*(given[name] for name in graph.input_names))
        assert torch.equal(x_d, model.driving_keypoints(sample.source, head))


def test_an_inference_copy_on_a_device_leaves_out_networks_and_shares_no_weights(model: TalkingHeadModel) -> None:
    sample = make_sample(model)
    nets = inference_copy(model, device=torch.device("cpu"), without=("appearance_feature_extractor",))
    assert nets.appearance_feature_extractor is None and model.appearance_feature_extractor is not None
    originals = {p.data_ptr() for p in model.parameters()}
    assert not any(p.data_ptr() in originals or p.requires_grad for p in nets.parameters())
    with torch.no_grad():
        torch.testing.assert_close(nets.warp_decode(sample.source.f_s, sample.source.x_s, sample.x_d),
                                   model.warp_decode(sample.source.f_s, sample.source.x_s, sample.x_d), atol=0, rtol=0)


def test_torch_cpu_renderer_equals_the_model(model: TalkingHeadModel) -> None:
    source_crop, driving_crop = crops(model)
    with TorchRenderer(model) as renderer:
        assert (renderer.name, renderer.device) == ("torch-cpu", "cpu")
        source = renderer.prepare_source(source_crop)
        motion = renderer.extract_motion(driving_crop)
        with torch.no_grad():
            expected_source = model.prepare_source(as_image(source_crop))
            expected_motion = model.extract_motion(as_image(driving_crop))
        for name, value in source.tensors().items():
            assert torch.equal(value, getattr(expected_source, name)), name
        assert torch.equal(motion.exp, expected_motion.exp) and torch.equal(motion.yaw, expected_motion.yaw)
        assert motion.exp.dtype == torch.float32 and motion.exp.device.type == "cpu"
        head = model.head_motion(motion)
        for eye_open in (None, 0.2):
            head.eye_open = eye_open
            image = renderer.render(source, head)
            with torch.no_grad():
                expected = image_to_uint8(model.render(source, head)).numpy()
            assert image.shape == (model.cfg.output_size, model.cfg.output_size, 3) and image.dtype == np.uint8
            assert np.array_equal(image, expected)


def test_renderer_rebinds_a_new_source(model: TalkingHeadModel) -> None:
    first, second = crops(model, seed=3)
    with TorchRenderer(model) as renderer:
        head = model.head_motion(renderer.extract_motion(first))
        a, b = renderer.prepare_source(first), renderer.prepare_source(second)
        image_a, image_b = renderer.render(a, head), renderer.render(b, head)
        assert not np.array_equal(image_a, image_b)
        assert np.array_equal(renderer.render(a, head), image_a)


def test_render_is_the_download_of_render_device(model: TalkingHeadModel) -> None:
    first, second = crops(model, seed=5)
    with TorchRenderer(model) as renderer:
        head = model.head_motion(renderer.extract_motion(first))
        a, b = renderer.prepare_source(first), renderer.prepare_source(second)
        on_device = renderer.render_device(a, head)
        assert on_device.device.type == "cpu" and on_device.dtype == torch.uint8
        assert on_device.shape == (model.cfg.output_size, model.cfg.output_size, 3)
        kept = on_device.clone()
        image = renderer.render(b, head)  # an array of the caller's own, not the renderer's buffer
        assert np.array_equal(image, renderer.render_device(b, head).numpy())
        assert not np.array_equal(image, kept.numpy())
        assert np.array_equal(renderer.render(a, head), kept.numpy())
        image[:] = 0  # the caller's array is its own: the renderer's image is untouched
        assert not np.array_equal(renderer.render_device(b, head).numpy(), image)


def test_a_renderer_can_take_over_another_ones_networks(model: TalkingHeadModel) -> None:
    source_crop, driving_crop = crops(model, seed=6)
    first = TorchRenderer(model)
    with TorchRenderer(model, share_networks_with=first) as second:
        assert all(a is b for a, b in zip(first._nets.parameters(), second._nets.parameters()))
        source = first.prepare_source(source_crop)
        head = model.head_motion(first.extract_motion(driving_crop))
        image = first.render(source, head)
        first.close()  # the networks stay with the renderer that took them over
        assert np.array_equal(second.render(source, head), image)
    with pytest.raises(VcamError, match="was closed"):
        TorchRenderer(model, share_networks_with=first)


def test_warming_up_initialises_cuda_where_there_is_one() -> None:
    thread = warm_up_cuda()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert torch.cuda.is_initialized() == torch.cuda.is_available()


def test_renderer_errors_are_clear(model: TalkingHeadModel) -> None:
    renderer = TorchRenderer(model)
    size = model.cfg.input_size
    with pytest.raises(VcamError, match=f"{size}×{size}×3 uint8 RGB"):
        renderer.extract_motion(np.zeros((size, size, 3), dtype=np.float32))
    with pytest.raises(VcamError, match="uint8 RGB"):
        renderer.prepare_source(np.zeros((size + 1, size, 3), dtype=np.uint8))
    other = build_model(demo_config(LIVEPORTRAIT, input_size=32), seed=0)
    wrong = TorchRenderer(other).prepare_source(np.zeros((32, 32, 3), dtype=np.uint8))
    head = model.head_motion(renderer.extract_motion(crops(model)[0]))
    with pytest.raises(VcamError, match="recreate the profile"):
        renderer.render(wrong, head)
    with pytest.raises(VcamError, match="fp32"):
        TorchRenderer(model, "cpu", "fp16")
    renderer.close()
    with pytest.raises(VcamError, match="closed"):
        renderer.extract_motion(crops(model)[0])


# -- backend selection -----------------------------------------------------------------------------


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without TensorRT or CUDA, whatever it has (a None module fails to import)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.usefixtures("no_gpu")
def test_auto_falls_back_to_torch_cpu_and_says_why(model: TalkingHeadModel, tmp_path: Path) -> None:
    renderer, why = select_renderer("auto", model, tmp_path, "w1")
    with renderer:
        assert renderer.name == "torch-cpu"
    assert why.startswith("torch-cpu: ")
    assert "tensorrt not installed" in why and "no CUDA device" in why and "no ONNX export of weights w1" in why


@pytest.mark.usefixtures("no_gpu")
def test_explicit_unavailable_backends_raise_with_the_fix(model: TalkingHeadModel, tmp_path: Path) -> None:
    with pytest.raises(VcamError, match=r"tensorrt renderer cannot run here: tensorrt not installed — install it with `pip install vcam\[tensorrt\]`"):
        select_renderer("tensorrt", model, tmp_path, "w1")
    with pytest.raises(VcamError, match="torch-cuda renderer cannot run here: no CUDA device"):
        select_renderer("torch-cuda", model, tmp_path, "w1")
    with pytest.raises(VcamError, match="onnxruntime renderer cannot run here: no ONNX export .* `vcam engines build --onnx-only`"):
        select_renderer("onnxruntime", model, tmp_path, "w1")
    with pytest.raises(VcamError, match="unknown renderer 'fastest'"):
        select_renderer("fastest", model, tmp_path, "w1")
    renderer, why = select_renderer("torch", model, tmp_path, "w1")
    with renderer:
        assert renderer.name == "torch-cpu" and why == "torch-cpu: float32 on the CPU"


def test_tensorrt_without_cuda_or_plans_is_passed_over(model: TalkingHeadModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(VcamError, match="tensorrt renderer cannot run here: no CUDA device"):
        select_renderer("tensorrt", model, tmp_path, "w1")
    renderer, why = select_renderer("auto", model, tmp_path, "w1")
    renderer.close()
    assert why.startswith("torch-cpu: no CUDA device; no ONNX export")


# -- benchmark -------------------------------------------------------------------------------------


def test_bench_reports_each_backend_against_eager_float32(tmp_path: Path) -> None:
    lines: list[str] = []
    results = run_bench("facevid2vid-demo", ["torch-cpu"], frames=3, warmup=1, engines_dir=tmp_path, json_path=tmp_path / "bench.json", out=lines.append)
    assert [r.backend for r in results] == ["eager-fp32", "torch-cpu"]
    baseline, cpu = results
    assert baseline.speedup is None and cpu.speedup is not None and cpu.speedup > 0
    # The eager baseline runs on CUDA where there is one: allow its rounding.
    assert cpu.max_abs_diff <= 1 and cpu.pose_diff_deg < 1e-3 and (cpu.crop, cpu.output) == (64, 64)
    assert "× eager fp32" in lines[-1] and "torch-cpu" in lines[-1]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [r["backend"] for r in report["results"]] == ["eager-fp32", "torch-cpu"] and report["weights_id"] == "random-facevid2vid-demo-seed0"


# -- faster formulations (checked on the CPU, used on CUDA) ----------------------------------------


def randomise_batchnorm(model: TalkingHeadModel) -> TalkingHeadModel:
    """A copy whose BatchNorm layers have non-trivial statistics, so folding them is really tested."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(7)
    for norm in model.modules():
        if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
            norm.running_mean.copy_(torch.randn(norm.running_mean.shape, generator=generator) * 0.1)
            norm.running_var.copy_(torch.rand(norm.running_var.shape, generator=generator) + 0.5)
            norm.weight.data.copy_(torch.rand(norm.weight.shape, generator=generator) + 0.5)
    return model


@pytest.mark.parametrize("mode", ["direct", "folded"])
def test_fast_formulations_compute_the_same_warp_and_decode(model: TalkingHeadModel, mode: str) -> None:
    model = randomise_batchnorm(model)
    sample = make_sample(model)
    nets = inference_copy(model)
    for network in (nets.warping_module, nets.spade_generator):
        speed_up(network)
    convs = [m for m in nets.modules() if isinstance(m, FastConv)]
    padded = any(m.weight.shape[:2] != (m.out_channels, m.in_channels) for m in convs)
    assert padded == model.cfg.name.startswith("liveportrait"), "the hourglass's 110/142 channels are padded"
    for conv in convs:
        conv.mode = mode if conv.can_fold else "direct"
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in nets.warping_module.modules())
    assert isinstance(model.cfg.generator, SpadeDecoderConfig) == any(isinstance(m, FusedSPADE) for m in nets.modules())
    assert any(isinstance(m, TapConv) for m in nets.modules()) and any(isinstance(m, PointwiseConv) for m in nets.modules())
    with torch.no_grad():
        expected = model.warp_decode(sample.source.f_s, sample.source.x_s, sample.x_d)
        got = nets.warp_decode(sample.source.f_s, sample.source.x_s, sample.x_d)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-3)


def test_conv_autotuning_under_reduced_precision(model: TalkingHeadModel) -> None:
    """Tuning runs each layer on the inputs autocast gives it, picks a mode and keeps the output."""
    sample = make_sample(model)
    nets = inference_copy(model)
    for network in (nets.warping_module, nets.spade_generator):
        speed_up(network)
    with torch.no_grad():
        expected = nets.warp_decode(sample.source.f_s, sample.source.x_s, sample.x_d)
    for network in (nets.warping_module, nets.spade_generator):
        network.to(torch.bfloat16)

    def run() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return nets.warp_decode(sample.source.f_s, sample.source.x_s, sample.x_d)

    with torch.no_grad():
        timings = autotune_convs(nets, run)
        got = run().float()
    foldable = [name for name, m in nets.named_modules() if isinstance(m, FastConv) and m.can_fold]
    assert sorted(timings) == sorted(foldable) and all(t["direct"] > 0 and t["folded"] > 0 for t in timings.values())
    assert all(m.mode == min(timings[n], key=timings[n].get) for n, m in nets.named_modules() if n in timings)
    assert got.shape == expected.shape and (got - expected).abs().mean() < 0.05


@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (torch.nn.Conv2d(40, 12, 3, padding=1), (1, 40, 9, 7)),
        (torch.nn.Conv2d(24, 1, 7, padding=3), (1, 24, 10, 12)),
        (torch.nn.Conv2d(16, 24, 1, bias=False), (1, 16, 5, 6)),
        (torch.nn.Conv3d(16, 4, 1), (1, 16, 3, 5, 6)),
    ],
)
def test_matrix_product_convolutions_equal_the_convolution(conv: torch.nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape)
    rewritten = PointwiseConv(conv) if conv.kernel_size[0] == 1 else TapConv(conv)
    assert TapConv.applies_to(conv) == isinstance(rewritten, TapConv)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), conv(x), atol=1e-5, rtol=1e-4)
        channels_last = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        torch.testing.assert_close(rewritten(channels_last), conv(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_spade_keeps_large_activations_in_reduced_precision(dtype: torch.dtype) -> None:
    """The generator's SPADE inputs reach thousands (variance past fp16's 65504): statistics must not overflow."""
    torch.manual_seed(0)
    spade = SPADE(64, 3).eval()
    x = torch.randn(1, 64, 32, 32) * 400 + 100
    segmap = torch.rand(1, 3, 64, 64)
    assert torch.var(x, dim=(2, 3)).min() > torch.finfo(torch.float16).max
    with torch.no_grad():
        expected = spade(x, segmap)
        got = FusedSPADE(spade).to(dtype)(x.to(dtype), segmap.to(dtype)).float()
    tolerance = 4 * torch.finfo(dtype).eps * expected.abs().max()
    assert (got - expected).abs().max() < tolerance


# -- the torch backend on CUDA ---------------------------------------------------------------------

# Against float32 on the CPU, with random demo weights (which amplify rounding far more than trained
# ones): fp16 within 2 levels of 255 on average and 30 dB PSNR, head pose within 0.5°.
FP16_TOLERANCE = {"mean": 2.0, "psnr": 30.0, "pose": 0.5}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def reference_render(model: TalkingHeadModel) -> tuple[SourceState, HeadMotion, np.ndarray, MotionEstimate, np.ndarray]:
    source_crop, driving_crop = crops(model)
    with TorchRenderer(model) as cpu:
        source = cpu.prepare_source(source_crop)
        motion = cpu.extract_motion(driving_crop)
        head = model.head_motion(motion)
        head.eye_open, head.mouth_open = 0.3, 0.2
        return source, head, cpu.render(source, head), motion, driving_crop


@needs_cuda
def test_cuda_fp16_renderer_matches_float32_within_tolerance(model: TalkingHeadModel) -> None:
    source, head, expected, motion, driving_crop = reference_render(model)
    with TorchRenderer(model, "cuda", "fp16") as renderer:
        assert renderer.name == "torch-cuda" and renderer.device.startswith("cuda")
        got_motion = renderer.extract_motion(driving_crop)
        first = renderer.render(source, head)
        second = renderer.render(source, head)  # replayed graph, source already on the GPU
    assert np.array_equal(first, second)
    diff = np.abs(first.astype(np.int16) - expected.astype(np.int16))
    assert diff.mean() < FP16_TOLERANCE["mean"] and psnr(first, expected) > FP16_TOLERANCE["psnr"]
    pose = torch.stack([got_motion.yaw - motion.yaw, got_motion.pitch - motion.pitch, got_motion.roll - motion.roll])
    assert pose.abs().max() < FP16_TOLERANCE["pose"]
    assert got_motion.exp.device.type == "cpu" and got_motion.exp.dtype == torch.float32


@needs_cuda
def test_cuda_bf16_renderer_runs(model: TalkingHeadModel) -> None:
    source, head, expected, _, _ = reference_render(model)
    with TorchRenderer(model, "cuda", "bf16") as renderer:
        image = renderer.render(source, head)
    # bf16 keeps 8 mantissa bits: only a loose likeness survives random weights.
    assert image.shape == expected.shape and psnr(image, expected) > 12


@needs_cuda
def test_cuda_graphs_and_fast_formulations_follow_new_inputs(model: TalkingHeadModel) -> None:
    first, second = crops(model, seed=5)
    with TorchRenderer(model, "cuda", "fp32") as graphed, TorchRenderer(model, "cuda", "fp32", cuda_graphs=False, fast=False) as eager:
        for crop in (first, second):
            a, b = graphed.extract_motion(crop), eager.extract_motion(crop)
            torch.testing.assert_close(a.exp, b.exp, atol=1e-3, rtol=1e-3)
        head = model.head_motion(a)
        for source_crop in (first, second):
            source = graphed.prepare_source(source_crop)
            diff = np.abs(graphed.render(source, head).astype(np.int16) - eager.render(source, head).astype(np.int16))
            assert diff.mean() < 0.5
        assert graphed.conv_timings and all(set(t) == {"direct", "folded"} for t in graphed.conv_timings.values())


@needs_cuda
def test_compiled_cuda_renderer_matches_uncompiled() -> None:
    model = build_model(demo_config(LIVEPORTRAIT), seed=0)
    source_crop, driving_crop = crops(model)
    with TorchRenderer(model, "cuda", "fp16") as plain, TorchRenderer(model, "cuda", "fp16", compile_mode="default") as compiled:
        source = plain.prepare_source(source_crop)
        head = model.head_motion(plain.extract_motion(driving_crop))
        a, b = plain.render(source, head), compiled.render(source, head)
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() < FP16_TOLERANCE["mean"] and psnr(a, b) > FP16_TOLERANCE["psnr"]


@pytest.mark.usefixtures("no_gpu")
def test_a_backend_that_does_not_compile_starts_at_full_speed(model: TalkingHeadModel, tmp_path: Path) -> None:
    started = start_renderer("auto", model, tmp_path, "w1")
    with started.renderer:
        assert started.renderer.name == "torch-cpu" and started.full_speed is None
    assert "in the background" not in started.reason


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("triton") is None, reason="needs a CUDA device and Triton")
def test_cuda_starts_uncompiled_while_the_compiled_renderer_is_built_beside_it(tmp_path: Path) -> None:
    """The quick stand-in reuses the saved convolution forms and keeps rendering, on its own stream,
    while the compiled renderer warms up and captures its graphs on another thread."""
    model = build_model(demo_config(LIVEPORTRAIT), seed=0)
    source_crop, driving_crop = crops(model)
    started = start_renderer("torch", model, tmp_path, "w1")
    assert started.full_speed is not None and started.reason.endswith("full speed once compiled in the background")
    quick = started.renderer
    source = quick.prepare_source(source_crop)
    head = model.head_motion(quick.extract_motion(driving_crop))
    built: list[Renderer] = []
    builder = threading.Thread(target=lambda: built.append(started.full_speed()))
    builder.start()
    frames = []
    while builder.is_alive():
        frames.append(quick.render(source, head))
    builder.join()
    with quick, built[0] as full:
        assert all(a is b for a, b in zip(quick._nets.parameters(), full._nets.parameters()))  # one copy of the weights
        a, b = quick.render(source, head), full.render(source, head)
    assert frames and all(np.array_equal(f, a) for f in frames)  # undisturbed by the capture beside it
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() < FP16_TOLERANCE["mean"] and psnr(a, b) > FP16_TOLERANCE["psnr"]
    saved = CompileCache(compile_folder(tmp_path, model.cfg.name, "fp16"), CompileKey.here(torch.device("cuda", torch.cuda.current_device()), "w1", "fp16"))
    assert saved.saved_conv_modes()  # the next start's stand-in skips the timing


@needs_cuda
def test_the_next_motion_is_read_while_the_last_frame_is_drawn() -> None:
    """As the pipeline drives it: a frame's image is still being drawn (not waited for) when the
    next crop's motion is read on the motion stream; both come out as when run one after another."""
    model = build_model(demo_config(LIVEPORTRAIT), seed=0)
    rng = np.random.default_rng(3)
    size = model.cfg.input_size
    crops_ = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(5)]
    with TorchRenderer(model, "cuda", "fp16") as renderer:
        source = renderer.prepare_source(crops_[0])
        motions = [renderer.extract_motion(c) for c in crops_]
        images = [renderer.render(source, model.head_motion(m)) for m in motions]
        overlapped, drawn = [], None
        motion = renderer.extract_motion(crops_[0])
        for k in range(len(crops_)):
            drawn = renderer.render_device(source, model.head_motion(motion))
            if k + 1 < len(crops_):
                motion = renderer.extract_motion(crops_[k + 1])  # while the GPU draws frame k
                assert torch.equal(motion.exp, motions[k + 1].exp)
            overlapped.append(to_host(drawn))
    assert all(np.array_equal(a, b) for a, b in zip(overlapped, images))
