"""Run a study: every run an ordinary ``kd-suite fit`` in its own folder, finished runs skipped, then the report.

Folders (``runs`` is ``$KD_SUITE_RUNS`` or ``runs``)::

    runs/<study>/teacher/                  the teacher (first seed), unless the study gives a checkpoint
    runs/<study>/<run>/seed<N>/            each baseline and variant per seed: config.yaml, checkpoints/, metrics.json
    runs/<study>/configs/                  the configs the study derived (ablations)
    runs/<study>/study.json, report.md, report.html, plots/, predictions.png

A run is done when its ``metrics.json`` exists; a run with a ``last.ckpt`` but no ``metrics.json`` (killed) resumes
from it. KD runs read the teacher's final weights (``teacher/checkpoints/last.ckpt``); every run of a study shares
the experiment name, hence one W&B group, with job type teacher / baseline / kd.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..tools.schedule import Job, run_jobs
from .spec import Study, Variant, slug

#: per-item score keys of the report by headline metric (per class or per joint)
PER_ITEM = {"val/mIoU": "val/iou/", "val/PCKh": "val/PCKh/", "val/mAP50": "val/AP/", "val/mAP": "val/AP/"}


def calibrate_run(config: str, overrides: list[str], share: float, batches: int, out: str) -> dict[str, float]:
    """``kd-suite calibrate`` of a variant (a study job): the term weights giving each term ``share`` of the task
    gradient norm, also written to ``out``."""
    from ..tools.calibrate import main as calibrate

    args = ["--config", config, "--share", str(share), "--batches", str(batches), "--out", out, "--device", "cpu"]
    if calibrate([*args, *[o for o in overrides if not o.startswith("--role")]]) != 0:
        raise RuntimeError(f"kd-suite calibrate failed for {config}")
    return json.loads(Path(out).read_text())["suggested_weights"]


def weight_overrides(weights: dict[str, float]) -> list[str]:
    """Command-line overrides setting each term's weight."""
    return [f"--model.init_args.losses.{name}.init_args.weight={w:.6g}" for name, w in weights.items()]


def calibrated_fit_run(results: dict[str, dict[str, float]], **kwargs: Any) -> dict:
    """:func:`fit_run` with the weights of the calibration job it runs after."""
    (weights,) = results.values()
    return fit_run(**(kwargs | {"overrides": [*kwargs["overrides"], *weight_overrides(weights)]}))


def fit_run(config: str, run_dir: str, seed: int, overrides: list[str], experiment: str, run_name: str) -> dict:
    """One ``kd-suite fit`` of the study (a job of :func:`~kd_suite.tools.schedule.run_jobs`); resumes a killed run.

    Returns the run's ``metrics.json``.
    """
    from ..cli import KDCLI

    folder = Path(run_dir)
    resume = ["--ckpt_path=last"] if (folder / "checkpoints" / "last.ckpt").is_file() else []
    args = ["fit", "--config", config, f"--seed_everything={seed}", f"--run_dir={folder}"]
    KDCLI(args=[*args, f"--experiment={experiment}", f"--run_name={run_name}", *overrides, *resume])
    return json.loads((folder / "metrics.json").read_text())


class StudyPlan:
    """The runs of a study with their folders, and the jobs still to do.

    Args:
        study: the parsed study.
        root: the folder holding experiment folders.
        wandb: log every run to W&B (one group per study).
        folder: the study's folder (default ``root/<name>``).
        costs: expected seconds per role (the job order; default 3 for the teacher, 1 for the others).
    """

    def __init__(
        self,
        study: Study,
        root: Path,
        wandb: bool = False,
        folder: Path | None = None,
        costs: dict[str, float] | None = None,
    ) -> None:
        self.study, self.dir = study, folder or root / study.name
        self.costs = costs or {}
        common = [*study.overrides, *(["--trainer.logger=kd_suite.loggers.KDWandbLogger"] if wandb else [])]
        self.runs: dict[str, dict[str, Any]] = {}  # role → {"config", "overrides", "dirs": {seed: dir}, "kind", ...}
        self.teacher_ckpt = study.teacher_ckpt
        if study.teacher_config is not None:
            dirs = {study.seeds[0]: self.dir / "teacher"}  # one teacher for every seed of its students
            teacher_args = [*common, *study.teacher_overrides]
            self.runs["teacher"] = self._entry(str(study.teacher_config), teacher_args, "teacher", dirs)
            self.teacher_ckpt = self.dir / "teacher" / "checkpoints" / "last.ckpt"
        for name, config in study.baselines.items():
            self.runs[name] = self._entry(str(config), common, "baseline", self._seed_dirs(name))
        teacher = [f"--model.init_args.teacher_ckpt={self.teacher_ckpt}"] if self.teacher_ckpt is not None else []
        for name, variant in study.variants.items():
            role = "kd" if variant.terms else "baseline"
            entry = self._entry(str(variant.config), [*common, *variant.overrides], role, self._seed_dirs(name))
            if variant.terms:
                entry["overrides"] += teacher
            if variant.kind == "calibrated":
                entry["calibrated"] = True
                if self.calibration.is_file():  # measured by an earlier call
                    weights = json.loads(self.calibration.read_text())["suggested_weights"]
                    entry["overrides"] += weight_overrides(weights)
            self.runs[name] = entry | {"variant": variant}

    def _seed_dirs(self, name: str) -> dict[int, Path]:
        return {s: self.dir / slug(name) / f"seed{s}" for s in self.study.seeds}

    @staticmethod
    def _entry(config: str, overrides: list[str], role: str, dirs: dict[int, Path]) -> dict[str, Any]:
        return {"config": config, "overrides": [*overrides, f"--role={role}"], "dirs": dirs, "role": role}

    def done(self, run_dir: Path) -> bool:
        return (run_dir / "metrics.json").is_file()

    def jobs(self) -> list[Job]:
        """Fit jobs of the runs not done yet; KD runs after the teacher when it is trained here."""
        jobs = []
        teacher_pending = "teacher" in self.runs and not self.done(self.dir / "teacher")
        for role, run in self.runs.items():
            for seed, run_dir in run["dirs"].items():
                if self.done(run_dir):
                    continue
                name = self.study.name
                after = (f"{name}/teacher",) if teacher_pending and run["role"] == "kd" else ()
                key = f"{name}/teacher" if role == "teacher" else f"{name}/{slug(role)}/seed{seed}"
                kwargs = {"config": run["config"], "run_dir": str(run_dir), "seed": seed}
                kwargs |= {"overrides": run["overrides"], "experiment": self.study.name, "run_name": slug(role)}
                job = Job(key, fit_run, kwargs, run_dir / "fit.log", after, cost=self.cost(role))
                if run.get("calibrated") and not self.calibration.is_file():  # weights from the calibration job
                    job.fn, job.after, job.pass_results = calibrated_fit_run, (f"{name}/calibrate",), True
                jobs.append(job)
        if any(j.pass_results for j in jobs):
            jobs.append(self._calibration_job(teacher_pending))
        return jobs

    @property
    def calibration(self) -> Path:
        """Where the calibrated variant's weights are kept (``kd-suite calibrate --out``)."""
        return self.dir / "calibration.json"

    def _calibration_job(self, teacher_pending: bool) -> Job:
        spec, name = self.study.calibrate or {}, self.study.name
        run = self.runs[spec["variant"]]
        kwargs = {"config": run["config"], "overrides": run["overrides"], "share": spec["share"]}
        kwargs |= {"batches": spec["batches"], "out": str(self.calibration)}
        after = (f"{name}/teacher",) if teacher_pending else ()
        return Job(f"{name}/calibrate", calibrate_run, kwargs, self.dir / "calibrate.log", after, cost=0.2)

    def cost(self, role: str) -> float:
        """Expected seconds of one run of ``role`` (only the order of the jobs depends on it)."""
        return float(self.costs.get(role, 3.0 if role == "teacher" else 1.0))

    def describe(self) -> str:
        """One line per run: done or to do."""
        lines = [f"study {self.study.name}: {self.dir}"]
        for role, run in self.runs.items():
            states = [f"seed{s} {'done' if self.done(d) else 'to do'}" for s, d in run["dirs"].items()]
            lines.append(f"  {role:<28} {run['role']:<8} {', '.join(states)}")
        return "\n".join(lines)


def run_study(plan: StudyPlan, parallel: int = 0, say: Any = print) -> dict[str, Job]:
    """Run the jobs still to do (``parallel`` worker processes; 0 runs them in this process)."""
    jobs = plan.jobs()
    if not jobs:
        say(f"[study] {plan.study.name}: every run is done")
        return {}
    say(f"[study] {plan.study.name}: {len(jobs)} run(s) to do")
    return run_jobs(jobs, workers=parallel, say=say)


def _seed_runs(plan: StudyPlan, role: str) -> dict[str, str]:
    """Seed → finished run folder, relative to the study folder (the study stays valid when moved)."""
    return {str(s): os.path.relpath(d, plan.dir) for s, d in plan.runs[role]["dirs"].items() if plan.done(d)}


def run_path(study_dir: Path, path: str) -> Path:
    """A run folder of ``study.json``: absolute, or relative to the study folder."""
    return Path(path) if Path(path).is_absolute() else study_dir / path


def describe_study(plan: StudyPlan) -> dict[str, Any]:
    """The ``study.json`` document the report reads (runs by role and seed, the metric, per-item keys)."""
    study, first = plan.study, next(iter(plan.study.baselines))
    metric = study.metric
    if metric is None:
        done = [run_path(plan.dir, d) for d in _seed_runs(plan, first).values()]
        metric = json.loads((done[0] / "metrics.json").read_text())["monitor"] if done else "val/loss"
    doc: dict[str, Any] = {"name": study.name, "metric": metric, "metric_label": metric.split("/", 1)[-1]}
    doc |= {"unit": "percent", "score": study.score, "per_item_prefix": PER_ITEM.get(metric, "")}
    doc["teacher"] = {"runs": _seed_runs(plan, "teacher")} if "teacher" in plan.runs else {"runs": {}}
    if study.teacher_ckpt is not None:
        doc["teacher"] |= {"label": "teacher (checkpoint)", "score": study.teacher_score}
    doc["baselines"] = {b: {"runs": _seed_runs(plan, b)} for b in study.baselines}
    variants: dict[str, Any] = {}
    for name, variant in study.variants.items():
        v: Variant = variant
        variants[name] = {"baseline": v.baseline, "terms": v.terms, "runs": _seed_runs(plan, name), "kind": v.kind}
        variants[name] |= {"of": v.of, "overrides": v.overrides}
    doc["variants"] = variants
    return doc
