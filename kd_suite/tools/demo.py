"""``kd-suite demo``: teacher → baseline student → KD students on built-in synthetic data, with a report.

For each task it trains the teacher alone, then the student alone (the baseline) and with each distillation recipe,
all from the shipped ``configs/demo/<task>_*.yaml`` files, then prints and saves (``runs/demo/``) a table with
the task metric, params, GFLOPs, CPU latency and the share of the teacher–student gap each recipe closes
(``gap closed = (KD − baseline) / (teacher − baseline)``), plus a picture of teacher / baseline / KD predictions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .profile import profile_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MIN_GAP = 1.0  # metric points (percent) a teacher must lead the baseline by for "gap closed" to mean anything


@dataclass(frozen=True)
class Experiment:
    """One task of the demo: its configs by role, the metric that ranks runs, and where its data is generated."""

    task: str
    teacher: str
    baseline: str
    kd: dict[str, str]
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
        baseline="parsing_student.yaml",
        kd={"DIST (000)": "parsing_dist.yaml", "DIST+GSKD (004)": "parsing_dist_gskd.yaml"},
        metric="val/mIoU",
        data_format="lip",
        extra_metrics=("val/pixel_acc",),
    ),
    "pose": Experiment(
        task="pose",
        teacher="pose_teacher.yaml",
        baseline="pose_student.yaml",
        kd={"DistilPose+L_A (003)": "pose_distilpose.yaml"},
        metric="val/PCKh",
        data_format="mpii",
        extra_metrics=("val/PCKh@0.1",),
        scale=1.0,
    ),
    "detection": Experiment(
        task="detection",
        teacher="detection_teacher.yaml",
        baseline="detection_student.yaml",
        kd={"FSD (002)": "detection_fsd.yaml"},
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
    cli = KDCLI(args=args)
    cli.trainer.save_checkpoint(run_dir / "final.ckpt")
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
    for role, cfg in {"baseline": exp.baseline, **exp.kd}.items():
        runs = []
        for seed in seeds:
            kd_args = [f"--model.init_args.teacher_ckpt={teacher_ckpt}"] if role != "baseline" else []
            metrics, module = _fit(exp.config(cfg), out / exp.task / _slug(role), seed, extra + kd_args, wandb)
            runs.append(metrics)
        rows[role] = {"metrics": runs, "module": module}
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


def gap_closed(kd: float, baseline: float, teacher: float) -> float | None:
    """``(KD − baseline) / (teacher − baseline)``, or ``None`` when the teacher is not ahead by ``MIN_GAP`` points."""
    if teacher - baseline < MIN_GAP:
        return None
    return (kd - baseline) / (teacher - baseline)


def summarise(exp: Experiment, rows: dict, input_size: tuple[int, int]) -> list[dict]:
    """Mean ± std of the metric per role, gap closed against the baseline, and the model costs."""
    table = []
    values = {
        role: [exp.scale * m.get(exp.metric, float("nan")) for m in r["metrics"]]
        for role, r in rows.items()
        if role[0] != "_"
    }
    base, teacher = statistics.mean(values["baseline"]), statistics.mean(values["teacher"])
    for role, r in rows.items():
        if role.startswith("_"):
            continue
        v = values[role]
        model = r["module"].student
        cost = profile_model(model, input_size, runs=5)
        gap = None if role in ("teacher", "baseline") else gap_closed(statistics.mean(v), base, teacher)
        table.append(
            {
                "task": exp.task,
                "run": role,
                "metric": exp.metric,
                "mean": statistics.mean(v),
                "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                "seeds": len(v),
                "gap_closed": gap,
                **{k: cost[k] for k in ("params_M", "gflops", "cpu_latency_ms")},
                **{
                    m: exp.scale * statistics.mean(x.get(m, float("nan")) for x in r["metrics"])
                    for m in exp.extra_metrics
                },
            }
        )
    return table


def format_table(rows: list[dict]) -> str:
    """Markdown table of the report."""
    head = "| task | run | metric | value (mean ± std, n) | gap closed | params (M) | GFLOPs | CPU ms |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        gap = "—" if r["gap_closed"] is None else f"{100 * r['gap_closed']:+.0f} %"
        value = f"{r['mean']:.2f} ± {r['std']:.2f} (n={r['seeds']})"
        lines.append(
            f"| {r['task']} | {r['run']} | {r['metric'].split('/')[-1]} | {value} | {gap} | "
            f"{r['params_M']:.2f} | {r['gflops']:.2f} | {r['cpu_latency_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kd-suite demo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--tasks",
        default=",".join(EXPERIMENTS),
        help=f"comma-separated subset of {list(EXPERIMENTS)} (default: all three, 10-12 min on 2 CPU cores)",
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
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {list(EXPERIMENTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    report, start = [], time.perf_counter()
    make_data(args.data, [EXPERIMENTS[t].data_format for t in tasks], args.scenes)
    for task in tasks:
        exp = EXPERIMENTS[task]
        rows = run_experiment(exp, args.out, args.data, args.seeds, args.epochs, args.wandb)
        module = rows["baseline"]["module"]
        size = tuple(getattr(module.trainer.datamodule, "input_size", (256, 256)))
        report += summarise(exp, rows, size)
        picture = _picture(exp, rows, args.out)
        print(f"[demo] {task}: {rows['_seconds']:.0f} s; predictions: {picture}")
    table = format_table(report)
    (args.out / "report.md").write_text(table + "\n")
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + table)
    print(f"\n[demo] total {time.perf_counter() - start:.0f} s; report: {args.out / 'report.md'}")
    return 0


@torch.no_grad()
def _picture(exp: Experiment, rows: dict, out: Path, n: int = 4) -> Path:
    """Side-by-side predictions of teacher, baseline and KD students on the first validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = {role: r["module"].eval() for role, r in rows.items() if not role.startswith("_")}
    reference = models["baseline"]
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
