"""Global Structural Similarity KD (GSKD) on decoder features of a segmentation/parsing model."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..models.adapters import resize_to
from ..outputs import ModelOutput, TapInfo, get_tap
from .base import DistillLoss, as_float, check_ndim
from .feature import unbound_error
from .functional import resize_labels
from .logit import batch_labels
from .structural import gskd_loss

__all__ = ["GSKDLoss"]


class GSKDLoss(DistillLoss):
    """GSKD: KL between sub-image descriptors of the student's and teacher's global structural similarity maps.

    H. Park, K. Ahn, H. Choi, D. Min, *Global Structural Knowledge Distillation for Semantic Segmentation*, IEEE Access
    2025 (K. Ahn, Ewha MSc thesis 2024); authors' code ``MaryAhn/GSKD`` (``GSKDB``, CIRKD version).

    Per image, ``k`` pixels per present class are sampled (class-balanced; optionally only where the teacher's argmax
    equals the label), their L2-normalised features give M×M cosine-similarity maps (GSSM) for teacher and projected
    student, every row is shuffled by a permutation shared by both, and each group of ``w`` shuffled columns is a
    sub-image descriptor compared with ``τ² · KL(softmax(D_t/τ) ‖ softmax(D_s/τ)) / numel``, averaged over the
    groups and the images (:func:`~kd_suite.losses.structural.gskd_loss`). Labels come from ``batch.mask``
    (nearest-resized to the feature size); the teacher-correct filter reads the teacher's ``teacher_logits_tap``.

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

    def reseed(self, seed: int) -> None:
        """Restart the private generator (replays sampling and permutations from the start)."""
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: Any = None) -> Tensor:
        if self.projector is None:
            raise unbound_error(self)
        s, t = as_float(*self.select(student, teacher))
        check_ndim(s, (4,), "GSKDLoss", "student feature")
        check_ndim(t, (4,), "GSKDLoss", "teacher feature")
        s = resize_to(self.projector(s), t.shape[-2:])  # (B, C_t, h, w)
        t = t.detach()
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
