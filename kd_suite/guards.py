"""Divergence guard: a non-finite loss, gradient or weight stops the run with one message, and nothing non-finite is
ever written to a checkpoint.

On by default in ``kd-suite fit`` (see :func:`default_callbacks`; ``--guards=false`` turns every guard off). Checks:

* before each optimizer step: every loss term (``train/task/*``, ``train/kd/*``, read from the Distiller's
  ``last_terms``) and every gradient is finite — otherwise :class:`DivergenceError` names the term(s) or parameters,
  the step and the epoch, before the bad update is applied;
* the weights are finite at each epoch's end, and whenever a loss or gradient is not (an optimizer step with a huge
  learning rate can overflow finite gradients into Inf weights: the next step's loss is then NaN, and the message
  names the weights and the learning rate rather than the loss). Checking them after every step would cost a pass
  over all weights per step (≈ 5 % of a small CPU step) to find the same thing one step earlier;
* when a checkpoint is about to be written (``ModelCheckpoint``, ``last.ckpt``, ``trainer.save_checkpoint``): no
  tensor of the weights or the optimizer state is NaN/Inf — otherwise nothing is written;
* a :class:`DivergenceWarning` when a distillation term stays more than ``ratio`` × the task loss for ``patience``
  steps in a row (its weight is probably off by orders of magnitude).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss, gradient or weight; the run stopped before anything bad was saved."""


class DivergenceWarning(UserWarning):
    """A distillation term dwarfs the task loss for many steps."""


def loss_terms(pl_module: L.LightningModule) -> dict[str, Tensor]:
    """The last training step's terms as ``{"task/<name>": value, "kd/<name>": value}`` (empty if not recorded)."""
    terms = getattr(pl_module, "last_terms", None) or {}
    return {f"{group}/{name}": value for group in ("task", "kd") for name, value in terms.get(group, {}).items()}


def finite_flags(tensors: list[Tensor]) -> Tensor:
    """(N,) bool on the tensors' device: True where every element of the tensor is finite (one fused pass)."""
    if not tensors:
        return torch.ones(0, dtype=torch.bool)
    try:
        norms = torch._foreach_norm(tensors, float("inf"))  # NaN and Inf both survive the max-abs norm
    except (RuntimeError, TypeError):  # tensors on several devices or dtypes foreach does not take
        norms = [torch.linalg.vector_norm(t.float(), float("inf")).to(tensors[0].device) for t in tensors]
    return torch.isfinite(torch.stack([n.float() for n in norms]))


def _tensors(value: Any, prefix: str) -> Iterator[tuple[str, Tensor]]:
    """Every floating tensor inside nested dicts/lists, with a dotted name."""
    if isinstance(value, Tensor):
        if value.is_floating_point():
            yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{prefix}.{i}")


def nonfinite(named: Iterable[tuple[str, Tensor]]) -> tuple[list[str], int]:
    """Names of the non-finite tensors among ``named``, and how many tensors were checked."""
    pairs = [(n, t.detach()) for n, t in named]
    if not pairs:
        return [], 0
    flags = finite_flags([t for _, t in pairs])
    if bool(flags.all()):  # the common case: one scalar to the host
        return [], len(pairs)
    return [n for (n, _), ok in zip(pairs, flags.tolist()) if not ok], len(pairs)


def _listing(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class DivergenceGuard(L.Callback):
    """Stop a diverging run with one clear :class:`DivergenceError`; never write a checkpoint with NaN/Inf tensors.

    Args:
        ratio: warn when a distillation term exceeds ``ratio`` × the task loss ...
        patience: ... for this many consecutive steps.
        check_weights: also check the weights (at epoch ends, and to explain a non-finite loss or gradient).
    """

    def __init__(self, ratio: float = 1000.0, patience: int = 100, check_weights: bool = True) -> None:
        self.ratio, self.patience, self.check_weights = ratio, patience, check_weights
        self._streak: dict[str, int] = {}
        self._warned: set[str] = set()
        self._names: dict[int, str] = {}

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._names = {id(p): n for n, p in pl_module.named_parameters()}
        self._streak, self._warned = {}, set()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        terms = loss_terms(pl_module)
        values = [v.detach().float().sum() for v in terms.values()]  # a NaN/Inf element survives the sum
        grads = [(self._names.get(id(p), "?"), p.grad) for g in optimizer.param_groups for p in g["params"]]
        grads = [(n, g) for n, g in grads if g is not None]
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            grads = []  # fp16 loss scaling: Inf gradients are expected; the scaler skips those steps itself
        device = values[0].device if values else grads[0][1].device if grads else torch.device("cpu")
        grad_ok = finite_flags([g for _, g in grads]).to(device)
        summary = torch.stack([*values, grad_ok.all().float()]) if values else grad_ok.all().float()[None]
        numbers = summary.tolist()  # the one host sync of the step
        term_values, all_grads_ok = dict(zip(terms, numbers[:-1])), numbers[-1] > 0
        bad_terms = [k for k, v in term_values.items() if not math.isfinite(v)]
        bad = bool(bad_terms) or not all_grads_ok
        if trainer.world_size > 1:  # a rank that stops alone would leave the others waiting in a collective
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            self._check_weights(trainer, pl_module)  # non-finite weights from the last update explain it best
            bad_grads = [] if all_grads_ok else [n for (n, _), ok in zip(grads, grad_ok.tolist()) if not ok]
            raise DivergenceError(self._diverged(trainer, optimizer, term_values, bad_terms, bad_grads))
        self._watch_ratio(trainer, term_values)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_weights(trainer, pl_module)

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.check_weights:
            return
        bad, _ = nonfinite((n, p) for n, p in pl_module.named_parameters() if p.requires_grad)
        if bad:
            lr = _learning_rate(trainer)
            raise DivergenceError(
                f"training diverged by {_where(trainer, trainer.global_step)}: an optimizer step turned "
                f"{len(bad)} weight tensor(s) non-finite ({_listing(bad)}) from finite losses and gradients. "
                f"Fix: the learning rate{f' ({lr:g})' if lr is not None else ''} is far too high; lower the "
                "optimizer's lr (model.init_args.optimizer.init_args.lr) or clip gradients (trainer.gradient_clip_val)"
            )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        named = [
            *_tensors(checkpoint.get("state_dict", {}), ""),
            *_tensors(checkpoint.get("optimizer_states"), "optim"),
        ]
        bad, total = nonfinite(named)
        if bad:
            raise DivergenceError(
                f"refusing to write a checkpoint at {_where(trainer, trainer.global_step)}: {len(bad)} of {total} "
                f"tensors are NaN/Inf ({_listing(bad)}); the weights diverged, so no checkpoint of them is saved. "
                "Fix: lower the learning rate or the distillation weights and train again"
            )

    # ------------------------------------------------------------------ messages
    def _diverged(
        self,
        trainer: L.Trainer,
        optimizer: Any,
        values: dict[str, float],
        bad_terms: list[str],
        bad_grads: list[str],
    ) -> str:
        shown = ", ".join(f"train/{k}={v:.4g}" for k, v in values.items())
        if bad_terms:
            what = f"non-finite loss term(s) {', '.join(f'train/{k}' for k in bad_terms)} ({shown})"
        elif bad_grads:
            what = (
                f"non-finite gradients in {len(bad_grads)} parameter tensor(s) ({_listing(bad_grads)}), losses {shown}"
            )
        else:
            what = "a non-finite loss or gradient on another rank"
        fixes = [f"lower model.init_args.losses.{k[3:]}.init_args.weight" for k in bad_terms if k.startswith("kd/")]
        lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
        fixes.append(f"lower the learning rate{f' ({lr:g})' if lr is not None else ''}")
        fixes.append("clip gradients (trainer.gradient_clip_val)")
        return (
            f"training diverged at {_where(trainer, trainer.global_step)}: {what}; the step was not applied and "
            f"nothing was saved after it. Fix: {', or '.join(fixes)}"
        )

    def _watch_ratio(self, trainer: L.Trainer, values: dict[str, float]) -> None:
        task = sum(abs(v) for k, v in values.items() if k.startswith("task/"))
        for name, value in values.items():
            if not name.startswith("kd/"):
                continue
            over = task > 0 and abs(value) > self.ratio * task
            self._streak[name] = self._streak.get(name, 0) + 1 if over else 0
            if self._streak[name] >= self.patience and name not in self._warned and trainer.is_global_zero:
                self._warned.add(name)
                warnings.warn(
                    f"train/{name} has been more than {self.ratio:g}x the task loss for {self.patience} steps "
                    f"(now {value:.3g} vs {task:.3g} at {_where(trainer, trainer.global_step)}): the distillation "
                    f"term drowns the task loss; lower model.init_args.losses.{name[3:]}.init_args.weight",
                    DivergenceWarning,
                    stacklevel=2,
                )


def _where(trainer: L.Trainer, step: int) -> str:
    return f"epoch {trainer.current_epoch}, step {max(step, 0)}"


def _learning_rate(trainer: L.Trainer) -> float | None:
    optimizers = trainer.optimizers
    if not optimizers or not optimizers[0].param_groups:
        return None
    return optimizers[0].param_groups[0].get("lr")


def default_callbacks() -> list[L.Callback]:
    """The guards ``kd-suite`` adds to every run: divergence, KD liveness and model/data consistency."""
    from .consistency import ConsistencyCheck
    from .liveness import KDLiveness

    return [ConsistencyCheck(), DivergenceGuard(), KDLiveness()]
