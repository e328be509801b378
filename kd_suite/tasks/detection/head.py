"""Decoupled YOLOX head: a 1×1 stem per level, then separate classification and regression/objectness towers.

Reference: Ge et al., "YOLOX" (arXiv 2107.08430) §2.1 "Decoupled head"; layout confirmed against
Megvii-BaseDetection/YOLOX@6ddff48 ``yolox/models/yolo_head.py::YOLOXHead`` (forward only; assignment, losses and
decoding live in ``assigner.py``, ``losses.py`` and ``decode.py``). Anchor-free, one prediction per grid cell.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .blocks import BaseConv, conv_block

#: Prior probability of the initial class/objectness biases (RetinaNet focal-loss prior), as in YOLOX.
PRIOR_PROB = 0.01


class DecoupledHead(nn.Module):
    """Per level: ``stem`` 1×1 → ``hidden`` channels; cls tower (2× 3×3) → ``num_classes`` logits; reg tower
    (2× 3×3) → 4 box offsets and 1 objectness logit.

    Args:
        num_classes: number of object classes.
        in_channels: channels of each input level.
        hidden: channels of the stems and towers (``int(256 · width)`` in YOLOX).
        depthwise: depthwise-separable 3×3 convolutions (YOLOX-Nano).

    Shape:
        forward: per level (B, c_i, H_i, W_i) → stems (B, hidden, H_i, W_i), cls (B, K, H_i, W_i),
        reg (B, 4, H_i, W_i) raw ``(dx, dy, log w, log h)`` in stride units, obj (B, 1, H_i, W_i) logits.
    """

    def __init__(self, num_classes: int, in_channels: list[int], hidden: int, depthwise: bool = False) -> None:
        super().__init__()
        Conv = conv_block(depthwise)
        levels = range(len(in_channels))
        self.stems = nn.ModuleList(BaseConv(c, hidden, 1) for c in in_channels)
        self.cls_convs = nn.ModuleList(nn.Sequential(Conv(hidden, hidden, 3), Conv(hidden, hidden, 3)) for _ in levels)
        self.reg_convs = nn.ModuleList(nn.Sequential(Conv(hidden, hidden, 3), Conv(hidden, hidden, 3)) for _ in levels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(hidden, num_classes, 1) for _ in levels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hidden, 4, 1) for _ in levels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(hidden, 1, 1) for _ in levels)
        bias = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
        with torch.no_grad():
            for conv in [*self.cls_preds, *self.obj_preds]:
                conv.bias.fill_(bias)

    def forward(
        self, features: list[Tensor], towers: tuple[bool, bool] = (True, True)
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Stems, then the towers ``towers = (cls, reg/obj)`` selects; a skipped tower's lists stay empty (the frozen
        teacher's restricted forward, :meth:`~kd_suite.tasks.detection.YOLOX.frozen_subset`)."""
        with_cls, with_reg = towers
        stems, cls, reg, obj = [], [], [], []
        for i, x in enumerate(features):
            x = self.stems[i](x)  # (B, hidden, H_i, W_i): the FSD/FGD tap
            stems.append(x)
            if with_cls:
                cls.append(self.cls_preds[i](self.cls_convs[i](x)))  # (B, K, H_i, W_i)
            if with_reg:
                reg_feat = self.reg_convs[i](x)  # (B, hidden, H_i, W_i)
                reg.append(self.reg_preds[i](reg_feat))  # (B, 4, H_i, W_i)
                obj.append(self.obj_preds[i](reg_feat))  # (B, 1, H_i, W_i)
        return stems, cls, reg, obj
