"""Convolution blocks of the YOLOX family: BaseConv, DWConv, Focus, SPP bottleneck and the CSP layer.

Reference: Ge et al., "YOLOX: Exceeding YOLO Series in 2021" (arXiv 2107.08430); block structure confirmed against
Megvii-BaseDetection/YOLOX@6ddff48 ``yolox/models/network_blocks.py`` (reimplemented, same parameter layout).
Every BatchNorm uses ``eps=1e-3, momentum=0.03`` and every activation is SiLU, as in the official ``init_yolo``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.03


class BaseConv(nn.Module):
    """Conv2d (no bias, "same" padding) → BatchNorm → SiLU.

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel: square kernel size (odd).
        stride: convolution stride.
        groups: convolution groups (``c_in`` for a depthwise convolution).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))  # (B, c_out, H/s, W/s)


class DWConv(nn.Module):
    """Depthwise ``kernel``×``kernel`` BaseConv followed by a pointwise 1×1 BaseConv (YOLOX-Nano)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.dconv = BaseConv(c_in, c_in, kernel, stride, groups=c_in)
        self.pconv = BaseConv(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pconv(self.dconv(x))


def conv_block(depthwise: bool) -> type[nn.Module]:
    """The 3×3 convolution type of a network: :class:`DWConv` for depthwise models, else :class:`BaseConv`."""
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Module):
    """1×1 BaseConv → 3×3 conv, with a residual connection when ``shortcut`` and the channels agree."""

    def __init__(
        self, c_in: int, c_out: int, shortcut: bool = True, expansion: float = 0.5, depthwise: bool = False
    ) -> None:
        super().__init__()
        hidden = int(c_out * expansion)
        self.conv1 = BaseConv(c_in, hidden, 1)
        self.conv2 = conv_block(depthwise)(hidden, c_out, 3)
        self.use_add = shortcut and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling (YOLOv3-SPP): 1×1 reduce, concat of max-pools 5/9/13 and identity, 1×1 fuse."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = c_in // 2
        self.conv1 = BaseConv(c_in, hidden, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernels)
        self.conv2 = BaseConv(hidden * (len(kernels) + 1), c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))  # (B, c_out, H, W)


class CSPLayer(nn.Module):
    """Cross-stage-partial layer (CSPNet): two 1×1 branches, ``n`` bottlenecks on one, concat, 1×1 fuse.

    Args:
        c_in: input channels.
        c_out: output channels.
        n: number of bottlenecks.
        shortcut: residual connections inside the bottlenecks.
        expansion: hidden channels = ``int(c_out * expansion)``.
        depthwise: depthwise 3×3 convolutions in the bottlenecks.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        n: int = 1,
        shortcut: bool = True,
        expansion: float = 0.5,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        hidden = int(c_out * expansion)
        self.conv1 = BaseConv(c_in, hidden, 1)
        self.conv2 = BaseConv(c_in, hidden, 1)
        self.conv3 = BaseConv(2 * hidden, c_out, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, 1.0, depthwise) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(torch.cat([self.m(self.conv1(x)), self.conv2(x)], dim=1))  # (B, c_out, H, W)


class Focus(nn.Module):
    """Space-to-depth stem: four pixel-phase sub-images stacked on channels (3 → 12), then a BaseConv.

    The phase order is (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col), as in the
    official code, so converted official weights would line up.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = BaseConv(4 * c_in, c_out, kernel, stride)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"Focus stem needs an even input height and width, got {tuple(x.shape[-2:])}")
        phases = [x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]]
        return self.conv(torch.cat(phases, dim=1))  # (B, c_out, H/2, W/2)
