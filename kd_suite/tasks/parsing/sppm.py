"""Pyramid pooling context modules: the simplified SPPM (student) and the traditional PSP module (teacher).

* SPPM: Peng et al., "PP-LiteSeg: A Superior Real-Time Semantic Segmentation Model", arXiv 2204.02681, 2022
  (PaddleSeg ``PPContextModule``). Bins 1, 2, 4, branches SUMMED, no identity branch. Confirmed from the PaddleSeg
  code; that the "simplified pyramid module" of Lang et al. (Electronics Letters 2023) is this module is a
  reconstruction (docs/methods.md §1.3).
* PSP: Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017, in the CE2P/SCHP form (bins 1, 2, 3, 6, branches
  concatenated with the input, then a 3×3 ConvBNReLU). Confirmed from SCHP ``networks/AugmentCE2P.py::PSPModule``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import ConvBN


class SPPM(nn.Module):
    """Simple pyramid pooling: ``ConvBNReLU3x3( Σ_s up(ConvBNReLU1x1(avgpool_s(x))) )``.

    Args:
        c_in: input channels (the coarsest backbone level).
        c_mid: channels of each pooled branch.
        c_out: output channels.
        bins: adaptive pooling grid sizes.
        resize_mode: interpolation used to bring each branch back to the input size.
    """

    def __init__(
        self, c_in: int, c_mid: int, c_out: int, bins: tuple[int, ...] = (1, 2, 4), resize_mode: str = "bilinear"
    ) -> None:
        super().__init__()
        if not bins:
            raise ValueError("SPPM: bins must name at least one pooling size")
        self.bins = tuple(bins)
        self.resize_mode = resize_mode
        self.branches = nn.ModuleList(ConvBN(c_in, c_mid, kernel_size=1) for _ in self.bins)
        self.out = ConvBN(c_mid, c_out, kernel_size=3)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        total = 0
        for s, branch in zip(self.bins, self.branches):
            b = branch(F.adaptive_avg_pool2d(x, s))  # (B, C_mid, s, s)
            total = total + _resize(b, size, self.resize_mode)  # (B, C_mid, H, W)
        return self.out(total)  # (B, C_out, H, W)


class PSPModule(nn.Module):
    """Pyramid pooling: ``ConvBNReLU3x3( cat[x, up(ConvBNReLU1x1(avgpool_s(x))) for s in bins] )``.

    Args:
        c_in: input channels.
        c_branch: channels of each pooled branch (512 in CE2P/SCHP).
        c_out: output channels (512 in CE2P/SCHP).
        bins: adaptive pooling grid sizes.
    """

    def __init__(self, c_in: int, c_branch: int, c_out: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.bins = tuple(bins)
        self.branches = nn.ModuleList(ConvBN(c_in, c_branch, kernel_size=1) for _ in self.bins)
        self.bottleneck = ConvBN(c_in + len(self.bins) * c_branch, c_out, kernel_size=3)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [_resize(b(F.adaptive_avg_pool2d(x, s)), size, "bilinear") for s, b in zip(self.bins, self.branches)]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))  # (B, C_in + n·C_branch, H, W) → (B, C_out, H, W)

    def frozen_form(self) -> nn.Module:
        """The same function without convolving the upsampled branches, for a frozen copy (teacher fast path)."""
        from .psp_frozen import FrozenPSP

        return FrozenPSP(self) if not self.training and FrozenPSP.supports(self) else self


def _resize(x: Tensor, size: torch.Size | tuple[int, int], mode: str) -> Tensor:
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)
