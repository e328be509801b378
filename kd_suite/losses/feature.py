"""Distillation terms on intermediate feature maps (``(B, C, H, W)``): FitNet, AT, PKD and MGD, functional and module.

Feature-map terms follow the resize policy of :mod:`.base`: when the spatial sizes differ and ``resize_student`` is on,
the (adapted) student map is bilinearly resized to the teacher's size (mmrazor ``PKDLoss(resize_stu=True)``); channel
adapters are built in :meth:`~kd_suite.losses.DistillLoss.bind`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.adapters import conv1x1_bn
from ..outputs import ModelOutput, TapInfo
from .base import DistillLoss, check_pair, unbound_error

__all__ = [
    "ATLoss",
    "FitNetLoss",
    "MGDLoss",
    "PKDLoss",
    "at_loss",
    "at_map",
    "fitnet_loss",
    "mgd_loss",
    "mgd_mask",
    "pkd_loss",
    "pkd_norm",
]


def fitnet_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """FitNet hint loss: mean squared error over every element (the regressor is applied by the caller).

    Romero et al., *FitNets: Hints for Thin Deep Nets*, ICLR 2015; reduction as CIRKD ``CriterionFitNet``.
    """
    check_pair(student, teacher, "fitnet_loss")
    return F.mse_loss(student, teacher)


def at_map(feature: Tensor, p: float = 2.0) -> Tensor:
    """Attention map ``n(f) = vec(mean_c f^p) / ‖·‖₂`` (as the references, no abs): (B, C, *) → (B, ∏spatial)."""
    return F.normalize(feature.pow(p).mean(dim=1).flatten(1), dim=1)


def at_loss(student: Tensor, teacher: Tensor, p: float = 2.0) -> Tensor:
    """Attention transfer: ``mean_{b,i} (n(f_s) − n(f_t))²``; the channel counts may differ.

    Zagoruyko & Komodakis, *Paying More Attention to Attention*, ICLR 2017; reference CIRKD ``CriterionAT`` (p = 2),
    mmrazor ``ATLoss`` (same formula).

    Shape:
        student: (B, C_s, *); teacher: (B, C_t, *) with equal batch and spatial dims → scalar.
    """
    if student.ndim < 3 or student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]:
        raise ValueError(
            f"at_loss: need (B, C, *) maps with equal batch and spatial size, got student {tuple(student.shape)} and "
            f"teacher {tuple(teacher.shape)}"
        )
    return (at_map(student, p) - at_map(teacher, p)).pow(2).mean()


def pkd_norm(feature: Tensor, eps: float = 1e-6) -> Tensor:
    """Standardise each channel over (B, *): ``(f − mean) / (std + eps)``, unbiased std (mmrazor ``PKDLoss``)."""
    flat = feature.transpose(0, 1).reshape(feature.shape[1], -1)  # (C, B·HW)
    flat = (flat - flat.mean(dim=1, keepdim=True)) / (flat.std(dim=1, keepdim=True) + eps)
    return flat.reshape(feature.shape[1], feature.shape[0], *feature.shape[2:]).transpose(0, 1)


def pkd_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """PKD: ``½ · MSE(ν(f_s), ν(f_t))`` with ``ν`` the per-channel standardisation (≈ ``1 − Pearson``).

    Cao et al., *PKD: General Distillation Framework for Object Detectors via Pearson Correlation Coefficient*,
    NeurIPS 2022; reference mmrazor ``PKDLoss`` (unbiased std + 1e-6, mean over every element, then ÷2).
    """
    check_pair(student, teacher, "pkd_loss", min_ndim=3)
    return F.mse_loss(pkd_norm(student), pkd_norm(teacher)) / 2


def mgd_mask(
    shape: tuple[int, ...],
    mask_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Random keep-mask of MGD: each entry is 0 with probability ``mask_ratio`` (λ) and 1 otherwise.

    Drawn with ``torch.rand`` on the CPU (optionally from ``generator``, so a mask can be replayed exactly) and then
    moved to ``device``. ``shape`` is ``(B, 1, H, W)`` for spatial masking or ``(B, C, 1, 1)`` for channel masking.
    """
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mgd_mask: mask_ratio must lie in [0, 1], got {mask_ratio}")
    rand = torch.rand(shape, generator=generator)
    return (rand <= 1.0 - mask_ratio).float().to(device)  # zero where rand > 1 − λ, as in mmrazor MGDConnector


def mgd_loss(
    student: Tensor, teacher: Tensor, generation: Callable[[Tensor], Tensor], mask: Tensor, alpha: float = 2e-5
) -> Tensor:
    """Masked generative distillation: ``α · Σ (G(f_s ∘ M) − f_t)² / B``.

    Yang et al., *Masked Generative Distillation*, ECCV 2022; reference mmrazor ``MGDConnector`` + ``MGDLoss``.

    Args:
        student: aligned student feature (B, C, H, W) (channels already mapped to the teacher's).
        teacher: teacher feature (B, C, H, W).
        generation: the generator block ``G`` (conv3-ReLU-conv3 in the module).
        mask: keep-mask broadcastable to the feature, from :func:`mgd_mask`.
        alpha: loss scale ``α`` (mmrazor ``alpha_mgd``).
    """
    check_pair(student, teacher, "mgd_loss", min_ndim=4)
    generated = generation(student * mask)  # (B, C, H, W)
    return alpha * (generated - teacher).pow(2).sum() / student.shape[0]


class FitNetLoss(DistillLoss):
    """FitNet hint: ``mean((r(F_s) − F_t)²)``, ``r`` a trainable 1×1 conv regressor from student to teacher channels.

    Romero et al., *FitNets: Hints for Thin Deep Nets*, ICLR 2015; reduction = CIRKD ``CriterionFitNet`` (mean over
    every element, regressor without bias). The regressor is built in :meth:`bind` even when the channels match.

    Args:
        norm: add BatchNorm after the 1×1 conv.
        resize_student: resize the student map to the teacher's spatial size when they differ.
        **kwargs: :class:`DistillLoss` arguments.
    """

    def __init__(self, norm: bool = False, resize_student: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.norm = norm
        self.resize_student = resize_student
        self.adapter: nn.Module | None = None

    def bind(self, student: TapInfo, teacher: TapInfo) -> None:
        c_s, c_t = student.channels, teacher.channels
        self.adapter = conv1x1_bn(c_s, c_t) if self.norm else nn.Conv2d(c_s, c_t, 1, bias=False)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        if self.adapter is None:
            raise unbound_error(self)
        s, t = self.pair(student, teacher, adapter=self.adapter, resize=self.resize_student)  # (B, C_t, H, W)
        return fitnet_loss(s, t)


class ATLoss(DistillLoss):
    """Attention transfer (p = 2): ``mean((n(F_s) − n(F_t))²)``, ``n(F) = vec(mean_c F²) / ‖·‖₂``.

    Zagoruyko & Komodakis, *Paying More Attention to Attention*, ICLR 2017 (CIRKD ``CriterionAT``, mmrazor
    ``ATLoss``); mean over batch and positions. Channel counts may differ, no adapter is needed.

    Args:
        p: exponent of the attention map.
        resize_student: resize the student map to the teacher's spatial size when they differ.
        **kwargs: :class:`DistillLoss` arguments.
    """

    def __init__(self, p: float = 2.0, resize_student: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.p = p
        self.resize_student = resize_student

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        s, t = self.pair(student, teacher, resize=self.resize_student, same_shape=False)  # (B, C_s | C_t, H, W)
        return at_loss(s, t, self.p)


class PKDLoss(DistillLoss):
    """PKD: ``½ · MSE`` of the per-channel standardised maps (standardised over B, H, W; unbiased std + 1e-6).

    Cao et al., *PKD: General Distillation Framework for Object Detectors via Pearson Correlation Coefficient*,
    NeurIPS 2022; mmrazor ``PKDLoss`` conventions. Channel counts must match (pick taps accordingly).

    Args:
        resize_student: resize the student map to the teacher's spatial size when they differ.
        **kwargs: :class:`DistillLoss` arguments.
    """

    def __init__(self, resize_student: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resize_student = resize_student

    def bind(self, student: TapInfo, teacher: TapInfo) -> None:
        if student.channels != teacher.channels:
            raise ValueError(
                f"PKDLoss: taps {self.student_tap!r} ({student.channels} ch) and {self.teacher_tap!r} "
                f"({teacher.channels} ch) differ in channels; PKD has no adapter, use FitNetLoss/CWDLoss or other taps"
            )

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        s, t = self.pair(student, teacher, resize=self.resize_student)  # (B, C, H, W)
        return pkd_loss(s, t)


class MGDLoss(DistillLoss):
    """Masked generative distillation: ``α · Σ (G(align(F_s) ∘ M) − F_t)² / B``.

    Yang et al., *Masked Generative Distillation*, ECCV 2022; mmrazor ``MGDConnector`` + ``MGDLoss``. ``M`` zeroes each
    spatial position (or channel) with probability λ; ``align`` is a 1×1 conv (with bias) when the channels differ;
    ``G`` is conv3×3-ReLU-conv3×3 at the teacher width. Both are built in :meth:`bind`.

    Args:
        alpha: loss scale α (mmrazor ``alpha_mgd``).
        mask_ratio: masking probability λ (mmrazor ``lambda_mgd``).
        mask_on_channel: mask whole channels instead of positions.
        seed: seed of a private CPU generator for the masks, so runs replay exactly; ``None`` uses the global RNG.
        resize_student: resize the student map to the teacher's spatial size when they differ.
        **kwargs: :class:`DistillLoss` arguments.
    """

    def __init__(
        self,
        alpha: float = 2e-5,
        mask_ratio: float = 0.65,
        mask_on_channel: bool = False,
        seed: int | None = None,
        resize_student: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= mask_ratio <= 1.0:
            raise ValueError(f"MGDLoss: mask_ratio must lie in [0, 1], got {mask_ratio}")
        self.alpha, self.mask_ratio, self.mask_on_channel = alpha, mask_ratio, mask_on_channel
        self.resize_student = resize_student
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.align: nn.Module | None = None
        self.generation: nn.Module | None = None

    def bind(self, student: TapInfo, teacher: TapInfo) -> None:
        c_s, c_t = student.channels, teacher.channels
        self.align = nn.Identity() if c_s == c_t else nn.Conv2d(c_s, c_t, 1)
        self.generation = nn.Sequential(
            nn.Conv2d(c_t, c_t, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c_t, c_t, 3, padding=1)
        )

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        if self.align is None or self.generation is None:
            raise unbound_error(self)
        s, t = self.pair(student, teacher, adapter=self.align, resize=self.resize_student)  # (B, C_t, H, W)
        b, c, h, w = s.shape
        shape = (b, c, 1, 1) if self.mask_on_channel else (b, 1, h, w)
        mask = mgd_mask(shape, self.mask_ratio, self.generator, s.device).to(s.dtype)
        return mgd_loss(s, t, self.generation, mask, self.alpha)
