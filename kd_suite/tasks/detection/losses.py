"""YOLOX training loss: SimOTA targets, then IoU, objectness, classification (and optional L1) terms.

Reference: Ge et al., "YOLOX" (arXiv 2107.08430); confirmed against Megvii-BaseDetection/YOLOX@6ddff48
``yolo_head.py::get_losses`` (L385-404) and ``losses.py::IOUloss``:

    L = w_reg·Σ(1 − IoU²)/N_fg + Σ BCE(obj, fg)/N_fg + Σ BCE(cls_fg, onehot·IoU)/N_fg [+ Σ|reg_fg − t_L1|/N_fg]

with ``N_fg = max(1, number of positives in the batch)``, the objectness BCE over every location and the others over
positives only; w_reg = 5. The L1 term on raw offsets is switched on for the last, augmentation-free epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...outputs import DetectionOutput
from .assigner import simota_assign
from .decode import cxcywh_to_xyxy, decode_boxes, flatten_levels, grid_priors, xyxy_to_cxcywh


def iou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """YOLOX ``IOUloss(loss_type="iou")``: 1 − IoU² between matched boxes.

    Shape:
        pred (n, 4), target (n, 4) both ``(cx, cy, w, h)`` → (n,).
    """
    tl = torch.maximum(pred[:, :2] - pred[:, 2:] / 2, target[:, :2] - target[:, 2:] / 2)  # (n, 2)
    br = torch.minimum(pred[:, :2] + pred[:, 2:] / 2, target[:, :2] + target[:, 2:] / 2)  # (n, 2)
    inter = (br - tl).clamp(min=0).prod(1) * (tl < br).all(1)  # (n,)
    union = pred[:, 2:].prod(1) + target[:, 2:].prod(1) - inter  # (n,)
    iou = inter / (union + 1e-16)
    return 1 - iou**2


def l1_targets(gt_cxcywh: Tensor, priors: Tensor, eps: float = 1e-8) -> Tensor:
    """Raw-offset targets ``(cx/s − col, cy/s − row, log(w/s), log(h/s))`` for the L1 term.

    Shape:
        gt_cxcywh (n, 4) pixels, priors (n, 3) ``(col, row, stride)`` → (n, 4).
    """
    stride = priors[:, 2:3]  # (n, 1)
    return torch.cat([gt_cxcywh[:, :2] / stride - priors[:, :2], torch.log(gt_cxcywh[:, 2:] / stride + eps)], dim=1)


def yolox_loss(
    output: DetectionOutput,
    boxes: Tensor,
    labels: Tensor,
    strides: Sequence[int],
    reg_weight: float = 5.0,
    use_l1: bool = False,
    center_radius: float = 2.5,
) -> dict[str, Tensor]:
    """YOLOX loss terms of a batch (each already weighted, so the total is their sum).

    Args:
        output: raw detector output.
        boxes: (B, M, 4) GT xyxy in input pixels, padded.
        labels: (B, M) GT classes, −1 where padded.
        strides: stride of each level.
        reg_weight: weight of the IoU term (YOLOX: 5).
        use_l1: add the L1 term on raw offsets (YOLOX: last no-augmentation epochs).
        center_radius: SimOTA centre radius in strides (see :mod:`.assigner`).

    Returns:
        ``{"iou", "obj", "cls"}`` and ``"l1"`` when ``use_l1``; scalars.
    """
    cls, reg, obj = flatten_levels(output)  # (B, A, K), (B, A, 4), (B, A)
    cls, reg, obj = cls.float(), reg.float(), obj.float()
    priors = grid_priors([tuple(c.shape[-2:]) for c in output.cls], strides, cls.device)  # (A, 3)
    pred = decode_boxes(reg, priors)  # (B, A, 4) cxcywh pixels
    pred_xyxy = cxcywh_to_xyxy(pred.detach())
    fg_masks, cls_t, box_t, l1_t = [], [], [], []
    for b in range(cls.shape[0]):
        valid = labels[b] >= 0
        gt, gl = boxes[b][valid].float(), labels[b][valid]
        res = simota_assign(cls[b], obj[b], pred_xyxy[b], priors, gt, gl, center_radius=center_radius)
        fg_masks.append(res.fg)
        matched = xyxy_to_cxcywh(gt[res.gt_index])  # (P, 4)
        cls_t.append(F.one_hot(gl[res.gt_index].long(), cls.shape[2]).float() * res.iou[:, None])  # (P, K)
        box_t.append(matched)
        if use_l1:
            l1_t.append(l1_targets(matched, priors[res.fg]))
    fg = torch.stack(fg_masks)  # (B, A)
    num_fg = max(int(fg.sum()), 1)
    cls_t, box_t = torch.cat(cls_t), torch.cat(box_t)
    terms = {
        "iou": reg_weight * iou_loss(pred[fg], box_t).sum() / num_fg,
        "obj": F.binary_cross_entropy_with_logits(obj, fg.float(), reduction="sum") / num_fg,
        "cls": F.binary_cross_entropy_with_logits(cls[fg], cls_t, reduction="sum") / num_fg,
    }
    if use_l1:
        terms["l1"] = F.l1_loss(reg[fg], torch.cat(l1_t), reduction="sum") / num_fg
    return terms
