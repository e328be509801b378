"""The shared teacher–student LightningModule that every task module derives from."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from .data.batch import move_batch
from .data.facts import DatasetFacts
from .evaluation import EvaluationProtocol
from .fast_teacher import TeacherFastPath
from .losses.base import DistillLoss
from .outputs import ModelOutput, TapInfo, check_tap
from .teacher import fingerprint, freeze, load_weights


def _is_plain(value: Any) -> bool:
    """True for config-like data that can be stored in a checkpoint and read back with ``weights_only=True``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


class Distiller(EvaluationProtocol, L.LightningModule):
    """Teacher–student system: a trainable student, frozen teacher(s) and weighted distillation terms.

    With no teacher it trains the student alone, which is how teachers and baselines are trained, so every run of an
    experiment shares one code path. Tasks subclass it and supply :meth:`task_loss`, ``decode``, ``build_metric`` and
    :meth:`render`; the validation/test loop is shared (:mod:`kd_suite.evaluation`).

    Invariants (tested): teachers are frozen, stay in eval mode even when ``.train()`` is called, run under
    ``torch.no_grad()`` and never enter the optimizer; their weights are not written to checkpoints, which record
    their provenance (class, weights file, sha256) instead and re-attach them on load. Distillation terms run in fp32
    with autocast disabled, so bf16/fp16 mixed precision cannot overflow their softmaxes and logs.

    Args:
        student: the network being trained.
        teacher: one frozen teacher, a list (teacher + assistants for densely guided KD), or ``None``.
        teacher_ckpt: weights file(s) for the teacher(s), one per teacher; ``None`` keeps the built weights (e.g.
            timm ``pretrained=True``). A file that does not exist leaves that teacher unloaded with a warning:
            validation, test, predict and export of the student work without it (an unloaded teacher is not
            scored), ``fit`` with distillation terms stops at setup.
        losses: named distillation terms; each is logged as ``train/kd/<name>``.
        optimizer: optimizer factory, called with the trainable parameters (student + adapters); ``None`` builds
            ``torch.optim.AdamW`` with torch's own defaults (lr 1e-3, weight_decay 0.01). The default is ``None``
            rather than the class so that a config naming another optimizer gets only the arguments it writes plus
            that class's own defaults (a class-valued default would hand its init_args on, e.g. AdamW's weight_decay
            to Adam as coupled L2).
        scheduler: optional LR scheduler factory.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        teacher_fast_path: run the teachers' forward through a BN-folded, rewritten, channels_last copy (traced
            into frozen TorchScript on CPU) that computes only the fields the terms read and is never a submodule
            (:mod:`kd_suite.fast_teacher`; outputs equal the plain teacher's within 1e-4 relative); ``False`` runs
            the plain teachers, a dict sets :class:`~kd_suite.fast_teacher.FastPathOptions` fields (e.g.
            ``{"compile": true}``, or ``{"autocast": "bf16"}`` on GPU).
        log_images: validation samples drawn as GT | teacher | student pictures to W&B each epoch (first batch; only
            with a WandbLogger; 0 disables).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | list[nn.Module] | None = None,
        teacher_ckpt: str | list[str] | None = None,
        losses: dict[str, DistillLoss] | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: str = "epoch",
        teacher_fast_path: bool | dict[str, Any] = True,
        log_images: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key in [k for k, v in self.hparams.items() if not _is_plain(v)]:
            self.hparams.pop(key)  # objects (modules, callables) cannot be restored with weights_only=True
        self.student = student
        teachers = [] if teacher is None else list(teacher) if isinstance(teacher, Sequence) else [teacher]
        ckpts = [] if teacher_ckpt is None else [teacher_ckpt] if isinstance(teacher_ckpt, str) else list(teacher_ckpt)
        if ckpts and len(ckpts) != len(teachers):
            raise ValueError(
                f"teacher_ckpt lists {len(ckpts)} files for {len(teachers)} teacher(s); give one per teacher"
            )
        self.teachers = freeze(nn.ModuleList(teachers))
        self.teacher_meta = [
            {"class": f"{type(t).__module__}.{type(t).__qualname__}", "ckpt": None, "sha256": None} for t in teachers
        ]
        self.teachers_loaded = [True] * len(teachers)  # False: teacher_ckpt names a missing file
        for i, (meta, t, path) in enumerate(zip(self.teacher_meta, self.teachers, ckpts)):
            if path is None:
                continue
            meta["ckpt"] = str(path)
            if Path(path).is_file():
                meta["sha256"] = load_weights(t, path)
                continue
            self.teachers_loaded[i] = False
            warnings.warn(
                f"teacher weights {str(path)!r} not found: teacher {i} is not loaded and not scored; the student "
                "validates, tests, predicts and exports without it, fit with distillation terms needs it",
                stacklevel=2,
            )
        self.losses = nn.ModuleDict(losses or {})
        self._plan: dict[str, tuple[TapInfo, TapInfo]] = {}
        if self.losses and not self.teachers:
            raise ValueError(
                f"distillation terms {list(self.losses)} are configured but no teacher is; add model.teacher"
            )
        for name, loss in self.losses.items():
            self._bind(name, loss)
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.teacher_evaluated = False  # tasks score the teachers once, at the first real validation
        self.teacher_fast = TeacherFastPath.from_arg(teacher_fast_path)  # plain object: never in the state dict
        self.log_images = log_images
        self.data_facts: DatasetFacts | None = None  # linked in setup()
        self.eval_metrics: nn.ModuleDict | None = None  # built at the first evaluation (kd_suite.evaluation)
        self.results: dict[str, Any] = {}  # the last validation/test epoch's results, student and teacher

    # ------------------------------------------------------------------ construction
    def _bind(self, name: str, loss: DistillLoss) -> None:
        """Size the term's adapters from the declared taps of the student and its teacher (never lazily)."""
        if loss.teacher_index >= len(self.teachers):
            raise ValueError(f"losses.{name}: teacher_index={loss.teacher_index} but {len(self.teachers)} teacher(s)")
        else:
            teacher = self.teachers[loss.teacher_index]
        s_info = check_tap(
            _taps(self.student), loss.student_tap, f"losses.{name}: student {type(self.student).__name__}"
        )
        t_info = check_tap(_taps(teacher), loss.teacher_tap, f"losses.{name}: teacher {type(teacher).__name__}")
        loss.bind(s_info, t_info)
        self._plan[name] = (s_info, t_info)

    def distillation_plan(self) -> str:
        """A table of every term: taps read on each side with channels@stride, trainable adapter size, weight."""
        rows = [("term", "loss", "student tap", "teacher tap", "adapter params", "weight", "schedule")]
        for name, loss in self.losses.items():
            s_info, t_info = self._plan[name]
            teacher = f"{loss.teacher_index}+guides" if loss.uses_guides else str(loss.teacher_index)
            rows.append(
                (
                    name,
                    type(loss).__name__,
                    f"{loss.student_tap} ({s_info.channels}@/{s_info.stride})",
                    f"T{teacher}:{loss.teacher_tap} ({t_info.channels}@/{t_info.stride})",
                    f"{sum(p.numel() for p in loss.parameters() if p.requires_grad):,}",
                    f"{loss.weight:g}",
                    "-" if loss.schedule is None else str(loss.schedule),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def on_fit_start(self) -> None:
        if self.losses and self.trainer.is_global_zero:
            print(f"distillation plan ({len(self.teachers)} teacher(s)):\n{self.distillation_plan()}")

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teachers.eval()  # invariant: teacher BN statistics and dropout never change
        return self

    # ------------------------------------------------------------------ forward passes
    def forward(self, image: Tensor) -> ModelOutput:
        return self.student(image)

    @torch.no_grad()  # not inference_mode: teacher tensors enter autograd-tracked losses
    def teacher_forward(self, image: Tensor, complete: bool = False) -> list[ModelOutput]:
        """Every teacher's output for the distillation terms.

        Through the fast path, a teacher may compute only the fields its terms read (:meth:`teacher_fields`); the
        others are :class:`~kd_suite.outputs.NotComputed`, which raises when used. ``complete=True`` computes all.
        """
        if self.teacher_fast is not None:
            return self.teacher_fast(self.teachers, image, None if complete else self.teacher_fields())
        return [t(image) for t in self.teachers]

    def teacher_fields(self) -> list[frozenset[str] | None]:
        """Per teacher, the output fields the distillation terms read (``None``: all); a term reading the guides
        reads every teacher whole."""
        needed: list[frozenset[str] | None] = [frozenset() for _ in self.teachers]
        for loss in self.losses.values():
            if loss.uses_guides:
                return [None] * len(self.teachers)
            fields, i = loss.teacher_fields(), loss.teacher_index
            needed[i] = None if fields is None or needed[i] is None else needed[i] | fields
        return needed

    def task_loss(self, output: ModelOutput, batch: Any) -> dict[str, Tensor]:
        """Supervised loss terms of the task, by name (summed into the total)."""
        raise NotImplementedError(f"{type(self).__name__} must implement task_loss(output, batch)")

    def self_guides(self, image: Tensor) -> list[ModelOutput]:
        """This step's self-distillation guides (outputs of copies of the student, e.g. an EMA copy); none here.

        They reach the terms that set ``uses_guides`` after the other teachers, never as teachers themselves.
        """
        return []

    def distill_terms(
        self, student: ModelOutput, teachers: list[ModelOutput], batch: Any, self_guides: Sequence[ModelOutput] = ()
    ) -> dict[str, Tensor]:
        """Weighted, scheduled distillation terms, computed in fp32 with autocast off.

        Each term gets its teacher (``teacher_index``); a term with ``uses_guides`` also gets the other teachers and
        then ``self_guides`` as ``guides``.
        """
        if not self.losses:
            return {}
        progress = self._epoch_progress()
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        terms = {}
        self.term_weights = {}  # this step's scheduled weight of each term (logged as train/weight/<name>)
        with torch.autocast(device_type=self.device.type, enabled=False):
            for name, loss in self.losses.items():
                factor = loss.weight * (loss.schedule.factor(progress, max_epochs) if loss.schedule else 1.0)
                self.term_weights[name] = float(factor)
                i = loss.teacher_index
                guides = [*teachers[:i], *teachers[i + 1 :], *self_guides] if loss.uses_guides else []
                terms[name] = factor * loss(student, teachers[i], batch, guides=guides)
        return terms

    def _epoch_progress(self) -> float:
        if self._trainer is None:
            return 0.0
        n = self.trainer.num_training_batches
        step_in_epoch = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1
        frac = step_in_epoch / n if isinstance(n, int) and n > 0 else 0.0
        return self.current_epoch + max(0.0, frac)

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        student = self.student(batch.image)
        teachers = self.teacher_forward(batch.image) if self.losses else []
        guides = self.self_guides(batch.image) if self.losses else []
        task = self.task_loss(student, batch)
        kd = self.distill_terms(student, teachers, batch, guides)
        total = sum(task.values()) + sum(kd.values())
        self.last_terms = {"task": task, "kd": kd}  # read by kd_suite.guards (divergence, KD liveness)
        bs = batch.image.shape[0]
        if self._logs_terms(batch_idx):
            logs = {f"train/task/{k}": v.detach() for k, v in task.items()}
            logs |= {f"train/kd/{k}": v.detach() for k, v in kd.items()}
            logs |= {f"train/weight/{k}": w for k, w in getattr(self, "term_weights", {}).items()}
            self.log_dict(logs, batch_size=bs, sync_dist=False)
        self.log("train/total", total.detach(), prog_bar=True, batch_size=bs)
        return total

    def _logs_terms(self, batch_idx: int) -> bool:
        """Whether this step logs every term: when a logger writes (each ``log_every_n_steps``), and on each epoch's
        first and last batch so ``callback_metrics`` stay current. Each ``self.log`` costs ≈ 1.5 ms on a CPU, ≈ 4 %
        of a small model's step when it happened for every term at every step."""
        if self._trainer is None:
            return True
        trainer = self.trainer
        last = isinstance(trainer.num_training_batches, int) and batch_idx + 1 >= trainer.num_training_batches
        writes = (self.global_step + 1) % max(1, trainer.log_every_n_steps) == 0 or trainer.should_stop
        return batch_idx == 0 or last or writes

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Typed batches move their tensor fields only (:func:`~kd_suite.data.batch.move_batch`)."""
        if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
            return move_batch(batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def setup(self, stage: str) -> None:
        """Link the set-up DataModule's facts (:meth:`link_data`); metrics are rebuilt at the next evaluation."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        facts = getattr(datamodule, "facts", None)
        if isinstance(facts, DatasetFacts):
            self.link_data(facts)
        if stage == "fit" and self.losses:
            self.require_teachers()
        self.reset_metrics()

    def require_teachers(self) -> None:
        """Raise ``FileNotFoundError`` naming every teacher weights file that was not found (distillation needs it)."""
        missing = [m["ckpt"] for m, ok in zip(self.teacher_meta, self.teachers_loaded) if not ok]
        if missing:
            raise FileNotFoundError(
                f"teacher weights {', '.join(repr(p) for p in missing)} not found; distillation needs them: train "
                "the teacher first or fix model.init_args.teacher_ckpt"
            )

    def link_data(self, facts: DatasetFacts) -> None:
        """Take the dataset facts (:mod:`kd_suite.data.facts`): tasks check the model against them and fill the
        options a config left unset; the base keeps them as ``data_facts``. Called by :meth:`setup`; call it
        yourself when you evaluate or draw without a Trainer."""
        self.data_facts = facts

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]  # student + adapters; teachers are frozen
        factory = self.optimizer_factory if self.optimizer_factory is not None else torch.optim.AdamW
        optimizer = factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teachers.")]:
            del state[key]  # student checkpoints carry provenance, not teacher weights
        checkpoint["kd_meta"] = {"teachers": [dict(m) for m in self.teacher_meta]}
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None:  # what predict/export need to run the student alone (kd_suite.standalone)
            checkpoint["kd_meta"]["data"] = data_record(datamodule)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        state.update({k: v for k, v in self.state_dict().items() if k.startswith("teachers.")})
        saved = checkpoint.get("kd_meta", {}).get("teachers", [])
        for old, new in zip(saved, self.teacher_meta):
            if old.get("sha256") and new.get("sha256") and old["sha256"] != new["sha256"]:
                warnings.warn(
                    f"teacher weights differ from the ones this checkpoint was trained with: recorded "
                    f"{old['ckpt']} (sha256 {old['sha256'][:12]}), now {new['ckpt']} (sha256 {new['sha256'][:12]})",
                    stacklevel=2,
                )

    def render(self, batch: Any, output: ModelOutput | None, n: int = 4) -> list[np.ndarray]:
        """RGB uint8 pictures of ``output``'s predictions (or of the ground truth when ``None``) on ``batch[:n]``.

        Used by the demo report and the experiment loggers; tasks draw masks, skeletons or boxes.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement render()")

    @classmethod
    def standalone_arguments(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """The saved settings of a checkpoint adjusted for a student without teachers (:mod:`kd_suite.standalone`)."""
        return hparams

    def teacher_fingerprints(self) -> list[str]:
        """Bit-exact fingerprints of every teacher (parameters and buffers)."""
        return [fingerprint(t) for t in self.teachers]

    def student_state_dict(self) -> dict[str, Tensor]:
        """The student's weights alone, ready for deployment or to serve as the next teacher."""
        return self.student.state_dict()


def data_record(datamodule: Any) -> dict[str, Any]:
    """Plain facts of a DataModule stored in checkpoints (``kd_meta["data"]``): its class, input size and facts."""
    record: dict[str, Any] = {"class_path": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"}
    if getattr(datamodule, "input_size", None) is not None:
        record["input_size"] = [int(v) for v in datamodule.input_size]
    facts = getattr(datamodule, "facts", None)
    if isinstance(facts, DatasetFacts):
        plain = dataclasses.asdict(facts)
        plain["val_ann_file"] = None if facts.val_ann_file is None else str(facts.val_ann_file)
        plain["class_names"] = list(facts.class_names)
        plain["flip_pairs"] = [list(p) for p in facts.flip_pairs]
        record["facts"] = plain
    return record


def _taps(model: nn.Module) -> dict:
    taps = getattr(model, "tap_info", None)
    if not isinstance(taps, dict):
        raise TypeError(
            f"{type(model).__name__} declares no tap_info; kd-suite models expose "
            "tap_info: dict[str, TapInfo] so distillation adapters can be sized at construction"
        )
    return taps
