"""``kd-suite export``: the trained student alone, as safetensors + student.json and a checked ONNX graph.

Examples::

    kd-suite export --ckpt runs/parsing/lip_student/checkpoints/best.ckpt --out exports/lip_student
    kd-suite export --ckpt best.ckpt --out exports/x --opset 18 --dynamic-batch --image person.jpg --threads 4
    kd-suite export --ckpt best.ckpt --out exports/x --no-onnx

Writes ``OUT/student.safetensors`` (the student's state dict), ``OUT/student.json`` (its class_path + init_args,
input size and preprocessing, task, dataset facts, post-processing settings, ONNX outputs) and ``OUT/student.onnx``
(torch's dynamo exporter, opset 18 by default), then runs the ONNX file with onnxruntime on the CPU, compares every
output with PyTorch (max abs difference, at most ``--atol``) and times both. ``kd_suite.export.load_exported(OUT)``
rebuilds the student from the first two files.
"""

from __future__ import annotations

import argparse
import sys
import warnings
import zipfile
from pathlib import Path

from ..export import ExportOptions, ExportReport, OnnxExportError, ParityError, export_checkpoint
from ..export.runtime import EXPORTER, MIN_OPSET
from ..standalone import StandaloneError


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``kd-suite export``."""
    p = argparse.ArgumentParser(prog="kd-suite export", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True, help="a checkpoint written by kd-suite fit (best.ckpt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument(
        "--opset",
        type=int,
        default=MIN_OPSET,
        help=f"ONNX opset (default {MIN_OPSET}, the exporter's own; a lower one is converted, which fails for some "
        "students: the error says so)",
    )
    p.add_argument("--batch", type=int, default=1, help="batch size fixed in the ONNX graph (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic ONNX batch dimension instead")
    p.add_argument("--no-onnx", action="store_true", help="write the safetensors and student.json only")
    p.add_argument("--image", type=Path, default=None, help="also check parity on this image (preprocessed)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the latency runs (default: torch's)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per latency, median reported (default 20)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest accepted max abs difference (default 1e-4)")
    return p


def _size(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _params(n: int) -> str:
    return f"{n / 1e6:.3f} M" if n >= 1e5 else f"{n:,}"


def summary(report: ExportReport, batch: int) -> str:
    """The summary table: files and sizes, params, opset, max abs diff per output, PyTorch vs onnxruntime latency."""
    h, w = report.input_size
    rows = [(name, _size(size)) for name, size in report.files.items()]
    rows.append(("params", _params(report.params)))
    if report.onnx is not None:
        rows.append(("opset", f"{report.onnx['opset']} ({EXPORTER})"))
        for out in report.onnx["outputs"]:
            shape = "×".join(map(str, out["shape"]))
            diffs = ", ".join(f"{per[out['name']]:.2e} ({label})" for label, per in report.diffs.items())
            rows.append((f"max abs diff {out['name']} ({shape})", diffs))
        lat = report.latency_ms
        where = f"batch {batch}, {h}×{w}, {report.threads} thread{'s' * (report.threads != 1)}, median"
        rows.append(("latency PyTorch", f"{lat['pytorch']:.2f} ms ({where})"))
        rows.append(
            ("latency onnxruntime", f"{lat['onnxruntime']:.2f} ms ({lat['pytorch'] / lat['onnxruntime']:.2f}x)")
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _bad_inputs(args: argparse.Namespace) -> str | None:
    """A one-line reason why ``--ckpt`` or ``--image`` cannot be used, else ``None``."""
    ckpt: Path = args.ckpt
    if not ckpt.is_file():
        return f"--ckpt {str(ckpt)!r} not found; give a .ckpt written by kd-suite fit"
    if not zipfile.is_zipfile(ckpt):
        return (
            f"--ckpt {str(ckpt)!r} ({ckpt.stat().st_size:,} bytes) is truncated, corrupt or not a checkpoint: expected "
            "a Lightning .ckpt (a torch zip archive) written by kd-suite fit"
        )
    if args.image is not None and not args.image.is_file():
        return f"--image {str(args.image)!r} not found"
    return None


def main(argv: list[str]) -> int:
    """Run ``kd-suite export``; 0 on success, 2 for a bad checkpoint or option, 1 when ONNX export or parity fails."""
    args = build_parser().parse_args(argv)
    if min(args.opset, args.batch, args.runs) < 1:
        print("kd-suite export: --opset, --batch and --runs must be positive", file=sys.stderr)
        return 2
    problem = _bad_inputs(args)
    if problem is not None:
        print(f"kd-suite export: {problem}", file=sys.stderr)
        return 2
    options = ExportOptions(
        onnx=not args.no_onnx,
        opset=args.opset,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        image=args.image,
        threads=args.threads,
        runs=args.runs,
        atol=args.atol,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's hyperparameter notes while the task module is rebuilt
            report = export_checkpoint(args.ckpt, args.out, options)
    except (FileNotFoundError, StandaloneError) as err:
        print(f"kd-suite export: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except OnnxExportError as err:
        print(f"kd-suite export: {err} (the safetensors and student.json are written)", file=sys.stderr)
        return 1
    except ParityError as err:
        print(
            f"kd-suite export: ONNX parity failed: {err}; {args.out / 'student.onnx'} is kept for inspection, do not "
            "deploy it",
            file=sys.stderr,
        )
        return 1
    h, w = report.input_size
    print(f"kd-suite export: {report.task} student from {args.ckpt}, input {h}×{w} → {args.out}")
    if report.skipped is not None:
        print(f"  ONNX skipped: {report.skipped}")
    print(summary(report, 1 if args.dynamic_batch else args.batch))
    return 0
