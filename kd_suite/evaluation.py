"""The validation/test protocol every task shares: one loop, exact metrics under DDP, pictures through ``render``.

Shape chosen: thin task subclasses of :class:`~kd_suite.Distiller`. A task supplies four things — its supervised
``task_loss``, ``decode`` (the model's predictions mapped to original-image coordinates), ``build_metric`` (a
:class:`TaskMetric`) and ``render`` — and inherits everything else from :class:`EvaluationProtocol`. Subclasses rather
than task objects composed into one Distiller because a task's hyper-parameters (flip test, NMS thresholds, loss
weights) then stay plain constructor arguments that LightningCLI shows and checks next to the Distiller's, with no
second object to configure.

Protocol (validation and test alike): every epoch the student is scored; each teacher is scored once, at the first real
validation (its weights are fixed), into ``{stage}/teacher_<headline>``. Predictions of padded duplicates that
DistributedSampler adds on uneven sets are removed by ``batch.sample_id`` before scoring, so the metric under N
processes equals the single-process one. The first batch's GT | teacher | student pictures go to W&B when a
WandbLogger is attached. The last epoch's full results stay in ``self.results`` (``{"student": …, "teacher": …}``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric


def first_occurrences(ids: Tensor) -> Tensor:
    """Indices (ascending) of the first occurrence of every id in ``ids`` (N,); negative ids are always kept."""
    ids = ids.long().cpu()
    keep = torch.zeros(len(ids), dtype=torch.bool)
    seen: set[int] = set()
    for i, v in enumerate(ids.tolist()):
        if v < 0 or v not in seen:
            keep[i] = True
            seen.add(v)
    return keep.nonzero().flatten()


class TaskMetric(Metric):
    """A task's epoch metric: ``update(predictions, batch)`` per batch, ``compute()`` → results dict.

    Subclasses set :attr:`headline` (the key ranked and shown in the progress bar) and implement :meth:`scalars`, the
    flat ``{name: float}`` view that is logged as ``{stage}/{name}``. States must let :meth:`compute` drop samples
    whose ``sample_id`` was already seen (DDP padding).
    """

    full_state_update = False
    headline: str = ""
    #: factor from :meth:`scalars`' numbers to the logged percent (100 for fractions, 1 for PCKh, already percent)
    unit_scale: float = 100.0

    def scalars(self, results: dict[str, Any]) -> dict[str, float]:
        """Loggable ``{name: value}`` of :meth:`compute`'s results; default: every top-level number."""
        return {k: float(v) for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def sample_ids(batch: Any) -> Tensor:
    """``batch.sample_id`` (B,) int64, or -1 for each sample when the DataModule gives none (no de-duplication)."""
    ids = getattr(batch, "sample_id", None)
    if ids is None:
        return torch.full((batch.image.shape[0],), -1, dtype=torch.long)
    return ids.long()


class EvaluationProtocol:
    """Mixin of :class:`~kd_suite.Distiller` holding the shared validation/test loop (see the module doc)."""

    #: log ``{stage}/loss`` (the task loss on evaluation batches); tasks whose loss is cheap on eval outputs set it
    log_eval_loss: bool = False

    # ------------------------------------------------------------------ what a task supplies
    def decode(self, model: nn.Module, batch: Any, output: Any) -> Any:
        """Predictions of ``model`` on ``batch`` (``output`` = its plain forward) in original-image coordinates."""
        raise NotImplementedError(f"{type(self).__name__} must implement decode(model, batch, output)")

    def build_metric(self) -> TaskMetric | None:
        """A fresh metric for one model; ``None`` (the default) leaves the task unscored, e.g. ``metric='none'``."""
        return None

    # ------------------------------------------------------------------ the loop
    def _metrics(self) -> dict[str, TaskMetric]:
        """``{"student": metric, "teacher": metric}`` (empty when the task is not scored), built on first use."""
        if getattr(self, "eval_metrics", None) is None:
            built = {who: self.build_metric() for who in ("student", "teacher")}
            self.eval_metrics = nn.ModuleDict({k: m for k, m in built.items() if m is not None}).to(self.device)
        return dict(self.eval_metrics.items())

    def reset_metrics(self) -> None:
        """Drop the metric objects (rebuilt from the current DataModule facts at the next evaluation)."""
        self.eval_metrics = None

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluate_batch(batch, batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluate_batch(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self.evaluate_epoch("val")

    def on_test_epoch_end(self) -> None:
        self.evaluate_epoch("test")

    def evaluate_batch(self, batch: Any, batch_idx: int) -> None:
        """Score the student (and a due teacher) on one batch; log the first batch's pictures."""
        metrics = self._metrics()
        output = self.student(batch.image)
        if self.log_eval_loss:
            stage = "test" if self.trainer.testing else "val"
            loss = sum(self.task_loss(output, batch).values())
            self.log(f"{stage}/loss", loss, batch_size=batch.image.shape[0], sync_dist=True)
        if "student" in metrics:
            metrics["student"].update(self.decode(self.student, batch, output), batch)
        t_output = None
        if self.teacher_due() and "teacher" in metrics:
            t_output = self.teachers[0](batch.image)
            metrics["teacher"].update(self.decode(self.teachers[0], batch, t_output), batch)
        if batch_idx == 0 and self.log_images > 0:
            self.log_pictures(batch, output, t_output)

    def evaluate_epoch(self, stage: str) -> None:
        """Compute, log and keep the epoch's results; score a due teacher once."""
        metrics = self._metrics()
        student = metrics.get("student")
        if student is None or not student.update_called:
            return
        results = student.compute()
        student.reset()
        self.results = {"student": results}
        for key, value in student.scalars(results).items():  # every score is logged in percent
            self.log(f"{stage}/{key}", value * student.unit_scale, prog_bar=key == student.headline, sync_dist=False)
        teacher = metrics.get("teacher")
        if self.teacher_due() and teacher is not None and teacher.update_called:
            t_results = teacher.compute()
            teacher.reset()
            headline = teacher.scalars(t_results)[teacher.headline] * teacher.unit_scale
            self.log(f"{stage}/teacher_{teacher.headline}", headline, sync_dist=False)
            self.results["teacher"] = t_results
            self.teacher_evaluated = True

    def teacher_due(self) -> bool:
        """True at the first real validation of a run with teachers (they are scored once: their weights are fixed)."""
        loaded = all(getattr(self, "teachers_loaded", [True]))  # a teacher whose weights file is missing is not scored
        return bool(self.teachers) and loaded and not self.teacher_evaluated and not self.trainer.sanity_checking

    # ------------------------------------------------------------------ pictures
    def log_pictures(self, batch: Any, output: Any, t_output: Any | None) -> None:
        """GT | teacher | student side by side for the first ``log_images`` samples, to a WandbLogger only."""
        from lightning.pytorch.loggers import WandbLogger

        if not isinstance(self.logger, WandbLogger) or not self.trainer.is_global_zero:
            return
        n = self.log_images
        columns, names = [self.render(batch, None, n)], ["ground truth"]
        if self.teachers and all(getattr(self, "teachers_loaded", [True])):
            columns.append(self.render(batch, t_output if t_output is not None else self.teachers[0](batch.image), n))
            names.append("teacher")
        columns.append(self.render(batch, output, n))
        names.append("student")
        panels = [np.concatenate(row, axis=1) for row in zip(*columns)]  # (H, W·columns, 3) each
        caption = f"epoch {self.current_epoch}: " + " | ".join(names)
        self.logger.log_image(key="val/predictions", images=panels, caption=[caption] * len(panels))
