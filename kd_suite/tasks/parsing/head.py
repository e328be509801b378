"""Segmentation head: ConvBNReLU 3×3 → dropout → 1×1 classifier (PP-LiteSeg ``SegHead``; PSPNet head)."""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import ConvBN


class SegHead(nn.Module):
    """``Conv1x1(ConvBNReLU3x3(x))``: per-pixel class logits at the input's resolution (no upsampling).

    Args:
        c_in: input channels.
        c_mid: channels of the 3×3 ConvBNReLU.
        num_classes: output channels.
        dropout: Dropout2d probability before the classifier (0 disables it, as in PP-LiteSeg; PSPNet uses 0.1).
    """

    def __init__(self, c_in: int, c_mid: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = ConvBN(c_in, c_mid, kernel_size=3)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.cls = nn.Conv2d(c_mid, num_classes, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.cls(self.drop(self.conv(x)))  # (B, C_in, h, w) → (B, num_classes, h, w)
