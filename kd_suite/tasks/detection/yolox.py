"""YOLOX detector (CSPDarknet + PAFPN + decoupled head) and its official size presets.

Reference: Ge et al., "YOLOX: Exceeding YOLO Series in 2021" (arXiv 2107.08430). Multipliers confirmed against
Megvii-BaseDetection/YOLOX@6ddff48 ``exps/default/*.py``; parameter counts (80 classes) reproduce the official
README table within 1 % (tested).

Distillation taps: ``neck.i`` are the outputs of ``head.stems[i]`` (``256·width`` channels, strides 8/16/32). They
are the tensors mmdet's YOLOX calls ``neck.out_convs[i]`` (a 1×1 conv after the PAFPN with ``out_channels = 256·width``
in mmdet's split of the same network), which FGD/FSD hook; ``features.i`` are the backbone stages dark3–dark5.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from ...outputs import DetectionOutput, TapInfo, declare_taps, restrict_output
from .backbone import CSPDarknet, stage_channels
from .head import DecoupledHead
from .pafpn import PAFPN

#: variant → (depth, width, depthwise), from the official exps.
PRESETS: dict[str, tuple[float, float, bool]] = {
    "nano": (0.33, 0.25, True),
    "tiny": (0.33, 0.375, False),
    "s": (0.33, 0.50, False),
    "m": (0.67, 0.75, False),
    "l": (1.0, 1.0, False),
    "x": (1.33, 1.25, False),
}

STRIDES = (8, 16, 32)


class YOLOX(nn.Module):
    """Anchor-free one-stage detector returning a :class:`~kd_suite.outputs.DetectionOutput`.

    Args:
        num_classes: number of object classes (80 COCO, 20 VOC, 2 fall).
        variant: size preset: nano, tiny, s, m, l or x.
        depth: overrides the preset's depth multiplier (custom sizes, e.g. tiny CPU test models).
        width: overrides the preset's width multiplier.
        depthwise: overrides the preset's depthwise flag.

    Shape:
        forward: (B, 3, H, W) with H, W multiples of 32 → DetectionOutput with ``neck``/``cls``/``reg``/``obj`` per
        stride 8/16/32 and ``features`` = dark3–dark5.
    """

    def __init__(
        self,
        num_classes: int = 80,
        variant: Literal["nano", "tiny", "s", "m", "l", "x"] = "s",
        depth: float | None = None,
        width: float | None = None,
        depthwise: bool | None = None,
    ) -> None:
        super().__init__()
        if variant not in PRESETS:
            raise ValueError(f"YOLOX variant {variant!r} is unknown; choose one of {sorted(PRESETS)}")
        if num_classes < 1:
            raise ValueError(f"YOLOX num_classes must be >= 1, got {num_classes}")
        p_depth, p_width, p_dw = PRESETS[variant]
        depth = p_depth if depth is None else depth
        width = p_width if width is None else width
        depthwise = p_dw if depthwise is None else depthwise
        self.num_classes, self.strides = num_classes, STRIDES
        channels = stage_channels(width)
        hidden = int(256 * width)
        self.backbone = CSPDarknet(depth, width, depthwise)
        self.neck = PAFPN(depth, width, depthwise)
        self.head = DecoupledHead(num_classes, channels, hidden, depthwise)
        self.tap_info = declare_taps(
            DetectionOutput,
            features=[TapInfo(c, s) for c, s in zip(channels, STRIDES)],
            neck=[TapInfo(hidden, s) for s in STRIDES],
            cls=[TapInfo(num_classes, s) for s in STRIDES],
            reg=[TapInfo(4, s) for s in STRIDES],
            obj=[TapInfo(1, s) for s in STRIDES],
        )

    def forward(self, image: Tensor) -> DetectionOutput:
        if image.ndim != 4 or image.shape[-2] % 32 or image.shape[-1] % 32:
            raise ValueError(f"YOLOX expects (B, 3, H, W) with H and W multiples of 32, got {tuple(image.shape)}")
        features = self.backbone(image)  # [(B, 256w, H/8, W/8), (B, 512w, H/16, W/16), (B, 1024w, H/32, W/32)]
        stems, cls, reg, obj = self.head(self.neck(features))
        return DetectionOutput(features=features, neck=stems, cls=cls, reg=reg, obj=obj)

    def frozen_subset(self, fields: frozenset[str]) -> nn.Module | None:
        """A module computing only the output ``fields`` (the others are :class:`~kd_suite.outputs.NotComputed`),
        sharing this model's submodules; ``None`` when every tower is needed.

        ``features`` and ``neck`` cost nothing extra; ``cls`` needs the classification tower, ``reg``/``obj`` the
        regression tower (≈ 25 % of YOLOX-L's FLOPs together at 640²). Used by the teacher fast path on its private
        copy, for distillation terms that read only the neck (FSD, FGD, CWD on ``neck.i``).
        """
        towers = ("cls" in fields, bool({"reg", "obj"} & fields))
        return None if all(towers) else _YOLOXSubset(self, towers, fields)


class _YOLOXSubset(nn.Module):
    """YOLOX's forward restricted to some heads' towers (:meth:`YOLOX.frozen_subset`)."""

    def __init__(self, model: YOLOX, towers: tuple[bool, bool], fields: frozenset[str]) -> None:
        super().__init__()
        self.model, self.towers = model, towers
        self.fields = frozenset({"features", "neck"} | fields)

    def forward(self, image: Tensor) -> DetectionOutput:
        features = self.model.backbone(image)  # [(B, 256w, H/8, W/8), (B, 512w, H/16, W/16), (B, 1024w, H/32, W/32)]
        stems, cls, reg, obj = self.model.head(self.model.neck(features), towers=self.towers)
        output = DetectionOutput(features=features, neck=stems, cls=cls, reg=reg, obj=obj)
        return restrict_output(output, self.fields)
