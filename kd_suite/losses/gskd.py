"""Global Structural Similarity KD (GSKD), functional and module: pixel sampling, GSSM and sub-image descriptors.

Paper and reference code are cited in :class:`GSKDLoss`. Random draws happen on the CPU in a fixed order, so a
``torch.Generator`` replays them exactly. Per image: for every present class in ascending id order,
``randperm(n_class)`` and, when the class has fewer than ``k`` pixels, ``randperm(n_other)`` for the filler; then one
``rand(M, M)`` whose row-wise argsort gives the shared permutations. (The reference draws the last one on the GPU.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..outputs import ModelOutput, TapInfo, get_tap
from .base import DistillLoss, batch_labels, check_ndim, resize_labels, unbound_error

__all__ = ["GSKDLoss", "class_balanced_indices", "descriptor_loss", "gskd_loss", "random_indices"]


def class_balanced_indices(
    labels: Tensor, k: int, ignore_index: int = 255, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Class-balanced sampling (CBS): exactly ``k`` positions per present class.

    For each class id present in ``labels`` (ascending, ``ignore_index`` excluded): a class with a single pixel is
    skipped (reference behaviour); with ``n ≥ k`` pixels, ``k`` of them are drawn without replacement; with
    ``n < k``, all ``n`` are taken followed by ``k − n`` random positions of OTHER labels (the reference's padding, so a
    small class is padded with foreign pixels).

    Args:
        labels: (P,) integer labels of the candidate positions, on the CPU.
        k: samples per class.
        ignore_index: label that is never a class (it can still be picked as filler if present in ``labels``).
        generator: CPU random generator for replay.

    Returns:
        ``(index, classes)``: (n_cls, k) positions into ``labels`` and the (n_cls,) class ids they stand for.

    Raises:
        ValueError: fewer than ``k`` candidates in total (a class could not be filled to ``k``).
    """
    if labels.ndim != 1 or k < 1:
        raise ValueError(f"class_balanced_indices: need (P,) labels and k >= 1, got {tuple(labels.shape)} and k={k}")
    if len(labels) < k:
        raise ValueError(f"class_balanced_indices: {len(labels)} candidate positions cannot give k={k} per class")
    rows, classes = [], []
    for c in torch.unique(labels).tolist():
        if c == ignore_index:
            continue
        idx = (labels == c).nonzero()[:, 0]  # (n,)
        if len(idx) == 1:
            continue
        perm = torch.randperm(len(idx), generator=generator)
        if len(idx) >= k:
            rows.append(idx[perm[:k]])
        else:
            others = (labels != c).nonzero()[:, 0]
            fill = torch.randperm(len(others), generator=generator)[: k - len(idx)]
            rows.append(torch.cat([idx, others[fill]]))
        classes.append(c)
    if not rows:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.stack(rows), torch.tensor(classes)


def random_indices(
    labels: Tensor, k: int, ignore_index: int = 255, generator: torch.Generator | None = None
) -> tuple[Tensor, int]:
    """Uniform sampling (thesis wording): ``M = k · n_cls`` positions without replacement, no class balance.

    ``n_cls`` counts the classes that class-balanced sampling would use (ids other than ``ignore_index`` with at least
    two pixels), so both modes compare descriptors of the same size. ``M`` is capped at ``len(labels)``.

    Returns:
        ``(index, n_cls)``: (M,) positions into ``labels`` and the class count that sets the group width.
    """
    ids, counts = torch.unique(labels, return_counts=True)
    n_cls = int(((ids != ignore_index) & (counts > 1)).sum())
    m = min(k * n_cls, len(labels))
    return torch.randperm(len(labels), generator=generator)[:m], n_cls


def _descriptor_kl(d_s: Tensor, d_t: Tensor, temperature: float) -> Tensor:
    """``τ² · KL(softmax(d_t/τ) ‖ softmax(d_s/τ)) / numel`` over a flat descriptor (the reference's 1-D batchmean)."""
    log_s = F.log_softmax(d_s.flatten() / temperature, dim=0)
    log_t = F.log_softmax(d_t.flatten() / temperature, dim=0)
    return F.kl_div(log_s, log_t, log_target=True, reduction="sum") / d_s.numel() * temperature**2


def descriptor_loss(
    sim_s: Tensor, sim_t: Tensor, perm: Tensor, width: int, temperature: float = 1.0, faithful: bool = False
) -> Tensor:
    """Sub-image descriptor (SID) loss between two global structural similarity maps (GSSM).

    Every row of both maps is shuffled by the same permutation ``perm[i]``; the shuffled columns are cut into groups
    of ``width``; group ``g`` gives the descriptor ``D^g = V[:, perm[:, g·w:(g+1)·w]]`` (M×w), compared by a softmax
    KL over all its entries (:func:`_descriptor_kl`). The loss is the mean over the groups.

    Remainder columns (``M mod w ≠ 0``): ``faithful=False`` treats them as one more group in the mean; ``faithful=True``
    adds their term undivided to the mean of the full groups, and with ``w > M`` takes a softmax over dim 0 of the whole
    shuffled map with a ÷M reduction, as the reference does.

    Shape:
        sim_s, sim_t, perm: (M, M) → scalar.
    """
    m = sim_s.shape[0]
    if sim_s.shape != (m, m) or sim_t.shape != (m, m) or perm.shape != (m, m):
        raise ValueError(f"descriptor_loss: need (M, M) maps and permutation, got {tuple(sim_s.shape)}")
    if width < 1:
        raise ValueError(f"descriptor_loss: group width must be >= 1, got {width}")
    shuf_s, shuf_t = sim_s.gather(1, perm), sim_t.gather(1, perm)  # (M, M) row-shuffled maps
    n_full = m // width
    if faithful and n_full == 0:
        log_s = F.log_softmax(shuf_s / temperature, dim=0)
        log_t = F.log_softmax(shuf_t / temperature, dim=0)
        return F.kl_div(log_s, log_t, log_target=True, reduction="sum") / m * temperature**2
    terms = [_descriptor_kl(s, t, temperature) for s, t in zip(shuf_s.split(width, 1), shuf_t.split(width, 1))]
    if faithful and m % width:
        return torch.stack(terms[:-1]).mean() + terms[-1]
    return torch.stack(terms).mean()


def _rows(x: Tensor, b: int, keep: Tensor, faithful: bool) -> Tensor:
    """Feature rows (P, C) of the kept positions of image ``b``; ``faithful`` reproduces the reference's reshapes."""
    bsz, c, h, w = x.shape
    if faithful:
        # reference: reshape(B, H, W, C) on a (B, C, H, W) tensor, then .view(C, -1) on the (P, C) rows
        return x.reshape(bsz, h, w, c)[b][keep].reshape(c, -1).t()  # (P, C), scrambled
    return x[b].flatten(1).t()[keep.flatten()]  # (P, C)


def gskd_loss(
    student: Tensor,
    teacher: Tensor,
    labels: Tensor,
    k: int = 8,
    group_width: int = -1,
    temperature: float = 1.0,
    ignore_index: int = 255,
    correct: Tensor | None = None,
    sampling: str = "balanced",
    faithful: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """GSKD: per image, sample ``M`` pixels, build the M×M cosine GSSM of both models, compare sub-image descriptors.

    Per image ``n``: candidates are the positions with a label other than ``ignore_index`` (and, if ``correct`` is
    given, where the teacher is right); ``M = k·n_cls`` rows are sampled (:func:`class_balanced_indices` or
    :func:`random_indices`); rows are L2-normalised features; ``V = X Xᵀ``; the group width is
    ``|group_width|·n_cls`` when ``group_width < 0`` (the scripts use −1) and ``group_width`` otherwise; the image loss
    is :func:`descriptor_loss`. Images with fewer than ``k`` candidates or no usable class are skipped.

    ``faithful=False`` (clean, for training): gradients flow to the student, rows are taken with a permute, and the
    loss is the mean over the contributing images (0 if none). ``faithful=True`` reproduces the released code: the
    student is detached (Q1: no gradient), rows are scrambled by ``reshape`` (Q2), only the LAST image's loss is
    returned (Q3), ignore pixels are not removed from the candidates (they are never teacher-correct), padding as in
    CBS (Q4). Known deviations in edge cases: where the reference returns 0 for the batch because exactly one filler
    pixel exists, that pixel is used here; an image with fewer than ``k`` candidates is skipped here, while the
    reference uses fewer rows (one class) or fails (several classes).

    Args:
        student: projected student features (B, C, h, w) (same shape as the teacher's; not yet normalised).
        teacher: teacher features (B, C, h, w).
        labels: (B, h, w) labels at the feature size.
        k: samples per class (the reference's ``N``; 8 in the authors' scripts).
        group_width: descriptor width ``S``; negative means ``|S|`` times the number of sampled classes; not 0.
        temperature: descriptor softmax temperature τ.
        ignore_index: label id of unlabelled pixels.
        correct: optional (B, h, w) bool, True where the teacher's prediction equals the label.
        sampling: ``"balanced"`` (CBS, the code) or ``"random"`` (uniform, the thesis wording).
        faithful: reproduce the reference's behaviour (see above); needs ``sampling="balanced"``.
        generator: CPU generator; sampling and permutations replay exactly with the same generator state.
    """
    if student.ndim != 4 or student.shape != teacher.shape:
        raise ValueError(
            f"gskd_loss: need (B, C, h, w) features of equal shape, got {tuple(student.shape)}, {tuple(teacher.shape)}"
        )
    if labels.shape != (student.shape[0], *student.shape[2:]):
        raise ValueError(f"gskd_loss: labels must be (B, h, w) = {(student.shape[0], *student.shape[2:])}")
    if correct is not None and correct.shape != labels.shape:
        raise ValueError(f"gskd_loss: correct mask must be {tuple(labels.shape)}, got {tuple(correct.shape)}")
    if sampling not in ("balanced", "random") or (faithful and sampling != "balanced"):
        raise ValueError(f"gskd_loss: sampling must be 'balanced' or 'random' ('balanced' if faithful): {sampling!r}")
    if group_width == 0 or k < 1:
        raise ValueError(f"gskd_loss: need k >= 1 and group_width != 0, got k={k}, group_width={group_width}")
    s = F.normalize(student, dim=1)  # (B, C, h, w), unit feature per position
    t = F.normalize(teacher, dim=1)
    if faithful:
        s, t = s.detach(), t.detach()  # Q1: the reference gathers under no_grad
    losses: list[Tensor | None] = []
    for b in range(student.shape[0]):
        keep = torch.ones_like(labels[b], dtype=torch.bool) if faithful else labels[b] != ignore_index  # (h, w)
        if correct is not None:
            keep = keep & correct[b]
        pool = labels[b][keep].cpu()  # (P,) candidate labels, row order of _rows
        if len(pool) < k:
            losses.append(None)
            continue
        if sampling == "balanced":
            index, classes = class_balanced_indices(pool, k, ignore_index, generator)
            index, n_cls = index.flatten(), len(classes)  # (M,)
        else:
            index, n_cls = random_indices(pool, k, ignore_index, generator)
        if n_cls == 0 or len(index) < 2:
            losses.append(None)
            continue
        index = index.to(student.device)
        x_s = _rows(s, b, keep, faithful)[index]  # (M, C)
        x_t = _rows(t, b, keep, faithful)[index]
        m = len(index)
        perm = torch.rand(m, m, generator=generator).argsort(dim=1).to(student.device)  # (M, M), shared by T and S
        width = -group_width * n_cls if group_width < 0 else group_width
        if not faithful:
            width = min(width, m)
        losses.append(descriptor_loss(x_s @ x_s.t(), x_t @ x_t.t(), perm, width, temperature, faithful))
    if faithful:
        last = losses[-1]
        return last if last is not None else student.new_zeros(())
    kept = [loss for loss in losses if loss is not None]
    return torch.stack(kept).mean() if kept else student.sum() * 0.0


class GSKDLoss(DistillLoss):
    """GSKD: KL between sub-image descriptors of the student's and teacher's global structural similarity maps.

    H. Park, K. Ahn, H. Choi, D. Min, *Global Structural Knowledge Distillation for Semantic Segmentation*, IEEE Access
    2025 (K. Ahn, Ewha MSc thesis 2024); authors' code ``MaryAhn/GSKD`` (``GSKDB``, CIRKD version,
    ``code/CIRKD/losses/gskd_loss_B.py``).

    Per image, ``k`` pixels per present class are sampled (class-balanced; optionally only where the teacher's argmax
    equals the label), their L2-normalised features give M×M cosine-similarity maps (GSSM) for teacher and projected
    student, every row is shuffled by a permutation shared by both, and each group of ``w`` shuffled columns is a
    sub-image descriptor compared with ``τ² · KL(softmax(D_t/τ) ‖ softmax(D_s/τ)) / numel``, averaged over the
    groups and the images (:func:`gskd_loss`). Labels come from ``batch.mask`` (nearest-resized to the feature size);
    the teacher-correct filter reads the teacher's ``teacher_logits_tap``. The projected student is resized onto the
    teacher's grid (feature-map resize policy, always on).

    Confirmed from the code: projector, sampling with padding, GSSM, row shuffle + column groups, τ²·KL÷numel,
    the script values k = 8, S = −1. Reconstructed: the clean mode (gradient to the student, permute instead of
    reshape, mean over all images), which is what the paper describes; ``faithful=True`` reproduces the released code
    (no gradient, reshape scramble, last image only) for oracle comparisons and should not be used to train.

    Args:
        samples_per_class: ``k``, pixels sampled per class (the code's ``N``).
        group_width: descriptor width ``S``; negative means ``|S|`` × number of sampled classes (scripts: −1).
        temperature: descriptor softmax temperature τ (CWD+GSKD and DIST+GSKD scripts: 1; CIRKD argparse: 4).
        ignore_index: label id of unlabelled pixels in ``batch.mask``.
        filter_correct: keep only pixels where the teacher's argmax equals the label (the code always does).
        teacher_logits_tap: teacher tap whose argmax gives the teacher prediction for ``filter_correct``.
        sampling: ``"balanced"`` (class-balanced, the code and the journal) or ``"random"`` (uniform, thesis wording).
        faithful: reproduce the authors' released behaviour (see above).
        seed: seed of a private CPU generator for sampling and permutations; ``None`` uses the global RNG.
        student_tap: student feature tap (the decoder feature that feeds the head).
        **kwargs: other :class:`DistillLoss` arguments (weight, schedule, teacher_tap, teacher_index).
    """

    def __init__(
        self,
        samples_per_class: int = 8,
        group_width: int = -1,
        temperature: float = 1.0,
        ignore_index: int = 255,
        filter_correct: bool = True,
        teacher_logits_tap: str = "logits",
        sampling: Literal["balanced", "random"] = "balanced",
        faithful: bool = False,
        seed: int | None = None,
        student_tap: str = "embedding",
        **kwargs: Any,
    ) -> None:
        super().__init__(student_tap=student_tap, **kwargs)
        if samples_per_class < 1 or group_width == 0 or temperature <= 0:
            raise ValueError(
                f"GSKDLoss: need samples_per_class >= 1, group_width != 0 and temperature > 0, got "
                f"{samples_per_class}, {group_width}, {temperature}"
            )
        if sampling not in ("balanced", "random") or (faithful and sampling != "balanced"):
            raise ValueError(f"GSKDLoss: sampling must be 'balanced' or 'random' (faithful: 'balanced'): {sampling!r}")
        self.samples_per_class, self.group_width, self.temperature = samples_per_class, group_width, temperature
        self.ignore_index, self.filter_correct = ignore_index, filter_correct
        self.teacher_logits_tap = teacher_logits_tap
        self.sampling, self.faithful = sampling, faithful
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.projector: nn.Module | None = None

    def bind(self, student: TapInfo, teacher: TapInfo) -> None:
        """Projector of the reference: Conv1×1(C_s→C_t, no bias) → BN → ReLU → Conv1×1(C_t→C_t, no bias)."""
        c_s, c_t = student.channels, teacher.channels
        self.projector = nn.Sequential(
            nn.Conv2d(c_s, c_t, 1, bias=False), nn.BatchNorm2d(c_t), nn.ReLU(), nn.Conv2d(c_t, c_t, 1, bias=False)
        )

    def teacher_fields(self) -> frozenset[str] | None:
        """The feature tap's field, plus the logits field when the teacher-correct filter reads it."""
        fields = super().teacher_fields()
        if self.filter_correct and fields is not None:
            fields = fields | {self.teacher_logits_tap.partition(".")[0]}
        return fields

    def reseed(self, seed: int) -> None:
        """Restart the private generator (replays sampling and permutations from the start)."""
        self.generator = torch.Generator().manual_seed(seed)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        if self.projector is None:
            raise unbound_error(self)
        s, t = self.pair(student, teacher, adapter=self.projector, resize=True)  # (B, C_t, h, w)
        labels = batch_labels(batch, t, "GSKDLoss")  # (B, h, w)
        correct = None
        if self.filter_correct:
            logits = get_tap(teacher, self.teacher_logits_tap).detach()
            check_ndim(logits, (4,), "GSKDLoss", f"teacher {self.teacher_logits_tap!r}")
            correct = resize_labels(logits.argmax(dim=1), t.shape[-2:]) == labels  # (B, h, w)
        return gskd_loss(
            s,
            t,
            labels,
            k=self.samples_per_class,
            group_width=self.group_width,
            temperature=self.temperature,
            ignore_index=self.ignore_index,
            correct=correct,
            sampling=self.sampling,
            faithful=self.faithful,
            generator=self.generator,
        )
