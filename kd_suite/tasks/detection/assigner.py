"""SimOTA label assignment (YOLOX): a cheap, dynamic-k approximation of optimal-transport assignment.

Reference: Ge et al., "YOLOX" (arXiv 2107.08430) §2.1 "SimOTA"; rule confirmed against
Megvii-BaseDetection/YOLOX@6ddff48 ``yolo_head.py::get_assignments/simota_matching`` and mmdet ``SimOTAAssigner``
(reimplemented, vectorised over GT).

Geometry: a location is a *candidate* when its cell centre ``((col, row) + 0.5)·stride`` lies inside a GT box or
within ``center_radius·stride`` of a GT centre (per axis); candidates that satisfy only one of the two pay a 1e5 cost.
``center_radius`` defaults to 2.5 (mmdet ``SimOTAAssigner``, the detector the FSD authors trained); the official
YOLOX code used the same box-or-centre rule with 2.5 up to v0.2 and switched to centre-only with 1.5 in v0.3.

Cost = ``cls_weight``·BCE(√(σ(cls)·σ(obj)), one-hot) + ``iou_weight``·(−log IoU) + 1e5·¬(in box ∧ in centre).
Each GT takes its ``k = max(1, ⌊Σ top-10 IoU⌋)`` cheapest candidates; a location claimed by several GTs goes to the
GT of least cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

OUTSIDE_COST = 1e5


@dataclass
class Assignment:
    """Result for one image.

    Attributes:
        fg: (A,) bool, True for locations assigned to a GT (positives).
        gt_index: (P,) int64 index of the matched GT of each positive, in location order.
        iou: (P,) IoU between each positive's predicted box and its GT (the class-target scale).
    """

    fg: Tensor
    gt_index: Tensor
    iou: Tensor


@torch.no_grad()
def simota_assign(
    cls_logits: Tensor,
    obj_logits: Tensor,
    pred_boxes: Tensor,
    priors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    iou_weight: float = 3.0,
    cls_weight: float = 1.0,
) -> Assignment:
    """Assign the A locations of one image to its G ground-truth boxes.

    Args:
        cls_logits: (A, K) class logits.
        obj_logits: (A,) objectness logits.
        pred_boxes: (A, 4) decoded xyxy boxes in input pixels.
        priors: (A, 3) ``(col, row, stride)`` from :func:`~kd_suite.tasks.detection.decode.grid_priors`.
        gt_boxes: (G, 4) xyxy GT boxes in input pixels.
        gt_labels: (G,) int64 GT classes.
        center_radius: half-size of the centre region in strides.
        candidate_topk: number of top IoUs summed for the dynamic k.
        iou_weight: weight of the −log IoU cost.
        cls_weight: weight of the classification cost.
    """
    num_loc, num_cls = cls_logits.shape
    device = cls_logits.device
    if gt_boxes.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return Assignment(torch.zeros(num_loc, dtype=torch.bool, device=device), empty, empty.float())
    stride = priors[:, 2]  # (A,)
    centre = (priors[:, :2] + 0.5) * stride[:, None]  # (A, 2) cell centres in pixels
    in_box = ((centre[None] > gt_boxes[:, None, :2]) & (centre[None] < gt_boxes[:, None, 2:])).all(-1)  # (G, A)
    gt_centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (G, 2)
    reach = center_radius * stride[None, :, None]  # (1, A, 1)
    in_ctr = ((centre[None] - gt_centre[:, None]).abs() < reach).all(-1)  # (G, A)
    candidate = (in_box | in_ctr).any(0)  # (A,)
    fg = torch.zeros(num_loc, dtype=torch.bool, device=device)
    if not candidate.any():
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return Assignment(fg, empty, empty.float())
    both = (in_box & in_ctr)[:, candidate]  # (G, C)
    iou = box_iou(gt_boxes.float(), pred_boxes[candidate].float())  # (G, C)
    scores = (cls_logits[candidate].float().sigmoid() * obj_logits[candidate, None].float().sigmoid()).sqrt()  # (C, K)
    onehot = F.one_hot(gt_labels.long(), num_cls).float()  # (G, K)
    cls_cost = F.binary_cross_entropy(
        scores[None].expand(len(gt_boxes), -1, -1), onehot[:, None].expand(-1, scores.shape[0], -1), reduction="none"
    ).sum(-1)  # (G, C)
    cost = cls_weight * cls_cost + iou_weight * -torch.log(iou + 1e-8) + OUTSIDE_COST * (~both).float()  # (G, C)

    k = iou.topk(min(candidate_topk, iou.shape[1]), dim=1).values.sum(1).int().clamp(min=1)  # (G,)
    rank = torch.empty_like(cost, dtype=torch.long)
    order = cost.argsort(dim=1)  # (G, C) cheapest first
    rank.scatter_(1, order, torch.arange(cost.shape[1], device=device).expand_as(order))
    matching = rank < k[:, None]  # (G, C)
    shared = matching.sum(0) > 1  # (C,) locations claimed by several GTs
    if shared.any():
        best = cost[:, shared].argmin(0)  # (S,)
        matching[:, shared] = False
        matching[best, shared.nonzero()[:, 0]] = True
    pos = matching.any(0)  # (C,)
    gt_index = matching[:, pos].float().argmax(0)  # (P,)
    fg[candidate.nonzero()[:, 0][pos]] = True
    return Assignment(fg, gt_index, iou[:, pos].gather(0, gt_index[None])[0])
