"""One folder per run: ``runs/<experiment>/<run>/`` with the config, checkpoints, metrics and logger files.

Layout (written by ``kd-suite fit``; ``runs`` is ``trainer.default_root_dir``)::

    runs/<experiment>/<run>/          a re-run of the same config gets <run>-v2, <run>-v3 ...: nothing is overwritten
        config.yaml                   the resolved config (what ran; ``kd-suite fit --config`` it again)
        checkpoints/last.ckpt         every epoch end: ``--ckpt_path last`` resumes from it, bit-exactly
        checkpoints/best.ckpt         the best epoch by the task metric (``val/mIoU``, ``val/PCKh``, ``val/mAP50`` ...)
        metrics.json                  best and final validation scores with their epochs, wall time
        wandb/                        the W&B run files (offline unless you log in; ``wandb sync`` uploads them)

``experiment`` and ``run_name`` come from the config's top-level keys, ``--experiment``/``--run_name``, or else the
config file: its folder is the experiment and its stem the run (``configs/parsing/synthetic_dist.yaml`` →
``runs/parsing/synthetic_dist``). Scores in ``metrics.json`` are percentages, like every score kd-suite logs.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

ROLES = ("teacher", "baseline", "kd")


@dataclass(frozen=True)
class RunLayout:
    """Where one run writes, and what it is.

    Attributes:
        experiment: the group of runs compared together (W&B group).
        run_name: this run's name within the experiment.
        run_dir: the run's folder (``root/experiment/run_name[-vN]``).
        role: ``"teacher"``, ``"baseline"`` or ``"kd"`` (W&B job type).
        resume_ckpt: the ``last.ckpt`` that ``--ckpt_path last`` resolved to, else ``None``.
    """

    experiment: str
    run_name: str
    run_dir: Path
    role: str
    resume_ckpt: Path | None = None

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "run"


def versions(root: Path, experiment: str, run_name: str) -> list[Path]:
    """Existing folders of a run, oldest first: ``<run>``, ``<run>-v2``, ``<run>-v3`` ..."""
    base = root / experiment
    found = [(1, base / run_name)] if (base / run_name).is_dir() else []
    pattern = re.compile(re.escape(run_name) + r"-v(\d+)$")
    if base.is_dir():
        found += [(int(m.group(1)), p) for p in base.iterdir() if p.is_dir() and (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def next_version(root: Path, experiment: str, run_name: str) -> Path:
    """The folder for a new run: ``<run>`` if unused, else ``<run>-v<N+1>``."""
    existing = versions(root, experiment, run_name)
    if not existing:
        return root / experiment / run_name
    last = existing[-1].name
    n = int(last.rsplit("-v", 1)[1]) if last != run_name else 1
    return root / experiment / f"{run_name}-v{n + 1}"


def names_from(config_files: list[str], experiment: str | None, run_name: str | None) -> tuple[str, str]:
    """Experiment and run names: the given ones, else the last config file's folder and stem."""
    last = Path(str(config_files[-1])) if config_files else None
    exp = experiment or (last.parent.name if last is not None else "default")
    run = run_name or (last.stem if last is not None else "run")
    return _slug(exp), _slug(run)


def infer_role(role: str | None, has_losses: bool, run_name: str) -> str:
    """``kd`` when distillation terms are configured, else ``teacher`` if the run's name says so, else ``baseline``."""
    if role:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return role
    if has_losses:
        return "kd"
    return "teacher" if "teacher" in run_name.lower() else "baseline"


def resolve_layout(
    root: Path,
    experiment: str,
    run_name: str,
    role: str,
    run_dir: str | None = None,
    resume: bool = False,
) -> RunLayout:
    """The run's folder: ``run_dir`` when given; for ``--ckpt_path last`` the newest version holding a ``last.ckpt``
    (training continues there); otherwise a new version folder.

    Raises:
        FileNotFoundError: ``resume`` but no version of the run has ``checkpoints/last.ckpt``.
    """
    if run_dir is not None:
        folder = Path(run_dir)
        last = folder / "checkpoints" / "last.ckpt"
        if resume and not last.is_file():
            raise FileNotFoundError(f"--ckpt_path last: {last} does not exist; start the run without --ckpt_path")
        return RunLayout(experiment, run_name, folder, role, last if resume else None)
    if resume:
        done = [p for p in versions(root, experiment, run_name) if (p / "checkpoints" / "last.ckpt").is_file()]
        if not done:
            raise FileNotFoundError(
                f"--ckpt_path last: no {root / experiment / run_name}[-vN]/checkpoints/last.ckpt; start the run "
                "without --ckpt_path, or give the checkpoint file itself"
            )
        return RunLayout(experiment, run_name, done[-1], role, done[-1] / "checkpoints" / "last.ckpt")
    return RunLayout(experiment, run_name, next_version(root, experiment, run_name), role)


class BestCheckpoint(ModelCheckpoint):
    """``best.ckpt``: the epoch with the best headline metric of the task, read from the module at setup.

    The metric is the task's ``val/<headline>`` (e.g. ``val/mIoU``), higher is better; a module without a metric
    keeps only ``last.ckpt``.
    """

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__(
            dirpath=dirpath, filename="best", monitor=None, mode="max", save_top_k=1, enable_version_counter=False
        )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.monitor = headline_key(pl_module)
        super().setup(trainer, pl_module, stage)

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self.monitor is not None and self.monitor in monitor_candidates:  # only epochs that validated
            super()._save_topk_checkpoint(trainer, monitor_candidates)


def last_checkpoint(dirpath: str | Path) -> ModelCheckpoint:
    """``last.ckpt`` at every training-epoch end (after that epoch's validation): what ``--ckpt_path last`` reads."""
    return ModelCheckpoint(
        dirpath=dirpath,
        filename="last",
        monitor=None,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def headline_key(module: L.LightningModule) -> str | None:
    """``val/<headline>`` of the module's task metric (``None`` when the task is not scored)."""
    build = getattr(module, "build_metric", None)
    metric = build() if build is not None else None
    headline = getattr(metric, "headline", "")
    return f"val/{headline}" if headline else None


class RunSummary(L.Callback):
    """Keep every validation epoch's scores and sampled training terms; at the end of fit write ``metrics.json`` and
    ``curves.json`` and print a summary.

    The summary names the best score and epoch, the run folder, the checkpoints and the wall time (summed over
    resumed sessions). ``curves.json`` holds the total, every task and distillation term and each term's scheduled
    weight about 20 times per epoch (``{"every": k, "points": [{"step", "epoch", "train/...": value}]}``). Both
    histories are part of the callback state, so a resumed run's files cover all epochs.

    Args:
        layout: the run's folder and names.
    """

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        self.history: list[dict[str, Any]] = []
        self.curve: list[dict[str, float]] = []
        self.every = 1
        self.wall_s = 0.0
        self._start = 0.0
        self.monitor: str | None = None

    def state_dict(self) -> dict[str, Any]:
        wall = self.wall_s + (time.perf_counter() - self._start)
        return {"history": self.history, "curve": self.curve, "wall_s": wall}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.curve = list(state_dict.get("curve", []))
        self.wall_s = float(state_dict.get("wall_s", 0.0))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self.monitor = headline_key(pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = trainer.num_training_batches  # known once the loaders are set up
        self.every = max(1, int(n) // 20) if n != float("inf") else 50

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        terms = getattr(pl_module, "last_terms", None)
        if not terms or trainer.global_step % self.every:
            return
        point: dict[str, float] = {"step": trainer.global_step, "epoch": trainer.current_epoch}
        for kind in ("task", "kd"):
            point |= {f"train/{kind}/{k}": float(v) for k, v in terms.get(kind, {}).items()}
        point["train/total"] = sum(v for k, v in point.items() if k.startswith("train/"))
        point |= {f"train/weight/{k}": float(w) for k, w in getattr(pl_module, "term_weights", {}).items()}
        self.curve = [c for c in self.curve if c["step"] < trainer.global_step] + [point]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and v.numel() == 1}
        if scores:
            self.history = [h for h in self.history if h["epoch"] != trainer.current_epoch]
            self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **scores})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        wall = self.wall_s + (time.perf_counter() - self._start)
        record = self.record(wall)
        self.layout.run_dir.mkdir(parents=True, exist_ok=True)
        (self.layout.run_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        curves = {"every": self.every, "points": self.curve}
        (self.layout.run_dir / "curves.json").write_text(json.dumps(curves) + "\n")
        print(self.format(record))

    def record(self, wall_s: float) -> dict[str, Any]:
        """The ``metrics.json`` document."""
        key = self.monitor
        scored = [h for h in self.history if key is not None and key in h]
        best = max(scored, key=lambda h: h[key]) if scored else None
        ckpts = {n: str(self.layout.checkpoints / f"{n}.ckpt") for n in ("best", "last")}
        return {
            "unit": "percent (every score); loss values as logged",
            "experiment": self.layout.experiment,
            "run": self.layout.run_name,
            "role": self.layout.role,
            "run_dir": str(self.layout.run_dir),
            "monitor": key,
            "best": best,
            "final": self.history[-1] if self.history else None,
            "epochs": self.history,
            "checkpoints": {n: p for n, p in ckpts.items() if Path(p).is_file()},
            "wall_s": round(wall_s, 1),
        }

    @staticmethod
    def format(record: dict[str, Any]) -> str:
        """The end-of-fit summary printed to the terminal."""
        key, best, final = record["monitor"], record["best"], record["final"]
        lines = [f"kd-suite fit: {record['experiment']}/{record['run']} ({record['role']}) finished"]
        if best is not None:
            lines.append(f"  best   {key} = {best[key]:.2f} % at epoch {best['epoch']}")
        if final is not None and key in final:
            lines.append(f"  final  {key} = {final[key]:.2f} % at epoch {final['epoch']}")
        lines.append(f"  folder {record['run_dir']}")
        for name, path in record["checkpoints"].items():
            lines.append(f"  {name:<6} {path}")
        minutes, seconds = divmod(record["wall_s"], 60)
        lines.append(f"  wall   {int(minutes)} min {seconds:.1f} s (metrics.json in the folder)")
        return "\n".join(lines)
