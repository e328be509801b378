"""Typed batches shared by DataModules, task modules and GT-aware distillation losses.

:func:`move_batch` moves a batch to the device field by field: every tensor field lands on the device and the
per-sample metadata stays on the host untouched (Lightning's generic move walks every dict and array in ``meta``,
which costs more than the step's data loading on a CPU run).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

_B = TypeVar("_B")


def move_batch(batch: _B, device: torch.device) -> _B:
    """Copy of dataclass ``batch`` with its tensor fields on ``device`` (``meta`` and other fields as they are)."""
    moved = {
        f.name: value.to(device, non_blocking=True)
        for f in dataclasses.fields(batch)
        if isinstance(value := getattr(batch, f.name), Tensor) and value.device != device
    }
    return dataclasses.replace(batch, **moved) if moved else batch


def _pin(batch: _B) -> _B:
    """Copy of ``batch`` with every tensor field in pinned memory (called by DataLoader(pin_memory=True))."""
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    return dataclasses.replace(batch, **{k: v.pin_memory() for k, v in fields.items() if isinstance(v, Tensor)})


@dataclass
class ParsingBatch:
    """Attributes:
    image: (B, 3, H, W) float, normalised.
    mask: (B, H, W) int64 class ids, 255 = ignore.
    meta: per-sample dicts (``id``, ``orig_size`` (h, w), ``path`` ...).
    sample_id: (B,) int64 dataset index of each sample (evaluation drops repeated ids); ``None`` when unknown.
    """

    image: Tensor
    mask: Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)

    sample_id: Tensor | None = None

    pin_memory = _pin


@dataclass
class PoseBatch:
    """Attributes:
    image: (B, 3, H, W) float, normalised person crop.
    keypoints: (B, K, 2) joint (x, y) in crop-input pixels.
    visible: (B, K) float 1 = labelled joint, 0 = missing (target weight).
    heatmaps: (B, K, h, w) GT Gaussian heatmaps at the heatmap stride.
    inv_affine: (B, 2, 3) maps crop-input pixels back to original-image pixels.
    meta: per-sample dicts (``image_id``, ``center``, ``scale``, ``bbox``, ``area``, ``head_size`` ...).
    sample_id: (B,) int64 dataset index of each sample (evaluation drops repeated ids); ``None`` when unknown.
    """

    image: Tensor
    keypoints: Tensor
    visible: Tensor
    heatmaps: Tensor
    inv_affine: Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)

    sample_id: Tensor | None = None

    pin_memory = _pin


@dataclass
class DetectionBatch:
    """Attributes:
    image: (B, 3, H, W) float, letterboxed.
    boxes: (B, M, 4) xyxy in input pixels after augmentation, zero rows where padded.
    labels: (B, M) int64 class index, -1 where padded.
    meta: per-sample dicts (``image_id``, ``orig_size`` (h, w), ``scale`` (resize factor), ``pad`` (x, y) ...).
    sample_id: (B,) int64 dataset index of each sample (evaluation drops repeated ids); ``None`` when unknown.
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)
    sample_id: Tensor | None = None

    pin_memory = _pin

    @property
    def valid(self) -> Tensor:
        """(B, M) bool, True for real boxes."""
        return self.labels >= 0


def sample_id_tensor(metas: list[dict[str, Any]]) -> Tensor | None:
    """(B,) int64 ``meta["sample_index"]`` of each sample, or ``None`` when a sample has none."""
    ids = [m.get("sample_index") for m in metas]
    return None if any(not isinstance(i, int) for i in ids) else torch.tensor(ids, dtype=torch.long)
