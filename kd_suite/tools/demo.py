"""``kd-suite demo``: teacher → baseline student → KD students on built-in synthetic data, with a report.

For each task it trains the teacher alone, then each student alone (its baseline) and with each distillation recipe,
all from the shipped ``configs/demo/<task>_*.yaml`` files, then prints and saves (``runs/demo/``) a table with
the task metric, the paired per-seed difference of each KD run to its own baseline (and on how many seeds it wins),
the share of the teacher–student gap it closes (``gap closed = (KD − baseline) / (teacher − baseline)``), params,
GFLOPs and CPU latency, plus a picture of teacher / baseline / KD predictions.

Every task also gets a *trivial* row (:mod:`kd_suite.metrics.trivial`: the mean pose, the per-pixel majority class,
no boxes) and the report flags any model that does not beat it, and any student that beats its teacher.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..metrics.trivial import trivial_score
from .report import format_table, summarise

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
    scale: float = 100.0  # factor to percent (PCKh is logged in percent already)

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
        scale=1.0,
    ),
    "detection": Experiment(
        task="detection",
        teacher="detection_teacher.yaml",
        baselines={"baseline": "detection_student.yaml"},
        kd={"FSD": ("detection_fsd.yaml", "baseline")},
        metric="val/mAP50",
        data_format="voc",
    ),
}


def _fit(config: Path, run_dir: Path, seed: int, overrides: list[str], wandb: bool) -> tuple[dict, object]:
    """Train one config in-process; return its final validation metrics and the trained module."""
    from ..cli import KDCLI

    logger = (
        [f"--trainer.logger.save_dir={run_dir.parent}", f"--trainer.logger.name={run_dir.name}-seed{seed}"]
        if wandb
        else ["--trainer.logger=false"]
    )
    args = [
        "fit",
        "--config",
        str(config),
        f"--seed_everything={seed}",
        f"--trainer.default_root_dir={run_dir}",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        *logger,
        *overrides,
    ]
    t0 = time.perf_counter()
    cli = KDCLI(args=args)
    print(f"[demo] {run_dir.parent.name}/{run_dir.name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    cli.trainer.save_checkpoint(run_dir / "final.ckpt", weights_only=False)  # full state: resumable
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    return metrics, cli.model


def run_experiment(exp: Experiment, out: Path, data: Path, seeds: list[int], epochs: int | None, wandb: bool) -> dict:
    """Teacher once, then baseline and every KD recipe for each seed; returns the rows of the report."""
    from ..data.synth import FORMAT_DIRS

    base = [f"--data.init_args.root={data / FORMAT_DIRS[exp.data_format]}"]
    base += list(exp.overrides)
    forced = [f"--trainer.max_epochs={epochs}"] if epochs else []  # --epochs wins over every per-run setting
    extra = base + forced
    t0 = time.perf_counter()
    teacher_dir = out / exp.task / "teacher"
    t_extra = base + list(exp.teacher_overrides) + forced
    t_metrics, t_module = _fit(exp.config(exp.teacher), teacher_dir, seeds[0], t_extra, wandb)
    teacher_ckpt = teacher_dir / "final.ckpt"
    rows = {"teacher": {"metrics": [t_metrics], "module": t_module}}
    runs = {role: (cfg, None) for role, cfg in exp.baselines.items()} | exp.kd
    for role, (cfg, baseline) in runs.items():
        kd_args = [f"--model.init_args.teacher_ckpt={teacher_ckpt}"] if baseline is not None else []
        metrics = []
        for seed in seeds:
            m, module = _fit(exp.config(cfg), out / exp.task / _slug(role), seed, extra + kd_args, wandb)
            metrics.append(m)
        rows[role] = {"metrics": metrics, "module": module, "baseline": baseline}
    rows["_trivial"] = trivial_score(exp.task, t_module.trainer.datamodule)
    rows["_seconds"] = time.perf_counter() - t0
    return rows


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
        help=f"comma-separated subset of {list(EXPERIMENTS)} (default: all three, about 13 min on 2 CPU cores)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the baseline and KD runs")
    p.add_argument("--epochs", type=int, default=None, help="override max_epochs of every run")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="report, checkpoints and pictures")
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
        help="torch CPU threads (default 1: one data worker runs beside it on a 2-core machine)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=2,
        help="tasks trained at once, each in its own process with its log in OUT/<task>.log (default 2; 1 runs "
        "them one after another). Results do not depend on it.",
    )
    p.add_argument("--rows-file", type=Path, default=None, help=argparse.SUPPRESS)  # a child's report rows
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {list(EXPERIMENTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    make_data(args.data, [EXPERIMENTS[t].data_format for t in tasks], args.scenes)
    if len(tasks) > 1:  # every task in a fresh process: a run's numbers must not depend on what ran before it
        report = _run_children(tasks, args, argv)
        if report is None:
            return 1
    else:
        report = []
        for task in tasks:
            report += run_task(EXPERIMENTS[task], args)
    if args.rows_file is not None:
        args.rows_file.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    table = format_table(report)
    (args.out / "report.md").write_text(table + "\n")
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + table)
    print(f"\n[demo] total {time.perf_counter() - start:.0f} s; report: {args.out / 'report.md'}")
    return 0


def run_task(exp: Experiment, args: argparse.Namespace) -> list[dict]:
    """Train every run of one task in this process; return its report rows (and draw its picture)."""
    rows = run_experiment(exp, args.out, args.data, args.seeds, args.epochs, args.wandb)
    module = rows["teacher"]["module"]
    size = tuple(getattr(module.trainer.datamodule, "input_size", (256, 256)))
    report = summarise(exp, rows, size)
    picture = _picture(exp, rows, args.out)
    print(f"[demo] {exp.task}: {rows['_seconds']:.0f} s; predictions: {picture}", flush=True)
    return report


#: longest first (pose ≈ detection + parsing on 2 cores), so that the shorter tasks share the other process slot
_EXPECTED_ORDER = ("pose", "detection", "parsing")


def _run_children(tasks: list[str], args: argparse.Namespace, argv: list[str]) -> list[dict] | None:
    """One child ``kd-suite demo --tasks T --parallel 1`` per task, ``args.parallel`` at a time; merged rows."""
    import sys

    from .parallel import Job, run_jobs

    order = sorted(tasks, key=lambda t: _EXPECTED_ORDER.index(t) if t in _EXPECTED_ORDER else len(_EXPECTED_ORDER))
    common = _strip(argv, ("--tasks", "--parallel", "--rows-file"))
    jobs = [
        Job(
            task,
            [sys.executable, "-m", "kd_suite.cli", "demo", *common, "--tasks", task, "--parallel", "1"]
            + ["--rows-file", str(args.out / f"{task}.rows.json")],
            args.out / f"{task}.log",
        )
        for task in order
    ]
    if any(job.returncode != 0 for job in run_jobs(jobs, args.parallel)):
        return None
    return [row for task in tasks for row in json.loads((args.out / f"{task}.rows.json").read_text())]


def _strip(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """``argv`` without ``options`` and their values (``--opt v`` and ``--opt=v``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif not a.startswith(tuple(f"{o}=" for o in options)):
            out.append(a)
    return out


@torch.no_grad()
def _picture(exp: Experiment, rows: dict, out: Path, n: int = 4) -> Path:
    """Side-by-side predictions of teacher, baseline and KD students on the first validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = {role: r["module"].eval() for role, r in rows.items() if not role.startswith("_")}
    reference = models["teacher"]
    batch = next(iter(reference.trainer.datamodule.val_dataloader()))
    columns = {"ground truth": reference.render(batch, None, n)}
    for role, module in models.items():
        columns[role] = module.render(batch, module.student(batch.image), n)
    n = min(n, len(columns["ground truth"]))
    fig, axes = plt.subplots(n, len(columns), figsize=(2.6 * len(columns), 2.6 * n), squeeze=False)
    for col, (title, pictures) in enumerate(columns.items()):
        for row in range(n):
            ax = axes[row][col]
            ax.imshow(pictures[row])
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle(f"{exp.task}: validation predictions ({exp.metric.split('/')[-1]} in the report)", fontsize=10)
    fig.tight_layout()
    path = out / f"{exp.task}_predictions.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
