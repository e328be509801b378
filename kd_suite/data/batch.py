"""Typed batches shared by DataModules, task modules and GT-aware distillation losses.

Evaluation ground truth travels in typed, documented fields (original-size parsing masks, MPII head sizes,
letterbox parameters, VOC difficult flags ...), filled by each DataModule's collate function; ``meta`` holds
free-form per-sample information only (paths, crop centres, flip flags) and no evaluation code reads it. The
evaluation fields are optional so that batches built by hand keep working; evaluation that needs an absent one
calls :func:`require_targets`, which names the field and the DataModule that provides it.

:func:`move_batch` moves a batch to the device field by field: every tensor field lands on the device and the
other fields (``meta``, lists of ids or of variable-size masks) stay on the host untouched (Lightning's generic move
walks every dict and array in ``meta``, which costs more than the step's data loading on a CPU run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

_B = TypeVar("_B")

#: Who fills each evaluation target, for the error of a batch that lacks one.
TARGET_SOURCES = {
    "ParsingBatch.orig_masks": "LIPDataModule's val/test batches (collate_parsing)",
    "ParsingBatch.orig_sizes": "LIPDataModule's batches (collate_parsing)",
    "ParsingBatch.ids": "LIPDataModule's batches (collate_parsing)",
    "PoseBatch.head_size": "MPIIDataModule's val batches, from annot/gt_valid.mat (collate_pose)",
    "PoseBatch.image_id": "CrowdPoseDataModule's batches (collate_pose)",
    "PoseBatch.box_score": "MPIIDataModule's and CrowdPoseDataModule's batches (collate_pose)",
    "DetectionBatch.orig_size": "VOCDataModule's and COCODetectionDataModule's batches (collate_detection)",
    "DetectionBatch.image_ids": "VOCDataModule's and COCODetectionDataModule's batches (collate_detection)",
    "DetectionBatch.scale": "VOCDataModule's and COCODetectionDataModule's val/test batches (collate_detection)",
    "DetectionBatch.pad": "VOCDataModule's and COCODetectionDataModule's val/test batches (collate_detection)",
}


class MissingTargetError(KeyError):
    """A batch lacks an evaluation target field (``None``, or an empty id list); the message names the field and
    the DataModule that fills it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def require_targets(batch: Any, names: Sequence[str], needed_by: str) -> None:
    """Raise :class:`MissingTargetError` unless every field in ``names`` of ``batch`` is set (not ``None`` nor an
    empty list).

    Args:
        batch: a typed batch.
        names: the evaluation fields that ``needed_by`` reads.
        needed_by: what needs them, for the message (e.g. ``"ParsingScores"``).
    """
    cls = type(batch).__name__
    for name in names:
        value = getattr(batch, name)
        if value is None or (isinstance(value, list) and not value):
            source = TARGET_SOURCES.get(f"{cls}.{name}", "the task's DataModule")
            raise MissingTargetError(
                f"{cls}.{name} is not set but {needed_by} needs it; it is filled by {source}. Build evaluation batches "
                f"with that DataModule, or set {cls}.{name} when building them by hand"
            )


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
    meta: per-sample free-form dicts (``path``, ``flipped`` ...); evaluation never reads them.
    sample_id: (B,) int64 dataset index of each sample (evaluation drops repeated ids); ``None`` when unknown.
    ids: sample id of each image (the LIP id), used to name prediction files; empty when unknown.
    orig_sizes: (B, 2) int64 (h, w) of each original image (predictions are upsampled to it); ``None`` when unknown.
    orig_masks: per image the (H0, W0) int64 ground truth at the original size (val/test; 255 = ignore), which the
        LIP protocol scores; ``None`` for training batches.
    """

    image: Tensor
    mask: Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)

    sample_id: Tensor | None = None
    ids: list[str] = field(default_factory=list)
    orig_sizes: Tensor | None = None
    orig_masks: list[Tensor] | None = None

    pin_memory = _pin


@dataclass
class PoseBatch:
    """Attributes:
    image: (B, 3, H, W) float, normalised person crop.
    keypoints: (B, K, 2) joint (x, y) in crop-input pixels.
    visible: (B, K) float 1 = labelled joint, 0 = missing (target weight).
    heatmaps: (B, K, h, w) GT Gaussian heatmaps at the heatmap stride.
    inv_affine: (B, 2, 3) maps crop-input pixels back to original-image pixels.
    meta: per-sample free-form dicts (``image`` file name, ``center``, ``scale``, ``bbox``, ``flipped`` ...);
        evaluation never reads them.
    sample_id: (B,) int64 dataset index of each sample (evaluation drops repeated ids); ``None`` when unknown.
    head_size: (B,) float32 MPII head size (0.6 × head-box diagonal, PCKh's normaliser); NaN where unknown.
    image_id: (B,) int64 COCO-style image id of each person (AP metrics); -1 where the dataset has none (MPII).
    box_score: (B,) float32 score of the person box the crop comes from (1 for GT boxes; AP rescoring).
    """

    image: Tensor
    keypoints: Tensor
    visible: Tensor
    heatmaps: Tensor
    inv_affine: Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)

    sample_id: Tensor | None = None
    head_size: Tensor | None = None
    image_id: Tensor | None = None
    box_score: Tensor | None = None

    pin_memory = _pin


@dataclass
class DetectionBatch:
    """Attributes:
    image: (B, 3, H, W) float, letterboxed.
    boxes: (B, M, 4) xyxy in input pixels after augmentation, zero rows where padded.
    labels: (B, M) int64 class index, -1 where padded.
    meta: per-sample free-form dicts (``year``, ``flipped``, ``mosaic`` ...); evaluation never reads them.
    sample_id: (B,) int64 dataset index of each sample (evaluation drops repeated ids); ``None`` when unknown.
    image_ids: dataset image id of each image (VOC id ``str``, COCO id ``int``); empty when unknown.
    orig_size: (B, 2) int64 (h, w) of each original image; ``None`` when unknown.
    scale: (B,) float32 letterbox resize factor (a box maps as ``box * scale + pad``); ``None`` when the images were
        not letterboxed (training augmentation).
    pad: (B, 2) float32 letterbox (x, y) padding; ``None`` like ``scale``.
    difficult: (B, M) bool VOC *difficult* flag of each box, aligned with ``boxes`` (False in padded rows and for
        datasets without the flag); ``None`` counts as no difficult boxes.
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)
    sample_id: Tensor | None = None
    image_ids: list[str | int] = field(default_factory=list)
    orig_size: Tensor | None = None
    scale: Tensor | None = None
    pad: Tensor | None = None
    difficult: Tensor | None = None

    pin_memory = _pin

    @property
    def valid(self) -> Tensor:
        """(B, M) bool, True for real boxes."""
        return self.labels >= 0


def sample_id_tensor(metas: list[dict[str, Any]]) -> Tensor | None:
    """(B,) int64 ``meta["sample_index"]`` of each sample, or ``None`` when a sample has none."""
    ids = [m.get("sample_index") for m in metas]
    return None if any(not isinstance(i, int) for i in ids) else torch.tensor(ids, dtype=torch.long)
