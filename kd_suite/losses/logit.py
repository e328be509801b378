"""Distillation terms on output logits (``(B, K, *)``): per-pixel Hinton KD and decoupled KD."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from ..models.adapters import resize_to
from ..outputs import ModelOutput
from .base import DistillLoss, as_float, check_ndim, check_same_shape
from .functional import dkd_loss, kd_loss, resize_labels

__all__ = ["DKDLoss", "KDLoss", "batch_labels"]


def batch_labels(batch: Any, like: Tensor, loss: str) -> Tensor:
    """Ground-truth labels ``batch.mask`` (B, H, W) nearest-resized to the spatial size of ``like`` (B, C, h, w).

    Raises:
        ValueError: the batch has no ``mask`` tensor, or its batch size differs from ``like``'s.
    """
    mask = getattr(batch, "mask", None)
    if not isinstance(mask, Tensor):
        raise ValueError(
            f"{loss} reads ground-truth labels from batch.mask (a ParsingBatch); got {type(batch).__name__}. "
            "Use it on a parsing/segmentation task or turn the label-dependent option off"
        )
    if mask.ndim != 3 or mask.shape[0] != like.shape[0]:
        raise ValueError(f"{loss}: batch.mask {tuple(mask.shape)} must be (B, H, W) with B = {like.shape[0]}")
    return resize_labels(mask, like.shape[-2:])  # (B, h, w)


class KDLoss(DistillLoss):
    """Per-pixel Hinton KD with temperature: ``τ² · Σ_pixels KL(σ(z_t/τ) ‖ σ(z_s/τ)) / D``.

    Hinton et al., *Distilling the Knowledge in a Neural Network*, 2015. The KL is taken over the class dim of
    (B, K, *) logits at every position (see :func:`~kd_suite.losses.functional.kd_loss`).

    Args:
        temperature: softmax temperature τ.
        reduction: ``"pixel"`` (default) divides by B·H·W (CIRKD ``CriterionKD``); ``"batch"`` divides by B
            (mmrazor ``KLDivergence(reduction='batchmean')``).
        resize_teacher: bilinearly resize the teacher logits to the student's spatial size when they differ;
            otherwise a size mismatch is an error.
        **kwargs: :class:`DistillLoss` arguments (weight, schedule, taps).
    """

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

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: Any = None) -> Tensor:
        s, t = as_float(*self.select(student, teacher))
        t = t.detach()
        if self.resize_teacher and s.ndim == 4 and t.ndim == 4:
            t = resize_to(t, s.shape[-2:])  # (B, K, h_s, w_s)
        check_same_shape(s, t, "KDLoss")
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

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: Any = None) -> Tensor:
        s, t = as_float(*self.select(student, teacher))
        t = t.detach()
        check_ndim(s, (4,), "DKDLoss", "student logits")
        if self.resize_teacher and t.ndim == 4:
            t = resize_to(t, s.shape[-2:])
        check_same_shape(s, t, "DKDLoss")
        labels = batch_labels(batch, s, "DKDLoss").reshape(-1)  # (P,)
        keep = labels != self.ignore_index
        k = s.shape[1]
        s_rows = s.movedim(1, -1).reshape(-1, k)[keep]  # (P', K)
        t_rows = t.movedim(1, -1).reshape(-1, k)[keep]
        return dkd_loss(s_rows, t_rows, labels[keep], self.temperature, self.alpha, self.beta)
