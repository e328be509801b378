"""Adapters between student and teacher taps; the only place they are defined."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def conv1x1_bn(c_in: int, c_out: int) -> nn.Sequential:
    """1×1 convolution + BatchNorm mapping ``c_in`` student channels to ``c_out`` teacher channels."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


def channel_adapter(c_in: int, c_out: int, norm: bool = True) -> nn.Module:
    """Identity when channels match, else a 1×1 conv (+ BN when ``norm``)."""
    if c_in == c_out:
        return nn.Identity()
    return conv1x1_bn(c_in, c_out) if norm else nn.Conv2d(c_in, c_out, 1)


def resize_to(x: Tensor, size: tuple[int, int] | list[int], mode: str = "bilinear") -> Tensor:
    """Resize a (B, C, H, W) map to ``size`` when it differs (bilinear for features/logits)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode=mode)
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)
