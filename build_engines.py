#!/usr/bin/env python3
"""Export the model to ONNX and build TensorRT plans into engines/ (what `vcam engines build` runs).

    python build_engines.py --weights ~/.local/share/vcam/weights/liveportrait
    python build_engines.py --weights DIR --onnx-only      # ONNX for the onnxruntime backend only
    python build_engines.py --random liveportrait          # seeded random weights (testing)

Plans are cached per GPU model, TensorRT version, weights id and precision; a manifest.json beside
them records what each was built from and how far it lands from torch float32.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vcam.errors import VcamError  # noqa: E402
from vcam.render.bench import load_bench_model  # noqa: E402
from vcam.render.engines import build_engines  # noqa: E402
from vcam.render.manifest import EngineManifest  # noqa: E402
from vcam.render.onnx_export import export_onnx  # noqa: E402

__all__ = ["build_engines"]


def status_line(message: str) -> None:
    """Progress on one terminal line, redrawn in place."""
    width = shutil.get_terminal_size().columns - 1
    sys.stderr.write("\r" + message[:width].ljust(width))
    sys.stderr.flush()


def summary(manifest: EngineManifest) -> str:
    where = f" for {manifest.gpu} / TensorRT {manifest.tensorrt}" if manifest.kind == "tensorrt" else ""
    lines = [f"{manifest.kind} {manifest.model} (weights {manifest.weights_id}, grid sample: {manifest.grid_sample}){where}"]
    lines += [f"  {name:<18} {g.precision:<5} max |Δ| vs torch float32 {g.max_abs_diff:.2e}  {g.file}" for name, g in manifest.graphs.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="an installed weights folder (with manifest.json)")
    source.add_argument("--random", metavar="MODEL", help="seeded random weights of MODEL (liveportrait, facevid2vid, …-demo)")
    parser.add_argument("--out", type=Path, default=Path("engines"), help="engines folder (default: ./engines)")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "fp32"])
    parser.add_argument("--onnx-only", action="store_true", help="export and check the ONNX graphs, build no plans")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even when matching plans exist")
    args = parser.parse_args(argv)
    try:
        if args.weights is not None and not (args.weights / "manifest.json").is_file():
            raise VcamError(f"no weights installed in {args.weights}: run `vcam weights fetch` first")
        model, weights_id = load_bench_model(args.random or "", args.weights)
        if args.onnx_only:
            manifest = export_onnx(model, args.out, weights_id, status_line)
        else:
            manifest = build_engines(model, args.out, weights_id, args.precision, status_line, rebuild=args.rebuild)
    except VcamError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    print("\n" + summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
