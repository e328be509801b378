"""PoseScores: the pose task's epoch metric — MPII PCKh, CrowdPose or COCO keypoint AP — on original-pixel joints."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from ...data.batch import PoseBatch, require_targets
from ...evaluation import TaskMetric, first_occurrences, sample_ids
from ...metrics.keypoints import evaluate_keypoint_results, keypoint_results
from ...metrics.pckh import pckh_table

STATES = ("pred", "gt", "visible", "head_size", "image_id", "box_score", "uid")


def to_original(coords: Tensor, input_size: tuple[int, int], inv_affine: Tensor) -> Tensor:
    """Normalised (B, K, 2) crop coordinates → original-image pixels through the (B, 2, 3) inverse affine."""
    h, w = input_size
    xy = coords * coords.new_tensor([w, h])  # (B, K, 2) crop pixels
    return apply_affine(xy, inv_affine)


def apply_affine(points: Tensor, affine: Tensor) -> Tensor:
    """(B, K, 2) points through (B, 2, 3) affines."""
    affine = affine.to(points.dtype)
    return points @ affine[:, :, :2].transpose(1, 2) + affine[:, None, :, 2]


class PosePredictions(TaskMetric):
    """Epoch accumulator of predictions and GT in original pixels (cat states, gathered across DDP ranks).

    :meth:`compute` returns the concatenated arrays with each ``uid`` (sample id) kept once, so the samples that
    DistributedSampler repeats to even out the ranks count once; negative uids (unknown) are all kept.
    """

    def __init__(self) -> None:
        super().__init__()
        for name in STATES:
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
        self.uid.append(uid)  # (B,) sample id, -1 if unknown

    def compute(self) -> dict[str, np.ndarray]:
        state = {n: dim_zero_cat(getattr(self, n)).cpu() for n in STATES}
        keep = first_occurrences(state["uid"])
        return {n: v[keep].double().numpy() for n, v in state.items()}


class PoseScores(PosePredictions):
    """:class:`PosePredictions` fed from a :class:`PoseBatch` and scored with the configured protocol.

    ``update(pred, batch)`` takes (B, K, 3) original-pixel joints with confidence; ``compute`` returns the scores
    (``PCKh``, ``PCKh@0.1``, ``PCKh/<joint>``; or ``AP``, ``AP50`` ...) plus ``"arrays"``, the accumulated predictions.

    Args:
        metric: ``"pckh"``, ``"crowdpose"`` or ``"coco"``.
        ann_file: GT json of the AP metrics.
        vis_threshold: joint-confidence threshold of the AP instance rescoring.
    """

    def __init__(self, metric: str, ann_file: str | None = None, vis_threshold: float = 0.2) -> None:
        super().__init__()
        self.metric, self.ann_file, self.vis_threshold = metric, ann_file, vis_threshold
        self.headline = "PCKh" if metric == "pckh" else "AP"
        self.unit_scale = 1.0 if metric == "pckh" else 100.0  # PCKh tables are in percent, AP in [0, 1]

    def needed_targets(self) -> tuple[str, ...]:
        """The :class:`PoseBatch` evaluation fields the configured metric reads."""
        return ("head_size",) if self.metric == "pckh" else ("image_id", "box_score")

    def update(self, pred: Tensor, batch: PoseBatch) -> None:  # type: ignore[override]
        """Accumulate (B, K, 3) original-pixel predictions with the batch's GT joints and evaluation targets.

        Raises:
            MissingTargetError: the batch lacks a field the metric needs (``head_size`` for PCKh; ``image_id`` and
                ``box_score`` for AP).
        """
        require_targets(batch, self.needed_targets(), f"PoseScores(metric={self.metric!r})")
        device, n = pred.device, pred.shape[0]
        gt = apply_affine(batch.keypoints.float(), batch.inv_affine)  # (B, K, 2) original pixels
        unknown = {"head_size": float("nan"), "image_id": -1, "box_score": 1.0}  # for fields this metric does not read
        head, ids, box = (
            torch.full((n,), fill, device=device) if getattr(batch, k) is None else getattr(batch, k).to(device)
            for k, fill in unknown.items()
        )  # (B,) each
        uid = sample_ids(batch).to(device)  # (B,)
        super().update(pred.float(), gt.float(), batch.visible.float(), head.float(), ids.long(), box.float(), uid)

    def compute(self) -> dict[str, Any]:
        state = super().compute()
        return self.score(state) | {"arrays": state}

    def score(self, state: dict[str, np.ndarray]) -> dict[str, float]:
        """The configured metric on accumulated predictions (``pred`` (N, K, 3), ``gt``, ``visible``...)."""
        if self.metric == "pckh":
            if np.isnan(state["head_size"]).any():
                raise ValueError(
                    "metric='pckh' needs PoseBatch.head_size for every validation sample, but some are NaN "
                    "(unknown); MPIIDataModule reads them from annot/gt_valid.mat (or annotations/mpii_gt_val.mat): "
                    "put that file in the dataset root"
                )
            table = pckh_table(state["pred"][..., :2], state["gt"], state["visible"], state["head_size"])
            return {
                "PCKh": table.pop("Mean"),
                "PCKh@0.1": table.pop("Mean@0.1"),
                **{f"PCKh/{k}": v for k, v in table.items()},
            }
        if self.ann_file is None:
            raise ValueError(f"metric={self.metric!r} needs the GT json: set model.init_args.val_ann_file")
        if (state["image_id"] < 0).any():
            raise ValueError(
                "AP metrics need PoseBatch.image_id (an integer image id, -1 = unknown) for every validation sample; "
                "CrowdPoseDataModule fills it, MPII has none (use metric='pckh')"
            )
        results = keypoint_results(state["pred"], state["image_id"], self.vis_threshold, state["box_score"])
        return evaluate_keypoint_results(self.ann_file, results, self.metric)
