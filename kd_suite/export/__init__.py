"""The trained student alone: safetensors weights, a ``student.json`` to rebuild it, and a checked ONNX graph.

``kd-suite export --ckpt runs/.../best.ckpt --out DIR`` (:mod:`kd_suite.tools.export`) runs :func:`export_checkpoint`;
:func:`load_exported` rebuilds the student from ``DIR`` without the checkpoint. ONNX needs the ``export`` extra
(``pip install 'kd-suite[export]'``); without it the weights and description are still written.
"""

from __future__ import annotations

from .files import load_exported
from .graph import ExportGraph, export_graph
from .pipeline import ExportOptions, ExportReport, export_checkpoint, export_student
from .runtime import MIN_OPSET, OnnxExportError, ParityError

__all__ = [
    "MIN_OPSET",
    "ExportGraph",
    "ExportOptions",
    "ExportReport",
    "OnnxExportError",
    "ParityError",
    "export_checkpoint",
    "export_graph",
    "export_student",
    "load_exported",
]
