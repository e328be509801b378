"""Human-parsing metrics with the official LIP protocol (CE2P/SCHP ``utils/miou.py``).

One confusion matrix is accumulated over the whole evaluation set at each image's ORIGINAL resolution, pixels whose
ground truth is ``ignore_index`` (255) are dropped, and the scores are read from that single matrix:

* pixel accuracy = ``Σ_c tp_c / Σ_c gt_c``
* mean accuracy = ``mean_c tp_c / max(1, gt_c)``
* IoU_c = ``tp_c / max(1, gt_c + pred_c − tp_c)``, mIoU = mean over ALL classes including background

A class absent from both the ground truth and the predictions scores 0 (not NaN, and it is not skipped), which is
where this differs from torchmetrics' ``JaccardIndex`` averaging. Scores are fractions in [0, 1].

:func:`evaluate_files` scores a folder of predicted label PNGs with the same :class:`ParsingMetric` that validation
uses (``kd-suite evaluate --format lip --gt DIR --pred DIR``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from tqdm import tqdm

from ..data.batch import ParsingBatch, require_targets
from ..data.schema import LIP_CLASSES
from ..evaluation import TaskMetric, first_occurrences, sample_ids

__all__ = [
    "LIP_CLASSES",
    "ParsingMetric",
    "confusion_matrix",
    "evaluate_files",
    "find_gt_dir",
    "read_label_png",
    "scores_from_confmat",
    "summary",
]

#: Where a LIP root keeps the label PNGs of a split, tried in order (official layout, doubled folder, SCHP layout).
_GT_LAYOUTS = (
    "TrainVal_parsing_annotations/{split}_segmentations",
    "TrainVal_parsing_annotations/TrainVal_parsing_annotations/{split}_segmentations",
    "{split}_segmentations",
)


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """(K, K) int64 confusion matrix, rows = ground truth, columns = prediction, ``ignore_index`` pixels dropped.

    Args:
        pred: predicted class ids, any shape.
        target: ground-truth class ids, same shape as ``pred``.
        num_classes: K.
        ignore_index: ground-truth value to drop.

    Raises:
        ValueError: shapes differ, or a kept pixel has a class id outside ``[0, K)``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(target.shape)} sizes differ")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel():
        bad_gt, bad_pred = (target < 0) | (target >= num_classes), (pred < 0) | (pred >= num_classes)
        if bool(bad_gt.any()) or bool(bad_pred.any()):
            which = "ground truth" if bool(bad_gt.any()) else "prediction"
            values = torch.unique(target[bad_gt] if which == "ground truth" else pred[bad_pred])[:5].tolist()
            raise ValueError(f"{which} has class ids {values} outside [0, {num_classes}) (ignore id {ignore_index})")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def scores_from_confmat(confmat: Tensor) -> dict[str, Tensor]:
    """mIoU, pixel accuracy, mean accuracy and per-class IoU/accuracy (float64 tensors) of a (K, K) matrix."""
    cm = confmat.double()
    tp = cm.diagonal()  # (K,)
    gt = cm.sum(1)  # (K,) ground-truth pixels per class
    pred = cm.sum(0)  # (K,) predicted pixels per class
    iou = tp / (gt + pred - tp).clamp(min=1)
    acc = tp / gt.clamp(min=1)
    return {
        "mIoU": iou.mean(),
        "pixel_acc": tp.sum() / gt.sum().clamp(min=1),
        "mean_acc": acc.mean(),
        "per_class_iou": iou,
        "per_class_acc": acc,
    }


class ParsingMetric(Metric):
    """Confusion-matrix parsing metric (official LIP protocol); DDP-synchronised by summing the matrix.

    ``update(pred, target)`` takes class ids (not logits) of one image or a batch of equal-size images at the
    ground-truth resolution; :meth:`compute` returns :func:`scores_from_confmat` of the accumulated matrix.

    Args:
        num_classes: K (20 for LIP).
        ignore_index: ground-truth id to drop (255).
        class_names: names for :meth:`per_class_table`; defaults to :data:`LIP_CLASSES` when K = 20.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    confmat: Tensor

    def __init__(
        self, num_classes: int = 20, ignore_index: int = 255, class_names: tuple[str, ...] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if class_names is None:
            class_names = LIP_CLASSES if num_classes == len(LIP_CLASSES) else tuple(map(str, range(num_classes)))
        if len(class_names) != num_classes:
            raise ValueError(f"ParsingMetric: {len(class_names)} class_names for num_classes={num_classes}")
        self.num_classes, self.ignore_index, self.class_names = num_classes, ignore_index, tuple(class_names)
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.confmat += confusion_matrix(pred, target.to(pred.device), self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Tensor]:
        return scores_from_confmat(self.confmat)

    def per_class_table(self) -> dict[str, float]:
        """``{class name: IoU}`` of the accumulated (and, under DDP, synchronised) matrix."""
        return dict(zip(self.class_names, self.compute()["per_class_iou"].tolist()))


def summary(metric: ParsingMetric, num_images: int | None = None) -> dict[str, Any]:
    """JSON-able scores of a metric: mIoU, pixel_acc, mean_acc, per_class_iou {name: IoU} (+ num_images)."""
    scores = metric.compute()  # synchronised across processes; cached until the next update
    return _json_scores(scores, metric.class_names, num_images)


def _json_scores(scores: dict[str, Tensor], names: tuple[str, ...], num_images: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {k: float(scores[k]) for k in ("mIoU", "pixel_acc", "mean_acc")}
    out["per_class_iou"] = dict(zip(names, scores["per_class_iou"].tolist()))
    if num_images is not None:
        out["num_images"] = num_images
    return out


class ParsingScores(TaskMetric):
    """Validation metric of :class:`~kd_suite.tasks.parsing.ParsingDistiller`: one confusion matrix per image.

    ``update(labels, batch)`` takes the predicted (H, W) class ids of each image at its original size and compares them
    with ``batch.orig_masks[i]``. Matrices are kept per image with ``batch.sample_id`` so that :meth:`compute`
    sums each image once even when DDP's sampler repeated it; the result is :func:`summary`'s dict.
    """

    headline = "mIoU"

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.names = ParsingMetric(num_classes, ignore_index, class_names).class_names  # validates the names
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("confmats", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, labels: list[Tensor], batch: ParsingBatch) -> None:
        targets = orig_masks(batch)
        for pred, gt in zip(labels, targets, strict=True):
            cm = confusion_matrix(pred, gt.to(pred.device), self.num_classes, self.ignore_index)  # (K, K)
            self.confmats.append(cm[None])
        self.ids.append(sample_ids(batch).to(self.device))

    def compute(self) -> dict[str, Any]:
        confmats, ids = dim_zero_cat(self.confmats), dim_zero_cat(self.ids)  # (N, K, K), (N,)
        keep = first_occurrences(ids).to(confmats.device)
        return _json_scores(scores_from_confmat(confmats[keep].sum(0)), self.names, len(keep))

    def scalars(self, results: dict[str, Any]) -> dict[str, float]:
        main = {k: results[k] for k in ("mIoU", "pixel_acc", "mean_acc")}
        return main | {f"iou/{name}": v for name, v in results["per_class_iou"].items()}


def orig_masks(batch: ParsingBatch) -> list[Tensor]:
    """The (H0, W0) GT masks at the original resolution of a validation batch (``batch.orig_masks``).

    Raises:
        MissingTargetError: the batch has no ``orig_masks`` (a training batch, or one built by hand without them).
    """
    require_targets(batch, ("orig_masks",), "the LIP protocol (scores at the original resolution)")
    return batch.orig_masks


def find_gt_dir(gt: Path, split: str = "val") -> Path:
    """The folder of GT label PNGs: ``gt`` itself if it holds PNGs, else the split's folder inside a LIP root.

    Raises:
        FileNotFoundError: neither ``gt`` nor any known LIP layout under it holds label PNGs.
    """
    gt = Path(gt)
    if gt.is_dir() and any(gt.glob("*.png")):
        return gt
    tried = [gt / layout.format(split=split) for layout in _GT_LAYOUTS]
    for candidate in tried:
        if candidate.is_dir() and any(candidate.glob("*.png")):
            return candidate
    raise FileNotFoundError(
        f"no label PNGs in {gt} nor in {[str(t.relative_to(gt)) for t in tried]}; pass a folder of GT *.png "
        f"(e.g. LIP/TrainVal_parsing_annotations/{split}_segmentations) or a LIP root"
    )


def read_label_png(path: Path) -> np.ndarray:
    """(H, W) uint8 class ids of a single-channel (mode L or P) label PNG.

    Raises:
        ValueError: the PNG has several channels (e.g. an RGB colour rendering instead of raw class ids).
    """
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(
                f"{path}: label PNG has mode {im.mode!r}; write raw class ids as a single-channel 8-bit PNG (mode 'L')"
            )
        return np.asarray(im).astype(np.uint8 if im.mode in ("L", "P") else np.int64)


def evaluate_files(
    gt: Path, pred: Path, split: str = "val", num_classes: int = 20, ignore_index: int = 255
) -> dict[str, Any]:
    """Score a folder of predicted label PNGs against LIP ground truth with :class:`ParsingMetric`.

    Files are matched by stem (``<id>.png`` in both folders); every GT image needs exactly one prediction of the same
    size, holding raw class ids.

    Args:
        gt: folder of GT label PNGs, or a LIP root (the ``split`` segmentation folder is found inside it).
        pred: folder of predicted label PNGs.
        split: LIP split used when ``gt`` is a root.
        num_classes: K.
        ignore_index: GT id to drop.

    Returns:
        ``{"mIoU", "pixel_acc", "mean_acc", "per_class_iou": {name: IoU}, "num_images"}`` (fractions in [0, 1]).

    Raises:
        FileNotFoundError: no GT PNGs found.
        ValueError: predictions missing, extra or of the wrong size (the message names the files).
    """
    gt_dir, pred_dir = find_gt_dir(Path(gt), split), Path(pred)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    gts = {p.stem: p for p in sorted(gt_dir.glob("*.png"))}
    preds = {p.stem: p for p in sorted(pred_dir.glob("*.png"))}
    missing, extra = sorted(gts.keys() - preds.keys()), sorted(preds.keys() - gts.keys())
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(gts)} GT images in {gt_dir} have no prediction in {pred_dir} "
            f"(e.g. {[m + '.png' for m in missing[:5]]})"
        )
    if extra:
        raise ValueError(
            f"{len(extra)} predictions in {pred_dir} have no GT in {gt_dir} (e.g. {[e + '.png' for e in extra[:5]]}); "
            "remove them or point --gt at the matching split"
        )
    metric = ParsingMetric(num_classes, ignore_index)
    for stem in tqdm(sorted(gts), desc="lip eval", unit="img", disable=len(gts) < 100):
        target, label = read_label_png(gts[stem]), read_label_png(preds[stem])
        if label.shape != target.shape:
            raise ValueError(
                f"{preds[stem]}: prediction is {label.shape[1]}x{label.shape[0]} (WxH) but the GT {gts[stem]} is "
                f"{target.shape[1]}x{target.shape[0]}; predictions must be at the original image resolution"
            )
        try:
            metric.update(torch.from_numpy(label), torch.from_numpy(target))
        except ValueError as e:
            raise ValueError(f"{preds[stem]}: {e}") from None
    return summary(metric, num_images=len(gts))
