"""PoseDistiller: top-down pose training (heatmap or regression student), flip-test validation and the metrics.

Task loss: heatmap students — JointsMSE against the GT heatmaps (the suite's convention, no 0.5 factor, see
:mod:`.losses`), plus the same on each deep-supervision head; regression students — SmoothL1/L1 on normalised
coordinates weighted by visibility (DistilPose: ``SmoothL1Loss(use_target_weight=True)``, β = 1) and, with
``score_weight``, an L1 between the confidence and the GT heatmap value at the predicted location (so a student
trained alone still gets usable keypoint scores for AP).

Validation: flip test (coordinate averaging, :mod:`.flip`), predictions mapped back to original pixels with the
batch's ``inv_affine``, accumulated over the epoch in a torchmetrics state (concatenated across DDP ranks) and scored
at epoch end: MPII PCKh (``val/PCKh``, ``val/PCKh@0.1``, per-column ``val/PCKh/<joint>``), CrowdPose or COCO AP
(``val/AP``...).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ...data.batch import PoseBatch
from ...distiller import Distiller
from ...losses.base import DistillLoss
from ...metrics.keypoints import evaluate_keypoint_results, keypoint_results
from ...metrics.pckh import pckh_table
from ...models.adapters import resize_to
from ...outputs import ModelOutput, PoseOutput
from ...teacher import freeze
from .distilpose import sample_heatmaps
from .flip import flip_test, predict_coords
from .losses import joints_mse

METRICS = ("pckh", "crowdpose", "coco", "none")
#: joint count → skeleton of kd_suite.viz (MPII 16, CrowdPose 14, COCO 17)
SKELETONS = {16: "mpii", 14: "crowdpose", 17: "coco"}


class PosePredictions(Metric):
    """Epoch accumulator of predictions and GT in original pixels (cat states: DDP-gathered on compute)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("pred", "gt", "visible", "head_size", "image_id", "box_score", "uid"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        pred: Tensor,
        gt: Tensor,
        visible: Tensor,
        head_size: Tensor,
        image_id: Tensor,
        box_score: Tensor,
        uid: Tensor,
    ) -> None:
        self.pred.append(pred)  # (B, K, 3) x, y, confidence
        self.gt.append(gt)  # (B, K, 2)
        self.visible.append(visible)  # (B, K)
        self.head_size.append(head_size)  # (B,)
        self.image_id.append(image_id)  # (B,)
        self.box_score.append(box_score)  # (B,) person-box score (1 for GT boxes)
        self.uid.append(uid)  # (B,) sample id: MPII json row / CrowdPose annotation id, -1 if unknown

    def compute(self) -> dict[str, np.ndarray]:
        """Concatenated arrays; samples repeated by DDP's padding sampler (same ``uid``) are kept once."""
        state = {n: dim_zero_cat(getattr(self, n)).cpu().double().numpy() for n in self._defaults}
        if len(state["uid"]) and (state["uid"] >= 0).all():
            _, first = np.unique(state["uid"], return_index=True)
            state = {n: v[np.sort(first)] for n, v in state.items()}
        return state


def _uid(meta: dict[str, Any]) -> int:
    """A per-sample id for de-duplication: MPII ``index`` (json row) or CrowdPose ``ann_id``; -1 when absent."""
    for key in ("index", "ann_id"):
        if isinstance(meta.get(key), int):
            return meta[key]
    return -1


def to_original(coords: Tensor, input_size: tuple[int, int], inv_affine: Tensor) -> Tensor:
    """Normalised (B, K, 2) crop coordinates → original-image pixels through the (B, 2, 3) inverse affine."""
    h, w = input_size
    xy = coords * coords.new_tensor([w, h])  # (B, K, 2) crop pixels
    return apply_affine(xy, inv_affine)


def apply_affine(points: Tensor, affine: Tensor) -> Tensor:
    """(B, K, 2) points through (B, 2, 3) affines."""
    affine = affine.to(points.dtype)
    return points @ affine[:, :, :2].transpose(1, 2) + affine[:, None, :, 2]


class PoseDistiller(Distiller):
    """Top-down pose :class:`~kd_suite.Distiller` for heatmap teachers/students and regression students.

    Args:
        student, teacher, teacher_ckpt, losses, optimizer, scheduler, scheduler_interval: see :class:`Distiller`.
        metric: ``"pckh"`` (MPII), ``"crowdpose"``, ``"coco"`` (keypoints AP) or ``"none"``.
        val_ann_file: GT json for AP metrics; ``None`` reads ``datamodule.val_ann_file``.
        flip_test: average with the mirrored input at validation.
        flip_pairs: left/right joint pairs; ``None`` reads ``datamodule.flip_pairs``.
        task_weight: multiplier of the supervised term (1 − α in FPD/DSKD mixes; 0 when FPDLoss carries the GT term).
        coord_loss: regression loss, ``"smooth_l1"`` (DistilPose) or ``"l1"``.
        coord_beta: SmoothL1 β in normalised units (1.0 in DistilPose, making it 0.5·MSE on [0, 1] coordinates).
        score_weight: weight of the GT-heatmap score term of regression students (0 disables).
        heatmap_half: 0.5 factor in the heatmap MSE (HRNet convention) instead of the suite's plain mean.
        self_kd: ``"ema"`` adds a detached EMA copy of the student as the last guide of every multi-teacher term
            (DSKD self-guide); ``"none"`` disables.
        ema_decay: EMA decay per step.
        vis_threshold: joint-confidence threshold of the AP instance rescoring.
        log_images: number of first-batch validation crops sent to W&B as GT | teacher | student skeleton
            overlays (only with a WandbLogger; 0 disables).
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
        metric: Literal["pckh", "crowdpose", "coco", "none"] = "pckh",
        val_ann_file: str | None = None,
        flip_test: bool = True,
        flip_pairs: list[list[int]] | None = None,
        task_weight: float = 1.0,
        coord_loss: Literal["smooth_l1", "l1"] = "smooth_l1",
        coord_beta: float = 1.0,
        score_weight: float = 0.01,
        heatmap_half: bool = False,
        self_kd: Literal["none", "ema"] = "none",
        ema_decay: float = 0.999,
        vis_threshold: float = 0.2,
        log_images: int = 4,
    ) -> None:
        super().__init__(student, teacher, teacher_ckpt, losses, optimizer, scheduler, scheduler_interval)
        if metric not in METRICS:
            raise ValueError(f"PoseDistiller: metric must be one of {METRICS}, got {metric!r}")
        if coord_loss not in ("smooth_l1", "l1"):
            raise ValueError(f"PoseDistiller: coord_loss must be 'smooth_l1' or 'l1', got {coord_loss!r}")
        if self_kd not in ("none", "ema"):
            raise ValueError(f"PoseDistiller: self_kd must be 'none' or 'ema', got {self_kd!r}")
        if self_kd == "ema" and not any(loss.multi_teacher for loss in self.losses.values()):
            raise ValueError("PoseDistiller: self_kd='ema' feeds multi-teacher terms; add e.g. DenseGuidedHeatmapLoss")
        self.metric, self.val_ann_file, self.use_flip, self.flip_pairs = metric, val_ann_file, flip_test, flip_pairs
        self.task_weight, self.coord_loss, self.coord_beta = task_weight, coord_loss, coord_beta
        self.score_weight, self.heatmap_half, self.vis_threshold = score_weight, heatmap_half, vis_threshold
        self.self_kd, self.ema_decay, self.log_images = self_kd, ema_decay, log_images
        self.ema_student = freeze(copy.deepcopy(student)) if self_kd == "ema" else None
        self.predictions = PosePredictions()
        #: the last validation epoch's accumulated arrays (``pred`` (N, K, 3) original pixels + confidence, ``gt``...)
        self.last_predictions: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ training
    def task_loss(self, output: PoseOutput, batch: PoseBatch) -> dict[str, Tensor]:
        w = batch.visible.float()  # (B, K)
        if output.heatmaps is not None:
            gt = batch.heatmaps.float()
            if output.heatmaps.shape != gt.shape:
                raise ValueError(
                    f"model heatmaps {tuple(output.heatmaps.shape)} and GT heatmaps {tuple(gt.shape)} differ; "
                    "make the data's heatmap stride/size match the model's heatmap stride"
                )
            terms = {"heatmap": joints_mse(output.heatmaps.float(), gt, w, self.heatmap_half)}
            if output.aux_heatmaps:
                aux = [
                    joints_mse(resize_to(a.float(), gt.shape[-2:]), gt, w, self.heatmap_half)
                    for a in output.aux_heatmaps
                ]
                terms["aux_heatmap"] = torch.stack(aux).mean()
            return {k: self.task_weight * v for k, v in terms.items()}
        if output.coords is None:
            raise ValueError(f"{type(self.student).__name__} returned neither heatmaps nor coords")
        h, w_in = batch.image.shape[-2:]
        coords = output.coords.float()
        target = batch.keypoints.float() / coords.new_tensor([w_in, h])  # (B, K, 2) normalised
        if self.coord_loss == "l1":
            err = (coords - target).abs()
        else:
            err = F.smooth_l1_loss(coords, target, beta=self.coord_beta, reduction="none")
        terms = {"coord": self.task_weight * (err * w.unsqueeze(-1)).mean()}
        if self.score_weight > 0 and output.scores is not None:
            value, inside = sample_heatmaps(batch.heatmaps.float(), coords.detach())  # (B, K)
            score = ((torch.sigmoid(output.scores.float()) - value * inside) * w).abs().mean()
            terms["score"] = self.score_weight * score
        return terms

    @torch.no_grad()
    def teacher_forward(self, image: Tensor) -> list[ModelOutput]:
        outputs = super().teacher_forward(image)
        if self.ema_student is not None:
            outputs.append(self.ema_student(image))  # self-guide, always last
        return outputs

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_student is None:
            return
        with torch.no_grad():
            for e, p in zip(self.ema_student.parameters(), self.student.parameters()):
                e.lerp_(p.detach(), 1.0 - self.ema_decay)
            for e, b in zip(self.ema_student.buffers(), self.student.buffers()):
                e.copy_(b)

    def train(self, mode: bool = True) -> PoseDistiller:
        super().train(mode)
        if self.ema_student is not None:
            self.ema_student.eval()
        return self

    # ------------------------------------------------------------------ validation
    def _datamodule_attr(self, name: str) -> Any:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(dm, name, None)

    def eval_step(self, batch: PoseBatch, batch_idx: int) -> None:
        output = self.student(batch.image)
        bs = batch.image.shape[0]
        stage = "test" if self.trainer.testing else "val"
        self.log(f"{stage}/loss", sum(self.task_loss(output, batch).values()), batch_size=bs, sync_dist=True)
        pairs = self.flip_pairs if self.flip_pairs is not None else self._datamodule_attr("flip_pairs")
        if self.use_flip and pairs is None and batch_idx == 0:
            warnings.warn("flip_test is on but no flip_pairs are known; validating without flip", stacklevel=2)
        coords, conf = flip_test(self.student, batch.image, pairs if self.use_flip else None, output)
        pred = torch.cat([to_original(coords, batch.image.shape[-2:], batch.inv_affine), conf.unsqueeze(-1)], -1)
        gt = apply_affine(batch.keypoints.float(), batch.inv_affine)
        head = torch.tensor([float(m.get("head_size", float("nan"))) for m in batch.meta], device=pred.device)
        ids = [m.get("image_id", -1) for m in batch.meta]
        ids = torch.tensor([i if isinstance(i, int) else -1 for i in ids], device=pred.device)
        box = torch.tensor([float(m.get("score", 1.0)) for m in batch.meta], device=pred.device)
        uid = torch.tensor([_uid(m) for m in batch.meta], device=pred.device)
        self.predictions.update(pred.float(), gt.float(), batch.visible.float(), head, ids, box, uid)
        if batch_idx == 0 and self.log_images > 0:
            self._log_overlays(batch, output)

    def eval_epoch_end(self, stage: str) -> None:
        if self.metric == "none" or not self.predictions.update_called:
            self.predictions.reset()
            return
        state = self.predictions.compute()
        self.predictions.reset()
        self.last_predictions = state
        for key, value in self.score(state).items():
            self.log(f"{stage}/{key}", value, prog_bar=key in ("PCKh", "AP"), rank_zero_only=False)

    def score(self, state: dict[str, np.ndarray]) -> dict[str, float]:
        """The configured metric on accumulated predictions (``pred`` (N, K, 3), ``gt``, ``visible``...)."""
        if self.metric == "pckh":
            if np.isnan(state["head_size"]).any():
                raise ValueError(
                    "metric='pckh' needs meta['head_size'] for every validation sample; the MPII DataModule reads it "
                    "from annot/gt_valid.mat (or annotations/mpii_gt_val.mat): put that file in the dataset root"
                )
            table = pckh_table(state["pred"][..., :2], state["gt"], state["visible"], state["head_size"])
            return {
                "PCKh": table.pop("Mean"),
                "PCKh@0.1": table.pop("Mean@0.1"),
                **{f"PCKh/{k}": v for k, v in table.items()},
            }
        ann = self.val_ann_file or self._datamodule_attr("val_ann_file")
        if ann is None:
            raise ValueError(f"metric={self.metric!r} needs the GT json: set model.init_args.val_ann_file")
        if (state["image_id"] < 0).any():
            raise ValueError("AP metrics need integer meta['image_id'] for every validation sample")
        results = keypoint_results(state["pred"], state["image_id"], self.vis_threshold, state["box_score"])
        return evaluate_keypoint_results(ann, results, self.metric)

    # ------------------------------------------------------------------ pictures
    def render(self, batch: PoseBatch, output: ModelOutput | None, n: int = 4) -> list[np.ndarray]:
        """Skeletons of ``output`` (or of the GT when ``None``) drawn on the first ``n`` crops of ``batch``.

        Predicted joints are drawn when their confidence is at least ``vis_threshold``; GT joints when labelled.
        """
        from ...data.common import denormalize
        from ...viz import draw_pose

        n = min(n, batch.image.shape[0])
        skeleton = SKELETONS.get(batch.keypoints.shape[1])
        if skeleton is None:
            raise ValueError(f"no skeleton drawing for {batch.keypoints.shape[1]} joints (known: {sorted(SKELETONS)})")
        if output is None:
            xy, shown = batch.keypoints[:n].float(), batch.visible[:n] > 0
        else:
            coords, conf = predict_coords(output)
            h, w = batch.image.shape[-2:]
            xy, shown = coords[:n] * coords.new_tensor([w, h]), conf[:n] >= self.vis_threshold
        xy, shown = xy.detach().cpu().numpy(), shown.cpu().numpy()
        return [draw_pose(denormalize(batch.image[i]), xy[i], shown[i], skeleton) for i in range(n)]

    def _log_overlays(self, batch: PoseBatch, output: PoseOutput) -> None:
        from lightning.pytorch.loggers import WandbLogger

        if not isinstance(self.logger, WandbLogger) or not self.trainer.is_global_zero:
            return
        n = self.log_images
        columns, names = [self.render(batch, None, n)], ["ground truth"]
        if self.teachers:
            columns.append(self.render(batch, self.teachers[0](batch.image), n))
            names.append("teacher")
        columns.append(self.render(batch, output, n))
        names.append("student")
        panels = [np.concatenate(row, axis=1) for row in zip(*columns)]  # GT | teacher | student side by side
        caption = " | ".join(names)
        self.logger.log_image(key="val/skeletons", images=panels, caption=[caption] * len(panels))
