"""From raw YOLOX maps to boxes: grid priors, box decoding, score thresholding, per-class NMS, letterbox undo.

Reference: Ge et al., "YOLOX" (arXiv 2107.08430); decoding rule confirmed against Megvii-BaseDetection/YOLOX@6ddff48
``yolo_head.py::decode_outputs`` and ``yolox/utils/boxes.py::postprocess`` (best class per location, score =
objectness × class probability, class-wise NMS). NMS is ``torchvision.ops.batched_nms``.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def unletterbox(
    boxes: Tensor, scale: Tensor | float, pad: Tensor | Sequence[float], orig_size: Tensor | Sequence[int]
) -> Tensor:
    """Map (n, 4) xyxy boxes from letterboxed input pixels back to the original image, clipped to it.

    Args:
        boxes: (n, 4) xyxy in letterboxed input pixels.
        scale: the image's resize factor (a 0-d tensor or a number), e.g. ``DetectionBatch.scale[i]``.
        pad: its (x, y) padding, e.g. ``DetectionBatch.pad[i]``.
        orig_size: its original (h, w), e.g. ``DetectionBatch.orig_size[i]``.

    Returns:
        (n, 4) xyxy in original pixels, within ``[0, w] × [0, h]``.
    """
    pad = torch.as_tensor(pad, dtype=boxes.dtype, device=boxes.device).reshape(2)  # (2,) (x, y)
    size = torch.as_tensor(orig_size, device=boxes.device).reshape(2).to(boxes.dtype)  # (2,) (h, w)
    scale = torch.as_tensor(scale, dtype=boxes.dtype, device=boxes.device)  # ()
    out = (boxes - pad.repeat(2)) / scale  # (n, 4)
    limit = size.flip(0).repeat(2)  # (4,) (w, h, w, h)
    return torch.minimum(out.clamp(min=0), limit)
