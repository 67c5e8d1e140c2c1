"""vcam.render.compile_cache and the saved convolution forms: what a later start finds again."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import vcam
from vcam.models import LIVEPORTRAIT, build_model, demo_config
from vcam.render.compile_cache import ARTIFACTS_FILE, KEY_FILE, CompileCache, CompileKey, code_version, compile_folder
from vcam.render.fast import conv_modes, set_conv_modes, speed_up
from vcam.render.torch_backend import TorchRenderer

KEY = CompileKey(vcam="0.1.0+0123456789ab", gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0", torch="2.11.0", triton="3.5.0", cuda="13.0",
                 weights_id="w1", precision="fp16")


def test_saved_compilation_is_loaded_for_the_same_key_and_rebuilt_for_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    folder = compile_folder(tmp_path, "LivePortrait", "fp16")
    assert folder == tmp_path / "torch-compiled-liveportrait-fp16"

    first = CompileCache(folder, KEY)
    first.load()
    assert not first.hit and first.conv_modes is None and "no compiled kernels" in first.status
    torch._dynamo.reset()
    double = torch.compile(lambda x: torch.sin(x) * 2 + 1, dynamic=False)
    x = torch.linspace(-1, 1, 16)
    assert torch.allclose(double(x), torch.sin(x) * 2 + 1)
    first.save({"hourglass.conv": "folded"})
    assert (folder / ARTIFACTS_FILE).stat().st_size > 0 and (folder / KEY_FILE).is_file()
    assert first.status.endswith("compiled and saved for the next start")

    again = CompileCache(folder, KEY)
    again.load()
    assert again.hit and again.conv_modes == {"hourglass.conv": "folded"}
    assert again.status == f"compiled kernels loaded from {folder}"

    elsewhere = CompileCache(folder, dataclasses.replace(KEY, gpu="NVIDIA A10", compute_capability="8.6", weights_id="w2"))
    elsewhere.load()
    assert not elsewhere.hit and elsewhere.conv_modes is None
    assert elsewhere.status == (f"the compiled kernels in {folder} do not match "
                                "(GPU NVIDIA H100 80GB HBM3 → NVIDIA A10, compute capability 9.0 → 8.6, weights w1 → w2)")

    upgraded = CompileCache(folder, dataclasses.replace(KEY, vcam="0.1.0+ba9876543210"))
    upgraded.load()
    assert not upgraded.hit and upgraded.status.endswith("do not match (vcam 0.1.0+0123456789ab → 0.1.0+ba9876543210)")

    (folder / KEY_FILE).write_text("{not json")
    broken = CompileCache(folder, KEY)
    broken.load()
    assert not broken.hit and "unreadable" in broken.status


def test_the_code_version_follows_the_code_of_the_compiled_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = Path(vcam.__file__).parent
    copy = tmp_path / "vcam"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    versions = []
    for change in ("", "# a changed rewrite\n"):
        (copy / "render" / "fast.py").write_text((package / "render" / "fast.py").read_text() + change)
        monkeypatch.setattr(vcam, "__file__", str(copy / "__init__.py"))
        code_version.cache_clear()
        versions.append(code_version())
    code_version.cache_clear()
    assert versions[0].startswith(f"{vcam.__version__}+") and versions[0] != versions[1]
    monkeypatch.undo()
    assert code_version() == versions[0]  # the copy's unchanged code is this vcam's


def test_saved_conv_forms_apply_only_to_the_layers_they_name() -> None:
    network = build_model(demo_config(LIVEPORTRAIT), seed=0).warping_module
    speed_up(network)
    modes = conv_modes(network)
    assert modes and set(modes.values()) == {"direct"}
    flipped = dict.fromkeys(modes, "folded")
    assert set_conv_modes(network, flipped) and conv_modes(network) == flipped
    assert not set_conv_modes(network, modes | {"another.layer": "direct"})
    assert not set_conv_modes(network, dict.fromkeys(modes, "sideways"))
    assert conv_modes(network) == flipped


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("triton") is None, reason="needs a CUDA device and Triton")
def test_cuda_renderer_saves_its_compilation_then_loads_it(tmp_path: Path) -> None:
    model = build_model(demo_config(LIVEPORTRAIT), seed=0)
    key = CompileKey.here(torch.device("cuda", torch.cuda.current_device()), "demo", "fp16")
    size = model.cfg.input_size
    crop = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    images = []
    for loaded in (False, True):
        cache = CompileCache(tmp_path / "compiled", key)
        with TorchRenderer(model, "cuda", "fp16", compile_mode="default", cache=cache) as renderer:
            assert cache.hit is loaded
            source = renderer.prepare_source(crop)
            images.append(renderer.render(source, model.head_motion(renderer.extract_motion(crop))))
    assert np.abs(images[0].astype(np.int16) - images[1].astype(np.int16)).max() <= 1
