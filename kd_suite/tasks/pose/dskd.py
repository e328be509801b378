"""DSKD terms (Wu et al., ICANN 2023): binarized dense multi-teacher guidance and a classification loss.

Only the abstract is public, so everything here is a parameterised reconstruction [RECON, docs/methods.md §2.3]:

* binarization of guide heatmaps (the abstract: teacher heatmaps are noisy; ODKD's "binarization operation"; the
  exact formula is unknown) — modes ``hard``, ``clip`` (default) and ``gt_gated`` (:func:`binarize`);
* densely guided KD: every guide (teacher, assistants, and self-guides: an EMA copy of the student that the
  :class:`~kd_suite.tasks.pose.PoseDistiller` passes as ``guides``, and the student's own deeper heads) supervises
  the student directly, with ``drop_num`` guides dropped at random each step — the confirmed part is DGKD's
  stochastic drop (Son et al., ICCV 2021, wonchulSon/DGKD ``train.py``), moved from logits to heatmaps;
* a spatial classification loss ("pose estimation is also a classification problem").

The full DSKD objective is ``(1 − α)·JointsMSE(H_s, Y, w) + α·L_dense + μ·L_cls``: set the PoseDistiller's
``task_weight`` to 1 − α and the two terms' ``weight`` to α and μ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...data.batch import PoseBatch
from ...losses.base import DistillLoss, as_float, check_ndim
from ...models.adapters import resize_to
from ...outputs import ModelOutput, PoseOutput, get_tap
from .losses import gt_heatmaps, joints_mse, visibility

__all__ = ["BINARIZATIONS", "DenseGuidedHeatmapLoss", "SpatialClassificationLoss", "binarize", "spatial_ce"]

BINARIZATIONS = ("hard", "clip", "gt_gated", "none")
_DEFAULT_THETA = {"hard": 0.5, "clip": 0.1, "gt_gated": 0.01, "none": 0.0}


def binarize(heatmaps: Tensor, mode: str = "clip", theta: float | None = None, gt: Tensor | None = None) -> Tensor:
    """Noise removal on guide heatmaps, per joint channel [RECON].

    * ``hard``: ``1[H ≥ θ·max_hw H]`` (0/1 map; θ = 0.5 by default, i.e. the disc of radius σ√(2 ln 2) of a Gaussian);
    * ``clip``: ``H · 1[H ≥ θ·max_hw H]`` (θ = 0.1: keeps the peak, zeroes low-level clutter);
    * ``gt_gated``: ``H · 1[Y > θ·max_hw Y]`` (θ = 0.01 ≈ the 3σ support of the GT Gaussian Y);
    * ``none``: H unchanged.

    Channels whose maximum is ≤ 0 give all zeros (``hard``/``clip``).

    Shape:
        heatmaps, gt: (B, K, h, w) → (B, K, h, w).
    """
    if mode not in BINARIZATIONS:
        raise ValueError(f"binarize: mode must be one of {BINARIZATIONS}, got {mode!r}")
    theta = _DEFAULT_THETA[mode] if theta is None else theta
    if mode == "none":
        return heatmaps
    if mode == "gt_gated":
        if gt is None:
            raise ValueError("binarize(mode='gt_gated') needs the GT heatmaps (gt=batch.heatmaps)")
        gt = resize_to(gt, heatmaps.shape[-2:])
        return heatmaps * (gt > theta * gt.amax(dim=(-2, -1), keepdim=True)).to(heatmaps.dtype)
    peak = heatmaps.amax(dim=(-2, -1), keepdim=True)  # (B, K, 1, 1)
    mask = (heatmaps >= theta * peak) & (peak > 0)
    return mask.to(heatmaps.dtype) if mode == "hard" else heatmaps * mask


def spatial_ce(heatmaps: Tensor, target_index: Tensor, weight: Tensor, temperature: float = 1.0) -> Tensor:
    """Each joint channel as an h·w-way classifier: ``−Σ w·log softmax_hw(H/τ)[p*] / Σ w``.

    Shape:
        heatmaps: (B, K, h, w); target_index: (B, K) flat index of the target cell; weight: (B, K) → scalar.
    """
    b, k, h, w = heatmaps.shape
    logp = F.log_softmax(heatmaps.reshape(b, k, h * w) / temperature, dim=-1)  # (B, K, h·w)
    nll = -logp.gather(-1, target_index.unsqueeze(-1)).squeeze(-1)  # (B, K)
    return (nll * weight).sum() / weight.sum().clamp_min(1.0)


class DenseGuidedHeatmapLoss(DistillLoss):
    """Densely guided heatmap KD: ``L = agg_{g ∈ kept} JointsMSE(H_s, B(H_g), w)`` (+ deep-supervision self-KD).

    The guides are the term's teacher, then the other teachers (assistants) and the self-guides the Distiller passes
    as ``guides`` (the EMA copy of the student when ``self_kd: ema``). Each step ``drop_num`` of them are removed at
    random (a seeded generator, DGKD's stochastic variant); ``None`` drops 1 when there are ≥ 3 guides, else 0. With
    ``self_aux`` each of the student's ``aux_heatmaps`` is also supervised by every deeper student output (later aux
    heads and the final heatmaps, detached and binarized), averaged over those pairs and added to L.

    Args:
        binarization: guide binarization mode (see :func:`binarize`).
        theta: binarization threshold (mode default when None).
        drop_num: guides dropped per step.
        aggregate: ``"mean"`` over kept guides, or ``"sum"`` (DGKD sums).
        self_aux: add the deeper → shallower self-distillation over the student's aux heads.
        half: 0.5 factor in JointsMSE (False, the suite convention).
        seed: seed of the drop generator.
        student_tap: student heatmaps.
        teacher_tap: guide heatmaps (same tap read from every guide).
    """

    uses_guides = True
    resized = "teacher"

    def __init__(
        self,
        binarization: Literal["hard", "clip", "gt_gated", "none"] = "clip",
        theta: float | None = None,
        drop_num: int | None = None,
        aggregate: Literal["mean", "sum"] = "mean",
        self_aux: bool = False,
        half: bool = False,
        seed: int = 0,
        student_tap: str = "heatmaps",
        teacher_tap: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(student_tap=student_tap, teacher_tap=teacher_tap, **kwargs)
        if binarization not in BINARIZATIONS:
            raise ValueError(f"DenseGuidedHeatmapLoss: binarization must be one of {BINARIZATIONS}")
        if aggregate not in ("mean", "sum"):
            raise ValueError(f"DenseGuidedHeatmapLoss: aggregate must be 'mean' or 'sum', got {aggregate!r}")
        if drop_num is not None and drop_num < 0:
            raise ValueError(f"DenseGuidedHeatmapLoss: drop_num must be >= 0, got {drop_num}")
        self.binarization, self.theta, self.drop_num, self.aggregate = binarization, theta, drop_num, aggregate
        self.self_aux, self.half = self_aux, half
        self.generator = torch.Generator().manual_seed(seed)

    def kept(self, num_guides: int) -> list[int]:
        """Indices of the guides used this step (advances the generator when something is dropped)."""
        drop = (1 if num_guides >= 3 else 0) if self.drop_num is None else self.drop_num
        if drop >= num_guides:
            raise ValueError(f"DenseGuidedHeatmapLoss: drop_num={drop} would drop all {num_guides} guides")
        if drop == 0:
            return list(range(num_guides))
        return sorted(torch.randperm(num_guides, generator=self.generator)[drop:].tolist())

    def forward(
        self,
        student: PoseOutput,
        teacher: list[PoseOutput],
        batch: PoseBatch | None = None,
        guides: Sequence[ModelOutput] = (),
    ) -> Tensor:
        guides = [teacher, *guides]  # the teacher, the other teachers, then the self-guides (EMA copy)
        pairs = [self.pair(student, guides[i], resize=True) for i in self.kept(len(guides))]  # guides on s's grid
        s = pairs[0][0]  # (B, K, h, w): the same student heatmaps in every pair
        w = visibility(batch, s, "DenseGuidedHeatmapLoss")
        gt = as_float(gt_heatmaps(batch, "binarize(gt_gated)"))[0] if self.binarization == "gt_gated" else None
        terms = [joints_mse(s, binarize(g, self.binarization, self.theta, gt), w, self.half) for _, g in pairs]
        loss = torch.stack(terms).sum() if self.aggregate == "sum" else torch.stack(terms).mean()
        if self.self_aux and student.aux_heatmaps:
            outputs = [*as_float(*student.aux_heatmaps), s]  # shallow → deep
            pairs = []
            for i, shallow in enumerate(outputs[:-1]):
                for deep in outputs[i + 1 :]:
                    guide = binarize(resize_to(deep.detach(), shallow.shape[-2:]), self.binarization, self.theta, gt)
                    pairs.append(joints_mse(shallow, guide, w, self.half))
            loss = loss + torch.stack(pairs).mean()
        return loss


class SpatialClassificationLoss(DistillLoss):
    """DSKD classification loss [RECON]: heatmaps as per-joint spatial classifiers.

    * ``spatial_ce`` (default): ``−Σ w·log softmax_hw(H_s/τ)[argmax Y] / Σ w`` (:func:`spatial_ce`);
    * ``spatial_kl``: ``Σ w·KL(softmax(Y/τ) ‖ softmax(H_s/τ)) / Σ w``;
    * ``bce_binary``: ``Σ w·BCEWithLogits(H_s, hard(H_T)) / (Σ w · h·w)`` (pairs with hard binarization).

    CE over h·w ≈ 3000 cells is O(log hw) ≈ 8 against MSE O(1e-3): use a small weight (1e-3 … 1e-1).

    Args:
        mode: ``"spatial_ce"``, ``"spatial_kl"`` or ``"bce_binary"``.
        temperature: softmax temperature τ (CE/KL).
        theta: hard-binarization threshold of the teacher target (``bce_binary``).
        student_tap: student heatmaps.
        teacher_tap: teacher heatmaps (read by ``bce_binary`` only).
    """

    resized = "teacher"

    def __init__(
        self,
        mode: Literal["spatial_ce", "spatial_kl", "bce_binary"] = "spatial_ce",
        temperature: float = 1.0,
        theta: float = 0.5,
        student_tap: str = "heatmaps",
        teacher_tap: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(student_tap=student_tap, teacher_tap=teacher_tap, **kwargs)
        if mode not in ("spatial_ce", "spatial_kl", "bce_binary"):
            raise ValueError(f"SpatialClassificationLoss: mode must be spatial_ce|spatial_kl|bce_binary, got {mode!r}")
        self.mode, self.temperature, self.theta = mode, temperature, theta

    def forward(
        self,
        student: PoseOutput,
        teacher: PoseOutput,
        batch: PoseBatch | None = None,
        guides: Sequence[ModelOutput] = (),
    ) -> Tensor:
        if self.mode == "bce_binary":
            s, t = self.pair(student, teacher, resize=True)  # (B, K, h, w), teacher heatmaps on the student's grid
        else:  # the teacher is not read: only the student tap goes through the checks
            s = as_float(get_tap(student, self.student_tap))[0]
            check_ndim(s, (4,), "SpatialClassificationLoss", f"student {self.student_tap!r}")
        b, k, h, w_ = s.shape
        w = visibility(batch, s, "SpatialClassificationLoss")
        if self.mode == "bce_binary":
            bce = F.binary_cross_entropy_with_logits(s, binarize(t, "hard", self.theta), reduction="none")
            return (bce.mean(dim=(-2, -1)) * w).sum() / w.sum().clamp_min(1.0)
        y = resize_to(as_float(gt_heatmaps(batch, "SpatialClassificationLoss"))[0], (h, w_))
        if self.mode == "spatial_ce":
            return spatial_ce(s, y.reshape(b, k, h * w_).argmax(-1), w, self.temperature)
        log_s = F.log_softmax(s.reshape(b, k, -1) / self.temperature, dim=-1)  # (B, K, h·w)
        log_y = F.log_softmax(y.reshape(b, k, -1) / self.temperature, dim=-1)
        kl = (log_y.exp() * (log_y - log_s)).sum(-1)  # (B, K)
        return (kl * w).sum() / w.sum().clamp_min(1.0)
