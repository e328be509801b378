"""KD-liveness check: in the first steps of a distillation run, on every rank, each term must train the student.

A distillation term can be silently dead: computed under ``torch.no_grad()`` (a gather across processes), detached,
dropped by a wrapper, left out of the back-propagated total, exactly zero, or wired to a tensor that does not depend
on the student. The run still trains (on the task loss) and looks normal. :class:`KDLiveness` checks each term once,
at the first step where its scheduled weight is non-zero, and warns with :class:`KDLivenessWarning` naming the term,
the rank and what is wrong. On by default in ``kd-suite fit`` (``--guards=false`` turns it off).
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn


class KDLivenessWarning(UserWarning):
    """A distillation term does not train the student."""


#: reasons that depend on the batch's values (a batch can legitimately give 0): only reported when they repeat
VALUE_REASONS = ("its value is exactly 0", "its gradient with respect to the student is exactly zero")


def dead_reason(term: Tensor | None, total: Tensor | None, student: list[nn.Parameter]) -> str | None:
    """Why ``term`` does not train the ``student`` parameters through ``total`` (the loss back-propagated), or None.

    Runs one extra backward pass through the live graph (``retain_graph=True``), so call it before the real one.
    """
    if term is None:
        return "it is missing from the step's distillation terms (a wrapper dropped it)"
    if not term.requires_grad or term.grad_fn is None:
        return (
            "it carries no gradient: it was computed under torch.no_grad() (e.g. a gather across processes) or detached"
        )
    if float(term.detach().float().sum()) == 0.0:
        return VALUE_REASONS[0]
    if total is not None and total.requires_grad:
        (through,) = torch.autograd.grad(total, term, retain_graph=True, allow_unused=True)
        if through is None or not bool(through.any()):
            return "it is not part of the loss that is back-propagated"
    grads = torch.autograd.grad(term, student, retain_graph=True, allow_unused=True) if student else []
    if all(g is None for g in grads):
        return "it does not depend on the student's parameters"
    if not any(bool(g.any()) for g in grads if g is not None):
        return VALUE_REASONS[1]
    return None


class KDLiveness(L.Callback):
    """Warn when a distillation term is zero or sends no gradient to the student, checked early on every rank.

    A term without an autograd graph, missing, left out of the total or not depending on the student is reported at
    once; a term that is exactly zero (or sends exactly zero gradient) only when that holds at ``repeats``
    consecutive checked steps, since one batch can legitimately give 0 (e.g. no pixel passes a teacher filter).

    Args:
        max_steps: stop checking after this many optimizer steps (terms still switched off by their schedule then
            are not checked).
        repeats: consecutive steps a value-dependent reason must hold before it is reported.
    """

    def __init__(self, max_steps: int = 50, repeats: int = 3) -> None:
        self.max_steps, self.repeats = max_steps, repeats
        self._pending: set[str] = set()
        self._seen: dict[str, int] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        losses = getattr(pl_module, "losses", None) or {}
        self._pending, self._seen = set(losses), {}
        for name, loss in losses.items():
            if getattr(loss, "weight", 1.0) == 0:
                self._pending.discard(name)
                self._warn(trainer, name, "its weight is 0, so it never trains the student")

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        if not self._pending or trainer.global_step >= self.max_steps:
            return
        kd = (getattr(pl_module, "last_terms", None) or {}).get("kd", {})
        student = [p for p in getattr(pl_module, "student", pl_module).parameters() if p.requires_grad]
        progress = pl_module._epoch_progress() if hasattr(pl_module, "_epoch_progress") else 0.0
        for name in sorted(self._pending):
            if _factor(pl_module.losses[name], progress, trainer.max_epochs) == 0:
                continue  # scheduled off for now (e.g. warm-up from 0): check it once it counts
            reason = dead_reason(kd.get(name), loss, student)
            self._seen[name] = self._seen.get(name, 0) + 1 if reason in VALUE_REASONS else 0
            if reason in VALUE_REASONS and self._seen[name] < self.repeats:
                continue  # check again on the next step before calling it dead
            self._pending.discard(name)
            if reason in VALUE_REASONS:
                reason = f"{reason} at {self.repeats} consecutive steps"
            if reason is not None:
                self._warn(trainer, name, reason)

    def _warn(self, trainer: L.Trainer, name: str, reason: str) -> None:
        warnings.warn(
            f"KD term '{name}' on rank {trainer.global_rank} at epoch {trainer.current_epoch}, step "
            f"{trainer.global_step}: {reason}. The run trains on the task loss alone for this term; fix the loss "
            f"(or its config under model.init_args.losses.{name})",
            KDLivenessWarning,
            stacklevel=2,
        )


def _factor(loss: Any, progress: float, max_epochs: int | None) -> float:
    """The term's weight times its schedule at ``progress`` (fractional epoch), as the Distiller applies it."""
    weight = float(getattr(loss, "weight", 1.0))
    schedule = getattr(loss, "schedule", None)
    return weight * (schedule.factor(progress, max_epochs) if schedule is not None else 1.0)
