"""Loss-scale calibration of distillation terms by the gradient norms they send into the student.

A distillation term's weight sets how hard it pulls on the student relative to the task loss, but the scale of the
term's value says little about that pull (a KL in nats and a feature MSE can differ by orders of magnitude in value
and in gradient). Following the idea of gradient-norm balancing (GradNorm, Chen et al., ICML 2018, which balances
multi-task losses by the norms of their gradients on the shared weights), :func:`calibrate` measures, over a few
training batches, the L2 norm of the gradient each term sends into the student's parameters and compares it with
the task loss's; :func:`calibrated_weights` turns the measurement into the weight each term needs for a chosen share.

Definitions, per batch ``b``, with ``θ`` the student's trainable parameters (adapters and teachers excluded):

* raw value ``L_k,b``: term ``k`` with weight 1 and no schedule; task value ``L_task,b``: the sum of
  :meth:`~kd_suite.Distiller.task_loss`'s terms (each task component is also measured when there are several);
* factor ``c_k = w_k × s_k``: the configured weight ``w_k`` times the schedule factor ``s_k`` at the measured
  point (``epoch=None``: schedules at full strength, ``s_k = 1``); the weighted value is ``c_k × L_k,b``;
* raw gradient norm ``G_k,b = ‖∂L_k,b/∂θ‖₂`` (one L2 norm over all parameter tensors together), from
  ``torch.autograd.grad(L_k,b, θ, retain_graph=True, allow_unused=True)``; weighted: ``|c_k| × G_k,b``;
* ratio ``r_k,b = |c_k| G_k,b / G_task,b`` (reported as mean ± std over batches);
* share ``ρ_k = mean_b(|c_k| G_k,b) / mean_b(G_task,b)``, a ratio of means (robust to one batch with a small task
  gradient); the weight giving share ``σ`` is ``w_k' = w_k × σ / ρ_k = σ × mean_b G_task,b / (s_k × mean_b G_k,b)``.

Each batch is one training step's computation (the code :meth:`~kd_suite.Distiller.training_step` runs): student in
train mode (BN batch statistics, dropout), teachers in eval mode, terms through
:meth:`~kd_suite.Distiller.distill_terms`, in fp32. Batch ``b`` runs under ``torch.manual_seed(seed + b)`` and the
terms' private generators start where they were, so a second measurement of the same batches (after changing the
weights) sees the same dropout masks and samples; the global RNG, the generators, BN statistics, the train/eval mode
and the terms' weights and schedules are all restored afterwards, so calibrating leaves the module as it was.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .distiller import Distiller
from .schedules import Schedule

__all__ = ["CalibrationResult", "TermMeasure", "calibrate", "calibrated_weights"]


@dataclass(frozen=True)
class TermMeasure:
    """One loss term measured over ``N`` batches (module docstring for the definitions).

    Attributes:
        name: the term's name (``losses.<name>``), ``"task"``, or ``"task/<component>"``.
        weight: configured weight ``w`` (1 for the task).
        schedule: schedule factor ``s`` at the measured point (1 at full strength and for the task).
        value: ``(N,)`` raw value per batch (weight 1, no schedule).
        grad_norm: ``(N,)`` raw gradient norm on the student's parameters per batch.
    """

    name: str
    weight: float
    schedule: float
    value: Tensor
    grad_norm: Tensor

    @property
    def factor(self) -> float:
        """``c = w × s``, the multiplier a training step applies at the measured point."""
        return self.weight * self.schedule

    @property
    def weighted_value(self) -> Tensor:
        """``(N,)`` value as the training step weights it, ``c × L``."""
        return self.factor * self.value

    @property
    def weighted_grad_norm(self) -> Tensor:
        """``(N,)`` norm of the weighted term's gradient, ``|c| × G``."""
        return abs(self.factor) * self.grad_norm


@dataclass(frozen=True)
class CalibrationResult:
    """Every term and the task loss measured on the same batches.

    Attributes:
        task: the task loss (sum of the task components).
        task_parts: each task component when :meth:`~kd_suite.Distiller.task_loss` returns several, else empty.
        terms: the distillation terms by name, in the config's order.
        epoch: where the schedules were evaluated (``None``: full strength).
        seed: the seed of batch 0 (batch ``b`` runs under ``seed + b``).
    """

    task: TermMeasure
    task_parts: dict[str, TermMeasure]
    terms: dict[str, TermMeasure]
    epoch: float | None
    seed: int

    @property
    def batches(self) -> int:
        return int(self.task.value.numel())

    def ratio(self, name: str) -> Tensor:
        """``(N,)`` per-batch ratio ``|c| G_k / G_task`` of a term (or task component)."""
        measure = self.terms.get(name) or self.task_parts[name]
        return measure.weighted_grad_norm / self.task.grad_norm  # (N,)

    def share(self, name: str) -> float:
        """The measured share ``mean(|c| G_k) / mean(G_task)`` (ratio of means) of a term."""
        return float(self.terms[name].weighted_grad_norm.mean() / self.task.grad_norm.mean())


def calibrated_weights(result: CalibrationResult, share: float | Mapping[str, float] = 0.5) -> dict[str, float]:
    """The weight of each term whose weighted gradient norm is ``share`` × the task's (ratio of means over batches).

    ``w' = w × share / ρ`` with ``ρ`` = :meth:`CalibrationResult.share`, computed as ``share × mean G_task /
    (s × mean G_k)`` so a configured weight of 0 is calibrated too. Terms that cannot be calibrated are left out:
    those that send no gradient to the student (``G_k = 0``, e.g. computed without autograd), those switched off at
    the measured point (``s = 0``), and non-finite measurements. With a mapping, only the terms it names are
    calibrated.

    Raises:
        ValueError: a share that is not a positive finite number, or a mapping naming an unknown term.
    """
    shares = dict(share) if isinstance(share, Mapping) else {name: float(share) for name in result.terms}
    unknown = sorted(set(shares) - set(result.terms))
    if unknown:
        raise ValueError(f"share for unknown term(s) {unknown}; the terms are {list(result.terms)}")
    bad = {k: v for k, v in shares.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"shares must be positive finite numbers, got {bad}")
    task = float(result.task.grad_norm.mean())
    weights = {}
    for name, target in shares.items():
        measure = result.terms[name]
        pull = measure.schedule * float(measure.grad_norm.mean())  # mean G_k × s (the weight left out)
        weight = target * task / pull if pull != 0 else math.nan
        if math.isfinite(weight) and weight > 0:
            weights[name] = weight
    return weights


class _AtEpoch:
    """A schedule frozen at one point of training: ``factor`` ignores the step's progress."""

    def __init__(self, schedule: Schedule, epoch: float, max_epochs: int | None) -> None:
        self.schedule, self.epoch, self.max_epochs = schedule, epoch, max_epochs

    def factor(self, progress: float, max_epochs: int | None) -> float:
        return self.schedule.factor(self.epoch, self.max_epochs)


@contextlib.contextmanager
def _terms_set(module: Distiller, weight: float, schedules: Mapping[str, Any]) -> Iterator[None]:
    """Every term with ``weight`` and the given schedule objects while inside; the configured ones afterwards."""
    saved = {name: (loss.weight, loss.schedule) for name, loss in module.losses.items()}
    try:
        for name, loss in module.losses.items():
            loss.weight, loss.schedule = weight, schedules[name]
        yield
    finally:
        for name, loss in module.losses.items():
            loss.weight, loss.schedule = saved[name]


def _generators(module: nn.Module) -> list[torch.Generator]:
    """The private random generators held by submodules (terms that replay their sampling)."""
    found = [v for m in module.modules() for v in vars(m).values() if isinstance(v, torch.Generator)]
    return list({id(g): g for g in found}.values())


@contextlib.contextmanager
def _replayed(module: nn.Module) -> Iterator[None]:
    """Restore the global RNG (CPU and the module's CUDA devices) and the submodules' private generators on exit."""
    generators = _generators(module)
    states = [g.get_state() for g in generators]
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda})  # CUDA generators in use
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        for g, state in zip(generators, states):
            g.set_state(state)


@contextlib.contextmanager
def _unchanged(module: Distiller) -> Iterator[None]:
    """Restore the mode, the buffers (BN running statistics) and the last step's term weights on exit."""
    training = module.training
    buffers = {k: b.detach().clone() for k, b in module.named_buffers() if not k.startswith("teachers.")}
    term_weights = getattr(module, "term_weights", None)
    try:
        with _replayed(module):
            yield
    finally:
        with torch.no_grad():
            for k, b in module.named_buffers():
                if k in buffers:
                    b.copy_(buffers[k])
        module.train(training)
        if term_weights is not None:
            module.term_weights = term_weights


def _grad_norm(loss: Tensor, params: list[nn.Parameter]) -> float:
    """``‖∂loss/∂params‖₂`` over all parameters together; 0 when no gradient reaches them."""
    if not loss.requires_grad:
        return 0.0
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    norms = [torch.linalg.vector_norm(g.detach().double()) for g in grads if g is not None]  # () each
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def calibrate(
    module: Distiller,
    batches: Iterable[Any],
    *,
    epoch: float | None = None,
    max_epochs: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> CalibrationResult:
    """Measure every distillation term and the task loss on ``batches`` (module docstring for the definitions).

    Args:
        module: a Distiller with distillation terms and loaded teachers, on the device to measure on.
        batches: training batches (moved with ``module.transfer_batch_to_device``); pass a list to measure the same
            batches again.
        epoch: fractional epoch at which the schedules are evaluated; ``None`` measures them at full strength.
        max_epochs: the run's epochs, for schedules that decay over them.
        seed: batch ``b`` runs under ``torch.manual_seed(seed + b)``.
        progress: show a progress bar over the batches.

    Raises:
        ValueError: the module has no distillation terms, or no batch was given.
        FileNotFoundError: a teacher's weights file was not found (:meth:`~kd_suite.Distiller.require_teachers`).
    """
    if not module.losses:
        raise ValueError("the model has no distillation terms (model.init_args.losses is empty): nothing to calibrate")
    module.require_teachers()
    names = list(module.losses)
    params = [p for p in module.student.parameters() if p.requires_grad]
    off = dict.fromkeys(names)  # no schedule: raw terms
    at = {
        n: None if lo.schedule is None else _AtEpoch(lo.schedule, epoch, max_epochs) for n, lo in module.losses.items()
    }
    rows: dict[str, list[tuple[float, float]]] = {"task": [], **{n: [] for n in names}}
    parts: dict[str, list[tuple[float, float]]] = {}
    schedule = dict.fromkeys(names, 1.0)
    sized = len(batches) if hasattr(batches, "__len__") else None
    with _unchanged(module):
        module.train()  # the student as training runs it; Distiller.train keeps the teachers in eval mode
        for b, batch in enumerate(tqdm(batches, total=sized, desc="calibrate", unit="batch", disable=not progress)):
            batch = module.transfer_batch_to_device(batch, module.device, 0)
            torch.manual_seed(seed + b)
            student = module.student(batch.image)
            teachers = module.teacher_forward(batch.image)
            guides = module.self_guides(batch.image)
            task = module.task_loss(student, batch)
            if epoch is not None:  # schedule factors at the point, from the training code, without using up RNG
                with torch.no_grad(), _replayed(module), _terms_set(module, 1.0, at):
                    module.distill_terms(student, teachers, batch, guides)
                schedule = dict(module.term_weights)
            with _terms_set(module, 1.0, off):
                raw = module.distill_terms(student, teachers, batch, guides)
            total = sum(task.values())
            rows["task"].append((float(total.detach()), _grad_norm(total, params)))
            if len(task) > 1:
                for k, v in task.items():
                    parts.setdefault(f"task/{k}", []).append((float(v.detach()), _grad_norm(v, params)))
            for name in names:
                rows[name].append((float(raw[name].detach()), _grad_norm(raw[name], params)))
            del student, teachers, guides, task, raw, total  # free this batch's graph
    if not rows["task"]:
        raise ValueError("no batch to calibrate on")

    def measure(name: str, weight: float, schedule: float, values: list[tuple[float, float]]) -> TermMeasure:
        table = torch.tensor(values, dtype=torch.float64)  # (N, 2): value, grad norm
        return TermMeasure(name, float(weight), float(schedule), table[:, 0], table[:, 1])

    return CalibrationResult(
        task=measure("task", 1.0, 1.0, rows["task"]),
        task_parts={k: measure(k, 1.0, 1.0, v) for k, v in parts.items()},
        terms={n: measure(n, module.losses[n].weight, schedule[n], rows[n]) for n in names},
        epoch=epoch,
        seed=seed,
    )
