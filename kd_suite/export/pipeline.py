"""One export: weights and description always, ONNX with its parity check and CPU latencies when the extra is there.

:func:`export_checkpoint` exports the student of a ``kd-suite fit`` checkpoint; :func:`export_student` exports any
:class:`~kd_suite.standalone.Standalone` (for instance a freshly built module, to measure a real-size student before
training). Both write into one folder and return an :class:`ExportReport` for the summary table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..standalone import Standalone, load_standalone
from .files import CONFIG, ONNX, WEIGHTS, describe, student_config, write_description, write_weights
from .graph import export_graph
from .runtime import (
    EXPORTER,
    EXTRA,
    INPUT_NAME,
    MIN_OPSET,
    check_parity,
    max_abs_diff,
    missing_packages,
    onnx_latency_ms,
    onnx_session,
    torch_latency_ms,
    write_onnx,
)


@dataclass
class ExportOptions:
    """What to write and check.

    Attributes:
        onnx: write and check ``student.onnx`` (needs the ``export`` extra).
        opset: ``ai.onnx`` opset of the ONNX file (18 or higher with the dynamo exporter).
        batch: batch size fixed in the ONNX graph (and of the checks) unless ``dynamic_batch``.
        dynamic_batch: a symbolic batch dimension; also checked at batch ``batch + 1``.
        image: a real image to check on as well (preprocessed like validation's input), else random input only.
        threads: CPU threads of PyTorch and onnxruntime in the latency runs (``None``: torch's current count).
        runs: timed runs per latency (median), after 5 warm-up runs.
        atol: the largest accepted max abs difference between onnxruntime and PyTorch.
    """

    onnx: bool = True
    opset: int = MIN_OPSET
    batch: int = 1
    dynamic_batch: bool = False
    image: Path | None = None
    threads: int | None = None
    runs: int = 20
    atol: float = 1e-4


@dataclass
class ExportReport:
    """What an export wrote and measured.

    Attributes:
        out: the output folder.
        task: the student's task.
        input_size: (H, W) of the input.
        params: the student's parameter count.
        files: file name → size in bytes, in writing order.
        onnx: the ``onnx`` record of ``student.json`` (``None`` without ONNX).
        skipped: why no ONNX was written (``--no-onnx``, packages missing), else ``None``.
        diffs: per check input, the max abs difference of each output (``inf``: shapes differ or NaN on one side;
            ``null`` in ``student.json``).
        latency_ms: ``{"pytorch", "onnxruntime"}`` median milliseconds.
        threads: CPU threads of the latency runs.
    """

    out: Path
    task: str
    input_size: tuple[int, int]
    params: int
    files: dict[str, int] = field(default_factory=dict)
    onnx: dict[str, Any] | None = None
    skipped: str | None = None
    diffs: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    threads: int | None = None


def load_image(path: Path, task: str, input_size: tuple[int, int]) -> torch.Tensor:
    """A real image as a (1, 3, H, W) normalised input: letterboxed for detection, resized otherwise."""
    import cv2

    from ..data.common import read_image, to_tensor
    from ..data.transforms import letterbox

    image = read_image(path)  # (h, w, 3) uint8 RGB
    h, w = input_size
    if task == "detection":
        image = letterbox(image, (h, w))[0]
    else:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return to_tensor(image)[None]  # (1, 3, H, W)


def check_inputs(standalone: Standalone, options: ExportOptions) -> dict[str, torch.Tensor]:
    """The inputs of the parity check by label: random normalised, the real image, a second batch size if dynamic."""
    h, w = standalone.input_size
    generator = torch.Generator().manual_seed(0)
    inputs = {"random": torch.randn(options.batch, 3, h, w, generator=generator)}  # (B, 3, H, W)
    if options.image is not None:
        image = load_image(options.image, standalone.task, standalone.input_size)  # (1, 3, H, W)
        inputs["image"] = image.expand(options.batch, -1, -1, -1).contiguous()
    if options.dynamic_batch:
        inputs[f"random, batch {options.batch + 1}"] = torch.randn(options.batch + 1, 3, h, w, generator=generator)
    return inputs


def export_checkpoint(ckpt: str | Path, out: str | Path, options: ExportOptions | None = None) -> ExportReport:
    """Export the student of a ``kd-suite fit`` checkpoint into ``out`` (see :func:`export_student`).

    Raises:
        FileNotFoundError, StandaloneError: the checkpoint is missing or is not a kd-suite checkpoint.
    """
    standalone = load_standalone(ckpt)
    return export_student(standalone, student_config(ckpt), out, options)


def export_student(
    standalone: Standalone, config: dict[str, Any], out: str | Path, options: ExportOptions | None = None
) -> ExportReport:
    """Write ``student.safetensors``, ``student.onnx`` (checked) and ``student.json`` into ``out``.

    ``student.json`` is written last, also when the ONNX step fails, and records the parity results.

    Args:
        standalone: the student, its task module, input size, facts and source.
        config: the student's ``{"class_path", "init_args"}``, recorded in ``student.json``.
        out: the output folder (created).
        options: what to write and check (defaults: ONNX at opset 18, batch 1, random input).

    Raises:
        OnnxExportError: the exporter failed or could not write the opset.
        ParityError: onnxruntime's outputs differ from PyTorch's by more than ``options.atol``.
    """
    options = options or ExportOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    student = standalone.module.student.eval()
    report = ExportReport(out, standalone.task, standalone.input_size, sum(p.numel() for p in student.parameters()))
    (out / ONNX).unlink(missing_ok=True)  # never leave an earlier export's graph next to these weights
    report.files[WEIGHTS] = write_weights(student, out / WEIGHTS)
    missing = missing_packages()
    if not options.onnx:
        report.skipped = "--no-onnx"
    elif missing:
        report.skipped = f"{', '.join(missing)} not installed; for ONNX: {EXTRA}"
    try:
        if report.skipped is None:
            _onnx(standalone, options, report)
    finally:
        record = describe(standalone, config, report.params, report.onnx)
        report.files[CONFIG] = write_description(record, out / CONFIG)
    if report.onnx is not None:
        check_parity(report.diffs, options.atol)
    return report


def _onnx(standalone: Standalone, options: ExportOptions, report: ExportReport) -> None:
    graph = export_graph(standalone.module.student, standalone.task)
    path = report.out / ONNX
    opset = write_onnx(graph, standalone.input_size, path, options.opset, options.batch, options.dynamic_batch)
    report.files[ONNX] = path.stat().st_size
    report.threads = options.threads or torch.get_num_threads()
    h, w = standalone.input_size
    timed = torch.randn(1 if options.dynamic_batch else options.batch, 3, h, w)  # (B, 3, H, W) latency input
    torch_ms = torch_latency_ms(graph, timed, report.threads, options.runs)  # before onnxruntime's threads exist
    session = onnx_session(path, report.threads)
    report.diffs = {label: max_abs_diff(graph, session, x) for label, x in check_inputs(standalone, options).items()}
    report.latency_ms = {"pytorch": torch_ms, "onnxruntime": onnx_latency_ms(session, timed, options.runs)}
    batch: int | str = "batch" if options.dynamic_batch else options.batch
    outputs = {o.name: list(o.shape) for o in session.get_outputs()}
    report.onnx = {
        "file": ONNX,
        "opset": opset,
        "exporter": f"{EXPORTER}, torch {torch.__version__.split('+')[0]}",
        "input": {"name": INPUT_NAME, "shape": [batch, 3, h, w]},
        "outputs": [{"name": n, "shape": outputs[n], "meaning": m} for n, m in zip(graph.output_names, graph.meanings)],
        "max_abs_diff": {
            k: {n: d if math.isfinite(d) else None for n, d in v.items()} for k, v in report.diffs.items()
        },
        "atol": options.atol,
        "parity": all(d <= options.atol for per in report.diffs.values() for d in per.values()),
        "latency_ms": {k: round(v, 3) for k, v in report.latency_ms.items()} | {"threads": report.threads},
    }
