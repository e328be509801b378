"""ONNX for an export graph: written by torch's dynamo exporter, run by onnxruntime, checked against PyTorch.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript), the one that exports every kd-suite
student; the TorchScript exporter (``dynamo=False``) cannot export ParsingNet's adaptive pooling (SPPM bins that do
not divide the 1/32 map, e.g. 4 on 15×15 at 473×473). The dynamo exporter's operators are written at opset 18
(:data:`MIN_OPSET`); an older opset goes through onnx's version converter, which fails on the ReduceMean of the
parsing and pose students, so the opset written is read back from the file and a mismatch is an error.

onnx, onnxruntime and onnxscript are the ``export`` extra (``pip install 'kd-suite[export]'``): this module imports
them inside its functions only, so ``kd_suite.export`` loads without them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .graph import ExportGraph

EXPORTER = "torch.onnx.export(dynamo=True)"
MIN_OPSET = 18  # torchlib's operator set: written natively by the dynamo exporter
INPUT_NAME = "image"
EXTRA = "pip install 'kd-suite[export]'"
PACKAGES = ("onnx", "onnxruntime", "onnxscript")


class OnnxExportError(RuntimeError):
    """The student could not be written as ONNX at the requested opset (the message says why and what to try)."""


class ParityError(RuntimeError):
    """onnxruntime's outputs differ from PyTorch's by more than the tolerance (the message lists them)."""


def missing_packages() -> list[str]:
    """The packages of the ``export`` extra that are not installed (empty when ONNX export can run)."""

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # a broken or blocked install counts as missing
            return True

    return [name for name in PACKAGES if absent(name)]


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines, its version-converter tracebacks and its warnings for one export."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def written_opset(path: Path) -> int:
    """The default-domain (``ai.onnx``) opset of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def write_onnx(
    graph: ExportGraph, input_size: tuple[int, int], path: Path, opset: int, batch: int = 1, dynamic_batch: bool = False
) -> int:
    """Export ``graph`` to one self-contained ``path`` (weights inside) with input ``image`` (B, 3, H, W).

    Args:
        graph: the wrapped student (:func:`~kd_suite.export.graph.export_graph`).
        input_size: (H, W) the student was trained at; fixed in the graph.
        path: the ``.onnx`` file to write.
        opset: the ``ai.onnx`` opset to write.
        batch: the batch size fixed in the graph (without ``dynamic_batch``).
        dynamic_batch: make the batch dimension symbolic (``batch``); traced at batch ≥ 2 so it is not specialised.

    Returns:
        the opset written, which is ``opset``.

    Raises:
        OnnxExportError: the exporter failed, or could not write ``opset`` (it kept 18).
    """
    example = torch.randn(max(batch, 2) if dynamic_batch else batch, 3, *input_size)  # (B, 3, H, W)
    dynamic = {INPUT_NAME: {0: "batch"}} if dynamic_batch else None
    name = type(graph.student).__name__
    try:
        with quiet_exporter(), torch.no_grad():
            torch.onnx.export(
                graph,
                (example,),
                str(path),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(graph.output_names),
                dynamic_shapes=dynamic,
                external_data=False,
                verbose=False,
            )
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise OnnxExportError(f"{EXPORTER} failed for {name}: {type(err).__name__}: {first}") from err
    written = written_opset(path)
    if written != opset:
        raise OnnxExportError(
            f"opset {opset} was asked for but the dynamo exporter wrote opset {written} for {name} (its version "
            f"converter could not lower the graph); use --opset {max(written, MIN_OPSET)} or higher"
        )
    return written


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime ``InferenceSession`` on ``CPUExecutionProvider`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_abs(ref: np.ndarray, got: np.ndarray) -> float:
    if ref.shape != got.shape:
        return float("inf")
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    diff[np.isnan(ref) & np.isnan(got)] = 0.0  # the same NaN on both sides is agreement
    return float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))


@torch.inference_mode()
def max_abs_diff(graph: ExportGraph, session: Any, image: torch.Tensor) -> dict[str, float]:
    """Max |onnxruntime − PyTorch| of each output on ``image`` (B, 3, H, W); ``inf`` for a shape mismatch or NaN."""
    ref = graph(image)
    got = session.run(list(graph.output_names), {INPUT_NAME: image.numpy()})
    return {name: _max_abs(r.float().numpy(), g) for name, r, g in zip(graph.output_names, ref, got)}


def check_parity(diffs: dict[str, dict[str, float]], atol: float) -> None:
    """Raise :class:`ParityError` when any output on any input differs by more than ``atol``.

    Args:
        diffs: per input label (``"random"``, ``"image"``...) the :func:`max_abs_diff` of each output.
        atol: the largest accepted max abs difference.
    """
    bad = [f"{out} on the {label} input: {d:.3g}" for label, per in diffs.items() for out, d in per.items() if d > atol]
    if bad:
        raise ParityError(f"onnxruntime differs from PyTorch by more than {atol:g} (max abs): " + "; ".join(bad))


def median_ms(fn: Callable[[], Any], runs: int = 20, warmup: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def torch_latency_ms(graph: ExportGraph, image: torch.Tensor, threads: int, runs: int = 20) -> float:
    """Median ms of the graph's PyTorch forward (eval, inference mode) on ``threads`` intra-op threads.

    Run it before any onnxruntime session exists: onnxruntime's worker threads keep spinning after each run and would
    take the cores from PyTorch (a 100x slow-down seen on 2 cores).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return median_ms(lambda: graph(image), runs)
    finally:
        torch.set_num_threads(previous)


def onnx_latency_ms(session: Any, image: torch.Tensor, runs: int = 20) -> float:
    """Median ms of one onnxruntime run on ``image`` (the session's own thread count)."""
    feed = {INPUT_NAME: image.numpy()}
    return median_ms(lambda: session.run(None, feed), runs)
