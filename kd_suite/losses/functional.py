"""Pure tensor functions of the point-wise, feature and channel distillation losses (``(B, C, *)`` in, scalar out).

Nothing here reads a model output or a batch, builds a parameter or detaches a tensor: the modules in ``logit.py``,
``feature.py`` and ``channel.py`` select the taps, run the adapters, detach the teacher and call these functions.
Relation-based terms (DIST, SKD) live in ``relational.py`` and the GSKD math in ``structural.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "at_loss",
    "at_map",
    "cwd_loss",
    "dkd_loss",
    "fitnet_loss",
    "kd_loss",
    "mgd_loss",
    "mgd_mask",
    "pkd_loss",
    "pkd_norm",
    "resize_labels",
]


def _check_pair(student: Tensor, teacher: Tensor, name: str, min_ndim: int = 2) -> None:
    if student.ndim < min_ndim:
        raise ValueError(f"{name}: inputs need at least {min_ndim} dims (B, C, *), got shape {tuple(student.shape)}")
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ; "
            "resize or adapt one side first"
        )


def kd_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0, reduction: str = "pixel") -> Tensor:
    """Hinton KD applied at every position: ``τ² · Σ KL(σ(t/τ) ‖ σ(s/τ)) / D``.

    Hinton et al., *Distilling the Knowledge in a Neural Network*, 2015; dense use as in CIRKD ``CriterionKD``.

    Args:
        student: logits, class dim 1.
        teacher: logits of the same shape.
        temperature: softmax temperature τ.
        reduction: ``"pixel"`` divides by every position ``D = B·∏spatial`` (CIRKD ``CriterionKD``);
            ``"batch"`` divides by ``D = B`` only (mmrazor ``KLDivergence(reduction='batchmean')`` on 4-D input).

    Shape:
        student, teacher: (B, C, *) → scalar.
    """
    _check_pair(student, teacher, "kd_loss")
    if reduction not in ("pixel", "batch"):
        raise ValueError(f"kd_loss: reduction must be 'pixel' or 'batch', got {reduction!r}")
    log_s = F.log_softmax(student / temperature, dim=1)  # (B, C, *)
    log_t = F.log_softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum")
    denom = student.shape[0] if reduction == "batch" else student.numel() // student.shape[1]
    return kl / denom * temperature**2


def dkd_loss(
    student: Tensor, teacher: Tensor, target: Tensor, temperature: float = 1.0, alpha: float = 1.0, beta: float = 8.0
) -> Tensor:
    """Decoupled KD: ``α·TCKD + β·NCKD``, each ``τ² · Σ KL / P`` over the ``P`` rows.

    Zhao et al., *Decoupled Knowledge Distillation*, CVPR 2022; reference mmrazor ``DKDLoss`` (``batchmean``).
    TCKD is the KL between the binary distributions ``[p_gt, 1 − p_gt]``; NCKD is the KL between the distributions
    over the non-target classes (the target logit is pushed down by 1000 before the softmax, as in the reference).
    ``log(1 − p_gt)`` is taken as a log-sum-exp over the non-target classes, equal to the reference's
    ``log(Σ p_non-gt)`` but without underflow.

    Args:
        student: logits (P, K) (flatten dense maps to pixels first).
        teacher: logits (P, K).
        target: (P,) class index of each row.
        temperature: softmax temperature τ.
        alpha: TCKD weight.
        beta: NCKD weight.
    """
    _check_pair(student, teacher, "dkd_loss")
    if student.ndim != 2 or student.shape[1] < 2:
        raise ValueError(f"dkd_loss: expects (P, K) logits with K >= 2, got {tuple(student.shape)}")
    if target.shape != student.shape[:1]:
        raise ValueError(f"dkd_loss: target must be ({student.shape[0]},), got {tuple(target.shape)}")
    if len(target) and (target.min() < 0 or target.max() >= student.shape[1]):
        raise ValueError(f"dkd_loss: target class ids must lie in [0, {student.shape[1]}) (drop ignore pixels first)")
    if not len(target):
        return student.sum() * 0.0
    gt = F.one_hot(target, student.shape[1]).bool()  # (P, K)
    tau = temperature

    def binary_log(z: Tensor) -> Tensor:  # (P, 2): [log p_gt, log(1 − p_gt)]
        log_p = F.log_softmax(z / tau, dim=1)
        log_gt = log_p.masked_select(gt).unsqueeze(1)
        log_rest = log_p.masked_fill(gt, float("-inf")).logsumexp(dim=1, keepdim=True)
        return torch.cat([log_gt, log_rest], dim=1)

    tckd = F.kl_div(binary_log(student), binary_log(teacher), log_target=True, reduction="sum")
    push = 1000.0 * gt  # (P, K)
    log_s_nt = F.log_softmax(student / tau - push, dim=1)  # (P, K), target class ≈ excluded
    log_t_nt = F.log_softmax(teacher / tau - push, dim=1)
    nckd = F.kl_div(log_s_nt, log_t_nt, log_target=True, reduction="sum")
    return (alpha * tckd + beta * nckd) / len(target) * tau**2


def cwd_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """Channel-wise distillation: ``τ²/(B·C) · Σ_{b,c} KL(softmax_HW(t_bc/τ) ‖ softmax_HW(s_bc/τ))``.

    Shu et al., *Channel-wise Knowledge Distillation for Dense Prediction*, ICCV 2021; reference mmrazor
    ``ChannelWiseDivergence`` and CIRKD ``CriterionCWD`` (same reduction).

    Shape:
        student, teacher: (B, C, *) with at least one spatial dim → scalar.
    """
    _check_pair(student, teacher, "cwd_loss", min_ndim=3)
    b, c = student.shape[:2]
    log_s = F.log_softmax(student.reshape(b, c, -1) / temperature, dim=2)  # (B, C, HW): softmax over positions
    log_t = F.log_softmax(teacher.reshape(b, c, -1) / temperature, dim=2)
    return F.kl_div(log_s, log_t, log_target=True, reduction="sum") / (b * c) * temperature**2


def fitnet_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """FitNet hint loss: mean squared error over every element (the regressor is applied by the caller).

    Romero et al., *FitNets: Hints for Thin Deep Nets*, ICLR 2015; reduction as CIRKD ``CriterionFitNet``.
    """
    _check_pair(student, teacher, "fitnet_loss")
    return F.mse_loss(student, teacher)


def at_map(feature: Tensor, p: float = 2.0) -> Tensor:
    """Attention map ``n(f) = vec(mean_c f^p) / ‖·‖₂`` (as the references, no abs): (B, C, *) → (B, ∏spatial)."""
    return F.normalize(feature.pow(p).mean(dim=1).flatten(1), dim=1)


def at_loss(student: Tensor, teacher: Tensor, p: float = 2.0) -> Tensor:
    """Attention transfer: ``mean_{b,i} (n(f_s) − n(f_t))²``; the channel counts may differ.

    Zagoruyko & Komodakis, *Paying More Attention to Attention*, ICLR 2017; reference CIRKD ``CriterionAT`` (p = 2),
    mmrazor ``ATLoss`` (same formula).

    Shape:
        student: (B, C_s, *); teacher: (B, C_t, *) with equal batch and spatial dims → scalar.
    """
    if student.ndim < 3 or student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]:
        raise ValueError(
            f"at_loss: need (B, C, *) maps with equal batch and spatial size, got student {tuple(student.shape)} and "
            f"teacher {tuple(teacher.shape)}"
        )
    return (at_map(student, p) - at_map(teacher, p)).pow(2).mean()


def pkd_norm(feature: Tensor, eps: float = 1e-6) -> Tensor:
    """Standardise each channel over (B, *): ``(f − mean) / (std + eps)``, unbiased std (mmrazor ``PKDLoss``)."""
    flat = feature.transpose(0, 1).reshape(feature.shape[1], -1)  # (C, B·HW)
    flat = (flat - flat.mean(dim=1, keepdim=True)) / (flat.std(dim=1, keepdim=True) + eps)
    return flat.reshape(feature.shape[1], feature.shape[0], *feature.shape[2:]).transpose(0, 1)


def pkd_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """PKD: ``½ · MSE(ν(f_s), ν(f_t))`` with ``ν`` the per-channel standardisation (≈ ``1 − Pearson``).

    Cao et al., *PKD: General Distillation Framework for Object Detectors via Pearson Correlation Coefficient*,
    NeurIPS 2022; reference mmrazor ``PKDLoss`` (unbiased std + 1e-6, mean over every element, then ÷2).
    """
    _check_pair(student, teacher, "pkd_loss", min_ndim=3)
    return F.mse_loss(pkd_norm(student), pkd_norm(teacher)) / 2


def mgd_mask(
    shape: tuple[int, ...],
    mask_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Random keep-mask of MGD: each entry is 0 with probability ``mask_ratio`` (λ) and 1 otherwise.

    Drawn with ``torch.rand`` on the CPU (optionally from ``generator``, so a mask can be replayed exactly) and then
    moved to ``device``. ``shape`` is ``(B, 1, H, W)`` for spatial masking or ``(B, C, 1, 1)`` for channel masking.
    """
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"mgd_mask: mask_ratio must lie in [0, 1], got {mask_ratio}")
    rand = torch.rand(shape, generator=generator)
    return (rand <= 1.0 - mask_ratio).float().to(device)  # zero where rand > 1 − λ, as in mmrazor MGDConnector


def mgd_loss(
    student: Tensor, teacher: Tensor, generation: Callable[[Tensor], Tensor], mask: Tensor, alpha: float = 2e-5
) -> Tensor:
    """Masked generative distillation: ``α · Σ (G(f_s ∘ M) − f_t)² / B``.

    Yang et al., *Masked Generative Distillation*, ECCV 2022; reference mmrazor ``MGDConnector`` + ``MGDLoss``.

    Args:
        student: aligned student feature (B, C, H, W) (channels already mapped to the teacher's).
        teacher: teacher feature (B, C, H, W).
        generation: the generator block ``G`` (conv3-ReLU-conv3 in the module).
        mask: keep-mask broadcastable to the feature, from :func:`mgd_mask`.
        alpha: loss scale ``α`` (mmrazor ``alpha_mgd``).
    """
    _check_pair(student, teacher, "mgd_loss", min_ndim=4)
    generated = generation(student * mask)  # (B, C, H, W)
    return alpha * (generated - teacher).pow(2).sum() / student.shape[0]


def resize_labels(labels: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Nearest-neighbour resize of (B, H, W) integer labels to ``size`` (ignore ids are kept as they are)."""
    if labels.ndim != 3:
        raise ValueError(f"resize_labels: labels must be (B, H, W), got shape {tuple(labels.shape)}")
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")  # (B, 1, h, w)
    return resized[:, 0].long()
