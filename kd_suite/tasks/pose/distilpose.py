"""Heatmap → regression distillation terms (Wei & Hu, PRL 2024: DistilPose-style KD plus the attention loss L_A).

What is confirmed and what is reconstructed:

* :class:`SimulatedHeatmapLoss` (Reg2HM) and :class:`ScoreDistillLoss` follow DistilPose's ``dist_loss.py``
  (yshMars/DistilPose@91651a8, confirmed code), with two stated deviations: scores are compared after a sigmoid
  (:class:`~kd_suite.outputs.PoseOutput` scores are logits; DistilPose compares the raw output), and the teacher value
  is read at ``round(x·w)`` (the suite's coordinate convention) instead of DistilPose's ``round(x·(w−1))``.
* :class:`CoordDistillLoss` (teacher heatmaps decoded to coordinates + confidences as soft regression targets) is
  a reconstruction of the PRL 2024 paper's "heatmap → regression" transfer [RECON]; DistilPose itself transfers
  coordinates only through Reg2HM and tokens.
* :class:`AttentionLoss` (L_A) is a reconstruction [RECON, docs/methods.md §4.3]: the abstract says it "emulates the
  effect of additional transformer layers"; no formula or code is public.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ...data.batch import PoseBatch
from ...losses.base import DistillLoss, as_float, check_ndim
from ...outputs import ModelOutput, PoseOutput
from .codec import simulated_heatmaps
from .losses import joints_mse, visibility

__all__ = [
    "AttentionLoss",
    "CoordDistillLoss",
    "ScoreDistillLoss",
    "SimulatedHeatmapLoss",
    "attention_kl",
    "heatmap_prior",
    "sample_heatmaps",
]


def sample_heatmaps(heatmaps: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest heatmap value at normalised coordinates: ``H[n, k, round(y·h), round(x·w)]`` (clamped to the map).

    Returns:
        values (B, K) and the mask (B, K) of coordinates inside [0, 1]² (DistilPose zeroes the target outside).
    """
    b, k, h, w = heatmaps.shape
    xi = (coords[..., 0].clamp(0, 1) * w).round().long().clamp(0, w - 1)  # (B, K)
    yi = (coords[..., 1].clamp(0, 1) * h).round().long().clamp(0, h - 1)
    values = heatmaps.reshape(b, k, h * w).gather(-1, (yi * w + xi).unsqueeze(-1)).squeeze(-1)  # (B, K)
    inside = ((coords >= 0) & (coords <= 1)).all(-1)
    return values, inside.to(heatmaps.dtype)


def heatmap_prior(heatmaps: Tensor, grid: tuple[int, int], eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """Teacher-heatmap spatial prior on the token grid: ``normalise(avgpool(relu(H)))``.

    Returns:
        q (B, K, P) summing to 1 over the P = gh·gw cells, and the mask (B, K) of joints with positive mass.
    """
    pooled = F.adaptive_avg_pool2d(heatmaps.clamp_min(0), grid).flatten(2)  # (B, K, P)
    mass = pooled.sum(-1, keepdim=True)  # (B, K, 1)
    return pooled / mass.clamp_min(eps), (mass.squeeze(-1) > eps).to(heatmaps.dtype)


def attention_kl(target: Tensor, attention: Tensor, weight: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """``Σ w_nk KL(q_nk ‖ ā_nk) / Σ w`` between distributions over the P visual tokens.

    Shape:
        target, attention: (B, K, P), rows summing to 1; weight: (B, K) or None (mean over B·K) → scalar.
    """
    kl = (target * (target.clamp_min(eps).log() - attention.clamp_min(eps).log())).sum(-1)  # (B, K)
    if weight is None:
        return kl.mean()
    return (kl * weight).sum() / weight.sum().clamp_min(1.0)


def _renormalised(attn: Tensor, per_head: bool) -> Tensor:
    """(B, heads, K, P) keypoint → visual block, each row renormalised over P; head-averaged unless ``per_head``."""
    attn = attn / attn.sum(-1, keepdim=True).clamp_min(1e-12)
    return attn if per_head else attn.mean(1)


class CoordDistillLoss(DistillLoss):
    """Teacher coordinates as soft targets: ``mean_{n,k,d}(c_nk · ℓ(p_s − p_t))`` [RECON].

    ``p_t`` are the teacher's decoded (e.g. DARK) normalised coordinates, ``c = sigmoid(teacher scores)`` its peak
    confidence (times the GT visibility when ``use_visible``), ℓ = SmoothL1(β) or L1. Mean over B·K·2, like mmpose's
    target-weighted regression losses.

    Args:
        loss: ``"smooth_l1"`` or ``"l1"``.
        beta: SmoothL1 transition point (normalised units).
        confidence: weight by the teacher confidence (False: plain L1/SmoothL1 to the teacher coordinates).
        use_visible: also weight by the GT visibility.
        student_tap: student coordinates.
        teacher_tap: teacher coordinates (a heatmap teacher decodes them in eval mode).
    """

    def __init__(
        self,
        loss: Literal["l1", "smooth_l1"] = "l1",
        beta: float = 0.05,
        confidence: bool = True,
        use_visible: bool = False,
        student_tap: str = "coords",
        teacher_tap: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(student_tap=student_tap, teacher_tap=teacher_tap, **kwargs)
        if loss not in ("smooth_l1", "l1"):
            raise ValueError(f"CoordDistillLoss: loss must be 'smooth_l1' or 'l1', got {loss!r}")
        self.loss, self.beta, self.confidence, self.use_visible = loss, beta, confidence, use_visible

    def teacher_fields(self) -> frozenset[str] | None:
        """The coordinate tap's field, plus ``scores`` when they weight the joints (``confidence``)."""
        fields = super().teacher_fields()
        return fields | {"scores"} if self.confidence and fields is not None else fields

    def forward(
        self,
        student: PoseOutput,
        teacher: PoseOutput,
        batch: PoseBatch | None = None,
        guides: Sequence[ModelOutput] = (),
    ) -> Tensor:
        s, t = self.pair(student, teacher, ranks=(3,))  # (B, K, 2) normalised coordinates
        l1 = self.loss == "l1"
        err = (s - t).abs() if l1 else F.smooth_l1_loss(s, t, beta=self.beta, reduction="none")  # (B, K, 2)
        w = torch.ones_like(err[..., 0])  # (B, K)
        if self.confidence:
            if teacher.scores is None:
                raise ValueError("CoordDistillLoss(confidence=True): the teacher output has no scores")
            check_ndim(teacher.scores, (2,), "CoordDistillLoss", "teacher scores")
            w = w * torch.sigmoid(as_float(teacher.scores.detach())[0])
        if self.use_visible:
            w = w * visibility(batch, s, "CoordDistillLoss(use_visible=True)")
        return (err * w.unsqueeze(-1)).mean()


class SimulatedHeatmapLoss(DistillLoss):
    """DistilPose Reg2HM: Gaussians rendered from the student's coords and σ vs the teacher heatmaps (JointsMSE).

    ``L = mean((w · (G(μ_s, σ_s) − H_t))²)`` with ``μ = coords·(w, h)``, ``σ = sigmas·(w, h)`` on the teacher's
    heatmap grid, ``w`` = visibility × (3σ box inside the map) (confirmed: ``Reg2HMLoss(use_target_weight=True,
    unbiased_encoding=True, gaussian_mode='s2')``, loss weight 1 in DistilPose-S).

    Args:
        use_visible: multiply by the GT visibility (DistilPose ``use_target_weight=True``).
        half: 0.5 factor (False, as mmpose's ``JointsMSELoss`` used by DistilPose).
        student_tap: student coordinates (the student's ``sigmas`` are read alongside).
        teacher_tap: teacher heatmaps.
    """

    def __init__(
        self,
        use_visible: bool = True,
        half: bool = False,
        student_tap: str = "coords",
        teacher_tap: str | None = "heatmaps",
        **kwargs,
    ) -> None:
        super().__init__(student_tap=student_tap, teacher_tap=teacher_tap, **kwargs)
        self.use_visible, self.half = use_visible, half

    def forward(
        self,
        student: PoseOutput,
        teacher: PoseOutput,
        batch: PoseBatch | None = None,
        guides: Sequence[ModelOutput] = (),
    ) -> Tensor:
        coords, heat_t = self.pair(student, teacher, ranks=(3,), teacher_ranks=(4,), same_shape=False)
        if student.sigmas is None:
            raise ValueError("SimulatedHeatmapLoss: the student output has no sigmas (use a RegressionPoseNet)")
        sigmas = as_float(student.sigmas)[0]  # (B, K, 2)
        if sigmas.shape != coords.shape:
            raise ValueError(
                f"SimulatedHeatmapLoss: sigmas {tuple(sigmas.shape)} must match coords {tuple(coords.shape)}"
            )
        sim, inside = simulated_heatmaps(coords, sigmas, heat_t.shape[-2:])  # (B, K, h, w), (B, K)
        w = inside * visibility(batch, coords, "SimulatedHeatmapLoss") if self.use_visible else inside
        return joints_mse(sim, heat_t, w, self.half)


class ScoreDistillLoss(DistillLoss):
    """DistilPose ScoreLoss: L1 between the student confidence and the teacher heatmap at the student's location.

    ``L = mean_{n,k} |w·sigmoid(s) − w·H_t[round(y·h), round(x·w)]·1[p ∈ [0,1]²]|`` (confirmed form, see the module
    docstring for the two deviations). Weight 0.01 in DistilPose-S.

    Args:
        use_visible: weight by the GT visibility (DistilPose ``use_target_weight=True``).
        student_tap: student score logits (the student's ``coords`` are read alongside).
        teacher_tap: teacher heatmaps.
    """

    def __init__(
        self, use_visible: bool = True, student_tap: str = "scores", teacher_tap: str | None = "heatmaps", **kwargs
    ) -> None:
        super().__init__(student_tap=student_tap, teacher_tap=teacher_tap, **kwargs)
        self.use_visible = use_visible

    def forward(
        self,
        student: PoseOutput,
        teacher: PoseOutput,
        batch: PoseBatch | None = None,
        guides: Sequence[ModelOutput] = (),
    ) -> Tensor:
        scores, heat_t = self.pair(student, teacher, ranks=(2,), teacher_ranks=(4,), same_shape=False)  # (B, K)
        if student.coords is None:
            raise ValueError("ScoreDistillLoss: the student output has no coords")
        check_ndim(student.coords, (3,), "ScoreDistillLoss", "student coords")
        coords = as_float(student.coords.detach())[0]  # (B, K, 2), a sampling location only: no gradient
        target, inside = sample_heatmaps(heat_t, coords)  # (B, K)
        target = target * inside
        pred = torch.sigmoid(scores)
        if self.use_visible:
            w = visibility(batch, pred, "ScoreDistillLoss")
            pred, target = pred * w, target * w
        return (pred - target).abs().mean()


class AttentionLoss(DistillLoss):
    """Attention loss L_A [RECON]: the student's keypoint-token → visual-token attention vs a spatial target.

    Attention rows are renormalised over the P visual tokens and head-averaged (ā). Modes:

    * ``"heatmap"``: ``q = normalise(avgpool_grid(relu(H_T)))`` (teacher heatmap pooled to the token grid) and
      ``L = Σ w KL(q ‖ ā^S) / Σ w``; needs no teacher transformer.
    * ``"attn"``: the teacher's own attention (same token grid), ``L = mean KL(ā^T ‖ ā^S)``; layers paired by
      ``layers``.

    Args:
        mode: ``"heatmap"`` or ``"attn"``.
        layers: ``"last"`` (last student layer vs the target: the teacher's last layer in ``attn`` mode), ``"all"``
            (every student layer vs the same target, averaged) or ``"uniform"`` (``attn`` mode: student layer
            ``l`` ↦ teacher layer ``round((l+1)·L_T/L_S) − 1``, TinyBERT-style, averaged).
        grid: (gh, gw) visual-token grid; ``None`` infers a square grid from P.
        per_head: compare heads one by one (``attn`` mode, equal head counts) instead of head averages.
        use_visible: weight joints by the GT visibility.
        student_tap: a student attention tap (declares the dependency; every layer is read from ``attentions``).
        teacher_tap: teacher heatmaps (``heatmap`` mode) or attentions (``attn`` mode); defaults by mode.
    """

    def __init__(
        self,
        mode: Literal["heatmap", "attn"] = "heatmap",
        layers: Literal["last", "all", "uniform"] = "last",
        grid: tuple[int, int] | None = None,
        per_head: bool = False,
        use_visible: bool = True,
        student_tap: str = "attentions.-1",
        teacher_tap: str | None = None,
        **kwargs,
    ) -> None:
        if mode not in ("heatmap", "attn"):
            raise ValueError(f"AttentionLoss: mode must be 'heatmap' or 'attn', got {mode!r}")
        if layers not in ("last", "all", "uniform") or (layers == "uniform" and mode != "attn"):
            raise ValueError(f"AttentionLoss: layers={layers!r} is not one of last|all|uniform (uniform: attn mode)")
        teacher_tap = teacher_tap or ("heatmaps" if mode == "heatmap" else "attentions.-1")
        super().__init__(student_tap=student_tap, teacher_tap=teacher_tap, **kwargs)
        self.mode, self.layers, self.per_head, self.use_visible = mode, layers, per_head, use_visible
        self.grid = tuple(grid) if grid is not None else None

    def _grid(self, p: int) -> tuple[int, int]:
        if self.grid is not None:
            if self.grid[0] * self.grid[1] != p:
                raise ValueError(f"AttentionLoss: grid {self.grid} has {self.grid[0] * self.grid[1]} cells, P={p}")
            return self.grid
        side = round(p**0.5)
        if side * side != p:
            raise ValueError(f"AttentionLoss: P={p} visual tokens are not a square grid; set grid: [gh, gw]")
        return side, side

    def forward(
        self,
        student: PoseOutput,
        teacher: PoseOutput,
        batch: PoseBatch | None = None,
        guides: Sequence[ModelOutput] = (),
    ) -> Tensor:
        _, target = self.select(student, teacher)  # teacher heatmaps (heatmap mode); also checks both taps exist
        s_layers = self._layers(student, "student")
        w = visibility(batch, s_layers[0], "AttentionLoss(use_visible=True)") if self.use_visible else None
        if self.mode == "heatmap":
            check_ndim(target, (4,), "AttentionLoss", f"teacher {self.teacher_tap!r}")
            heat = as_float(target.detach())[0]  # (B, K, h, w)
            q, has_mass = heatmap_prior(heat, self._grid(s_layers[-1].shape[-1]))  # (B, K, P)
            w = has_mass if w is None else w * has_mass
            chosen = s_layers if self.layers == "all" else s_layers[-1:]
            return sum(attention_kl(q, _renormalised(a, False), w) for a in chosen) / len(chosen)
        t_layers = [a.detach() for a in self._layers(teacher, "teacher")]
        pairs = self._pairs(len(s_layers), len(t_layers))
        terms = []
        for i, j in pairs:
            a_s, a_t = _renormalised(s_layers[i], self.per_head), _renormalised(t_layers[j], self.per_head)
            if a_s.shape != a_t.shape:
                raise ValueError(
                    f"AttentionLoss(attn): student attention {tuple(a_s.shape)} and teacher {tuple(a_t.shape)} differ; "
                    "the two token grids (and head counts with per_head) must match"
                )
            if self.per_head:  # (B, heads, K, P): average the per-head KL over heads
                a_s, a_t = a_s.transpose(1, 2).flatten(2, 3), a_t.transpose(1, 2).flatten(2, 3)  # (B, K, heads·P)
                terms.append(attention_kl(a_t, a_s, w) / s_layers[i].shape[1])
            else:
                terms.append(attention_kl(a_t, a_s, w))
        return sum(terms) / len(terms)

    @staticmethod
    def _layers(output: PoseOutput, side: str) -> list[Tensor]:
        """Every attention layer of ``output`` in fp32, each checked to be (B, heads, K, P)."""
        layers = list(as_float(*output.attentions))
        for i, a in enumerate(layers):
            check_ndim(a, (4,), "AttentionLoss", f"{side} attentions.{i}")
        return layers

    def _pairs(self, n_s: int, n_t: int) -> list[tuple[int, int]]:
        if self.layers == "last":
            return [(n_s - 1, n_t - 1)]
        if self.layers == "all":
            return [(i, n_t - 1) for i in range(n_s)]
        return [(i, max(0, round((i + 1) * n_t / n_s) - 1)) for i in range(n_s)]
