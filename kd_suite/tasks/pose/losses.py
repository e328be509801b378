"""Heatmap pose losses: the suite's JointsMSE convention, and the FPD and OKDHP heatmap distillation baselines.

**MSE convention (one for the whole pose task):** ``joints_mse = mean_{n,k,h,w}((w_nk · (P − G))²)`` with *no* 0.5
factor, as mmpose 0.x/1.x ``JointsMSELoss``/``KeypointMSELoss`` and DistilPose's ``Reg2HMLoss`` compute it.
HRNet/FPD/OKDHP multiply by 0.5; every loss built on it exposes ``half=True`` to reproduce those codes exactly.
The distillation-specific terms live in :mod:`.distilpose` (heatmap → regression) and :mod:`.dskd`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from ...data.batch import PoseBatch
from ...losses.base import DistillLoss, as_float, check_same_shape
from ...outputs import ModelOutput, PoseOutput

__all__ = ["FPDLoss", "OKDHPLoss", "gt_heatmaps", "joints_mse", "spatial_kl", "visibility"]


def joints_mse(pred: Tensor, target: Tensor, weight: Tensor | None = None, half: bool = False) -> Tensor:
    """Target-weighted heatmap MSE ``c · mean((w · (P − G))²)``, c = 0.5 if ``half`` else 1.

    Equals HRNet's ``JointsMSELoss`` (``half=True``) and mmpose's (``half=False``): the per-joint
    ``MSELoss(P_k·w_k, G_k·w_k)`` averaged over joints is the mean over every element.

    Shape:
        pred, target: (B, K, h, w); weight: (B, K) or None → scalar.
    """
    check_same_shape(pred, target, "joints_mse")
    diff = pred - target  # (B, K, h, w)
    if weight is not None:
        diff = diff * weight[..., None, None]
    loss = diff.pow(2).mean()
    return 0.5 * loss if half else loss


def spatial_kl(student: Tensor, teacher: Tensor, weight: Tensor | None = None, temperature: float = 1.0) -> Tensor:
    """OKDHP ``JointsKLDLoss``: ``Σ_{n,k} KL(softmax_hw(w·T/τ) ‖ softmax_hw(w·S/τ)) / (N · h · w)``.

    Zheng Li et al., "Online Knowledge Distillation for Efficient Pose Estimation", ICCV 2021 (confirmed:
    zhengli97/OKDHP ``lib/core/loss.py``; τ = 1 there). Weights multiply the heatmaps *before* the softmax, so a
    zero-weight joint compares two uniform maps and contributes 0.

    Shape:
        student, teacher: (B, K, h, w); weight: (B, K) or None → scalar.
    """
    check_same_shape(student, teacher, "spatial_kl")
    b, k, h, w = student.shape
    if weight is not None:
        student, teacher = student * weight[..., None, None], teacher * weight[..., None, None]
    log_s = F.log_softmax(student.reshape(b, k, h * w) / temperature, dim=-1)  # (B, K, h·w)
    log_t = F.log_softmax(teacher.reshape(b, k, h * w) / temperature, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum()
    return kl / (b * h * w)


def visibility(batch: PoseBatch | None, like: Tensor, what: str) -> Tensor:
    """(B, K) target weights from the batch, with a clear error when a GT-aware term gets no batch."""
    if batch is None or getattr(batch, "visible", None) is None:
        raise ValueError(f"{what} needs the PoseBatch (visible joints); call it as loss(student, teacher, batch)")
    return batch.visible.to(like.dtype)


class FPDLoss(DistillLoss):
    """Fast Pose Distillation: ``(1 − α)·JointsMSE(H_s, Y, w) + α·JointsMSE(H_s, H_t, w)``.

    Zhang et al., "Fast Human Pose Estimation", CVPR 2019 (confirmed: ilovepose/fast-human-pose-estimation.pytorch
    ``fpd_train``; α = config ``KD.ALPHA``, 0.5 in the paper [recall]). The GT term is part of this loss, so pair it
    with ``task_weight: 0.0`` on the :class:`~kd_suite.tasks.pose.PoseDistiller` to avoid counting it twice.
    Teacher heatmaps of another resolution are bilinearly resized to the student's.

    Args:
        alpha: teacher share α.
        half: multiply both MSEs by 0.5 as FPD's code does (default False, the suite convention).
        student_tap: student heatmaps.
        teacher_tap: teacher heatmaps (defaults to ``student_tap``).
    """

    resized = "teacher"

    def __init__(
        self,
        alpha: float = 0.5,
        half: bool = False,
        student_tap: str = "heatmaps",
        teacher_tap: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(student_tap=student_tap, teacher_tap=teacher_tap, **kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"FPDLoss: alpha must be in [0, 1], got {alpha}")
        self.alpha, self.half = alpha, half

    def forward(
        self,
        student: PoseOutput,
        teacher: PoseOutput,
        batch: PoseBatch | None = None,
        guides: Sequence[ModelOutput] = (),
    ) -> Tensor:
        s, t = self.pair(student, teacher, resize=True)  # (B, K, h, w), teacher heatmaps on the student's grid
        gt = as_float(gt_heatmaps(batch, "FPDLoss"))[0]
        w = visibility(batch, s, "FPDLoss")
        return (1 - self.alpha) * joints_mse(s, gt, w, self.half) + self.alpha * joints_mse(s, t, w, self.half)


class OKDHPLoss(DistillLoss):
    """Spatial-softmax KL between teacher and student heatmaps (OKDHP ``JointsKLDLoss``, see :func:`spatial_kl`).

    Teacher heatmaps of another resolution are bilinearly resized to the student's.

    Args:
        temperature: softmax temperature τ (1 in OKDHP).
        use_visible: multiply both heatmaps by the joint visibility before the softmax (OKDHP does).
        student_tap: student heatmaps.
        teacher_tap: teacher heatmaps (defaults to ``student_tap``).
    """

    resized = "teacher"

    def __init__(
        self,
        temperature: float = 1.0,
        use_visible: bool = True,
        student_tap: str = "heatmaps",
        teacher_tap: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(student_tap=student_tap, teacher_tap=teacher_tap, **kwargs)
        self.temperature, self.use_visible = temperature, use_visible

    def forward(
        self,
        student: PoseOutput,
        teacher: PoseOutput,
        batch: PoseBatch | None = None,
        guides: Sequence[ModelOutput] = (),
    ) -> Tensor:
        s, t = self.pair(student, teacher, resize=True)  # (B, K, h, w), teacher heatmaps on the student's grid
        w = visibility(batch, s, "OKDHPLoss") if self.use_visible else None
        return spatial_kl(s, t, w, self.temperature)


def gt_heatmaps(batch: PoseBatch | None, what: str) -> Tensor:
    """(B, K, h, w) GT heatmaps from the batch, with a clear error when a GT-aware term gets no batch."""
    if batch is None or getattr(batch, "heatmaps", None) is None:
        raise ValueError(f"{what} needs the PoseBatch GT heatmaps; call it as loss(student, teacher, batch)")
    return batch.heatmaps
