"""PSPParsingNet: the teacher parser (dilated ResNet + PSP context, optional CE2P-style low-level decoder).

The context head follows PSPNet (Zhao et al., CVPR 2017) in the CE2P/SCHP form (Liu et al., "Devil in the Details:
Towards Accurate Single and Multiple Human Parsing", AAAI 2019; SCHP ``networks/AugmentCE2P.py``): PSP bins 1, 2, 3, 6,
concatenated with the input, 3×3 conv to 512. The optional decoder fuses the PSP output with a 48-channel projection
of a low-level backbone level, as CE2P's ``Decoder_Module`` does (confirmed from SCHP). The edge branch and fusion
head of CE2P are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...models.backbone import Backbone
from ...outputs import ParsingOutput, TapInfo, declare_taps
from .blocks import ConvBN
from .head import SegHead
from .sppm import PSPModule


class PSPParsingNet(nn.Module):
    """Dilated backbone → PSP → (optional low-level decoder) → SegHead; aux head on the second-to-last level.

    Args:
        backbone: timm model name (``resnet50``, ``resnet101``, ``test_resnet``...).
        num_classes: parsing classes (20 for LIP).
        pretrained: passed through to timm.
        output_stride: stride of the last backbone level after dilation (8 as in PSPNet; 16 as in CE2P; None = 32).
        psp_channels: PSP branch and output channels (512 in CE2P/SCHP).
        bins: PSP pooling sizes.
        decoder_level: index of a backbone level to fuse as a low-level skip (1 = the stride-4 level of a ResNet);
            ``None`` puts the head directly on the PSP output. With a skip, logits are at that level's stride.
        decoder_channels: channels of the decoder output (256 in CE2P).
        skip_channels: channels of the low-level projection (48 in CE2P).
        head_channels: mid channels of the SegHead(s).
        dropout: dropout before the classifiers (0.1 as in PSPNet).
        aux_head: deep-supervision head on the second-to-last backbone level (training only).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 20,
        pretrained: bool = False,
        output_stride: int | None = 8,
        psp_channels: int = 512,
        bins: tuple[int, ...] = (1, 2, 3, 6),
        decoder_level: int | None = None,
        decoder_channels: int = 256,
        skip_channels: int = 48,
        head_channels: int = 256,
        dropout: float = 0.1,
        aux_head: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, pretrained=pretrained, output_stride=output_stride)
        channels, strides = self.backbone.channels, self.backbone.strides
        if len(channels) < 2:
            raise ValueError(f"PSPParsingNet: backbone {backbone!r} exposes {len(channels)} level(s), needs 2")
        self.psp = PSPModule(channels[-1], psp_channels, psp_channels, bins)
        self.decoder_level = decoder_level
        if decoder_level is not None:
            if not -len(channels) <= decoder_level < len(channels) - 1:
                raise ValueError(
                    f"PSPParsingNet: decoder_level={decoder_level} is not a level below the last one of {backbone!r} "
                    f"(it has {len(channels)} levels with strides {strides})"
                )
            self.skip = ConvBN(channels[decoder_level], skip_channels, kernel_size=1)
            self.decoder = nn.Sequential(
                ConvBN(psp_channels + skip_channels, decoder_channels, kernel_size=3),
                ConvBN(decoder_channels, decoder_channels, kernel_size=3),
            )
            embed_channels, embed_stride = decoder_channels, strides[decoder_level]
        else:
            embed_channels, embed_stride = psp_channels, strides[-1]
        self.head = SegHead(embed_channels, head_channels, num_classes, dropout)
        self.aux = SegHead(channels[-2], head_channels, num_classes, dropout) if aux_head else None
        self.num_classes = num_classes
        self.tap_info = declare_taps(
            ParsingOutput,
            logits=TapInfo(num_classes, embed_stride),
            embedding=TapInfo(embed_channels, embed_stride),
            features=self.backbone.level_taps(),
            aux_logits=[TapInfo(num_classes, strides[-2])] if aux_head else [],
        )

    def forward(self, image: Tensor) -> ParsingOutput:
        """(B, 3, H, W) → :class:`ParsingOutput` with logits at the embedding stride (not upsampled)."""
        features = self.backbone(image)
        x = self.psp(features[-1])  # (B, psp, H/os, W/os)
        if self.decoder_level is not None:
            low = self.skip(features[self.decoder_level])  # (B, skip, H/s, W/s)
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder(torch.cat([x, low], dim=1))  # (B, dec, H/s, W/s)
        logits = self.head(x)  # (B, K, h, w)
        aux = [self.aux(features[-2])] if self.training and self.aux is not None else []
        return ParsingOutput(features=features, logits=logits, aux_logits=aux, embedding=x)
