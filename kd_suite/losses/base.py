"""Base class of every distillation term (taps, weight, schedule, adapters, the common preamble) and shared helpers.

**Resize policy (one for every term).** When the two spatial maps a term compares differ in size:

* *feature-map* terms bring the **student onto the teacher's grid** (constructor flag ``resize_student``, default on;
  mmrazor ``PKDLoss(resize_stu=True)``): the student map is resized after its adapter, so the teacher's features,
  which carry the knowledge, are never interpolated;
* *logit / prediction* terms (logits, heatmaps) bring the **teacher onto the student's grid** (flag
  ``resize_teacher``, default on; terms without the flag always do): the student's predictions are supervised at
  their own resolution, as the task loss supervises them.

A term states its side in the class attribute :attr:`DistillLoss.resized`; :meth:`DistillLoss.pair` is the only
place that resizes (bilinear, ``align_corners=False``, 4-D maps only). Ground-truth labels follow the map they label
(nearest, :func:`resize_labels`). A term whose flag is off raises a clear shape error instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.adapters import resize_to
from ..outputs import ModelOutput, TapInfo, get_tap
from ..schedules import Schedule

__all__ = [
    "DistillLoss",
    "as_float",
    "batch_labels",
    "check_ndim",
    "check_pair",
    "check_same_shape",
    "resize_labels",
    "unbound_error",
]


class DistillLoss(nn.Module):
    """A distillation term between a student and teacher output.

    Every term has one signature, ``forward(student, teacher, batch=None, guides=()) -> scalar``: ``student`` and
    ``teacher`` are whole model outputs (the teacher is the one ``teacher_index`` names), so a term can read several
    taps and the GT batch (boxes, labels, visibility). ``guides`` holds the other guides of the step — the remaining
    teachers, then the self-distillation guides the task module supplies explicitly (an EMA copy of the student, see
    :meth:`kd_suite.Distiller.self_guides`) — and is filled only for terms that set :attr:`uses_guides`; the others
    ignore it. :meth:`select` returns the two declared taps and
    :meth:`pair` runs the preamble most terms share (fp32, rank checks, detached teacher, adapter, resize).

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

    #: Set True in terms that read every guide (DSKD's densely guided term): the Distiller then passes the other
    #: teachers and the self-guides as ``guides``.
    uses_guides: ClassVar[bool] = False

    #: The side :meth:`pair` resizes when the spatial sizes differ (module docstring): ``"student"`` for feature-map
    #: terms (onto the teacher's grid), ``"teacher"`` for logit / prediction terms (onto the student's grid).
    resized: ClassVar[Literal["student", "teacher"]] = "student"

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

    def teacher_fields(self) -> frozenset[str] | None:
        """The teacher output fields this term reads (``None``: all of them).

        The teacher fast path computes only the union of its terms' fields where the teacher can skip the others
        (YOLOX skips its cls/reg towers for FSD/FGD/CWD on ``neck.i``); a skipped field reads as a raising
        :class:`~kd_suite.outputs.NotComputed`. The default is the field of :attr:`teacher_tap`, or every field for
        terms that read the guides; a term that reads more fields extends it.
        """
        if self.uses_guides:
            return None
        return frozenset({self.teacher_tap.partition(".")[0]})

    def select(self, student: ModelOutput, teacher: ModelOutput) -> tuple[Tensor, Tensor]:
        """Return the (student, teacher) tensors named by the term's taps."""
        return get_tap(student, self.student_tap), get_tap(teacher, self.teacher_tap)

    def pair(
        self,
        student: ModelOutput,
        teacher: ModelOutput,
        *,
        ranks: tuple[int, ...] = (4,),
        teacher_ranks: tuple[int, ...] | None = None,
        adapter: nn.Module | None = None,
        resize: bool = False,
        same_shape: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """The common preamble: the two taps, fp32, rank-checked, teacher detached, adapted, resized, shape-checked.

        Steps: :meth:`select` → :func:`as_float` → rank check of both sides (the error names the class and the tap)
        → detach the teacher → ``adapter`` on the student → when ``resize`` and both are 4-D maps, resize the side
        named by :attr:`resized` onto the other's grid → when ``same_shape``, :func:`check_same_shape`.

        Args:
            student: student model output.
            teacher: teacher model output.
            ranks: allowed ``ndim`` of the student tap (and of the teacher's unless ``teacher_ranks`` is given).
            teacher_ranks: allowed ``ndim`` of the teacher tap when it differs from the student's.
            adapter: module applied to the (fp32) student tensor, e.g. the 1×1 conv built in :meth:`bind`.
            resize: apply the resize policy (pass the term's ``resize_student`` / ``resize_teacher`` flag).
            same_shape: require equal shapes after adapter and resize.

        Returns:
            ``(s, t)``: the student tensor (in the graph) and the detached teacher tensor, both fp32 (fp64 is kept).
        """
        name = type(self).__name__
        s, t = as_float(*self.select(student, teacher))
        check_ndim(s, ranks, name, f"student {self.student_tap!r}")
        check_ndim(t, teacher_ranks or ranks, name, f"teacher {self.teacher_tap!r}")
        t = t.detach()
        if adapter is not None:
            s = adapter(s)
        if resize and s.ndim == 4 and t.ndim == 4:
            if self.resized == "student":
                s = resize_to(s, t.shape[-2:])  # (B, C, H_t, W_t)
            else:
                t = resize_to(t, s.shape[-2:])  # (B, C, H_s, W_s)
        if same_shape:
            check_same_shape(s, t, name)
        return s, t

    def forward(
        self, student: ModelOutput, teacher: Any, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:  # pragma: no cover
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
        allowed = f"{', '.join(map(str, ndims[:-1]))} or {ndims[-1]}" if len(ndims) > 1 else str(ndims[0])
        raise ValueError(f"{loss}: {what} must have {allowed} dims, got shape {tuple(x.shape)}")


def check_pair(student: Tensor, teacher: Tensor, name: str, min_ndim: int = 2) -> None:
    """Input check of the pure loss functions: at least ``min_ndim`` dims (B, C, *) and equal shapes."""
    if student.ndim < min_ndim:
        raise ValueError(f"{name}: inputs need at least {min_ndim} dims (B, C, *), got shape {tuple(student.shape)}")
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ; "
            "resize or adapt one side first"
        )


def as_float(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Cast to float32 (losses run in fp32 even under bf16/fp16 autocast); float64 is kept for gradcheck."""
    return tuple(t if t.dtype == torch.float64 else t.float() for t in tensors)


def resize_labels(labels: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Nearest-neighbour resize of (B, H, W) integer labels to ``size`` (ignore ids are kept as they are)."""
    if labels.ndim != 3:
        raise ValueError(f"resize_labels: labels must be (B, H, W), got shape {tuple(labels.shape)}")
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")  # (B, 1, h, w)
    return resized[:, 0].long()


def batch_labels(batch: Any, like: Tensor, loss: str) -> Tensor:
    """Ground-truth labels ``batch.mask`` (B, H, W) nearest-resized to the spatial size of ``like`` (B, C, h, w).

    Raises:
        ValueError: the batch has no ``mask`` tensor, or its batch size differs from ``like``'s.
    """
    mask = getattr(batch, "mask", None)
    if not isinstance(mask, Tensor):
        raise ValueError(
            f"{loss} reads per-pixel ground-truth labels from batch.mask, a (B, H, W) tensor of class ids; "
            f"{type(batch).__name__} has none. Use a batch with dense labels or turn the label-dependent option off"
        )
    if mask.ndim != 3 or mask.shape[0] != like.shape[0]:
        raise ValueError(f"{loss}: batch.mask {tuple(mask.shape)} must be (B, H, W) with B = {like.shape[0]}")
    return resize_labels(mask, like.shape[-2:])  # (B, h, w)


def unbound_error(loss: DistillLoss) -> RuntimeError:
    """Error for a term whose adapters do not exist yet because :meth:`DistillLoss.bind` was not called."""
    return RuntimeError(
        f"{type(loss).__name__}: adapters are built by bind(student_tap_info, teacher_tap_info), which the Distiller "
        "calls in its __init__; call loss.bind(...) before using the term on its own"
    )
