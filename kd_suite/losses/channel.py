"""Channel-wise distillation (CWD) on logits or features, functional and module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..models.adapters import channel_adapter
from ..outputs import ModelOutput, TapInfo
from .base import DistillLoss, check_pair, unbound_error

__all__ = ["CWDLoss", "cwd_loss"]


def cwd_loss(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """Channel-wise distillation: ``τ²/(B·C) · Σ_{b,c} KL(softmax_HW(t_bc/τ) ‖ softmax_HW(s_bc/τ))``.

    Shu et al., *Channel-wise Knowledge Distillation for Dense Prediction*, ICCV 2021; reference mmrazor
    ``ChannelWiseDivergence`` and CIRKD ``CriterionCWD`` (same reduction).

    Shape:
        student, teacher: (B, C, *) with at least one spatial dim → scalar.
    """
    check_pair(student, teacher, "cwd_loss", min_ndim=3)
    b, c = student.shape[:2]
    log_s = F.log_softmax(student.reshape(b, c, -1) / temperature, dim=2)  # (B, C, HW): softmax over positions
    log_t = F.log_softmax(teacher.reshape(b, c, -1) / temperature, dim=2)
    return F.kl_div(log_s, log_t, log_target=True, reduction="sum") / (b * c) * temperature**2


class CWDLoss(DistillLoss):
    """Channel-wise distillation: ``τ²/(B·C) · Σ_{b,c} KL(softmax_HW(y_t/τ) ‖ softmax_HW(y_s/τ))``.

    Shu et al., *Channel-wise Knowledge Distillation for Dense Prediction*, ICCV 2021; reductions of mmrazor
    ``ChannelWiseDivergence`` and CIRKD ``CriterionCWD``. Each channel becomes a distribution over the positions.
    On logits the class counts match and no adapter is built; on features with different widths a 1×1 conv (with
    bias, no norm, as CIRKD) maps the student to the teacher's channels. Used on feature maps and logits alike, it
    follows the feature-map resize policy (the student is resized onto the teacher's grid).

    Args:
        temperature: spatial softmax temperature τ (CIRKD segmentation: 4; mmrazor seg logits and detection FPN: 1).
        adapter: build the 1×1 conv when channels differ; with ``False`` a channel mismatch is an error at bind.
        resize_student: bilinearly resize the student map to the teacher's spatial size when they differ.
        **kwargs: :class:`DistillLoss` arguments.
    """

    def __init__(
        self, temperature: float = 1.0, adapter: bool = True, resize_student: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"CWDLoss: temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.use_adapter = adapter
        self.resize_student = resize_student
        self.adapter: nn.Module | None = None

    def bind(self, student: TapInfo, teacher: TapInfo) -> None:
        if student.channels != teacher.channels and not self.use_adapter:
            raise ValueError(
                f"CWDLoss: taps {self.student_tap!r} ({student.channels} ch) and {self.teacher_tap!r} "
                f"({teacher.channels} ch) differ in channels; set adapter: true or choose matching taps"
            )
        self.adapter = channel_adapter(student.channels, teacher.channels, norm=False)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput, batch: Any = None, guides: Sequence[ModelOutput] = ()
    ) -> Tensor:
        if self.adapter is None:
            raise unbound_error(self)
        s, t = self.pair(student, teacher, adapter=self.adapter, resize=self.resize_student)  # (B, C_t, H, W)
        return cwd_loss(s, t, self.temperature)
