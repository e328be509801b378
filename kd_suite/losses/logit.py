"""Distillation terms on output logits (``(B, K, *)``): per-pixel Hinton KD and decoupled KD, functional and module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..outputs import ModelOutput
from .base import DistillLoss, batch_labels, check_pair

__all__ = ["DKDLoss", "KDLoss", "dkd_loss", "kd_loss"]


def kd_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0, reduction: str = "pixel") -> Tensor:
    """Hinton KD applied at every position: ``τ² · Σ KL(σ(t/τ) ‖ σ(s/τ)) / D``.

    Hinton et al., *Distilling the Knowledge in a Neural Network*, 2015; dense use as in CIRKD ``CriterionKD``.

    Args:
        student: logits, class dim 1.
        teacher: logits of the same shape.
        temperature: softmax temperature τ.
        reduction: ``"pixel"`` divides by every position ``D = B·∏spatial`` (CIRKD ``CriterionKD``);
            ``"batch"`` divides by ``D = B`` only (mmrazor ``KLDivergence(reduction='batchmean')`` on 4-D input).

    Shape:
        student, teacher: (B, C, *) → scalar.
    """
    check_pair(student, teacher, "kd_loss")
    if reduction not in ("pixel", "batch"):
        raise ValueError(f"kd_loss: reduction must be 'pixel' or 'batch', got {reduction!r}")
    log_s = F.log_softmax(student / temperature, dim=1)  # (B, C, *)
    log_t = F.log_softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum")
    denom = student.shape[0] if reduction == "batch" else student.numel() // student.shape[1]
    return kl / denom * temperature**2


def dkd_loss(
    student: Tensor, teacher: Tensor, target: Tensor, temperature: float = 1.0, alpha: float = 1.0, beta: float = 8.0
) -> Tensor:
    """Decoupled KD: ``α·TCKD + β·NCKD``, each ``τ² · Σ KL / P`` over the ``P`` rows.

    Zhao et al., *Decoupled Knowledge Distillation*, CVPR 2022; reference mmrazor ``DKDLoss`` (``batchmean``).
    TCKD is the KL between the binary distributions ``[p_gt, 1 − p_gt]``; NCKD is the KL between the distributions
    over the non-target classes (the target logit is pushed down by 1000 before the softmax, as in the reference).
    ``log(1 − p_gt)`` is taken as a log-sum-exp over the non-target classes, equal to the reference's
    ``log(Σ p_non-gt)`` but without underflow.

    Args:
        student: logits (P, K) (flatten dense maps to pixels first).
        teacher: logits (P, K).
        target: (P,) class index of each row.
        temperature: softmax temperature τ.
        alpha: TCKD weight.
        beta: NCKD weight.
    """
    check_pair(student, teacher, "dkd_loss")
    if student.ndim != 2 or student.shape[1] < 2:
        raise ValueError(f"dkd_loss: expects (P, K) logits with K >= 2, got {tuple(student.shape)}")
    if target.shape != student.shape[:1]:
        raise ValueError(f"dkd_loss: target must be ({student.shape[0]},), got {tuple(target.shape)}")
    if len(target) and (target.min() < 0 or target.max() >= student.shape[1]):
        raise ValueError(f"dkd_loss: target class ids must lie in [0, {student.shape[1]}) (drop ignore pixels first)")
    if not len(target):
        return student.sum() * 0.0
    gt = F.one_hot(target, student.shape[1]).bool()  # (P, K)
    tau = temperature

    def binary_log(z: Tensor) -> Tensor:  # (P, 2): [log p_gt, log(1 − p_gt)]
        log_p = F.log_softmax(z / tau, dim=1)
        log_gt = log_p.masked_select(gt).unsqueeze(1)
        log_rest = log_p.masked_fill(gt, float("-inf")).logsumexp(dim=1, keepdim=True)
        return torch.cat([log_gt, log_rest], dim=1)

    tckd = F.kl_div(binary_log(student), binary_log(teacher), log_target=True, reduction="sum")
    push = 1000.0 * gt  # (P, K)
    log_s_nt = F.log_softmax(student / tau - push, dim=1)  # (P, K), target class ≈ excluded
    log_t_nt = F.log_softmax(teacher / tau - push, dim=1)
    nckd = F.kl_div(log_s_nt, log_t_nt, log_target=True, reduction="sum")
    return (alpha * tckd + beta * nckd) / len(target) * tau**2


class KDLoss(DistillLoss):
    """Per-pixel Hinton KD with temperature: ``τ² · Σ_pixels KL(σ(z_t/τ) ‖ σ(z_s/τ)) / D``.

    Hinton et al., *Distilling the Knowledge in a Neural Network*, 2015. The KL is taken over the class dim of
    (B, K, *) logits at every position (see :func:`kd_loss`).

    Args:
        temperature: softmax temperature τ.
        reduction: ``"pixel"`` (default) divides by B·H·W (CIRKD ``CriterionKD``); ``"batch"`` divides by B
            (mmrazor ``KLDivergence(reduction='batchmean')``).
        resize_teacher: bilinearly resize the teacher logits to the student's spatial size when they differ;
            otherwise a size mismatch is an error.
        **kwargs: :class:`DistillLoss` arguments (weight, schedule, taps).
    """

    resized = "teacher"

    def __init__(
        self,
        temperature: float = 1.0,
        reduction: Literal["pixel", "batch"] = "pixel",
        resize_teacher: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if reduction not in ("pixel", "batch"):
            raise ValueError(f"KDLoss: reduction must be 'pixel' or 'batch', got {reduction!r}")
        if temperature <= 0:
            raise ValueError(f"KDLoss: temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.reduction = reduction
        self.resize_teacher = resize_teacher

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        s, t = self.pair(student, teacher, ranks=(2, 3, 4, 5), resize=self.resize_teacher)  # (B, K, *)
        return kd_loss(s, t, self.temperature, self.reduction)


class DKDLoss(DistillLoss):
    """Decoupled KD on dense logits: ``α·TCKD + β·NCKD`` over the labelled pixels.

    Zhao et al., *Decoupled Knowledge Distillation*, CVPR 2022 (mmrazor ``DKDLoss``). Dense use: logits (B, K, H, W)
    are flattened to (P, K) pixels, ``batch.mask`` is nearest-resized to (H, W) and the pixels labelled
    ``ignore_index`` are dropped; the KL sums are divided by the number of kept pixels (``batchmean`` over P).

    Args:
        temperature: softmax temperature τ (paper CIFAR setting 4).
        alpha: TCKD weight.
        beta: NCKD weight (paper CIFAR setting 8).
        ignore_index: label of unlabelled pixels.
        resize_teacher: bilinearly resize the teacher logits to the student's size when they differ.
        **kwargs: :class:`DistillLoss` arguments.
    """

    resized = "teacher"

    def __init__(
        self,
        temperature: float = 4.0,
        alpha: float = 1.0,
        beta: float = 8.0,
        ignore_index: int = 255,
        resize_teacher: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"DKDLoss: temperature must be > 0, got {temperature}")
        self.temperature, self.alpha, self.beta = temperature, alpha, beta
        self.ignore_index = ignore_index
        self.resize_teacher = resize_teacher

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        s, t = self.pair(student, teacher, resize=self.resize_teacher)  # (B, K, H, W)
        labels = batch_labels(batch, s, "DKDLoss").reshape(-1)  # (P,)
        keep = labels != self.ignore_index
        k = s.shape[1]
        s_rows = s.movedim(1, -1).reshape(-1, k)[keep]  # (P', K)
        t_rows = t.movedim(1, -1).reshape(-1, k)[keep]
        return dkd_loss(s_rows, t_rows, labels[keep], self.temperature, self.alpha, self.beta)
