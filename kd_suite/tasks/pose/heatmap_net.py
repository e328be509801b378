"""HeatmapNet: the top-down heatmap teacher (timm backbone + SimpleBaseline deconvolution head).

Head as in SimpleBaseline (Xiao et al., "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018):
three 4×4 stride-2 transposed convolutions, each followed by BN + ReLU, then a 1×1 convolution to K heatmaps, so a
stride-32 backbone gives stride-4 heatmaps (64×48 for a 256×192 crop). Weight init follows the paper's code (normal,
std 0.001, for the deconvolutions and the final layer).
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ...models.backbone import Backbone
from ...outputs import PoseOutput, TapInfo, declare_taps
from .codec import DECODERS, check_blur_kernel, confidence_logit, decode_heatmaps


def deconv_layers(c_in: int, channels: int, num: int) -> nn.ModuleList:
    """``num`` × (ConvTranspose 4×4 s2 p1 → BN → ReLU), each doubling the resolution."""
    layers = nn.ModuleList()
    for i in range(num):
        deconv = nn.ConvTranspose2d(c_in if i == 0 else channels, channels, 4, stride=2, padding=1, bias=False)
        nn.init.normal_(deconv.weight, std=0.001)
        layers.append(nn.Sequential(deconv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)))
    return layers


class HeatmapNet(nn.Module):
    """Backbone → deconvolution head → K heatmaps; decodes sub-pixel coordinates in eval mode.

    Output (:class:`PoseOutput`): ``heatmaps`` (B, K, h, w) always; in eval mode also ``coords`` (B, K, 2)
    normalised (x, y) decoded with ``decode`` and ``scores`` = logit of the clamped heatmap peak; in train mode with
    ``aux_heads > 0``, ``aux_heatmaps`` from the intermediate deconvolution stages (shallow first), bilinearly
    resized to the final heatmap size; ``features`` = the backbone pyramid.

    Args:
        backbone: timm model name (``resnet50`` as in SimpleBaseline, ``resnet18``, ``test_resnet``...).
        num_joints: K heatmaps (16 MPII, 14 CrowdPose, 17 COCO).
        pretrained: passed through to timm.
        deconv_channels: channels of every deconvolution stage (256 in SimpleBaseline).
        num_deconv: number of stride-2 deconvolution stages (3 in SimpleBaseline).
        decode: ``"dark"`` (default), ``"argmax"`` or ``"soft_argmax"`` (see :mod:`.codec`).
        blur_kernel: DARK modulation kernel size; ``None`` (default) follows the heatmap size (11 for 64×48 maps as
            in mmpose, 3 for 16×16, see :func:`.codec.dark_kernel`); 1 disables the blur.
        aux_heads: number of intermediate deconvolution stages that get their own 1×1 heatmap head (deep
            supervision; the guides of self-distillation). At most ``num_deconv - 1``.
        output_stride: dilate the backbone to this stride (timm ``output_stride``, 8/16/32); with ``num_deconv``
            lowered to match it keeps the deepest features spatially rich on small crops (e.g. 8 and one deconv
            stage at 64×64 input instead of a 2×2 bottleneck).
    """

    #: The teacher fast path traces it into frozen TorchScript on CPU (measured faster; ``FastPathOptions.trace``).
    frozen_trace = True

    def __init__(
        self,
        backbone: str = "resnet50",
        num_joints: int = 17,
        pretrained: bool = False,
        deconv_channels: int = 256,
        num_deconv: int = 3,
        decode: Literal["dark", "argmax", "soft_argmax"] = "dark",
        blur_kernel: int | None = None,
        aux_heads: int = 0,
        output_stride: int | None = None,
    ) -> None:
        super().__init__()
        check_blur_kernel(blur_kernel, "HeatmapNet")
        if decode not in DECODERS:
            raise ValueError(f"HeatmapNet: decode must be one of {DECODERS}, got {decode!r}")
        if not 0 <= aux_heads < max(num_deconv, 1):
            raise ValueError(f"HeatmapNet: aux_heads={aux_heads} must be in [0, num_deconv-1={num_deconv - 1}]")
        self.backbone = Backbone(backbone, pretrained=pretrained, output_stride=output_stride)
        top_stride = self.backbone.strides[-1]
        if top_stride % (2**num_deconv):
            raise ValueError(f"HeatmapNet: backbone stride {top_stride} is not divisible by 2**num_deconv")
        self.deconv = deconv_layers(self.backbone.channels[-1], deconv_channels, num_deconv)
        c_head = deconv_channels if num_deconv else self.backbone.channels[-1]
        self.final = nn.Conv2d(c_head, num_joints, 1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)
        self.aux = nn.ModuleList(nn.Conv2d(deconv_channels, num_joints, 1) for _ in range(aux_heads))
        self.num_joints, self.decode, self.blur_kernel = num_joints, decode, blur_kernel
        self.stride = top_stride // 2**num_deconv
        self.tap_info = declare_taps(
            PoseOutput,
            heatmaps=TapInfo(num_joints, self.stride),
            coords=TapInfo(num_joints, 0),
            scores=TapInfo(num_joints, 0),
            features=self.backbone.level_taps(),
            aux_heatmaps=[TapInfo(num_joints, self.stride)] * aux_heads,
        )

    def _run(self, image: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Backbone pyramid, deconvolution stage outputs and the (B, K, h, w) heatmaps of ``image``."""
        features = self.backbone(image)
        x = features[-1]
        stages = []
        for layer in self.deconv:
            x = layer(x)  # (B, C, 2h, 2w)
            stages.append(x)
        return features, stages, self.final(x)  # ..., (B, K, h, w)

    def forward_heatmaps(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, K, h, w) heatmaps only: no eval-mode decode (what ``kd-suite export`` runs)."""
        return self._run(image)[2]

    def forward(self, image: Tensor) -> PoseOutput:
        """(B, 3, H, W) → :class:`PoseOutput` (heatmaps at ``self.stride``)."""
        features, stages, heatmaps = self._run(image)
        out = PoseOutput(features=features, heatmaps=heatmaps)
        if self.training and len(self.aux):
            first = len(stages) - 1 - len(self.aux)  # the aux heads read the stages just before the last one
            size = heatmaps.shape[-2:]
            out.aux_heatmaps = [
                F.interpolate(head(stages[first + i]), size=size, mode="bilinear", align_corners=False)
                for i, head in enumerate(self.aux)
            ]
        if not self.training:
            out.coords, out.scores = heatmaps_to_coords(heatmaps, self.decode, self.blur_kernel)
        return out


def heatmaps_to_coords(heatmaps: Tensor, method: str = "dark", blur_kernel: int | None = None) -> tuple[Tensor, Tensor]:
    """Decode (B, K, h, w) heatmaps to normalised (B, K, 2) coordinates and (B, K) confidence logits.

    The input is ``stride`` times the heatmap, so ``x_norm = x_hm · stride / W_in = x_hm / w``.
    """
    h, w = heatmaps.shape[-2:]
    coords, maxvals = decode_heatmaps(heatmaps.detach().float(), method, blur_kernel)  # (B, K, 2) heatmap px
    coords = coords / coords.new_tensor([w, h])  # (B, K, 2) normalised
    return coords, confidence_logit(maxvals)
