"""Runtime guards for distillation runs."""

from __future__ import annotations

import lightning as L

from .distiller import Distiller


class TeacherIntegrityError(RuntimeError):
    """A teacher's weights, buffers or mode changed during training."""


class TeacherIntegrity(L.Callback):
    """Check at every epoch end that each teacher is in eval mode and bit-identical to its state at fit start.

    Hashes every parameter and buffer (BN running statistics included), so a teacher accidentally put in train mode,
    given to the optimizer or updated by an EMA is caught the epoch it happens.

    Args:
        raise_on_change: raise :class:`TeacherIntegrityError` (default) instead of only logging ``kd/teacher_changed``.
    """

    def __init__(self, raise_on_change: bool = True) -> None:
        self.raise_on_change = raise_on_change
        self._reference: list[str] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, Distiller):
            raise TypeError(f"TeacherIntegrity needs a Distiller, got {type(pl_module).__name__}")
        self._reference = pl_module.teacher_fingerprints()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, Distiller)
        changed = [i for i, (a, b) in enumerate(zip(self._reference, pl_module.teacher_fingerprints())) if a != b]
        in_train = [i for i, t in enumerate(pl_module.teachers) if any(m.training for m in t.modules())]
        pl_module.log("kd/teacher_changed", float(bool(changed or in_train)), rank_zero_only=True)
        if (changed or in_train) and self.raise_on_change:
            raise TeacherIntegrityError(
                f"teacher(s) {changed} changed their weights/buffers and teacher(s) {in_train} are in train mode "
                f"at epoch {trainer.current_epoch}; teachers must stay frozen"
            )
