"""The backend registry: one declaration per backend feeds the settings, the command line, ``auto`` and bench."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from vcam.cli import build_parser
from vcam.errors import VcamError
from vcam.models import LIVEPORTRAIT, TalkingHeadModel, build_model, demo_config
from vcam.render import select_renderer
from vcam.render.bench import default_backends
from vcam.render.registry import (
    PRECISIONS, Availability, Backend, Target, backend_choices, backends, precision_choices, register_backend, unregister_backend,
)
from vcam.render.torch_backend import TorchRenderer
from vcam.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model() -> TalkingHeadModel:
    return build_model(demo_config(LIVEPORTRAIT), seed=0)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without TensorRT or CUDA, whatever it has (a None module fails to import)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def no_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("VCAM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VCAM_SETTINGS_FILE", str(tmp_path / "settings.toml"))


def _cpu_probe(target: Target) -> Availability:
    return Availability("torch on the CPU under another name", make=lambda: TorchRenderer(target.model))


@pytest.fixture
def registered() -> Iterator[Backend]:
    """A backend added the way a new one is: one declaration, ahead of the CPU fallback in auto's order."""
    backend = register_backend(Backend("cpu-twin", ("fp32",), needs_cuda=False, probe=_cpu_probe, choice="twin", bench=("fp32",)), before="torch-cpu")
    yield backend
    unregister_backend("cpu-twin")


def test_the_builtin_backends_in_auto_order() -> None:
    assert [b.name for b in backends()] == ["tensorrt", "torch-cuda", "onnxruntime", "torch-cpu"]
    assert backend_choices() == ("auto", "tensorrt", "torch", "onnxruntime")
    assert precision_choices() == tuple(PRECISIONS) == ("fp16", "bf16", "fp32")
    assert {b.name: b.needs_cuda for b in backends()} == {"tensorrt": True, "torch-cuda": True, "onnxruntime": False, "torch-cpu": False}


@pytest.mark.usefixtures("no_gpu", "no_settings_file")
def test_a_registered_backend_reaches_settings_cli_auto_and_bench(registered: Backend, model: TalkingHeadModel, tmp_path: Path) -> None:
    assert backend_choices() == ("auto", "tensorrt", "torch", "onnxruntime", "twin")
    assert [b.name for b in backends()][-2:] == ["cpu-twin", "torch-cpu"]
    assert load_settings(backend="twin").backend == "twin"
    assert build_parser().parse_args(["run", "--backend", "twin"]).backend == "twin"

    renderer, why = select_renderer("auto", model, tmp_path, "w1")
    with renderer:
        assert renderer.name == "torch-cpu"  # it is torch under another name
    assert why.startswith("cpu-twin: torch on the CPU under another name; tensorrt not installed; no CUDA device")
    renderer, why = select_renderer("twin", model, tmp_path, "w1")
    renderer.close()
    assert why == "cpu-twin: torch on the CPU under another name"
    assert default_backends(tmp_path, model, "w1") == ["eager-fp32", "cpu-twin"]


@pytest.mark.usefixtures("no_settings_file")
def test_an_unregistered_backend_is_no_choice() -> None:
    register_backend(Backend("cpu-twin", ("fp32",), needs_cuda=False, probe=_cpu_probe, choice="twin"))
    unregister_backend("cpu-twin")
    with pytest.raises(VcamError, match=r"invalid setting backend = 'twin': Input should be 'auto', 'tensorrt', 'torch' or 'onnxruntime'"):
        load_settings(backend="twin")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--backend", "twin"])


@pytest.mark.usefixtures("no_settings_file")
def test_settings_read_precisions_and_models_from_their_registries() -> None:
    with pytest.raises(VcamError, match=r"invalid setting precision = 'int8': Input should be 'fp16', 'bf16' or 'fp32'"):
        load_settings(precision="int8")
    with pytest.raises(VcamError, match=r"invalid setting model = 'wav2lip': Input should be 'liveportrait', 'facevid2vid' or 'facevid2vid-beta'"):
        load_settings(model="wav2lip")
    assert build_parser().parse_args(["bench", "--model", "facevid2vid"]).model == "facevid2vid"
    assert build_parser().parse_args(["bench", "--model", "facevid2vid-beta"]).model == "facevid2vid-beta"


@pytest.mark.usefixtures("no_gpu")
def test_unavailable_backends_say_why_and_the_fix(model: TalkingHeadModel, tmp_path: Path) -> None:
    declared = [
        Backend("needs-package", ("fp32",), needs_cuda=False, probe=_cpu_probe, packages={"vcam_no_such_module": "extra"}),
        Backend("needs-cuda", ("fp32",), needs_cuda=True, probe=_cpu_probe),
        Backend("half-only", ("fp16", "fp32"), needs_cuda=False, probe=_cpu_probe),
    ]
    for backend in declared:
        register_backend(backend, before="torch-cpu")
    try:
        with pytest.raises(VcamError, match=r"needs-package renderer cannot run here: vcam_no_such_module not installed — install it with `pip install vcam\[extra\]`$"):
            select_renderer("needs-package", model, tmp_path, "w1")
        with pytest.raises(VcamError, match="needs-cuda renderer cannot run here: no CUDA device — use a machine with an NVIDIA GPU"):
            select_renderer("needs-cuda", model, tmp_path, "w1")
        with pytest.raises(VcamError, match="half-only renderer cannot run here: half-only renders in fp16 or fp32, not bf16 — set precision to one of fp16, fp32"):
            select_renderer("half-only", model, tmp_path, "w1", precision="bf16")
        with pytest.raises(VcamError, match=r"torch-cuda renderer cannot run here: no CUDA device"):
            select_renderer("torch-cuda", model, tmp_path, "w1", options=frozenset({"compile"}))
        with pytest.raises(VcamError, match=r"torch-cpu renderer cannot run here: torch-cpu has no option \+compile — its options are none"):
            select_renderer("torch-cpu", model, tmp_path, "w1", options=frozenset({"compile"}))
        renderer, why = select_renderer("auto", model, tmp_path, "w1", precision="bf16")
        renderer.close()
        assert "vcam_no_such_module not installed" in why and "half-only renders in fp16 or fp32, not bf16" in why
    finally:
        for backend in declared:
            unregister_backend(backend.name)


def test_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_backend(backends()[0])
    with pytest.raises(ValueError, match="precisions must be some of fp16, bf16, fp32"):
        Backend("int8", ("int8",), needs_cuda=True, probe=_cpu_probe)


def test_importing_the_pipeline_loads_no_backend_and_the_cli_no_torch() -> None:
    script = (
        "import json, sys, vcam.cli, vcam.settings; torch_at_cli = 'torch' in sys.modules; "
        "import vcam.pipeline, vcam.render; "
        "print(json.dumps([torch_at_cli, sorted(m for m in sys.modules if m.startswith('vcam.render.'))]))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    torch_at_cli, loaded = json.loads(result.stdout)
    assert torch_at_cli is False
    assert "vcam.render.base" in loaded  # the Renderer protocol
    for heavy in ("torch_backend", "bench", "engines", "onnx_export", "tensorrt_backend", "onnxruntime_backend", "backends", "graphs", "fast"):
        assert f"vcam.render.{heavy}" not in loaded
