"""``kd-suite demo``: teacher → baseline student → KD students on built-in synthetic data, with a report.

For each task it trains the teacher alone, then each student alone (its baseline) and with each distillation recipe,
all from the shipped ``configs/demo/<task>_*.yaml`` files, then prints and saves (``runs/demo/``) a table with
the task metric, the paired per-seed difference of each KD run to its own baseline (and on how many seeds it wins),
the share of the teacher–student gap it closes (``gap closed = (KD − baseline) / (teacher − baseline)``), params,
GFLOPs and CPU latency, plus a picture of teacher / baseline / KD predictions.

Every task also gets a *trivial* row (:mod:`kd_suite.metrics.trivial`: the mean pose, the per-pixel majority class,
no boxes) and the report flags any model that does not beat it, and any student that beats its teacher.

Every run is one job of :func:`~kd_suite.tools.schedule.run_jobs` (``--parallel`` worker processes, a KD run after
its teacher, each run's output in ``OUT/<task>/<run>/seed<N>/fit.log``); each task's summary (report rows, picture)
is a job after all of its runs, built from the saved checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..metrics.trivial import trivial_score
from .report import format_table, summarise
from .schedule import Job, run_jobs

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


def fit_run(config: str, run_dir: str, seed: int, overrides: list[str], wandb_name: str | None) -> dict[str, float]:
    """Train one config (a job of :func:`~kd_suite.tools.schedule.run_jobs`); save ``run_dir/final.ckpt``.

    Logs to W&B under ``wandb_name`` unless it is ``None``. Returns the final validation metrics.
    """
    from ..cli import KDCLI

    run_dir = Path(run_dir)
    logger = (
        [f"--trainer.logger.save_dir={run_dir}", f"--trainer.logger.name={wandb_name}"]
        if wandb_name
        else ["--trainer.logger=false"]
    )
    args = [
        "fit",
        "--config",
        config,
        f"--seed_everything={seed}",
        f"--run_dir={run_dir}",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        *logger,
        *overrides,
    ]
    cli = KDCLI(args=args)
    cli.trainer.save_checkpoint(run_dir / "final.ckpt", weights_only=False)  # full state: resumable
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}


def summary_run(task: str, runs: dict[str, dict], out: str, results: dict[str, dict]) -> list[dict]:
    """A task's report rows and picture from its trained runs (a job after all of them).

    ``runs`` maps each role to ``{"config", "overrides", "ckpt", "baseline", "jobs"}`` (the first seed's checkpoint
    is drawn and profiled); ``results`` maps each fit job's key to its validation metrics.
    """
    from ..cli import KDCLI
    from ..teacher import load_weights

    exp, rows, datamodule = EXPERIMENTS[task], {}, None
    for role, run in runs.items():
        cli = KDCLI(args=["--config", run["config"], "--trainer.logger=false", *run["overrides"]], run=False)
        load_weights(cli.model.student, run["ckpt"])
        cli.datamodule.setup("validate")
        cli.model.link_data(cli.datamodule.facts)  # what fit's setup does: skeleton, class names, flip pairs
        metrics = [results[key] for key in run["jobs"]]
        rows[role] = {"metrics": metrics, "module": cli.model.eval(), "baseline": run["baseline"]}
        datamodule = datamodule or cli.datamodule
    rows["_trivial"] = trivial_score(exp.task, datamodule)
    report = summarise(exp, rows, tuple(getattr(datamodule, "input_size", (256, 256))))
    picture = _picture(exp, rows, datamodule, Path(out))
    print(f"[demo] {task}: predictions in {picture}", flush=True)
    return report


def plan(exp: Experiment, out: Path, data: Path, seeds: list[int], epochs: int | None, wandb: bool) -> list[Job]:
    """The jobs of one task: its teacher, every baseline and KD run for each seed, and the summary after them."""
    from ..data.synth import FORMAT_DIRS

    base = [f"--data.init_args.root={data / FORMAT_DIRS[exp.data_format]}", *exp.overrides]
    # --epochs wins over every per-run setting, and the run is scored at its end
    forced = [f"--trainer.max_epochs={epochs}", f"--trainer.check_val_every_n_epoch={epochs}"] if epochs else []
    teacher_ckpt, teacher_key = out / exp.task / "teacher" / "final.ckpt", f"{exp.task}/teacher/seed{seeds[0]}"
    roles = {"teacher": (exp.teacher, None)} | {role: (cfg, None) for role, cfg in exp.baselines.items()} | exp.kd
    jobs, runs = [], {}
    for role, (cfg, baseline) in roles.items():
        overrides = base + (list(exp.teacher_overrides) if role == "teacher" else []) + forced
        if baseline is not None:
            overrides.append(f"--model.init_args.teacher_ckpt={teacher_ckpt}")
        role_seeds = seeds[:1] if role == "teacher" else seeds  # one teacher for every seed of its students
        dirs = [
            teacher_ckpt.parent if role == "teacher" else out / exp.task / _slug(role) / f"seed{s}" for s in role_seeds
        ]
        keys = [f"{exp.task}/{_slug(role)}/seed{s}" for s in role_seeds]
        after = (teacher_key,) if baseline is not None else ()
        for key, run_dir, seed in zip(keys, dirs, role_seeds):
            jobs.append(_fit_job(exp, role, exp.config(cfg), key, run_dir, seed, overrides, wandb, after, epochs))
        runs[role] = {"config": str(exp.config(cfg)), "overrides": overrides, "ckpt": str(dirs[0] / "final.ckpt")}
        runs[role] |= {"jobs": keys, "baseline": baseline}
    summary = Job(
        f"{exp.task}/summary",
        summary_run,
        {"task": exp.task, "runs": runs, "out": str(out)},
        out / exp.task / "summary.log",
        after=tuple(k for run in runs.values() for k in run["jobs"]),
        cost=exp.expected_s.get("summary", 10.0),
        pass_results=True,
    )
    return jobs + [summary]


def _fit_job(
    exp: Experiment,
    role: str,
    config: Path,
    key: str,
    run_dir: Path,
    seed: int,
    overrides: list[str],
    wandb: bool,
    after: tuple[str, ...],
    epochs: int | None,
) -> Job:
    """A :func:`fit_run` job; its cost is the role's expected seconds, scaled when ``--epochs`` changes the schedule."""
    cost = exp.expected_s.get(role, 60.0)
    if epochs:  # the expected times are for the shipped schedules
        shipped = yaml.safe_load(config.read_text()).get("trainer", {}).get("max_epochs") or epochs
        cost *= epochs / shipped
    kwargs = {"config": str(config), "run_dir": str(run_dir), "seed": seed, "overrides": overrides}
    kwargs["wandb_name"] = key.replace("/", "-") if wandb else None
    return Job(key, fit_run, kwargs, run_dir / "fit.log", after, cost=cost)


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
    jobs = [j for t in tasks for j in plan(EXPERIMENTS[t], args.out, args.data, args.seeds, args.epochs, args.wandb)]
    expected = sum(j.cost for j in jobs) / max(1, args.parallel)
    print(f"[demo] {len(jobs)} jobs on {max(1, args.parallel)} worker(s), about {expected / 60:.0f} min", flush=True)
    done = run_jobs(jobs, args.parallel, args.threads, say=lambda line: print(line, flush=True))
    report = [row for t in tasks if (r := done[f"{t}/summary"].result) for row in r]
    failed = [j.key for j in done.values() if j.error]
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


@torch.no_grad()
def _picture(exp: Experiment, rows: dict, datamodule: Any, out: Path, n: int = 4) -> Path:
    """Side-by-side predictions of teacher, baseline and KD students on the first validation images."""
    from ..viz import prediction_grid

    models = {role: r["module"] for role, r in rows.items() if not role.startswith("_")}
    title = f"{exp.task}: validation predictions ({exp.metric.split('/')[-1]} in the report)"
    return prediction_grid(models, datamodule, out / f"{exp.task}_predictions.png", title, n)
