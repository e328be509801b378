"""Base class of every distillation term: which taps it reads, its weight and schedule, and its adapters."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..outputs import ModelOutput, TapInfo, get_tap
from ..schedules import Schedule


class DistillLoss(nn.Module):
    """A distillation term between a student and teacher output.

    Subclasses implement :meth:`forward` on the tensors they need; the default :meth:`forward` contract is
    ``forward(student, teacher, batch) -> scalar`` where ``student``/``teacher`` are whole model outputs, so a term can
    read several taps and the GT batch (boxes, labels, visibility). :meth:`select` returns the two declared taps.

    Adapters (1×1 conv + norm, resizing) are created in :meth:`bind`, which the :class:`~kd_suite.Distiller` calls in
    its ``__init__`` with the declared :class:`TapInfo` of both sides. They are ordinary trainable submodules: in the
    optimizer, in checkpoints and under DDP.

    Args:
        weight: multiplier of this term in the total loss.
        schedule: optional per-epoch weight schedule.
        student_tap: name of the student tensor this term reads (``"logits"``, ``"features.2"``...).
        teacher_tap: name of the teacher tensor; defaults to ``student_tap``.
        teacher_index: which teacher to read when several are configured.
    """

    #: Set True in subclasses that consume every teacher (dense multi-teacher terms receive a list of outputs).
    multi_teacher: bool = False

    def __init__(
        self,
        weight: float = 1.0,
        schedule: Schedule | None = None,
        student_tap: str = "logits",
        teacher_tap: str | None = None,
        teacher_index: int = 0,
    ) -> None:
        super().__init__()
        self.weight = weight
        self.schedule = schedule
        self.student_tap = student_tap
        self.teacher_tap = teacher_tap or student_tap
        self.teacher_index = teacher_index

    def bind(self, student: TapInfo, teacher: TapInfo) -> None:
        """Create adapters from the static shapes of the two taps. The default needs none."""

    def select(self, student: ModelOutput, teacher: ModelOutput) -> tuple[Tensor, Tensor]:
        """Return the (student, teacher) tensors named by the term's taps."""
        return get_tap(student, self.student_tap), get_tap(teacher, self.teacher_tap)

    def forward(self, student: ModelOutput, teacher: Any, batch: Any = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"weight={self.weight}, taps={self.student_tap!r}<-{self.teacher_tap!r}"


def check_same_shape(student: Tensor, teacher: Tensor, loss: str) -> None:
    """Raise a clear error if the two tensors differ in shape (after any adapter)."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"{loss}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ; "
            "use taps with equal channels/strides or a loss with an adapter (e.g. FitNetLoss, CWDLoss with adapter)"
        )


def check_ndim(x: Tensor, ndims: tuple[int, ...], loss: str, what: str = "input") -> None:
    """Raise a clear error if ``x.ndim`` is not one of ``ndims``."""
    if x.ndim not in ndims:
        raise ValueError(f"{loss}: {what} must have {' or '.join(map(str, ndims))} dims, got shape {tuple(x.shape)}")


def as_float(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Cast to float32 (losses run in fp32 even under bf16/fp16 autocast); float64 is kept for gradcheck."""
    return tuple(t if t.dtype == torch.float64 else t.float() for t in tensors)
