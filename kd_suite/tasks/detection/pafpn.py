"""PAFPN neck of YOLOX: a top-down FPN pass followed by a bottom-up PAN pass over dark3–dark5.

Reference: Liu et al., "Path Aggregation Network" (CVPR 2018) as used by YOLOX; layout confirmed against
Megvii-BaseDetection/YOLOX@6ddff48 ``yolox/models/yolo_pafpn.py::YOLOPAFPN`` (reimplemented, backbone kept apart).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import stage_channels
from .blocks import BaseConv, CSPLayer, conv_block


class PAFPN(nn.Module):
    """YOLOX PAFPN; its outputs have the same channels as its inputs (``[256, 512, 1024] · width``).

    Args:
        depth: depth multiplier; each CSP layer has ``round(3 · depth)`` bottlenecks.
        width: width multiplier.
        depthwise: depthwise-separable 3×3 down-sampling convolutions.

    Shape:
        forward: [P3 (B, c3, H/8, W/8), P4 (B, c4, H/16, W/16), P5 (B, c5, H/32, W/32)] → same shapes.
    """

    def __init__(self, depth: float = 1.0, width: float = 1.0, depthwise: bool = False) -> None:
        super().__init__()
        c3, c4, c5 = stage_channels(width)
        n = round(3 * depth)
        Conv = conv_block(depthwise)
        self.lateral_conv0 = BaseConv(c5, c4, 1)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, shortcut=False, depthwise=depthwise)
        self.reduce_conv1 = BaseConv(c4, c3, 1)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, shortcut=False, depthwise=depthwise)
        self.bu_conv2 = Conv(c3, c3, 3, 2)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, shortcut=False, depthwise=depthwise)
        self.bu_conv1 = Conv(c4, c4, 3, 2)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, shortcut=False, depthwise=depthwise)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        x3, x4, x5 = features
        top5 = self.lateral_conv0(x5)  # (B, c4, H/32, W/32)
        p4 = self.C3_p4(torch.cat([_up2(top5), x4], dim=1))  # (B, c4, H/16, W/16)
        top4 = self.reduce_conv1(p4)  # (B, c3, H/16, W/16)
        out3 = self.C3_p3(torch.cat([_up2(top4), x3], dim=1))  # (B, c3, H/8, W/8)
        out4 = self.C3_n3(torch.cat([self.bu_conv2(out3), top4], dim=1))  # (B, c4, H/16, W/16)
        out5 = self.C3_n4(torch.cat([self.bu_conv1(out4), top5], dim=1))  # (B, c5, H/32, W/32)
        return [out3, out4, out5]


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
