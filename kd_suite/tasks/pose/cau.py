"""Channel-Attention-Unit (CAU) and the stem blocks of the regression student.

The PRL 2024 paper (Wei & Hu, "A lightweight attention-driven distillation model for human pose estimation") only
says CAU combines group convolution with attention to cut redundancy; no code is public. The block below is our
reconstruction [RECON, docs/methods.md §4.4], a drop-in replacement for the Bottlenecks of DistilPose-S's ``StemNet``:

    y = GConv1×1(C_in→C_mid, g) → BN → ReLU → ChannelShuffle(g) → DWConv3×3(C_mid) → BN → GConv1×1(C_mid→C_out, g) → BN
    a = sigmoid(Conv1×1(ReLU(Conv1×1(GAP(y)))))          (squeeze-excitation, reduction r)
    out = ReLU(y ∘ a + shortcut(x))                      shortcut = identity, or 1×1 conv + BN when C_in ≠ C_out

with ``C_mid = C_out / 4``. The ResNet :class:`Bottleneck` (confirmed: DistilPose ``stemnet.py``) is kept for the
``block="bottleneck"`` ablation (the DistilPose-S stem).
"""

from __future__ import annotations

from torch import Tensor, nn


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out))


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle: (B, g·c, H, W) → interleave the g groups (Zhang et al., CVPR 2018)."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class SqueezeExcite(nn.Module):
    """Channel attention ``x ∘ sigmoid(W2 ReLU(W1 GAP(x)))`` (Hu et al., SENet, CVPR 2018)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        a = self.fc2(self.fc1(a).relu()).sigmoid()
        return x * a


class CAU(nn.Module):
    """Channel-Attention-Unit [RECON]: group 1×1 → shuffle → depthwise 3×3 → group 1×1 → SE, residual.

    Args:
        c_in: input channels.
        c_out: output channels.
        groups: groups of the two 1×1 convolutions (and of the shuffle); must divide C_in, C_mid and C_out.
        reduction: SE reduction ratio.
        expansion: ``C_mid = C_out / expansion`` (4, as in a Bottleneck).
    """

    def __init__(self, c_in: int, c_out: int, groups: int = 4, reduction: int = 4, expansion: int = 4) -> None:
        super().__init__()
        c_mid = c_out // expansion
        for name, c in (("c_in", c_in), ("c_mid", c_mid), ("c_out", c_out)):
            if c % groups:
                raise ValueError(f"CAU: {name}={c} is not divisible by groups={groups}")
        self.groups = groups
        self.reduce = nn.Sequential(conv_bn(c_in, c_mid, 1, groups=groups), nn.ReLU(inplace=True))
        self.dw = conv_bn(c_mid, c_mid, 3, groups=c_mid)
        self.expand = conv_bn(c_mid, c_out, 1, groups=groups)
        self.attn = SqueezeExcite(c_out, reduction)
        self.shortcut = nn.Identity() if c_in == c_out else conv_bn(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = channel_shuffle(self.reduce(x), self.groups)  # (B, C_mid, H, W)
        y = self.expand(self.dw(y))  # (B, C_out, H, W)
        return (self.attn(y) + self.shortcut(x)).relu()


class Bottleneck(nn.Module):
    """ResNet bottleneck 1×1 → 3×3 → 1×1 (×4 expansion) with residual, as in DistilPose's ``StemNet.layer1``."""

    def __init__(self, c_in: int, c_out: int, expansion: int = 4) -> None:
        super().__init__()
        c_mid = c_out // expansion
        self.body = nn.Sequential(
            conv_bn(c_in, c_mid, 1),
            nn.ReLU(inplace=True),
            conv_bn(c_mid, c_mid, 3),
            nn.ReLU(inplace=True),
            conv_bn(c_mid, c_out, 1),
        )
        self.shortcut = nn.Identity() if c_in == c_out else conv_bn(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return (self.body(x) + self.shortcut(x)).relu()


class StemNet(nn.Module):
    """DistilPose-S style stem: two 3×3 stride-2 convs (3→C_s→C_s) then ``num_blocks`` units to ``C_out`` at 1/4.

    Args:
        stem_channels: channels of the two strided convolutions (64 in DistilPose-S).
        out_channels: channels after the block stage (256 in DistilPose-S).
        num_blocks: units in the stage (4 in DistilPose-S).
        block: ``"cau"`` (reconstructed PRL student) or ``"bottleneck"`` (DistilPose-S).
        groups: CAU group count.
        reduction: CAU SE reduction.
    """

    def __init__(
        self,
        stem_channels: int = 64,
        out_channels: int = 256,
        num_blocks: int = 4,
        block: str = "cau",
        groups: int = 4,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        if block not in ("cau", "bottleneck"):
            raise ValueError(f"StemNet: block must be 'cau' or 'bottleneck', got {block!r}")
        self.stem = nn.Sequential(
            conv_bn(3, stem_channels, 3, stride=2),
            nn.ReLU(inplace=True),
            conv_bn(stem_channels, stem_channels, 3, stride=2),
            nn.ReLU(inplace=True),
        )
        units = []
        for i in range(num_blocks):
            c_in = stem_channels if i == 0 else out_channels
            units.append(
                CAU(c_in, out_channels, groups, reduction) if block == "cau" else Bottleneck(c_in, out_channels)
            )
        self.stage = nn.Sequential(*units)
        self.out_channels, self.stride = out_channels, 4

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, C_out, H/4, W/4)."""
        return self.stage(self.stem(x))
