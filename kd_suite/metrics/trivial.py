"""Trivial predictors scored with each task's official metric: the floor every reported model must clear.

* pose: the **mean pose** — the train split's mean normalised crop position of every joint, predicted for every
  validation crop and mapped back to original pixels like a model's output, scored with MPII PCKh@0.5;
* parsing: the **per-pixel majority class** — at each position of the (resized) image, the class most frequent there
  in the train split, upsampled to each validation image's original size and scored with the LIP mIoU protocol;
* detection: no boxes, 0 mAP.

A model at or below its trivial score has learnt nothing about its input; the demo and study reports flag it.
Scores are in percent, like the reports.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data.batch import require_targets
from .parsing import ParsingMetric, orig_masks
from .pckh import pckh_table

__all__ = ["majority_class_miou", "mean_pose_pckh", "trivial_score"]


def _loader(datamodule: Any, split: str, train_style: bool) -> DataLoader:
    dataset = datamodule.dataset(split, train=False) if train_style else datamodule.split_dataset(False)
    return DataLoader(dataset, batch_size=64, shuffle=False, num_workers=0, collate_fn=datamodule.collate)


def mean_pose_pckh(datamodule: Any) -> float:
    """PCKh@0.5 (percent) of the train split's mean pose on the validation split of a top-down pose DataModule."""
    from ..tasks.pose.scores import apply_affine, to_original

    h, w = datamodule.input_size
    total, count = 0.0, 0.0
    for batch in _loader(datamodule, datamodule.train_split, train_style=True):
        norm = batch.keypoints.double() / torch.tensor([w, h], dtype=torch.float64)  # (B, K, 2)
        vis = batch.visible.double().unsqueeze(-1)  # (B, K, 1)
        total, count = total + (norm * vis).sum(0), count + vis.sum(0)
    mean = total / torch.as_tensor(count).clamp_min(1.0)  # (K, 2) normalised crop coordinates
    preds, gts, visible, heads = [], [], [], []
    for batch in _loader(datamodule, datamodule.val_split, train_style=False):
        coords = mean.expand(batch.keypoints.shape[0], -1, -1)  # (B, K, 2)
        preds.append(to_original(coords, (h, w), batch.inv_affine.double()))
        gts.append(apply_affine(batch.keypoints.double(), batch.inv_affine))
        visible.append(batch.visible.double())
        require_targets(batch, ("head_size",), "the mean-pose PCKh")
        heads.append(batch.head_size.double())  # (B,)
    pred, gt, vis, head = (torch.cat(x).numpy() for x in (preds, gts, visible, heads))
    return pckh_table(pred, gt, vis, head)["Mean"]


def majority_class_miou(datamodule: Any, num_classes: int) -> float:
    """mIoU (percent) of the per-pixel majority class of the train split on the validation split."""
    counts = None
    for batch in _loader(datamodule, datamodule.train_split, train_style=True):
        mask = batch.mask.long()  # (B, H, W)
        keep = mask < num_classes  # the ignore id (255) does not vote
        onehot = F.one_hot(mask.clamp_max(num_classes - 1), num_classes) * keep.unsqueeze(-1)  # (B, H, W, K)
        counts = onehot.sum(0) if counts is None else counts + onehot.sum(0)
    majority = counts.argmax(-1).float()[None, None]  # (1, 1, H, W)
    metric = ParsingMetric(num_classes=num_classes)
    for batch in _loader(datamodule, datamodule.val_split, train_style=False):
        for target in orig_masks(batch):  # (H0, W0)
            pred = F.interpolate(majority, size=target.shape, mode="nearest")[0, 0].long()  # (H0, W0)
            metric.update(pred, target)
    return 100.0 * float(metric.compute()["mIoU"])


def trivial_score(task: str, datamodule: Any, num_classes: int | None = None) -> float:
    """The trivial baseline of ``task`` (``"pose"``, ``"parsing"`` or ``"detection"``) in percent."""
    datamodule.setup("fit")
    if task == "pose":
        return mean_pose_pckh(datamodule)
    if task == "parsing":
        return majority_class_miou(datamodule, num_classes or len(datamodule.class_names))
    if task == "detection":
        return 0.0
    raise ValueError(f"trivial_score: unknown task {task!r}; expected 'pose', 'parsing' or 'detection'")
