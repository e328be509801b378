"""PoseDistiller: top-down pose training (heatmap or regression student), flip-test validation and the metrics.

Task loss: one of the two supervised paths of :mod:`.supervision`, chosen once from the student's declared taps —
heatmap students get JointsMSE against the GT heatmaps (plus deep supervision), regression students SmoothL1/L1 on
normalised coordinates weighted by visibility and, with ``score_weight``, a confidence term.

Validation (the shared protocol of :mod:`kd_suite.evaluation`; the teacher is scored once too): flip test
(coordinate averaging, :mod:`.flip`), predictions mapped back to original pixels with the batch's ``inv_affine``,
accumulated over the epoch in :class:`~.scores.PoseScores` (each sample once across DDP ranks) and scored at epoch
end: MPII PCKh (``val/PCKh``, ``val/PCKh@0.1``, per-column ``val/PCKh/<joint>``), CrowdPose or COCO AP (``val/AP``...).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ...data.batch import PoseBatch
from ...data.facts import DatasetFacts
from ...distiller import Distiller
from ...outputs import ModelOutput, PoseOutput
from ...teacher import freeze
from .flip import flip_test, predict_coords
from .scores import PoseScores, to_original
from .supervision import heatmap_supervision, regression_supervision, student_kind

METRICS = ("pckh", "crowdpose", "coco", "none")


class PoseDistiller(Distiller):
    """Top-down pose :class:`~kd_suite.Distiller` for heatmap teachers/students and regression students.

    Args:
        student: the pose network being trained (heatmap or regression).
        metric: ``"pckh"`` (MPII), ``"crowdpose"``, ``"coco"`` (keypoints AP) or ``"none"``.
        val_ann_file: GT file of the metric (MPII ``gt_valid.mat``, an AP json); ``None`` takes the DataModule's.
        flip_test: average with the mirrored input at validation.
        flip_pairs: left/right joint pairs; ``None`` takes the DataModule's.
        task_weight: multiplier of the supervised term (1 − α in FPD/DSKD mixes; 0 when FPDLoss carries the GT term).
        coord_loss: regression loss, ``"smooth_l1"`` (DistilPose) or ``"l1"``.
        coord_beta: SmoothL1 β in normalised units (1.0 in DistilPose, making it 0.5·MSE on [0, 1] coordinates).
        score_weight: weight of the GT-heatmap score term of regression students (0 disables).
        heatmap_half: 0.5 factor in the heatmap MSE (HRNet convention) instead of the suite's plain mean.
        self_kd: ``"ema"`` passes a detached EMA copy of the student as a self-guide (:meth:`self_guides`) to every
            guide-reading term (DSKD); ``"none"`` disables.
        ema_decay: EMA decay per step.
        vis_threshold: joint-confidence threshold of the AP instance rescoring (and of drawn joints).
        skeleton: the :mod:`kd_suite.viz` skeleton of drawn poses (``"mpii"``, ``"crowdpose"``, ``"coco"``); ``None``
            takes the DataModule's.
        **kwargs: :class:`~kd_suite.Distiller` arguments (``teacher``, ``teacher_ckpt``, ``losses``, ``optimizer``,
            ``scheduler``, ``scheduler_interval``, ``teacher_fast_path``, ``log_images``).
    """

    log_eval_loss = True  # val/loss: the task loss on validation crops

    def __init__(
        self,
        student: nn.Module,
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
        skeleton: Literal["mpii", "crowdpose", "coco"] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(student, **kwargs)
        if metric not in METRICS:
            raise ValueError(f"PoseDistiller: metric must be one of {METRICS}, got {metric!r}")
        if coord_loss not in ("smooth_l1", "l1"):
            raise ValueError(f"PoseDistiller: coord_loss must be 'smooth_l1' or 'l1', got {coord_loss!r}")
        if self_kd not in ("none", "ema"):
            raise ValueError(f"PoseDistiller: self_kd must be 'none' or 'ema', got {self_kd!r}")
        if self_kd == "ema" and not any(loss.uses_guides for loss in self.losses.values()):
            raise ValueError(
                "PoseDistiller: self_kd='ema' passes its EMA guide to terms that read guides (uses_guides); add e.g. "
                "DenseGuidedHeatmapLoss"
            )
        self.metric, self.val_ann_file, self.use_flip, self.flip_pairs = metric, val_ann_file, flip_test, flip_pairs
        self.task_weight, self.coord_loss, self.coord_beta = task_weight, coord_loss, coord_beta
        self.score_weight, self.heatmap_half, self.vis_threshold = score_weight, heatmap_half, vis_threshold
        self.self_kd, self.ema_decay = self_kd, ema_decay
        self.skeleton = skeleton
        self.student_kind = student_kind(student)  # heatmap or regression: one supervised path, chosen once
        self.ema_student = freeze(copy.deepcopy(student)) if self_kd == "ema" else None
        self._warned_flip = False

    @classmethod
    def standalone_arguments(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """No EMA self-guide without distillation terms."""
        return hparams | {"self_kd": "none"}

    # ------------------------------------------------------------------ training
    def task_loss(self, output: PoseOutput, batch: PoseBatch) -> dict[str, Tensor]:
        """The supervised terms of the student's kind (:mod:`.supervision`), ``task_weight`` on the GT terms."""
        if self.student_kind == "heatmap":
            terms = heatmap_supervision(output, batch, self.heatmap_half)
            return {k: self.task_weight * v for k, v in terms.items()}
        terms = regression_supervision(output, batch, self.coord_loss, self.coord_beta, self.score_weight)
        return terms | {"coord": self.task_weight * terms["coord"]}

    @torch.no_grad()
    def self_guides(self, image: Tensor) -> list[ModelOutput]:
        """The EMA copy's output when ``self_kd: ema`` (DSKD's self-guide), passed to guide-reading terms."""
        return [self.ema_student(image)] if self.ema_student is not None else []

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
    def link_data(self, facts: DatasetFacts) -> None:
        """Unset flip pairs, GT file and skeleton come from the data (the joint count is checked at setup)."""
        super().link_data(facts)
        if self.flip_pairs is None and facts.flip_pairs:
            self.flip_pairs = [list(p) for p in facts.flip_pairs]
        if self.val_ann_file is None and facts.val_ann_file is not None:
            self.val_ann_file = str(facts.val_ann_file)
        if self.skeleton is None:
            self.skeleton = facts.skeleton

    def decode(self, model: nn.Module, batch: PoseBatch, output: PoseOutput) -> Tensor:
        """(B, K, 3) joints in original-image pixels + confidence, flip-tested when ``flip_test`` (pairs known)."""
        return self.predict_joints(batch.image, batch.inv_affine, model, output)

    def predict_joints(
        self, image: Tensor, inv_affine: Tensor, model: nn.Module | None = None, output: PoseOutput | None = None
    ) -> Tensor:
        """(B, K, 3) joints of ``model`` (the student by default) on person crops, in original-image pixels.

        Args:
            image: (B, 3, H, W) crops.
            inv_affine: (B, 2, 3) crop pixels → original-image pixels of each crop.
            model: the pose network; ``None`` is the student.
            output: ``model``'s output on ``image`` when already computed.

        Returns:
            (B, K, 3) ``x, y`` original pixels and confidence, flip-tested when ``flip_test`` (and pairs are known).
        """
        model = self.student if model is None else model
        pairs = self.flip_pairs
        if self.use_flip and pairs is None and not self._warned_flip:
            warnings.warn("flip_test is on but no flip_pairs are known; decoding without flip", stacklevel=2)
            self._warned_flip = True
        coords, conf = flip_test(model, image, pairs if self.use_flip else None, output)  # (B, K, 2), (B, K)
        return torch.cat([to_original(coords, image.shape[-2:], inv_affine), conf.unsqueeze(-1)], -1)  # (B, K, 3)

    def build_metric(self) -> PoseScores | None:
        if self.metric == "none":
            return None
        return PoseScores(self.metric, self.val_ann_file, self.vis_threshold)

    # ------------------------------------------------------------------ pictures
    def render(self, batch: PoseBatch, output: ModelOutput | None, n: int = 4) -> list[np.ndarray]:
        """Skeletons of ``output`` (or of the GT when ``None``) drawn on the first ``n`` crops of ``batch``.

        Predicted joints are drawn when their confidence is at least ``vis_threshold``; GT joints when labelled.
        """
        from ...data.common import denormalize
        from ...viz import draw_pose

        n = min(n, batch.image.shape[0])
        skeleton = self.skeleton
        if skeleton is None:
            raise ValueError(
                "no skeleton to draw the poses with: set model.init_args.skeleton ('mpii', 'crowdpose', 'coco') or "
                "link a DataModule that publishes one (module.link_data(datamodule.facts))"
            )
        if output is None:
            xy, shown = batch.keypoints[:n].float(), batch.visible[:n] > 0
        else:
            coords, conf = predict_coords(output)
            h, w = batch.image.shape[-2:]
            xy, shown = coords[:n] * coords.new_tensor([w, h]), conf[:n] >= self.vis_threshold
        xy, shown = xy.detach().cpu().numpy(), shown.cpu().numpy()
        return [draw_pose(denormalize(batch.image[i]), xy[i], shown[i], skeleton) for i in range(n)]
