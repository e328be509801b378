"""LSFA: lightweight spatial-attention fusion of a low-level and a high-level feature.

Reconstructed as PP-LiteSeg's Unified Attention Fusion Module with spatial attention (Peng et al., "PP-LiteSeg",
arXiv 2204.02681, 2022; PaddleSeg ``layers/tensor_fusion.py::UAFM_SpAtten``). The UAFM_SpAtten computation is
confirmed from the PaddleSeg code; identifying the "LSFA" of Lang et al. (Electronics Letters 2023) with it is a
reconstruction (docs/methods.md §1.3), hence the switches ``spatial_stats`` (``("mean",)`` gives ``UAFM_SpAtten_S``)
and ``separable`` (``UAFMMobile_SpAtten``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import ConvBN, conv_bn_relu

_STATS = ("mean", "max")


def spatial_stats(x: Tensor, stats: tuple[str, ...]) -> list[Tensor]:
    """Channel-wise statistics of ``x`` (B, C, H, W), each (B, 1, H, W), in the order of ``stats``."""
    out = []
    for s in stats:
        out.append(x.mean(dim=1, keepdim=True) if s == "mean" else x.amax(dim=1, keepdim=True))  # (B, 1, H, W)
    return out


class LSFA(nn.Module):
    """Spatial-attention fusion (UAFM_SpAtten).

    ``x' = ConvBNReLU3x3(x)``, ``y' = up(y)``, ``A = cat[stats(x'), stats(y')]`` (mean, max per default),
    ``α = sigmoid(ConvBN3x3(2→1)(ConvBNReLU3x3(2·|stats|→2)(A)))``, ``out = ConvBNReLU3x3(x'·α + y'·(1−α))``.

    Args:
        x_channels: channels of the low-level (higher resolution) input ``x``.
        y_channels: channels of the high-level input ``y``; ``x`` is projected to this width.
        out_channels: output channels.
        spatial_stats: channel statistics fed to the attention branch, any non-empty subset of ``("mean", "max")``.
        separable: use depthwise-separable convs for the ``x`` projection and the output conv.
        resize_mode: interpolation that brings ``y`` to the size of ``x``.
    """

    def __init__(
        self,
        x_channels: int,
        y_channels: int,
        out_channels: int,
        spatial_stats: tuple[str, ...] = ("mean", "max"),
        separable: bool = False,
        resize_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        stats = tuple(spatial_stats)
        if not stats or any(s not in _STATS for s in stats) or len(set(stats)) != len(stats):
            raise ValueError(f"LSFA: spatial_stats must be a non-empty subset of {_STATS}, got {spatial_stats!r}")
        self.stats = stats
        self.resize_mode = resize_mode
        self.conv_x = conv_bn_relu(x_channels, y_channels, 3, separable)
        self.attention = nn.Sequential(
            ConvBN(2 * len(stats), 2, kernel_size=3, act=True),
            ConvBN(2, 1, kernel_size=3, act=False),
        )
        self.conv_out = conv_bn_relu(y_channels, out_channels, 3, separable)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Fuse ``x`` (B, C_x, H, W) with ``y`` (B, C_y, h, w); returns (B, C_out, H, W)."""
        x = self.conv_x(x)  # (B, C_y, H, W)
        if self.resize_mode == "nearest":
            y = F.interpolate(y, size=x.shape[-2:], mode="nearest")
        else:
            y = F.interpolate(y, size=x.shape[-2:], mode=self.resize_mode, align_corners=False)  # (B, C_y, H, W)
        a = torch.cat(spatial_stats(x, self.stats) + spatial_stats(y, self.stats), dim=1)  # (B, 2·|stats|, H, W)
        alpha = torch.sigmoid(self.attention(a))  # (B, 1, H, W)
        return self.conv_out(x * alpha + y * (1 - alpha))  # (B, C_out, H, W)
