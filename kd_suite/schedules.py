"""Per-term weight schedules for distillation losses (warm-up, linear decay, switch-off)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Schedule:
    """Multiplier applied to a distillation term's weight as training progresses.

    The factor is the product of the enabled parts, evaluated at fractional epoch ``e`` (epoch + batch progress):

    * warm-up: ``min(1, e / warmup_epochs)`` when ``warmup_epochs > 0``;
    * linear decay: ``1 - e / max_epochs`` when ``decay`` (DWPose-style, reaches 0 at the last epoch);
    * off: ``0`` once ``e >= off_after_epoch``.

    With no argument set the schedule is constant 1.

    Args:
        warmup_epochs: length of the linear warm-up in epochs.
        decay: linear decay to zero over ``max_epochs``.
        off_after_epoch: epoch index from which the term is switched off.
    """

    warmup_epochs: float = 0.0
    decay: bool = False
    off_after_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0:
            raise ValueError(f"Schedule.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.off_after_epoch is not None and self.off_after_epoch < 0:
            raise ValueError(f"Schedule.off_after_epoch must be >= 0, got {self.off_after_epoch}")

    def factor(self, epoch: float, max_epochs: int | None) -> float:
        """Weight multiplier at fractional epoch ``epoch``."""
        f = 1.0
        if self.warmup_epochs > 0:
            f *= min(1.0, epoch / self.warmup_epochs)
        if self.decay and max_epochs:
            f *= max(0.0, 1.0 - epoch / max_epochs)
        if self.off_after_epoch is not None and epoch >= self.off_after_epoch:
            f = 0.0
        return f
