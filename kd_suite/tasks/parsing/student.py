"""ParsingNet: the lightweight student parser of Lang et al. (ResNet18 + simplified pyramid + LSFA fusion).

Lang et al., "Class relationship-based knowledge distillation for efficient human parsing", Electronics Letters 2023
(DOI 10.1049/ell2.12900). Only the abstract is available ("ResNet18 as a core network … simplified the pyramid
module … spatial attention fusion strategy"); the decoder below is reconstructed as PP-LiteSeg's (Peng et al. 2022):
SPPM context on the 1/32 level, then UAFM_SpAtten fusions at 1/32, 1/16 and 1/8 (docs/methods.md §1.3).
"""

from __future__ import annotations

from torch import Tensor, nn

from ...models.backbone import Backbone
from ...outputs import ParsingOutput, TapInfo, declare_taps
from .head import SegHead
from .lsfa import LSFA
from .sppm import SPPM


class ParsingNet(nn.Module):
    """ResNet18-style backbone + SPPM + three LSFA fusions + segmentation head (+ two auxiliary heads in training).

    ``ctx = SPPM(C5)``; ``f32 = LSFA(C5, ctx)``; ``f16 = LSFA(C4, f32)``; ``f8 = LSFA(C3, f16)``; ``logits =
    SegHead(f8)`` at 1/8. In training, auxiliary heads on ``f16`` and ``f32`` give ``aux_logits`` (deep supervision);
    they are not run at eval.

    Args:
        backbone: timm model name; its last three feature levels (strides 8, 16, 32 for ResNets) feed the decoder.
        num_classes: parsing classes (20 for LIP).
        pretrained: passed through to timm.
        context_channels: SPPM branch and output channels (128).
        fusion_channels: LSFA output channels at 1/8, 1/16, 1/32 (PP-LiteSeg ``arm_out_chs`` = 64, 96, 128).
        head_channels: mid channels of every SegHead (64).
        bins: SPPM pooling sizes.
        spatial_stats: LSFA attention statistics (``("mean", "max")`` = UAFM_SpAtten, ``("mean",)`` = _S variant).
        separable: depthwise-separable LSFA convs (UAFMMobile_SpAtten).
        aux_heads: build the deep-supervision heads on the 1/16 and 1/32 fusions.
        resize_mode: interpolation in SPPM and LSFA.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        num_classes: int = 20,
        pretrained: bool = False,
        context_channels: int = 128,
        fusion_channels: tuple[int, int, int] = (64, 96, 128),
        head_channels: int = 64,
        bins: tuple[int, ...] = (1, 2, 4),
        spatial_stats: tuple[str, ...] = ("mean", "max"),
        separable: bool = False,
        aux_heads: bool = True,
        resize_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        if len(fusion_channels) != 3:
            raise ValueError(f"ParsingNet: fusion_channels needs 3 values (1/8, 1/16, 1/32), got {fusion_channels}")
        self.backbone = Backbone(backbone, pretrained=pretrained)
        if len(self.backbone.channels) < 3:
            raise ValueError(f"ParsingNet: backbone {backbone!r} exposes {len(self.backbone.channels)} levels, needs 3")
        c3, c4, c5 = self.backbone.channels[-3:]
        s3, s4, s5 = self.backbone.strides[-3:]
        if not s3 < s4 < s5:
            raise ValueError(
                f"ParsingNet: the last three levels of {backbone!r} have strides {[s3, s4, s5]}; the LSFA decoder "
                "needs increasing strides (e.g. 8, 16, 32), so pick a hierarchical backbone (ResNet, ConvNeXt...)"
            )
        f8, f16, f32 = fusion_channels
        self.context = SPPM(c5, context_channels, context_channels, bins, resize_mode)
        self.fuse32 = LSFA(c5, context_channels, f32, spatial_stats, separable, resize_mode)
        self.fuse16 = LSFA(c4, f32, f16, spatial_stats, separable, resize_mode)
        self.fuse8 = LSFA(c3, f16, f8, spatial_stats, separable, resize_mode)
        self.head = SegHead(f8, head_channels, num_classes)
        self.aux_heads = (
            nn.ModuleList([SegHead(f16, head_channels, num_classes), SegHead(f32, head_channels, num_classes)])
            if aux_heads
            else nn.ModuleList()
        )
        self.num_classes = num_classes
        self.tap_info = declare_taps(
            ParsingOutput,
            logits=TapInfo(num_classes, s3),
            embedding=TapInfo(f8, s3),
            features=self.backbone.level_taps(),
            aux_logits=[TapInfo(num_classes, s4), TapInfo(num_classes, s5)] if aux_heads else [],
        )

    def forward(self, image: Tensor) -> ParsingOutput:
        """(B, 3, H, W) → :class:`ParsingOutput` with logits at the stride of the third-to-last backbone level."""
        features = self.backbone(image)
        x3, x4, x5 = features[-3:]
        f32 = self.fuse32(x5, self.context(x5))  # (B, f32, H/32, W/32)
        f16 = self.fuse16(x4, f32)  # (B, f16, H/16, W/16)
        f8 = self.fuse8(x3, f16)  # (B, f8, H/8, W/8)
        logits = self.head(f8)  # (B, K, H/8, W/8)
        aux = [h(f) for h, f in zip(self.aux_heads, (f16, f32))] if self.training else []
        return ParsingOutput(features=features, logits=logits, aux_logits=aux, embedding=f8)
