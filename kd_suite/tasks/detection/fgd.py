"""FGD: focal and global distillation for detectors, the parent of FSD; plus the pieces FSD shares with it.

Reference: Yang et al., "Focal and Global Knowledge Distillation for Detectors", CVPR 2022; confirmed against
yzd-v/FGD@c03a6cf ``mmdet/distillation/losses/fgd.py::FeatureLoss`` (reimplemented, vectorised over boxes):

    L = α·Σ(S̃·√M_fg − T̃·√M_fg)²/N + β·Σ(S̃·√M_bg − T̃·√M_bg)²/N + γ·L_mask + λ·L_rela,
    S̃ = align(S)·√A_sp(T)·√A_ch(T),  T̃ = T·√A_sp(T)·√A_ch(T)   (the teacher's attention weights both sides)

with ``M_fg`` the largest ``1/(box cells)`` over the boxes covering a cell, ``M_bg = 1[M_fg = 0]`` normalised to sum 1
per image, ``A_sp = HW·softmax_HW(mean_c|F|/temp)``, ``A_ch = C·softmax_C(mean_HW|F|/temp)``,
``L_mask = Σ|A_ch(S) − A_ch(T)|/N + Σ|A_sp(S) − A_sp(T)|/N`` and ``L_rela`` the GcBlock relation loss
(:class:`GlobalRelation`). ``N`` is the batch size. YOLOX settings of the FGD configs: α .002, β .001, γ .001, λ 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...losses.base import DistillLoss, unbound_error
from ...outputs import ModelOutput, TapInfo

__all__ = [
    "FGDLoss",
    "GTMaskedFeatureLoss",
    "GlobalRelation",
    "attention_mask_loss",
    "background_mask",
    "box_cells",
    "box_interior_mask",
    "fgd_attention",
]


def box_cells(boxes: Tensor, stride: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Grid support of boxes on a stride-``stride`` map: ``floor`` of the top-left, ``ceil`` of the bottom-right.

    Returns:
        hmin, hmax, wmin, wmax (…,) int64 inclusive cell ranges (not clipped) and area (…,) =
        ``1/((hmax + 1 − hmin)(wmax + 1 − wmin))``.
    """
    b = boxes.float() / stride  # (…, 4) feature coordinates
    wmin, hmin = b[..., 0].floor().long(), b[..., 1].floor().long()
    wmax, hmax = b[..., 2].ceil().long(), b[..., 3].ceil().long()
    area = 1.0 / ((hmax + 1 - hmin) * (wmax + 1 - wmin)).float()
    return hmin, hmax, wmin, wmax, area


def box_interior_mask(boxes: Tensor, valid: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """FGD foreground mask: each cell takes the largest ``area`` of the boxes whose support covers it, else 0.

    Shape:
        boxes (B, M, 4) xyxy input pixels, valid (B, M) bool → (B, H, W).
    """
    hmin, hmax, wmin, wmax, area = (v[..., None, None] for v in box_cells(boxes, stride))  # (B, M, 1, 1)
    rows = torch.arange(size[0], device=boxes.device)[:, None]  # (H, 1)
    cols = torch.arange(size[1], device=boxes.device)[None, :]  # (1, W)
    inside = (rows >= hmin) & (rows <= hmax) & (cols >= wmin) & (cols <= wmax)  # (B, M, H, W)
    inside &= valid[..., None, None]
    return (inside * area).amax(dim=1) if boxes.shape[1] else boxes.new_zeros(boxes.shape[0], *size)


def background_mask(foreground: Tensor) -> Tensor:
    """``1[M_fg = 0]`` normalised to sum 1 per image (left all-zero when the whole map is foreground).

    Shape:
        (B, H, W) → (B, H, W).
    """
    bg = (foreground == 0).float()  # (B, H, W)
    total = bg.sum(dim=(1, 2), keepdim=True)
    return bg / total.clamp(min=1.0)


def fgd_attention(feature: Tensor, temp: float) -> tuple[Tensor, Tensor]:
    """FGD spatial and channel attention of a (B, C, H, W) map.

    Returns:
        ``A_sp`` (B, H, W) = ``HW·softmax_HW(mean_c|F|/temp)`` and ``A_ch`` (B, C) = ``C·softmax_C(mean_HW|F|/temp)``.
    """
    b, c, h, w = feature.shape
    value = feature.abs()
    spatial = h * w * F.softmax(value.mean(dim=1).reshape(b, -1) / temp, dim=1)  # (B, HW)
    channel = c * F.softmax(value.mean(dim=(2, 3)) / temp, dim=1)  # (B, C)
    return spatial.reshape(b, h, w), channel


def attention_mask_loss(ch_s: Tensor, ch_t: Tensor, sp_s: Tensor, sp_t: Tensor) -> Tensor:
    """FGD attention loss ``Σ|A_ch(S) − A_ch(T)|/N + Σ|A_sp(S) − A_sp(T)|/N``."""
    return ((ch_s - ch_t).abs().sum() + (sp_s - sp_t).abs().sum()) / ch_s.shape[0]


def _channel_add(channels: int) -> nn.Sequential:
    """GcBlock transform 1×1 (C → C/2) → LayerNorm → ReLU → 1×1 (C/2 → C), last conv zero-initialised."""
    block = nn.Sequential(
        nn.Conv2d(channels, channels // 2, 1),
        nn.LayerNorm([channels // 2, 1, 1]),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels // 2, channels, 1),
    )
    nn.init.zeros_(block[-1].weight)
    nn.init.zeros_(block[-1].bias)
    return block


def _context_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, 1, 1)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")  # mmcv kaiming_init(mode="fan_in")
    nn.init.zeros_(conv.bias)
    return conv


class GlobalRelation(nn.Module):
    """GcBlock relation loss of FGD: ``Σ((S + add_s(ctx_s(S))) − (T + add_t(ctx_t(T))))²/N`` with
    ``ctx(F) = Σ_hw softmax_hw(conv_mask(F))·F`` (Cao et al., GCNet, 2019).

    Args:
        channels: teacher channels (the student is aligned first).
        shared_mask: use ``conv_mask_t`` for the student as well (the FSD reference code); ``conv_mask_s`` is then not
            built, so no parameter sits unused.
    """

    def __init__(self, channels: int, shared_mask: bool = False) -> None:
        super().__init__()
        self.conv_mask_s = None if shared_mask else _context_conv(channels)
        self.conv_mask_t = _context_conv(channels)
        self.channel_add_s = _channel_add(channels)
        self.channel_add_t = _channel_add(channels)

    @staticmethod
    def context(feature: Tensor, conv_mask: nn.Conv2d) -> Tensor:
        """(B, C, H, W) → (B, C, 1, 1) attention-pooled global context."""
        weights = F.softmax(conv_mask(feature).flatten(2), dim=2)  # (B, 1, HW)
        return torch.einsum("bcp,bop->bc", feature.flatten(2), weights)[..., None, None]  # (B, C, 1, 1)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        mask_s = self.conv_mask_t if self.conv_mask_s is None else self.conv_mask_s
        out_s = student + self.channel_add_s(self.context(student, mask_s))  # (B, C, H, W)
        out_t = teacher + self.channel_add_t(self.context(teacher, self.conv_mask_t))
        return (out_s - out_t).pow(2).sum() / student.shape[0]


class GTMaskedFeatureLoss(DistillLoss):
    """Shared shell of FGD and FSD: align conv, teacher attention weighting, GT masks, mask and relation losses.

    Subclasses implement :meth:`foreground` (the mask on the level's grid) and :meth:`region_losses`.

    Args:
        temp: attention temperature.
        gamma_mask: weight γ of the attention loss.
        lambda_rela: weight λ of the relation loss.
        shared_context_mask: student uses the teacher's ``conv_mask`` in the relation loss.
        **kwargs: :class:`DistillLoss` arguments (taps ``neck.i``: the head stems, strides 8/16/32).
    """

    def __init__(
        self,
        temp: float = 0.5,
        gamma_mask: float = 0.001,
        lambda_rela: float = 1e-5,
        shared_context_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if temp <= 0:
            raise ValueError(f"{type(self).__name__}: temp must be > 0, got {temp}")
        self.temp, self.gamma_mask, self.lambda_rela = temp, gamma_mask, lambda_rela
        self.shared_context_mask = shared_context_mask
        self.stride = 0
        self.align: nn.Module | None = None
        self.relation: GlobalRelation | None = None

    def bind(self, student: TapInfo, teacher: TapInfo) -> None:
        name = type(self).__name__
        if student.stride != teacher.stride or student.stride <= 0:
            raise ValueError(
                f"{name}: taps {self.student_tap!r} (stride {student.stride}) and {self.teacher_tap!r} "
                f"(stride {teacher.stride}) must be spatial maps of one FPN level; pick neck.i on both sides"
            )
        self.stride = student.stride
        c_s, c_t = student.channels, teacher.channels
        self.align = nn.Identity() if c_s == c_t else nn.Conv2d(c_s, c_t, 1)
        self.relation = GlobalRelation(c_t, shared_mask=self.shared_context_mask)

    def foreground(self, boxes: Tensor, valid: Tensor, size: tuple[int, int]) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def region_losses(self, s: Tensor, t: Tensor, fg: Tensor, bg: Tensor) -> Tensor:  # pragma: no cover
        """Weighted foreground + background terms on the attention-weighted maps (B, C, H, W) and masks (B, H, W)."""
        raise NotImplementedError

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        if self.align is None or self.relation is None:
            raise unbound_error(self)
        if not isinstance(getattr(batch, "boxes", None), Tensor):
            raise ValueError(
                f"{type(self).__name__} needs the GT boxes of the batch (a DetectionBatch: boxes (B, M, 4), "
                f"labels (B, M)), got {type(batch).__name__}"
            )
        s, t = self.pair(student, teacher, adapter=self.align)  # (B, C_t, H, W), one FPN level: no resize
        sp_t, ch_t = fgd_attention(t, self.temp)  # (B, H, W), (B, C)
        sp_s, ch_s = fgd_attention(s, self.temp)
        fg = self.foreground(batch.boxes.to(s.device), batch.valid.to(s.device), tuple(s.shape[-2:]))  # (B, H, W)
        weight = sp_t.sqrt()[:, None] * ch_t.sqrt()[..., None, None]  # (B, C, H, W)
        regions = self.region_losses(s * weight, t * weight, fg, background_mask(fg))
        mask = attention_mask_loss(ch_s, ch_t, sp_s, sp_t)
        return regions + self.gamma_mask * mask + self.lambda_rela * self.relation(s, t)


class FGDLoss(GTMaskedFeatureLoss):
    """FGD on one FPN level (configure one term per level, e.g. ``fgd_p3`` on ``neck.0``); formula in the module doc.

    Args:
        alpha_fg: weight α of the foreground MSE.
        beta_bg: weight β of the background MSE.
        temp: attention temperature.
        gamma_mask: weight γ of the attention loss.
        lambda_rela: weight λ of the relation loss.
        **kwargs: :class:`DistillLoss` arguments.
    """

    def __init__(
        self,
        alpha_fg: float = 0.002,
        beta_bg: float = 0.001,
        temp: float = 0.5,
        gamma_mask: float = 0.001,
        lambda_rela: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(temp=temp, gamma_mask=gamma_mask, lambda_rela=lambda_rela, **kwargs)
        self.alpha_fg, self.beta_bg = alpha_fg, beta_bg

    def foreground(self, boxes: Tensor, valid: Tensor, size: tuple[int, int]) -> Tensor:
        return box_interior_mask(boxes, valid, size, self.stride)

    def region_losses(self, s: Tensor, t: Tensor, fg: Tensor, bg: Tensor) -> Tensor:
        n = s.shape[0]
        fg_loss = ((s - t).pow(2) * fg[:, None]).sum() / n  # = Σ(s√M − t√M)²/N
        bg_loss = ((s - t).pow(2) * bg[:, None]).sum() / n
        return self.alpha_fg * fg_loss + self.beta_bg * bg_loss
