"""Convolution blocks shared by the parsing decoders (conv → BatchNorm → optional ReLU)."""

from __future__ import annotations

from torch import nn


class ConvBN(nn.Sequential):
    """``k×k`` convolution (no bias, "same" padding) followed by BatchNorm, with an optional ReLU.

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel_size: odd kernel size.
        act: append a ReLU (ConvBNReLU) when True.
        dilation: convolution dilation (padding follows it).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, act: bool = True, dilation: int = 1) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvBN: kernel_size must be odd to keep the resolution, got {kernel_size}")
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise ``k×k`` conv + BN, then pointwise 1×1 conv + BN + ReLU (PaddleSeg ``SeparableConvBNReLU``).

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel_size: odd depthwise kernel size.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_in, kernel_size, padding=kernel_size // 2, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in),
            ConvBN(c_in, c_out, kernel_size=1, act=True),
        )


def conv_bn_relu(c_in: int, c_out: int, kernel_size: int = 3, separable: bool = False) -> nn.Module:
    """A ConvBNReLU, or its depthwise-separable form when ``separable``."""
    if separable:
        return SeparableConvBNReLU(c_in, c_out, kernel_size)
    return ConvBN(c_in, c_out, kernel_size, act=True)
