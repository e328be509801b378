"""DetectionDistiller: YOLOX training (SimOTA task loss + any KD terms) and VOC/COCO-protocol evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn

from ...data.batch import DetectionBatch
from ...data.common import denormalize
from ...data.schema import VOC_CLASSES
from ...distiller import Distiller
from ...losses.base import DistillLoss
from ...metrics.detection import DetectionEvaluator, ImageRecord
from ...outputs import DetectionOutput, check_tap
from ...viz import draw_boxes
from .decode import postprocess, unletterbox
from .losses import yolox_loss

RENDER_SCORE = 0.3  # detections drawn in pictures (demo report, notebooks); evaluation keeps all of them


class DetectionDistiller(Distiller):
    """YOLOX-style detection with optional distillation (FSD, FGD, CWD … by tap).

    Task loss (:func:`~kd_suite.tasks.detection.losses.yolox_loss`): ``reg_weight``·IoU + obj + cls (+ L1 during the
    last ``l1_last_epochs`` epochs, YOLOX's no-augmentation phase), SimOTA targets from the post-augmentation boxes.

    Validation/test: detections are decoded (score ≥ ``score_thresh``, class-wise NMS at ``nms_thresh``, at most
    ``max_det``), mapped back to original-image pixels (letterbox undone with ``meta`` ``scale``/``pad``) and scored at
    epoch end: ``metric="voc"`` logs ``val/mAP50`` (VOC2007 11-point) and ``val/mAP50_allpoint``; ``metric="coco"``
    logs ``val/mAP`` (@[.5:.95]), ``val/mAP50``, ``val/mAP75``, against the DataModule's ``val_ann_file`` when it has
    one. Per-class AP goes to ``val/AP/<class>``; the teacher's score is logged once as ``val/teacher_<key>``.

    Args:
        student: the detector being trained (:class:`~kd_suite.tasks.detection.YOLOX`).
        teacher: frozen teacher detector(s) or ``None`` (trains the student alone, e.g. the teacher itself).
        teacher_ckpt: teacher weights file(s).
        losses: named distillation terms (one FSD/FGD term per FPN level).
        optimizer: optimizer factory.
        scheduler: LR scheduler factory.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        metric: ``"voc"`` or ``"coco"``.
        class_names: class names in index order; default the DataModule's ``class_names``, else the VOC classes
            for 20 classes, else the indices.
        reg_weight: weight of the IoU loss (YOLOX: 5).
        center_radius: SimOTA centre radius in strides (mmdet 2.5; official YOLOX ≥ 0.3: 1.5 centre-only).
        l1_last_epochs: switch the L1 term on for the last N epochs (YOLOX: 15 of 300).
        score_thresh: evaluation score threshold (YOLOX: 0.01).
        nms_thresh: class-wise NMS IoU threshold (YOLOX: 0.65).
        max_det: detections kept per image.
        log_images: validation images with teacher/student boxes sent to W&B (first batch, WandbLogger only).
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
        metric: Literal["voc", "coco"] = "voc",
        class_names: tuple[str, ...] | None = None,
        reg_weight: float = 5.0,
        center_radius: float = 2.5,
        l1_last_epochs: int = 0,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.65,
        max_det: int = 100,
        log_images: int = 4,
    ) -> None:
        super().__init__(student, teacher, teacher_ckpt, losses, optimizer, scheduler, scheduler_interval)
        if metric not in ("voc", "coco"):
            raise ValueError(f"metric must be 'voc' or 'coco', got {metric!r}")
        self.num_classes = check_tap(self.student.tap_info, "cls.0", "DetectionDistiller student").channels
        for i, t in enumerate(self.teachers):
            channels = check_tap(t.tap_info, "cls.0", f"DetectionDistiller teacher {i}").channels
            if channels != self.num_classes:
                raise ValueError(f"teacher {i} predicts {channels} classes but the student {self.num_classes}")
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"class_names lists {len(class_names)} names for a {self.num_classes}-class student")
        self.metric, self.class_names = metric, None if class_names is None else tuple(class_names)
        self.reg_weight, self.center_radius, self.l1_last_epochs = reg_weight, center_radius, l1_last_epochs
        self.score_thresh, self.nms_thresh, self.max_det = score_thresh, nms_thresh, max_det
        self.log_images = log_images
        self.evaluators: dict[str, DetectionEvaluator] = {}
        self.coco_gt: Path | None = None  # the DataModule's COCO GT json, found in setup()
        self.val_scores: dict[str, Any] = {}  # results of the last validation/test epoch (per-class included)

    # ------------------------------------------------------------------ training
    @property
    def use_l1(self) -> bool:
        """True during the last ``l1_last_epochs`` epochs of the fit."""
        if self.l1_last_epochs <= 0 or self._trainer is None or not self.trainer.max_epochs:
            return False
        return self.current_epoch >= self.trainer.max_epochs - self.l1_last_epochs

    def task_loss(self, output: DetectionOutput, batch: DetectionBatch) -> dict[str, Tensor]:
        """``{"iou", "obj", "cls"}`` (+ ``"l1"``) YOLOX loss terms, already weighted."""
        return yolox_loss(
            output, batch.boxes, batch.labels, self.student.strides, self.reg_weight, self.use_l1, self.center_radius
        )

    # ------------------------------------------------------------------ inference
    def detect(self, image: Tensor, model: nn.Module | None = None) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes" (n, 4) xyxy input pixels, "scores", "labels"}`` of ``model`` (default the student)."""
        model = self.student if model is None else model
        return postprocess(model(image), model.strides, self.score_thresh, self.nms_thresh, self.max_det)

    def predict_step(self, batch: DetectionBatch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{"image_id", "boxes" (n, 4) xyxy original pixels, "scores", "labels"}`` as NumPy arrays."""
        out = []
        for det, meta in zip(self.detect(batch.image), batch.meta):
            boxes = unletterbox(det["boxes"], meta).cpu().numpy()
            out.append({"image_id": meta.get("image_id"), "boxes": boxes, **_np(det, ("scores", "labels"))})
        return out

    # ------------------------------------------------------------------ evaluation
    def setup(self, stage: str) -> None:
        """Take class names (and, for COCO, the GT json) from the DataModule once it is set up."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        names = getattr(datamodule, "class_names", None)
        if self.class_names is None and names is not None and len(names) == self.num_classes:
            self.class_names = tuple(names)
        gt = getattr(datamodule, "val_ann_file", None) if self.metric == "coco" else None
        self.coco_gt = Path(gt) if gt is not None and Path(gt).suffix == ".json" else None  # VOC lists are not GT
        self.evaluators = {}

    def label_names(self) -> tuple[str, ...]:
        """Class names for logs: ``class_names``, else the DataModule's, else VOC's for 20 classes, else indices."""
        if self.class_names is not None:
            return self.class_names
        return VOC_CLASSES if self.num_classes == len(VOC_CLASSES) else tuple(map(str, range(self.num_classes)))

    def _evaluator(self, who: str) -> DetectionEvaluator:
        if who not in self.evaluators:
            self.evaluators[who] = DetectionEvaluator(self.metric, self.label_names(), self.coco_gt)
        return self.evaluators[who]

    def eval_step(self, batch: DetectionBatch, batch_idx: int) -> None:
        student = self.detect(batch.image)
        _add_records(self._evaluator("student"), student, batch)
        teacher = None
        if self.teacher_due():
            teacher = self.detect(batch.image, self.teachers[0])
            _add_records(self._evaluator("teacher"), teacher, batch)
        if batch_idx == 0 and self.log_images > 0 and isinstance(self.logger, WandbLogger):
            if teacher is None and self.teachers:
                teacher = self.detect(batch.image, self.teachers[0])
            self._log_boxes(batch, student, teacher)

    def eval_epoch_end(self, stage: str) -> None:
        scores = self._evaluator("student").compute()
        self._evaluator("student").reset()
        self.val_scores = scores
        if self.metric == "voc":
            main = {"mAP50": scores["mAP50"], "mAP50_allpoint": scores["mAP50_allpoint"]}
        else:
            main = {"mAP": scores["AP"], "mAP50": scores["AP50"], "mAP75": scores["AP75"]}
        headline = next(iter(main))  # mAP50 (VOC) or mAP@[.5:.95] (COCO)
        for name, value in main.items():
            self.log(f"{stage}/{name}", float(value), prog_bar=name == headline, sync_dist=False)
        for name, value in scores["per_class"].items():
            ap = value["AP50"] if isinstance(value, dict) else value
            if np.isfinite(ap):
                self.log(f"{stage}/AP/{name}", float(ap), sync_dist=False)
        if self.teacher_due():
            teacher = self._evaluator("teacher").compute()
            self._evaluator("teacher").reset()
            value = teacher["mAP50"] if self.metric == "voc" else teacher["AP"]
            self.log(f"{stage}/teacher_{headline}", float(value), sync_dist=False)
            self.val_scores["teacher"] = teacher
            self.teacher_evaluated = True

    # ------------------------------------------------------------------ pictures
    def render(self, batch: DetectionBatch, output: DetectionOutput | None, n: int = 4) -> list[np.ndarray]:
        """Letterboxed images with GT boxes (``output=None``) or the detections of ``output`` scoring ≥ RENDER_SCORE.

        Evaluation keeps every detection above ``score_thresh`` (low by design, for AP); a picture shows only the
        confident ones so that it stays readable.
        """
        names = self.label_names()
        if output is not None:
            dets = postprocess(output, self.student.strides, self.score_thresh, self.nms_thresh, self.max_det)
        pictures = []
        for i in range(min(n, batch.image.shape[0])):
            image = denormalize(batch.image[i])
            if output is None:
                valid = batch.labels[i] >= 0
                pictures.append(
                    draw_boxes(image, batch.boxes[i][valid].cpu().numpy(), batch.labels[i][valid].tolist(), names)
                )
            else:
                d = dets[i]
                keep = d["scores"] >= RENDER_SCORE
                boxes, labels, scores = d["boxes"][keep], d["labels"][keep], d["scores"][keep]
                pictures.append(draw_boxes(image, boxes.cpu().numpy(), labels.tolist(), names, scores.tolist()))
        return pictures

    # ------------------------------------------------------------------ W&B pictures
    def _log_boxes(self, batch: DetectionBatch, student: list[dict], teacher: list[dict] | None) -> None:
        """Log the first ``log_images`` letterboxed images with GT, student and teacher boxes (W&B box overlays)."""
        labels = dict(enumerate(self.label_names()))
        images, boxes = [], []
        for i in range(min(self.log_images, batch.image.shape[0])):
            valid = batch.labels[i] >= 0
            gt = {"boxes": batch.boxes[i][valid], "labels": batch.labels[i][valid]}
            panels = {"ground_truth": gt, "student": student[i]} | ({"teacher": teacher[i]} if teacher else {})
            boxes.append({k: wandb_boxes(v, labels) for k, v in panels.items()})
            images.append(denormalize(batch.image[i]))
        self.logger.log_image(key="val/boxes", images=images, boxes=boxes, step=self.global_step)


def wandb_boxes(det: dict[str, Tensor], class_labels: dict[int, str]) -> dict[str, Any]:
    """W&B ``boxes=`` panel of one image: pixel-domain xyxy boxes with class and optional score."""
    scores = det.get("scores")
    data = []
    for j, (box, label) in enumerate(zip(det["boxes"].tolist(), det["labels"].tolist())):
        entry = {
            "position": {"minX": box[0], "minY": box[1], "maxX": box[2], "maxY": box[3]},
            "domain": "pixel",
            "class_id": int(label),
            "box_caption": class_labels.get(int(label), str(label)),
        }
        if scores is not None:
            entry["scores"] = {"score": float(scores[j])}
            entry["box_caption"] += f" {float(scores[j]):.2f}"
        data.append(entry)
    return {"box_data": data, "class_labels": class_labels}


def _np(det: dict[str, Tensor], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: det[k].cpu().numpy() for k in keys}


def _add_records(evaluator: DetectionEvaluator, dets: list[dict[str, Tensor]], batch: DetectionBatch) -> None:
    """Store detections and GT of a batch in original-image pixels.

    GT = the batch boxes with the letterbox undone (validation applies only the letterbox, so this is exact), with
    ``meta["difficult"]`` flags when the DataModule gives them (VOC).
    """
    if len(batch.meta) != len(dets):
        raise KeyError("DetectionDistiller needs batch.meta with image_id, orig_size, scale and pad for every image")
    for i, (det, meta) in enumerate(zip(dets, batch.meta)):
        valid = batch.labels[i] >= 0
        gt_boxes = unletterbox(batch.boxes[i][valid].float(), meta).cpu().numpy()
        gt_labels = batch.labels[i][valid].cpu().numpy()
        difficult = np.asarray(meta.get("difficult", np.zeros(len(gt_labels))), bool).reshape(-1)
        if len(difficult) != len(gt_labels):
            raise ValueError(
                f"image {meta.get('image_id')}: meta['difficult'] has {len(difficult)} flags for {len(gt_labels)} "
                "boxes; validation must keep every object (VOCDataModule keeps difficult ones for val)"
            )
        key = meta.get("image_id", f"{len(evaluator.records)}")
        evaluator.add(
            ImageRecord(
                key,
                tuple(int(v) for v in meta["orig_size"]),
                unletterbox(det["boxes"], meta).cpu().numpy(),
                **_np(det, ("scores", "labels")),
                gt_boxes=gt_boxes,
                gt_labels=gt_labels,
                gt_difficult=difficult,
            )  # fmt: skip
        )
