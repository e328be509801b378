"""Contract cases: every :class:`DistillLoss` subclass of the package with tiny inputs of its own task.

A case gives the constructor arguments, the static :class:`TapInfo` of the taps for ``bind``, and a function that
returns fresh fp32 ``(student output, teacher output or list of outputs, batch)`` of the right task type. The contract
test (``test_loss_contract.py``) casts, scales and marks the output tensors itself, so the makers stay plain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from kd_suite.data.batch import DetectionBatch, PoseBatch
from kd_suite.losses import LOSSES, DistillLoss
from kd_suite.outputs import DetectionOutput, ModelOutput, PoseOutput, TapInfo
from kd_suite.tasks.detection import FGDLoss, FSDLoss
from kd_suite.tasks.pose import (
    AttentionLoss,
    CoordDistillLoss,
    DenseGuidedHeatmapLoss,
    FPDLoss,
    OKDHPLoss,
    ScoreDistillLoss,
    SimulatedHeatmapLoss,
    SpatialClassificationLoss,
)

from .common import STUDENT_TAPS, TEACHER_TAPS, outputs, parsing_batch

Inputs = tuple[ModelOutput, ModelOutput | list[ModelOutput], Any]


@dataclass(frozen=True)
class Case:
    """One contract case.

    Attributes:
        cls: the term.
        kwargs: constructor arguments (tiny, deterministic: seeded generators where the term draws).
        student_taps, teacher_taps: declared taps of the two models, looked up by the term's tap names for ``bind``.
        make: fresh fp32 inputs without gradient.
        grads: student taps that must receive a non-zero gradient (default: the term's ``student_tap``).
        reads_teacher: the term reads the teacher's tap (False for a term in a mode that only uses the GT).
        needs_batch: the term reads ground truth from the batch, so ``batch=None`` must be a clear error.
        half_scale: input scale of the half-precision checks (large logits overflow a half-precision exp; terms on
            normalised coordinates use 1, a large scale would only push every joint off the map).
    """

    cls: type[DistillLoss]
    kwargs: dict[str, Any]
    student_taps: dict[str, TapInfo]
    teacher_taps: dict[str, TapInfo]
    make: Callable[[], Inputs]
    grads: tuple[str, ...] | None = None
    reads_teacher: bool = True
    needs_batch: bool = False
    half_scale: float = 30.0

    def build(self, **overrides: Any) -> DistillLoss:
        """Instantiate (from a fixed global seed, for the adapters' init) and bind the term."""
        torch.manual_seed(0)
        loss = self.cls(**(self.kwargs | overrides))
        loss.bind(self.student_taps[loss.student_tap], self.teacher_taps[loss.teacher_tap])
        return loss


def map_tensors(output: ModelOutput, fn: Callable[[Tensor], Tensor]) -> ModelOutput:
    """Copy of a model output with ``fn`` applied to every tensor field and every tensor of a list field."""
    changes = {}
    for f in dataclasses.fields(output):
        value = getattr(output, f.name)
        if isinstance(value, Tensor):
            changes[f.name] = fn(value)
        elif isinstance(value, list):
            changes[f.name] = [fn(v) for v in value]
    return dataclasses.replace(output, **changes)


def tensors(output: ModelOutput) -> list[Tensor]:
    """Every tensor of a model output (fields and list entries)."""
    found: list[Tensor] = []
    for f in dataclasses.fields(output):
        value = getattr(output, f.name)
        if isinstance(value, Tensor):
            found.append(value)
        elif isinstance(value, list):
            found += [v for v in value if isinstance(v, Tensor)]
    return found


# ------------------------------------------------------------------------------------------------------------ parsing
def _parsing() -> Inputs:
    s, t = outputs(grad=False)
    return s, t, parsing_batch()


def _parsing_case(cls: type[DistillLoss], needs_batch: bool = False, **kwargs: Any) -> Case:
    return Case(cls, kwargs, STUDENT_TAPS, TEACHER_TAPS, _parsing, needs_batch=needs_batch)


_GENERIC = {
    "KDLoss": _parsing_case(LOSSES["KDLoss"], temperature=2.0),
    "DKDLoss": _parsing_case(LOSSES["DKDLoss"], True, temperature=2.0),
    "FitNetLoss": _parsing_case(LOSSES["FitNetLoss"], student_tap="embedding"),
    "ATLoss": _parsing_case(LOSSES["ATLoss"], student_tap="embedding"),
    "PKDLoss": _parsing_case(LOSSES["PKDLoss"], student_tap="features.0"),
    "MGDLoss": _parsing_case(LOSSES["MGDLoss"], student_tap="embedding", seed=0, alpha=1.0),
    "CWDLoss": _parsing_case(LOSSES["CWDLoss"], student_tap="embedding", temperature=2.0),
    "DISTLoss": _parsing_case(LOSSES["DISTLoss"], True, ignore_index=255),
    "SKDPairwiseLoss": _parsing_case(LOSSES["SKDPairwiseLoss"], student_tap="embedding"),
    "GSKDLoss": _parsing_case(LOSSES["GSKDLoss"], True, samples_per_class=2, seed=0, filter_correct=False),
}

# --------------------------------------------------------------------------------------------------------------- pose
PB, PK, PH, PW, HEADS, TOKENS = 2, 3, 8, 6, 2, 4  # batch, joints, heatmap size, heads, visual tokens (2×2 grid)
POSE_TAPS = {
    "heatmaps": TapInfo(PK, 4),
    "coords": TapInfo(PK, 0),
    "scores": TapInfo(PK, 0),
    "sigmas": TapInfo(PK, 0),
    "attentions.-1": TapInfo(HEADS, 0),
}


def _pose_output(g: torch.Generator) -> PoseOutput:
    attn = [torch.softmax(torch.randn(PB, HEADS, PK, PK + TOKENS, generator=g), -1)[..., PK:] for _ in range(2)]
    return PoseOutput(
        heatmaps=torch.rand(PB, PK, PH, PW, generator=g),  # (B, K, h, w)
        coords=torch.rand(PB, PK, 2, generator=g) * 0.8 + 0.1,  # (B, K, 2) inside the image
        scores=torch.randn(PB, PK, generator=g),  # (B, K)
        sigmas=torch.rand(PB, PK, 2, generator=g) * 0.2 + 0.05,  # (B, K, 2)
        attentions=attn,  # each (B, heads, K, P)
        aux_heatmaps=[torch.rand(PB, PK, PH, PW, generator=g)],
    )


def _pose_batch(g: torch.Generator) -> PoseBatch:
    return PoseBatch(
        image=torch.zeros(PB, 3, 4 * PH, 4 * PW),
        keypoints=torch.rand(PB, PK, 2, generator=g) * 20,
        visible=torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]),  # (B, K)
        heatmaps=torch.rand(PB, PK, PH, PW, generator=g) ** 4,  # (B, K, h, w)
        inv_affine=torch.eye(3)[:2].expand(PB, 2, 3).clone(),
    )


def _pose() -> Inputs:
    g = torch.Generator().manual_seed(0)
    return _pose_output(g), _pose_output(g), _pose_batch(g)


def _pose_guides() -> Inputs:
    g = torch.Generator().manual_seed(0)
    student = _pose_output(g)
    return student, [_pose_output(g) for _ in range(3)], _pose_batch(g)  # teacher, assistant, self-guide


def _pose_case(cls: type[DistillLoss], make: Callable[[], Inputs] = _pose, **options: Any) -> Case:
    kwargs = options.pop("kwargs", {})
    return Case(cls, kwargs, POSE_TAPS, POSE_TAPS, make, needs_batch=True, **options)


_POSE = {
    "FPDLoss": _pose_case(FPDLoss, kwargs=dict(alpha=0.3)),
    "OKDHPLoss": _pose_case(OKDHPLoss),
    "CoordDistillLoss": _pose_case(CoordDistillLoss, kwargs=dict(use_visible=True), half_scale=1.0),
    "SimulatedHeatmapLoss": _pose_case(SimulatedHeatmapLoss, grads=("coords", "sigmas"), half_scale=1.0),
    "ScoreDistillLoss": _pose_case(ScoreDistillLoss, half_scale=1.0),
    "AttentionLoss": _pose_case(AttentionLoss),
    "AttentionLoss-attn": _pose_case(AttentionLoss, kwargs=dict(mode="attn", layers="all")),
    "DenseGuidedHeatmapLoss": _pose_case(
        DenseGuidedHeatmapLoss, _pose_guides, kwargs=dict(binarization="gt_gated", self_aux=True, seed=1)
    ),
    "SpatialClassificationLoss": _pose_case(SpatialClassificationLoss, reads_teacher=False),
    "SpatialClassificationLoss-bce": _pose_case(SpatialClassificationLoss, kwargs=dict(mode="bce_binary")),
}

# ---------------------------------------------------------------------------------------------------------- detection
DB, DC_S, DC_T, DSIZE, DSTRIDE = 2, 6, 8, 64, 8  # batch, student / teacher neck width, input size, stride
DET_STUDENT_TAPS = {"neck.0": TapInfo(DC_S, DSTRIDE)}
DET_TEACHER_TAPS = {"neck.0": TapInfo(DC_T, DSTRIDE)}


def _detection() -> Inputs:
    g = torch.Generator().manual_seed(0)
    h = DSIZE // DSTRIDE
    xy = torch.rand(DB, 3, 2, generator=g) * DSIZE * 0.7
    wh = torch.rand(DB, 3, 2, generator=g) * DSIZE * 0.4 + 4
    boxes = torch.cat([xy, (xy + wh).clamp(max=DSIZE - 1)], -1)  # (B, M, 4) xyxy input pixels
    labels = torch.tensor([[0, 2, -1], [1, -1, -1]])  # (B, M), -1 = padding row
    boxes[labels < 0] = 0.0
    batch = DetectionBatch(image=torch.zeros(DB, 3, DSIZE, DSIZE), boxes=boxes, labels=labels)
    student = DetectionOutput(neck=[torch.randn(DB, DC_S, h, h, generator=g)])  # (B, C_s, H, W)
    teacher = DetectionOutput(neck=[torch.randn(DB, DC_T, h, h, generator=g)])
    return student, teacher, batch


def _detection_case(cls: type[DistillLoss], **kwargs: Any) -> Case:
    kwargs = dict(student_tap="neck.0", lambda_rela=0.1) | kwargs
    return Case(cls, kwargs, DET_STUDENT_TAPS, DET_TEACHER_TAPS, _detection, needs_batch=True)


_DETECTION = {
    "FGDLoss": _detection_case(FGDLoss),
    "FSDLoss": _detection_case(FSDLoss),
    "FSDLoss-faithful": _detection_case(FSDLoss, faithful=True),
}

#: every contract case by id (the class name, or ``Class-variant`` for a second mode of the same term)
CASES: dict[str, Case] = _GENERIC | _POSE | _DETECTION

#: DistillLoss subclasses of the package without a case of their own, and why
ABSTRACT: dict[str, str] = {
    "GTMaskedFeatureLoss": "the shared shell of FGD and FSD: foreground() and region_losses() are left to its "
    "subclasses, so it has no loss of its own; both subclasses have cases",
}
