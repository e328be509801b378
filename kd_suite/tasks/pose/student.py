"""RegressionPoseNet: the lightweight regression student (DistilPose-S layout, CAU stem, shallower transformer).

Reading of the PRL 2024 student (Wei & Hu; 4.3 M params, 2.2 GFLOPs at 256×192) [INFERRED, docs/methods.md §4.2]:
DistilPose-S (Ye et al., CVPR 2023; 5.4 M params, 12 layers) with the stem's Bottlenecks replaced by CAUs and fewer
transformer layers, the attention loss L_A standing in for the removed depth. Our default (CAU stem, depth 5) gives
2.67 M params and 2.14 GFLOPs at 256×192 (14 joints) under the suite's convention: FLOPs = 2 × multiply-accumulates
counted by ``torch.utils.flop_counter`` **including the attention matmuls**, which DistilPose's mmcv counter ignored.
For scale, ``block="bottleneck", depth=12`` (DistilPose-S) measures 5.36 M params and 5.37 GFLOPs here, against the
2.38 "GFLOPs" (really GMACs, attention excluded) its paper reports.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from ...outputs import PoseOutput, TapInfo, declare_taps
from .cau import StemNet
from .token_head import TokenRegressionHead


class RegressionPoseNet(nn.Module):
    """Stem (CAU or Bottleneck) at stride 4 → visual tokens + K keypoint tokens → transformer → coords/score/σ.

    Output (:class:`PoseOutput`): ``coords`` (B, K, 2) normalised (x, y) in (0, 1); ``scores`` (B, K) confidence
    logits; ``sigmas`` (B, K, 2) normalised spread, ``softplus(·) / (w_f, h_f)`` with (h_f, w_f) the stride-4 feature
    size, i.e. DistilPose's σ in stride-4 heatmap pixels; ``attentions`` one (B, heads, K, P) keypoint → visual
    block per layer; ``features`` = [stem output (B, C, H/4, W/4)].

    Args:
        num_joints: K.
        input_size: (H, W) crop size the model is built for (the token grid and position embedding depend on it).
        stem_channels: channels of the two strided stem convolutions.
        stage_channels: channels of the stride-4 feature map fed to the patch embedding.
        num_blocks: CAU / Bottleneck units in the stem stage.
        block: ``"cau"`` or ``"bottleneck"``.
        groups: CAU group count.
        reduction: CAU SE reduction.
        patch_size: (p_h, p_w) feature-map patch per visual token.
        dim: token width.
        depth: transformer layers.
        heads: attention heads.
        mlp_ratio: MLP width / dim.
    """

    def __init__(
        self,
        num_joints: int = 17,
        input_size: tuple[int, int] = (256, 192),
        stem_channels: int = 64,
        stage_channels: int = 256,
        num_blocks: int = 4,
        block: Literal["cau", "bottleneck"] = "cau",
        groups: int = 4,
        reduction: int = 4,
        patch_size: tuple[int, int] = (4, 3),
        dim: int = 192,
        depth: int = 5,
        heads: int = 8,
        mlp_ratio: float = 3.0,
    ) -> None:
        super().__init__()
        h, w = input_size
        if h % 4 or w % 4:
            raise ValueError(f"RegressionPoseNet: input_size {h}×{w} must be divisible by the stem stride 4")
        self.stem = StemNet(stem_channels, stage_channels, num_blocks, block, groups, reduction)
        self.feature_size = (h // 4, w // 4)
        self.head = TokenRegressionHead(
            stage_channels, self.feature_size, tuple(patch_size), num_joints, dim, depth, heads, mlp_ratio
        )
        self.num_joints, self.input_size, self.grid = num_joints, (h, w), self.head.grid
        self.tap_info = declare_taps(
            PoseOutput,
            coords=TapInfo(num_joints, 0),
            scores=TapInfo(num_joints, 0),
            sigmas=TapInfo(num_joints, 0),
            features=[TapInfo(stage_channels, 4)],
            attentions=[TapInfo(heads, 0)] * depth,
        )

    def forward(self, image: Tensor) -> PoseOutput:
        """(B, 3, H, W) → :class:`PoseOutput` with coords, scores, sigmas, attentions and the stem feature."""
        feature = self.stem(image)  # (B, C, H/4, W/4)
        coords, scores, spread, attentions = self.head(feature)
        fh, fw = self.feature_size
        sigmas = spread / spread.new_tensor([fw, fh])  # (B, K, 2) normalised
        return PoseOutput(features=[feature], coords=coords, scores=scores, sigmas=sigmas, attentions=attentions)
