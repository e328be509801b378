"""From raw YOLOX maps to boxes: grid priors, box decoding, score thresholding, per-class NMS, letterbox undo.

Reference: Ge et al., "YOLOX" (arXiv 2107.08430); decoding rule confirmed against Megvii-BaseDetection/YOLOX@6ddff48
``yolo_head.py::decode_outputs`` and ``yolox/utils/boxes.py::postprocess`` (best class per location, score =
objectness × class probability, class-wise NMS). NMS is ``torchvision.ops.batched_nms``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ...outputs import DetectionOutput


def grid_priors(sizes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device) -> Tensor:
    """Grid cells of all levels, flattened level by level in row-major order.

    Returns:
        (A, 3) float rows ``(col, row, stride)``; A = Σ H_i·W_i.
    """
    priors = []
    for (h, w), s in zip(sizes, strides):
        rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        level = torch.stack([cols.reshape(-1), rows.reshape(-1), torch.full((h * w,), s, device=device)], dim=1)
        priors.append(level.float())  # (H_i·W_i, 3)
    return torch.cat(priors)


def flatten_levels(output: DetectionOutput) -> tuple[Tensor, Tensor, Tensor]:
    """Concatenate the per-level maps into per-location rows.

    Returns:
        cls (B, A, K) logits, reg (B, A, 4) raw offsets, obj (B, A) logits.
    """
    cls = torch.cat([c.flatten(2) for c in output.cls], dim=2).transpose(1, 2)  # (B, A, K)
    reg = torch.cat([r.flatten(2) for r in output.reg], dim=2).transpose(1, 2)  # (B, A, 4)
    obj = torch.cat([o.flatten(2) for o in output.obj], dim=2)[:, 0]  # (B, A)
    return cls, reg, obj


def decode_boxes(reg: Tensor, priors: Tensor) -> Tensor:
    """YOLOX box decoding: centre = (offset + cell) · stride, size = exp(log-size) · stride.

    Shape:
        reg (B, A, 4) raw ``(dx, dy, log w, log h)``, priors (A, 3) → (B, A, 4) ``(cx, cy, w, h)`` input pixels.
    """
    stride = priors[:, 2:3]  # (A, 1)
    centre = (reg[..., :2] + priors[:, :2]) * stride  # (B, A, 2)
    size = reg[..., 2:].clamp(max=20.0).exp() * stride  # clamp keeps exp finite for an untrained net; (B, A, 2)
    return torch.cat([centre, size], dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(…, 4) ``(cx, cy, w, h)`` → (…, 4) ``(x1, y1, x2, y2)``."""
    half = boxes[..., 2:] / 2
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(…, 4) ``(x1, y1, x2, y2)`` → (…, 4) ``(cx, cy, w, h)``."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


@torch.no_grad()
def postprocess(
    output: DetectionOutput,
    strides: Sequence[int],
    score_thresh: float = 0.01,
    nms_thresh: float = 0.65,
    max_det: int = 100,
) -> list[dict[str, Tensor]]:
    """Decode a batch into detections in input (letterboxed) pixels.

    Each location keeps its best class; score = σ(obj)·σ(cls); locations under ``score_thresh`` are dropped, then
    class-wise NMS at ``nms_thresh`` and the ``max_det`` best are kept (YOLOX evaluation: 0.01 / 0.65).

    Returns:
        per image ``{"boxes": (n, 4) xyxy, "scores": (n,), "labels": (n,) int64}``.
    """
    cls, reg, obj = flatten_levels(output)
    priors = grid_priors([tuple(c.shape[-2:]) for c in output.cls], strides, cls.device)
    boxes = cxcywh_to_xyxy(decode_boxes(reg.float(), priors))  # (B, A, 4)
    prob, labels = cls.float().sigmoid().max(dim=2)  # (B, A), (B, A)
    scores = prob * obj.float().sigmoid()  # (B, A)
    results = []
    for b in range(cls.shape[0]):
        keep = scores[b] >= score_thresh
        bx, sc, lb = boxes[b][keep], scores[b][keep], labels[b][keep]
        kept = batched_nms(bx, sc, lb, nms_thresh)[:max_det]  # sorted by score
        results.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept]})
    return results


def unletterbox(boxes: Tensor, meta: dict[str, Any]) -> Tensor:
    """Map (n, 4) xyxy boxes from letterboxed input pixels back to the original image, clipped to it.

    ``meta`` needs ``scale`` (resize factor), ``pad`` (x, y) and ``orig_size`` (h, w), as in
    :class:`~kd_suite.data.batch.DetectionBatch`.
    """
    missing = [k for k in ("scale", "pad", "orig_size") if k not in meta]
    if missing:
        raise KeyError(f"detection batch meta lacks {missing}; the DataModule must record the letterbox per image")
    pad_x, pad_y = (float(v) for v in meta["pad"])
    h, w = (float(v) for v in meta["orig_size"])
    shift = boxes.new_tensor([pad_x, pad_y, pad_x, pad_y])
    out = (boxes - shift) / float(meta["scale"])  # (n, 4)
    limit = boxes.new_tensor([w, h, w, h])
    return torch.minimum(out.clamp(min=0), limit)
