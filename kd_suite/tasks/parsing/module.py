"""ParsingDistiller: human-parsing training (CE + deep supervision + any KD terms) and LIP-protocol evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn

from ...data.batch import ParsingBatch
from ...data.common import denormalize
from ...distiller import Distiller
from ...losses.base import DistillLoss
from ...metrics.parsing import LIP_CLASSES, ParsingMetric, summary
from ...outputs import ParsingOutput
from ...viz import overlay_mask
from .flip import LIP_FLIP_PAIRS, flip_permutation, flip_test_logits


class ParsingDistiller(Distiller):
    """Human parsing with optional distillation; validation follows the official LIP protocol.

    Task loss: ``CE(up(logits), mask) + aux_weight · Σ_i CE(up(aux_logits_i), mask)``, CE ignoring ``ignore_index``
    pixels, logits bilinearly upsampled to the mask size (PSPNet/PP-LiteSeg deep supervision, weight 0.4 as in
    DIST_KD ``train_kd.py``). Distillation terms (DIST, GSKD, CWD, per-pixel KD...) come from ``losses`` by tap.

    Validation/test: logits (optionally flip-tested) are upsampled to each image's ``meta["orig_size"]``, argmaxed and
    compared with ``meta["orig_mask"]`` in one confusion matrix over the whole set (:mod:`kd_suite.metrics.parsing`).
    Logs ``val/mIoU``, ``val/pixel_acc``, ``val/mean_acc``, ``val/iou/<class>`` and, once, ``val/teacher_mIoU``.

    Args:
        student: the parser being trained (:class:`~kd_suite.tasks.parsing.ParsingNet`, ...).
        teacher: frozen teacher parser(s) or ``None`` (trains the student alone, e.g. the teacher itself).
        teacher_ckpt: teacher weights file(s).
        losses: named distillation terms.
        optimizer: optimizer factory.
        scheduler: LR scheduler factory.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        num_classes: parsing classes (20 for LIP); must match the student's logits.
        ignore_index: mask value excluded from the loss and the metrics.
        aux_weight: weight of each auxiliary CE.
        flip_test: evaluate on the average of the image's and its mirror's logits (left/right channels swapped back).
        flip_pairs: class pairs swapped by the flip (LIP: 14↔15, 16↔17, 18↔19).
        class_names: names for per-class logs; defaults to the LIP classes when ``num_classes`` is 20.
        log_images: number of validation images sent to W&B per epoch (first batch; only with a WandbLogger).

    Attributes:
        val_scores: JSON-able summary of the last validation/test epoch (``mIoU``, ``pixel_acc``, ``mean_acc``,
            ``per_class_iou`` and, after the teacher's evaluation, ``teacher``).
        teacher_evaluated: set once the teacher has been scored; reset it to score the teacher again.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | list[nn.Module] | None = None,
        teacher_ckpt: str | list[str] | None = None,
        losses: dict[str, DistillLoss] | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: str = "epoch",
        num_classes: int = 20,
        ignore_index: int = 255,
        aux_weight: float = 0.4,
        flip_test: bool = False,
        flip_pairs: tuple[tuple[int, int], ...] = LIP_FLIP_PAIRS,
        class_names: tuple[str, ...] | None = None,
        log_images: int = 4,
    ) -> None:
        super().__init__(student, teacher, teacher_ckpt, losses, optimizer, scheduler, scheduler_interval)
        for who, model in [("student", self.student), *[(f"teacher {i}", t) for i, t in enumerate(self.teachers)]]:
            taps = getattr(model, "tap_info", None)
            if not isinstance(taps, dict) or "logits" not in taps:
                raise TypeError(f"{who} {type(model).__name__} must declare tap_info with a 'logits' entry")
            channels = taps["logits"].channels
            if channels != num_classes:
                raise ValueError(
                    f"{who} {type(model).__name__} predicts {channels} classes but num_classes={num_classes}"
                )
        flip_permutation(num_classes, flip_pairs)  # validates the pairs now rather than at the first validation
        if class_names is None:
            class_names = LIP_CLASSES if num_classes == len(LIP_CLASSES) else tuple(map(str, range(num_classes)))
        self.num_classes, self.ignore_index, self.aux_weight = num_classes, ignore_index, aux_weight
        self.flip_test, self.flip_pairs, self.class_names = flip_test, tuple(map(tuple, flip_pairs)), tuple(class_names)
        self.log_images = log_images
        self.val_metric = ParsingMetric(num_classes, ignore_index, self.class_names)
        self.teacher_metric = ParsingMetric(num_classes, ignore_index, self.class_names)
        self.val_scores: dict[str, Any] = {}  # summary of the last validation/test epoch (JSON-able)

    # ------------------------------------------------------------------ training
    def task_loss(self, output: ParsingOutput, batch: ParsingBatch) -> dict[str, Tensor]:
        """``{"ce": CE(main)}`` plus ``{"aux": aux_weight · Σ CE(aux_i)}`` when the model returned aux logits."""
        terms = {"ce": self._ce(output.logits, batch.mask)}
        if output.aux_logits and self.aux_weight > 0:
            terms["aux"] = self.aux_weight * sum(self._ce(a, batch.mask) for a in output.aux_logits)
        return terms

    def _ce(self, logits: Tensor, mask: Tensor) -> Tensor:
        logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)  # (B, K, H, W)
        return F.cross_entropy(logits.float(), mask, ignore_index=self.ignore_index)

    # ------------------------------------------------------------------ inference
    def predict_logits(self, image: Tensor, model: nn.Module | None = None) -> Tensor:
        """(B, K, h, w) eval logits of ``model`` (the student by default), flip-tested when ``flip_test``."""
        model = self.student if model is None else model
        if self.flip_test:
            return flip_test_logits(lambda x: model(x).logits, image, self.flip_pairs)
        return model(image).logits

    def labels_at_original_size(self, logits: Tensor, batch: ParsingBatch) -> list[Tensor]:
        """Per image: logits bilinearly upsampled to ``meta["orig_size"]`` (input size if absent), argmaxed → (H, W)."""
        labels = []
        for i in range(logits.shape[0]):
            size = tuple(batch.meta[i]["orig_size"]) if batch.meta and "orig_size" in batch.meta[i] else None
            labels.append(_argmax_at(logits[i : i + 1], size or batch.image.shape[-2:])[0])  # (H, W)
        return labels

    def predict_step(self, batch: ParsingBatch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """``[{"id": meta id, "label": (H, W) uint8 class ids at the original size}]`` for each image."""
        labels = self.labels_at_original_size(self.predict_logits(batch.image), batch)
        ids = [m.get("id", f"{batch_idx}_{i}") for i, m in enumerate(batch.meta or [{}] * len(labels))]
        return [{"id": str(k), "label": lab.to(torch.uint8).cpu().numpy()} for k, lab in zip(ids, labels)]

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, batch: ParsingBatch, batch_idx: int) -> None:
        targets = _orig_masks(batch)
        logits = self.predict_logits(batch.image)  # (B, K, h, w)
        student = self.labels_at_original_size(logits, batch)
        for pred, gt in zip(student, targets):
            self.val_metric.update(pred, gt)
        t_logits = None
        if self.teacher_due():
            t_logits = self.predict_logits(batch.image, self.teachers[0])
            for pred, gt in zip(self.labels_at_original_size(t_logits, batch), targets):
                self.teacher_metric.update(pred, gt)
        if batch_idx == 0 and self.log_images > 0 and isinstance(self.logger, WandbLogger):
            if t_logits is None and self.teachers:
                t_logits = self.predict_logits(batch.image, self.teachers[0])
            self._log_examples(batch, logits, t_logits)

    def eval_epoch_end(self, stage: str) -> None:
        scores = summary(self.val_metric)
        self.val_metric.reset()
        self.val_scores = scores
        for key in ("mIoU", "pixel_acc", "mean_acc"):
            self.log(f"{stage}/{key}", scores[key], prog_bar=key == "mIoU", sync_dist=False)
        for name, value in scores["per_class_iou"].items():
            self.log(f"{stage}/iou/{name}", value, sync_dist=False)
        if self.teacher_due():
            teacher = summary(self.teacher_metric)
            self.teacher_metric.reset()
            self.log(f"{stage}/teacher_mIoU", teacher["mIoU"], sync_dist=False)
            self.val_scores["teacher"] = teacher
            self.teacher_evaluated = True

    # ------------------------------------------------------------------ pictures
    @torch.no_grad()
    def render(self, batch: ParsingBatch, output: ParsingOutput | None, n: int = 4) -> list[np.ndarray]:
        """The first ``n`` input images with the predicted (or, for ``output=None``, GT) mask overlaid, RGB uint8."""
        n = min(n, batch.image.shape[0])
        masks = batch.mask[:n] if output is None else _argmax_at(output.logits[:n], batch.image.shape[-2:])
        masks = masks.cpu().numpy().astype(np.uint8)
        return [overlay_mask(denormalize(batch.image[i]), masks[i]) for i in range(n)]

    def _log_examples(self, batch: ParsingBatch, logits: Tensor, t_logits: Tensor | None) -> None:
        """Log the first ``log_images`` images with GT, student (and teacher) masks at input resolution."""
        import wandb

        n = min(self.log_images, batch.image.shape[0])
        student = _argmax_at(logits[:n], batch.image.shape[-2:])  # (n, H, W)
        teacher = None if t_logits is None else _argmax_at(t_logits[:n], batch.image.shape[-2:])
        labels = dict(enumerate(self.class_names)) | {self.ignore_index: "ignore"}
        images = []
        for i in range(n):
            masks = {"ground_truth": batch.mask[i], "student": student[i]}
            if teacher is not None:
                masks["teacher"] = teacher[i]
            panel = {
                k: {"mask_data": v.cpu().numpy().astype(np.uint8), "class_labels": labels} for k, v in masks.items()
            }
            images.append(wandb.Image(denormalize(batch.image[i]), masks=panel))
        self.logger.experiment.log({"val/examples": images, "trainer/global_step": self.global_step})


def _orig_masks(batch: ParsingBatch) -> list[Tensor]:
    """The original-resolution GT masks of a validation batch (``meta[i]["orig_mask"]``)."""
    if not batch.meta or any("orig_mask" not in m for m in batch.meta):
        raise KeyError(
            "ParsingDistiller evaluates at the original resolution: every validation sample needs "
            "meta['orig_mask'] (H, W) uint8 and meta['orig_size'] (H, W); the DataModule's val/test set must "
            "provide them"
        )
    return [torch.as_tensor(np.asarray(m["orig_mask"])) for m in batch.meta]


def _argmax_at(logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Class ids (B, H, W) of (B, K, h, w) logits bilinearly upsampled to ``size``."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False).argmax(1)
