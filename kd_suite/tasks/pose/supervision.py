"""The supervised (ground-truth) losses of the two kinds of pose student: heatmap and regression.

A :class:`~kd_suite.tasks.pose.PoseDistiller` picks one of them once, from what its student declares it produces
(:func:`student_kind`): a model with a ``heatmaps`` tap is trained on heatmaps, one with ``coords`` and no heatmaps on
coordinates. The two never mix in one step, so each is its own function.

* **Heatmap students** (SimpleBaseline / HRNet): JointsMSE against the GT Gaussians, the suite's convention (mean
  over B·K·h·w, no 0.5 factor unless ``half``; see :func:`~.losses.joints_mse`), plus the same on each
  deep-supervision head resized to the GT size.
* **Regression students** (DistilPose, RLE-style heads): SmoothL1 (β in normalised units; DistilPose uses
  ``SmoothL1Loss(use_target_weight=True)`` with β = 1) or L1 on coordinates normalised to [0, 1], weighted by joint
  visibility; optionally an L1 between the sigmoid confidence and the GT heatmap value at the predicted location, so
  a student trained alone still gets keypoint scores usable for AP rescoring.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data.batch import PoseBatch
from ...models.adapters import resize_to
from ...outputs import PoseOutput
from .distilpose import sample_heatmaps
from .losses import joints_mse

__all__ = ["heatmap_supervision", "regression_supervision", "student_kind"]


def student_kind(model: nn.Module) -> Literal["heatmap", "regression"]:
    """``"heatmap"`` when ``model.tap_info`` declares ``heatmaps``, ``"regression"`` when it declares only ``coords``.

    Raises:
        TypeError: the model declares neither (it is not a pose network of this suite's kind).
    """
    taps = getattr(model, "tap_info", {}) or {}
    if "heatmaps" in taps:
        return "heatmap"
    if "coords" in taps:
        return "regression"
    raise TypeError(
        f"{type(model).__name__} declares neither a 'heatmaps' nor a 'coords' tap; a pose student must produce one "
        f"(declared taps: {sorted(taps)})"
    )


def heatmap_supervision(output: PoseOutput, batch: PoseBatch, half: bool = False) -> dict[str, Tensor]:
    """``{"heatmap": JointsMSE(H, Y), "aux_heatmap": mean over deep-supervision heads}`` (visibility-weighted)."""
    if output.heatmaps is None:
        raise ValueError("a heatmap pose student returned no heatmaps (PoseOutput.heatmaps is None)")
    gt, w = batch.heatmaps.float(), batch.visible.float()  # (B, K, h, w), (B, K)
    if output.heatmaps.shape != gt.shape:
        raise ValueError(
            f"model heatmaps {tuple(output.heatmaps.shape)} and GT heatmaps {tuple(gt.shape)} differ; make the "
            "data's heatmap stride/size match the model's heatmap stride"
        )
    terms = {"heatmap": joints_mse(output.heatmaps.float(), gt, w, half)}
    if output.aux_heatmaps:
        aux = [joints_mse(resize_to(a.float(), gt.shape[-2:]), gt, w, half) for a in output.aux_heatmaps]
        terms["aux_heatmap"] = torch.stack(aux).mean()
    return terms


def regression_supervision(
    output: PoseOutput,
    batch: PoseBatch,
    loss: Literal["smooth_l1", "l1"] = "smooth_l1",
    beta: float = 1.0,
    score_weight: float = 0.0,
) -> dict[str, Tensor]:
    """``{"coord": visibility-weighted SmoothL1/L1 on normalised coordinates, "score": confidence L1 (optional)}``."""
    if output.coords is None:
        raise ValueError("a regression pose student returned no coords (PoseOutput.coords is None)")
    h, w_in = batch.image.shape[-2:]
    coords = output.coords.float()  # (B, K, 2) normalised (x, y)
    target = batch.keypoints.float() / coords.new_tensor([w_in, h])  # (B, K, 2) normalised
    w = batch.visible.float()  # (B, K)
    l1 = loss == "l1"
    err = (coords - target).abs() if l1 else F.smooth_l1_loss(coords, target, beta=beta, reduction="none")  # (B, K, 2)
    terms = {"coord": (err * w.unsqueeze(-1)).mean()}
    if score_weight > 0 and output.scores is not None:
        value, inside = sample_heatmaps(batch.heatmaps.float(), coords.detach())  # (B, K)
        terms["score"] = score_weight * ((torch.sigmoid(output.scores.float()) - value * inside) * w).abs().mean()
    return terms
