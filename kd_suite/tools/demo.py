"""``kd-suite demo``: teacher → baseline student → KD students on built-in synthetic data, with a report.

For each task it trains the teacher alone, then each student alone (its baseline) and with each distillation recipe,
all from the shipped ``configs/demo/<task>_*.yaml`` files, then prints and saves (``runs/demo/``) a table with
the task metric, the paired per-seed difference of each KD run to its own baseline (and on how many seeds it wins),
the share of the teacher–student gap it closes (``gap closed = (KD − baseline) / (teacher − baseline)``), params,
GFLOPs and CPU latency, plus a picture of teacher / baseline / KD predictions.

Every task also gets a *trivial* row (:mod:`kd_suite.metrics.trivial`: the mean pose, the per-pixel majority class,
no boxes) and the report flags any model that does not beat it, and any student that beats its teacher.

Each task is a study (:mod:`kd_suite.study`) over its recipes: every run an ordinary ``kd-suite fit`` in
``OUT/<task>/<run>/seed<N>/`` (the teacher in ``OUT/<task>/teacher/``), all of them jobs of
:func:`~kd_suite.tools.schedule.run_jobs` on ``--parallel`` worker processes (a KD run after its teacher, each run's
output in its ``fit.log``). Finished runs are not trained again. Each task then gets the study's report
(``OUT/<task>/report.md`` / ``report.html``, plots, predictions) and its rows of the demo table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..study.runner import StudyPlan
from ..study.spec import Study, Variant, losses_of
from .report import format_table, summarise
from .schedule import run_jobs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class Experiment:
    """One task of the demo: its configs by role, the metric that ranks runs, and where its data is generated.

    ``baselines`` maps each baseline role to its config (a student trained alone); ``kd`` maps each distillation role
    to ``(config, baseline role)``, the baseline it is compared with (the same student without distillation).
    """

    task: str
    teacher: str
    baselines: dict[str, str]
    kd: dict[str, tuple[str, str]]
    metric: str
    data_format: str
    extra_metrics: tuple[str, ...] = field(default_factory=tuple)
    overrides: tuple[str, ...] = field(default_factory=tuple)  # applied to every run of the task in the demo
    teacher_overrides: tuple[str, ...] = field(default_factory=tuple)  # applied to the teacher run only
    expected_s: dict[str, float] = field(default_factory=dict)  # seconds per run by role (2 cores): the job order

    def config(self, name: str) -> Path:
        return CONFIGS / "demo" / name


EXPERIMENTS = {
    # configs/demo/*: CPU-minute recipes on easy synthetic people (see the comments in each file)
    "parsing": Experiment(
        task="parsing",
        teacher="parsing_teacher.yaml",
        baselines={"baseline": "parsing_student.yaml"},
        kd={
            "DIST": ("parsing_dist.yaml", "baseline"),
            "DIST+GSKD": ("parsing_dist_gskd.yaml", "baseline"),
        },
        metric="val/mIoU",
        data_format="lip",
        extra_metrics=("val/pixel_acc",),
        expected_s={"teacher": 150, "baseline": 48, "DIST": 60, "DIST+GSKD": 60},
    ),
    "pose": Experiment(
        task="pose",
        teacher="pose_teacher.yaml",
        baselines={"baseline (regression)": "pose_student.yaml", "baseline (heatmap)": "pose_heatmap_student.yaml"},
        kd={
            "DistilPose+L_A": ("pose_distilpose.yaml", "baseline (regression)"),
            "DSKD": ("pose_dskd.yaml", "baseline (heatmap)"),
        },
        metric="val/PCKh",
        data_format="mpii",
        extra_metrics=("val/PCKh@0.1",),
        expected_s={
            "teacher": 180,
            "baseline (regression)": 100,
            "baseline (heatmap)": 45,
            "DistilPose+L_A": 240,
            "DSKD": 95,
        },
    ),
    "detection": Experiment(
        task="detection",
        teacher="detection_teacher.yaml",
        baselines={"baseline": "detection_student.yaml"},
        kd={"FSD": ("detection_fsd.yaml", "baseline")},
        metric="val/mAP50",
        data_format="voc",
        expected_s={"teacher": 160, "baseline": 75, "FSD": 115},
    ),
}


def study_of(exp: Experiment, data: Path, seeds: list[int], epochs: int | None) -> Study:
    """The demo task as a study over its ``configs/demo/`` recipes (:mod:`kd_suite.study`)."""
    from ..data.synth import FORMAT_DIRS

    base = [f"--data.init_args.root={data / FORMAT_DIRS[exp.data_format]}", *exp.overrides]
    # --epochs wins over every per-run setting, and the run is scored at its end
    base += [f"--trainer.max_epochs={epochs}", f"--trainer.check_val_every_n_epoch={epochs}"] if epochs else []
    baselines = {role: exp.config(cfg) for role, cfg in exp.baselines.items()}
    variants = {
        role: Variant(role, exp.config(cfg), [], baseline, sorted(losses_of(exp.config(cfg))))
        for role, (cfg, baseline) in exp.kd.items()
    }
    study = Study(f"demo_{exp.task}", list(seeds), baselines, variants, base, exp.config(exp.teacher))
    study.teacher_overrides, study.metric = list(exp.teacher_overrides), exp.metric
    return study


def plan(exp: Experiment, out: Path, data: Path, seeds: list[int], epochs: int | None, wandb: bool) -> StudyPlan:
    """The task's study plan in ``out/<task>/``, its runs ordered by the expected seconds of each role."""
    costs = dict(exp.expected_s)
    if epochs:  # the expected times are for the shipped schedules
        for role, cfg in [("teacher", exp.teacher), *exp.baselines.items(), *((r, c) for r, (c, _) in exp.kd.items())]:
            shipped = yaml.safe_load(exp.config(cfg).read_text()).get("trainer", {}).get("max_epochs") or epochs
            costs[role] = costs.get(role, 60.0) * epochs / shipped
    return StudyPlan(study_of(exp, data, seeds, epochs), out, wandb, folder=out / exp.task, costs=costs)


def summary(exp: Experiment, plan: StudyPlan) -> list[dict]:
    """The task's study files (``study.json``, ``report.md``/``.html``, plots, predictions) and its table rows."""
    from ..study.report import write_report
    from ..study.summary import summarise as summarise_study

    doc = json.loads(summarise_study(plan).read_text())
    write_report(plan.dir)
    print(f"[demo] {exp.task}: report and plots in {plan.dir}", flush=True)
    return summarise(exp.task, doc, plan.dir, exp.extra_metrics)


def make_data(root: Path, formats: list[str], scenes: tuple[int, int]) -> None:
    """Generate the easy synthetic datasets the demo needs unless their folders exist."""
    from ..data.synth import FORMAT_DIRS, synthesize

    missing = [f for f in dict.fromkeys(formats) if not (root / FORMAT_DIRS[f]).exists()]
    if missing:
        print(f"[demo] generating synthetic {', '.join(missing)} data in {root} ({scenes[0]} + {scenes[1]} scenes)")
        synthesize(root, scenes[0], scenes[1], size=(160, 160), seed=0, formats=missing, difficulty="easy")


def _slug(role: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in role.lower()).strip("_")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kd-suite demo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--tasks",
        default=",".join(EXPERIMENTS),
        help=f"comma-separated subset of {list(EXPERIMENTS)} (default: all three, about 11 min on 2 CPU cores)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the baseline and KD runs")
    p.add_argument("--epochs", type=int, default=None, help="override max_epochs of every run")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="report, checkpoints, logs and pictures")
    p.add_argument("--data", type=Path, default=Path("data/demo"), help="easy synthetic datasets (made if missing)")
    p.add_argument(
        "--scenes",
        type=int,
        nargs=2,
        default=(700, 100),
        metavar=("TRAIN", "VAL"),
        help="scenes generated when the data folder is missing",
    )
    p.add_argument("--wandb", action="store_true", help="log runs to W&B (offline unless you are logged in)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per run (default 1: one data worker runs beside it on a 2-core machine)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=2,
        help="worker processes that train runs side by side, each run logging to OUT/<task>/<run>/fit.log "
        "(default 2; 0 runs everything in this process). Results do not depend on it.",
    )
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {list(EXPERIMENTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    make_data(args.data, [EXPERIMENTS[t].data_format for t in tasks], args.scenes)
    plans = {t: plan(EXPERIMENTS[t], args.out, args.data, args.seeds, args.epochs, args.wandb) for t in tasks}
    jobs = [j for p in plans.values() for j in p.jobs()]
    expected = sum(j.cost for j in jobs) / max(1, args.parallel)
    print(f"[demo] {len(jobs)} runs on {max(1, args.parallel)} worker(s), about {expected / 60:.0f} min", flush=True)
    done = run_jobs(jobs, args.parallel, args.threads, say=lambda line: print(line, flush=True)) if jobs else {}
    failed = [j.key for j in done.values() if j.error]
    report = [row for t in tasks if not any(k.startswith(f"demo_{t}/") for k in failed)
              for row in summary(EXPERIMENTS[t], plans[t])]  # fmt: skip
    if report:
        table = format_table(report)
        (args.out / "report.md").write_text(table + "\n")
        (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        print("\n" + table)
    print(f"\n[demo] total {time.perf_counter() - start:.0f} s; report: {args.out / 'report.md'}")
    if failed:
        print(f"[demo] {len(failed)} job(s) failed or skipped: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
