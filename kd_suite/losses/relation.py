"""Relation-based distillation terms, functional and module: DIST (class relations of dense predictions) and SKD
pair-wise similarity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from ..outputs import ModelOutput
from .base import DistillLoss, batch_labels, check_ndim

__all__ = [
    "DISTLoss",
    "SKDPairwiseLoss",
    "dist_loss",
    "flatten_pixels",
    "pair_similarity",
    "pearson",
    "skd_pairwise_loss",
]


def pearson(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Row-wise Pearson correlation as in DIST: cosine of the mean-centred rows, ``Σ a'b' / (‖a'‖·‖b'‖ + eps)``.

    A zero-variance row gives 0 (not NaN) thanks to ``eps``, exactly as the reference.

    Shape:
        a, b: (R, L) → (R,).
    """
    a = a - a.mean(dim=1, keepdim=True)  # (R, L)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def flatten_pixels(x: Tensor) -> Tensor:
    """(B, C, *) → (B·∏spatial, C): one row per position; (P, C) is returned unchanged."""
    if x.ndim == 2:
        return x
    return x.movedim(1, -1).reshape(-1, x.shape[1])


def dist_loss(
    student: Tensor,
    teacher: Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
    valid: Tensor | None = None,
) -> Tensor:
    """DIST: ``τ² · (β·(1 − mean_i ρ(Y_s[i,:], Y_t[i,:])) + γ·(1 − mean_j ρ(Y_s[:,j], Y_t[:,j])))``.

    Huang et al., *Knowledge Distillation from A Stronger Teacher*, NeurIPS 2022. Dense maps are flattened to
    (P = B·H·W, C) rows FIRST, as the authors' segmentation code does (hunto/DIST_KD
    ``segmentation/losses/dist_kd.py``), so the intra-class term correlates each class column over every pixel of
    the batch; ``Y = softmax(z/τ)`` over the classes and the τ² factor follow the classification version. mmrazor
    ``DISTLoss`` on raw 4-D tensors computes a different intra term (over the batch only), not this one.

    Args:
        student: logits (B, C, *) or (P, C).
        teacher: logits of the same shape.
        beta: weight of the inter-class (per-pixel) term.
        gamma: weight of the intra-class (per-class) term.
        temperature: softmax temperature τ (1 in the segmentation reference).
        valid: optional bool mask of the positions to keep, (B, *) or (P,); the reference keeps every pixel.
    """
    if student.shape != teacher.shape or student.ndim < 2:
        raise ValueError(
            f"dist_loss: need logits of equal shape (B, C, *) or (P, C), got student {tuple(student.shape)} and "
            f"teacher {tuple(teacher.shape)}"
        )
    z_s, z_t = flatten_pixels(student), flatten_pixels(teacher)  # (P, C)
    if valid is not None:
        if valid.numel() != z_s.shape[0]:
            raise ValueError(f"dist_loss: valid mask has {valid.numel()} entries for {z_s.shape[0]} positions")
        keep = valid.reshape(-1)  # row order of flatten_pixels = (B, *) order
        z_s, z_t = z_s[keep], z_t[keep]
        if not len(z_s):
            return student.sum() * 0.0
    y_s = F.softmax(z_s / temperature, dim=1)  # (P, C)
    y_t = F.softmax(z_t / temperature, dim=1)
    inter = 1 - pearson(y_s, y_t).mean()
    intra = 1 - pearson(y_s.t(), y_t.t()).mean()  # (C, P): each class over all positions
    return temperature**2 * (beta * inter + gamma * intra)


def pair_similarity(feature: Tensor) -> Tensor:
    """Cosine similarity of every pair of positions: (B, C, H, W) → (B, HW, HW)."""
    f = F.normalize(feature.flatten(2), dim=1)  # (B, C, HW)
    return f.transpose(1, 2) @ f


def skd_pairwise_loss(
    student: Tensor, teacher: Tensor, kernel: int | tuple[int, int] | None = 2, scale: float | None = None
) -> Tensor:
    """Structured KD pair-wise loss: ``Σ_{b,i,j} (a^s_ij − a^t_ij)² / (HW)² / B`` after max-pooling.

    Liu et al., *Structured Knowledge Distillation for Semantic Segmentation*, CVPR 2019. ``a_ij`` is the cosine
    similarity of pooled positions ``i`` and ``j``. Two pooling conventions exist; pass exactly one:

    * ``kernel=2`` (default): a 2×2 max-pool kernel with stride 2 and ``ceil_mode`` (CIRKD ``CriterionStructuralKD``),
      so the grid keeps ``⌈H/2⌉×⌈W/2⌉`` positions. CIRKD's mean over the (B, HW, HW) map equals the formula above.
    * ``scale=0.5``: kernel ``⌊scale·H⌋×⌊scale·W⌋`` (original ``CriterionPairWiseforWholeFeatAfterPool``), i.e. a
      ~2×2 grid of pooled positions. The original also detaches the feature norm; here it is not detached.

    Shape:
        student: (B, C_s, H, W); teacher: (B, C_t, H, W) (channel counts may differ) → scalar.
    """
    if student.ndim != 4 or student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]:
        raise ValueError(
            f"skd_pairwise_loss: need (B, C, H, W) maps with equal batch and spatial size, got student "
            f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}"
        )
    if (kernel is None) == (scale is None):
        raise ValueError("skd_pairwise_loss: give exactly one of kernel (CIRKD) or scale (original SKD)")
    if scale is not None:
        kernel = (max(1, int(teacher.shape[2] * scale)), max(1, int(teacher.shape[3] * scale)))
    s = F.max_pool2d(student, kernel, stride=kernel, ceil_mode=True)  # (B, C_s, h, w)
    t = F.max_pool2d(teacher, kernel, stride=kernel, ceil_mode=True)
    hw = s.shape[2] * s.shape[3]
    return (pair_similarity(s) - pair_similarity(t)).pow(2).sum() / hw**2 / s.shape[0]


class DISTLoss(DistillLoss):
    """DIST for dense outputs: ``τ²·(β·L_inter + γ·L_intra)`` over all pixels of the batch.

    Huang et al., *Knowledge Distillation from A Stronger Teacher*, NeurIPS 2022; the KD term of class-relationship KD
    for human parsing (Lang et al., Electronics Letters 2023). Logits (B, C, H, W) are flattened to (B·H·W, C) first
    (authors' segmentation code), ``L_inter = 1 − mean_i ρ(row i)`` and ``L_intra = 1 − mean_j ρ(column j over all
    pixels)`` with ``ρ`` the Pearson correlation of ``softmax(z/τ)`` (+1e-8 in the denominator); see
    :func:`dist_loss`. The reference neither masks ignore pixels nor uses a temperature
    for segmentation: the defaults reproduce it.

    Confirmed from the authors' code: the formula, the flatten-first order, the +1e-8. Inferred: that DIST is the
    class-relationship term of Lang et al. (its abstract uses DIST's wording; docs/methods.md §1.2). Additions:
    ``ignore_index`` masking and teacher resizing (neutral by default).

    Args:
        beta: inter-class weight β.
        gamma: intra-class weight γ.
        temperature: softmax temperature τ (the loss is multiplied by τ², classification version).
        ignore_index: when set, pixels whose ``batch.mask`` label (nearest-resized to the logits) equals it are dropped.
        resize_teacher: bilinearly resize the teacher logits to the student's size when they differ.
        **kwargs: :class:`DistillLoss` arguments.
    """

    resized = "teacher"

    def __init__(
        self,
        beta: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 1.0,
        ignore_index: int | None = None,
        resize_teacher: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"DISTLoss: temperature must be > 0, got {temperature}")
        self.beta, self.gamma, self.temperature = beta, gamma, temperature
        self.ignore_index = ignore_index
        self.resize_teacher = resize_teacher

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        s, t = self.pair(student, teacher, ranks=(2, 4), resize=self.resize_teacher)  # (B, C, h, w) or (P, C)
        valid = None
        if self.ignore_index is not None:
            check_ndim(s, (4,), "DISTLoss", "student logits (ignore_index needs dense logits)")
            valid = batch_labels(batch, s, "DISTLoss(ignore_index=...)") != self.ignore_index  # (B, h, w)
        return dist_loss(s, t, self.beta, self.gamma, self.temperature, valid)


class SKDPairwiseLoss(DistillLoss):
    """Structured KD pair-wise term: ``Σ_{b,i,j} (a^s_ij − a^t_ij)² / (HW)² / B`` on max-pooled feature maps.

    Liu et al., *Structured Knowledge Distillation for Semantic Segmentation*, CVPR 2019. ``a_ij`` is the cosine
    similarity of positions ``i, j`` after max-pooling. Default pooling: CIRKD's 2×2 kernel (``kernel=2``); the
    original repository pools with a kernel of ``⌊scale·H⌋×⌊scale·W⌋`` (``kernel=None, scale=0.5``). See
    :func:`skd_pairwise_loss`. Channel counts may differ. Both conventions are confirmed
    from the respective code; the default follows CIRKD because its benchmarks are the ones the suite compares with.

    Args:
        kernel: square max-pool kernel (and stride), CIRKD convention; ``None`` to use ``scale``.
        scale: kernel as a fraction of the teacher map size, original convention.
        resize_student: bilinearly resize the student map to the teacher's spatial size when they differ.
        **kwargs: :class:`DistillLoss` arguments.
    """

    def __init__(
        self, kernel: int | None = 2, scale: float | None = None, resize_student: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if (kernel is None) == (scale is None):
            raise ValueError("SKDPairwiseLoss: set exactly one of kernel (CIRKD, e.g. 2) or scale (original, e.g. 0.5)")
        if (kernel is not None and kernel < 1) or (scale is not None and not 0 < scale <= 1):
            raise ValueError(f"SKDPairwiseLoss: need kernel >= 1 or 0 < scale <= 1, got {kernel=}, {scale=}")
        self.kernel, self.scale = kernel, scale
        self.resize_student = resize_student

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        s, t = self.pair(student, teacher, resize=self.resize_student, same_shape=False)  # (B, C_s | C_t, H, W)
        return skd_pairwise_loss(s, t, self.kernel, self.scale)
