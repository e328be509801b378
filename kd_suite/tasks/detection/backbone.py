"""CSPDarknet, the YOLOX backbone: Focus stem, four CSP stages, SPP in the last one.

Reference: Ge et al., "YOLOX" (arXiv 2107.08430); layout confirmed against Megvii-BaseDetection/YOLOX@6ddff48
``yolox/models/darknet.py::CSPDarknet`` (reimplemented). Stage ``darkK`` has stride ``2**K``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import CSPLayer, Focus, SPPBottleneck, conv_block


def stage_channels(width: float) -> list[int]:
    """Channels of dark3, dark4, dark5 for a width multiplier: ``int([256, 512, 1024] · width)``."""
    return [int(c * width) for c in (256, 512, 1024)]


class CSPDarknet(nn.Module):
    """CSPDarknet-53 scaled by ``depth`` (bottlenecks per CSP layer) and ``width`` (channels).

    Args:
        depth: depth multiplier (YOLOX-S 0.33, L 1.0).
        width: width multiplier (YOLOX-S 0.5, L 1.0).
        depthwise: depthwise-separable 3×3 convolutions (YOLOX-Nano).

    Shape:
        forward: (B, 3, H, W) → [dark3 (B, 256w, H/8, W/8), dark4 (B, 512w, H/16, W/16), dark5 (B, 1024w, H/32, W/32)]
    """

    def __init__(self, depth: float = 1.0, width: float = 1.0, depthwise: bool = False) -> None:
        super().__init__()
        Conv = conv_block(depthwise)
        c = int(width * 64)
        n = max(round(depth * 3), 1)
        self.stem = Focus(3, c, kernel=3)
        self.dark2 = nn.Sequential(Conv(c, 2 * c, 3, 2), CSPLayer(2 * c, 2 * c, n, depthwise=depthwise))
        self.dark3 = nn.Sequential(Conv(2 * c, 4 * c, 3, 2), CSPLayer(4 * c, 4 * c, 3 * n, depthwise=depthwise))
        self.dark4 = nn.Sequential(Conv(4 * c, 8 * c, 3, 2), CSPLayer(8 * c, 8 * c, 3 * n, depthwise=depthwise))
        self.dark5 = nn.Sequential(
            Conv(8 * c, 16 * c, 3, 2),
            SPPBottleneck(16 * c, 16 * c),
            CSPLayer(16 * c, 16 * c, n, shortcut=False, depthwise=depthwise),
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.dark2(self.stem(x))  # (B, 128w, H/4, W/4)
        c3 = self.dark3(x)  # (B, 256w, H/8, W/8)
        c4 = self.dark4(c3)  # (B, 512w, H/16, W/16)
        c5 = self.dark5(c4)  # (B, 1024w, H/32, W/32)
        return [c3, c4, c5]
