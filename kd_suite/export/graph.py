"""The graph an exported student runs: its forward, returning plain tensors instead of a :mod:`kd_suite.outputs`
dataclass, with each output's name and meaning.

One wrapper per kind of student (:func:`export_graph` picks it):

* parsing → ``logits`` (B, C, h, w) at the head's stride;
* pose, heatmap student → ``heatmaps`` (B, K, h, w);
* pose, regression student → ``coords`` (B, K, 2) normalised and, when the student predicts them, ``scores`` (B, K);
* detection (YOLOX) → ``detections`` (B, N, 4 + 1 + C): every location's decoded box, objectness and class scores,
  i.e. all of validation's decode before the score threshold and NMS (:mod:`kd_suite.tasks.detection.decode`).

Everything inside a forward is tensor-only, so the same module runs in PyTorch and exports to ONNX.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..tasks.detection.decode import decode_boxes, flatten_levels, grid_priors
from ..tasks.pose.supervision import student_kind


class ExportGraph(nn.Module):
    """Base of the export wrappers: the student plus the names and meanings of the tensors the forward returns.

    Attributes:
        student: the wrapped student (eval mode).
        output_names: names of the returned tensors, in order (the ONNX outputs' names).
        meanings: one sentence per output: what its values are and how validation reads them.
    """

    output_names: tuple[str, ...] = ()
    meanings: tuple[str, ...] = ()

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.eval()

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:  # pragma: no cover - abstract
        raise NotImplementedError


class ParsingGraph(ExportGraph):
    """Parsing student → ``logits``."""

    output_names = ("logits",)
    meanings = (
        "per-class logits at the head's stride; validation upsamples them bilinearly (align_corners=False) to the "
        "image size and takes the argmax over classes",
    )

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        return (self.student(image).logits,)  # (B, C, H/s, W/s)


class HeatmapGraph(ExportGraph):
    """Heatmap pose student → ``heatmaps`` (the sub-pixel decode stays outside the graph).

    A student with ``forward_heatmaps`` (:class:`~kd_suite.tasks.pose.HeatmapNet`) runs that, so the PyTorch side of
    the latency comparison does not pay for an eval-mode decode whose result the graph drops.
    """

    output_names = ("heatmaps",)
    meanings = (
        "per-joint heatmaps; a joint's peak (x, y) in heatmap pixels divided by the heatmap (w, h) is its normalised "
        "position over the input; postprocess.decode names the sub-pixel decode validation uses",
    )

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        heatmaps_only = getattr(self.student, "forward_heatmaps", None)  # skips HeatmapNet's eval-mode decode
        if heatmaps_only is not None:
            return (heatmaps_only(image),)  # (B, K, h, w)
        return (self.student(image).heatmaps,)  # (B, K, h, w)


class RegressionGraph(ExportGraph):
    """Regression pose student → ``coords`` (+ ``scores`` as confidences in [0, 1] when the student has them)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__(student)
        self.with_scores = "scores" in getattr(student, "tap_info", {})
        self.output_names = ("coords", "scores") if self.with_scores else ("coords",)
        self.meanings = (
            "joint positions (x, y) normalised to [0, 1] over the input image (multiply by (W, H) for input pixels)",
            "joint confidence in [0, 1]: the sigmoid of the score logits, as validation reads it",
        )[: len(self.output_names)]

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.student(image)
        if not self.with_scores:
            return (out.coords,)  # (B, K, 2)
        return out.coords, out.scores.sigmoid()  # (B, K, 2), (B, K)


class DetectionGraph(ExportGraph):
    """YOLOX-style detector → ``detections``: per location ``(cx, cy, w, h, objectness, class scores...)``.

    Decoded exactly as validation's :func:`~kd_suite.tasks.detection.decode.postprocess` up to its score threshold:
    levels flattened stride by stride in row-major order, boxes from the grid priors, sigmoids on objectness and
    classes. Validation's score of a location is ``objectness · max(class scores)``, then class-wise NMS.
    """

    output_names = ("detections",)
    meanings = (
        "one row per grid location (strides 8, 16, 32, row-major, finest first): box centre x, centre y, width, "
        "height in input pixels, objectness in [0, 1], then one score in [0, 1] per class (sigmoids); validation "
        "scores a location objectness × its best class score, keeps those ≥ postprocess.score_thresh and runs "
        "class-wise NMS at postprocess.nms_thresh, keeping the postprocess.max_det best",
    )

    def __init__(self, student: nn.Module) -> None:
        super().__init__(student)
        self.strides = tuple(student.strides)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.student(image)
        cls, reg, obj = flatten_levels(out)  # (B, A, C), (B, A, 4), (B, A)
        priors = grid_priors([tuple(c.shape[-2:]) for c in out.cls], self.strides, image.device)  # (A, 3)
        boxes = decode_boxes(reg.float(), priors)  # (B, A, 4) cx, cy, w, h
        objectness = obj.float().sigmoid().unsqueeze(-1)  # (B, A, 1)
        return (torch.cat([boxes, objectness, cls.float().sigmoid()], dim=-1),)  # (B, A, 5 + C)


def export_graph(student: nn.Module, task: str) -> ExportGraph:
    """The wrapper of ``student`` for ``task`` (``"parsing"``, ``"pose"`` or ``"detection"``).

    Raises:
        ValueError: an unknown task, or a detection student without YOLOX's per-level ``strides``.
    """
    if task == "parsing":
        return ParsingGraph(student)
    if task == "pose":
        return HeatmapGraph(student) if student_kind(student) == "heatmap" else RegressionGraph(student)
    if task == "detection":
        if not hasattr(student, "strides"):
            raise ValueError(f"{type(student).__name__} has no 'strides'; export decodes YOLOX-style detectors only")
        return DetectionGraph(student)
    raise ValueError(f"cannot export a student of task {task!r}; tasks are parsing, pose and detection")
