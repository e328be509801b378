"""After a study's runs: the model costs, the trivial score and the prediction grid, written with ``study.json``.

The costs (params, GFLOPs, batch-1 CPU latency) are those of each role's student at the data's input size; the
trivial score is the task's (:mod:`kd_suite.metrics.trivial`); the grid shows ground truth, the teacher, each baseline
and the best variant on the first validation images, from the first seed's final weights.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .runner import StudyPlan, describe_study, run_path


def _build(config: str, overrides: list[str]) -> Any:
    """The task module and DataModule of a config, without teacher weights or a logger."""
    from ..cli import KDCLI

    keep = [o for o in overrides if not o.startswith(("--model.init_args.teacher_ckpt", "--trainer.logger", "--role"))]
    args = ["--config", config, *keep, "--trainer.logger=false", "--model.init_args.teacher_ckpt=null"]
    return KDCLI(args=args, run=False)


def _score(run_dir: Path, metric: str, which: str) -> float | None:
    record = json.loads((run_dir / "metrics.json").read_text())
    entry = record.get(which) or {}
    return entry.get(metric)


def summarise(plan: StudyPlan, doc: dict[str, Any] | None = None) -> Path:
    """Write ``study.json`` (with costs, trivial score and pictures) and return its path."""
    from ..tools.profile import profile_model

    doc = doc or describe_study(plan)
    profile, modules, datamodule, task = {}, {}, None, None
    for role, run in plan.runs.items():
        cli = _build(run["config"], run["overrides"])
        datamodule = datamodule or cli.datamodule
        size = tuple(getattr(cli.datamodule, "input_size", (256, 256)))
        cost = profile_model(cli.model.student, size, runs=5)
        profile[role] = {"params_m": cost["params_M"], "gflops": cost["gflops"], "latency_ms": cost["cpu_latency_ms"]}
        done = [d for d in run["dirs"].values() if plan.done(d)]
        if done and (done[0] / "checkpoints" / "last.ckpt").is_file():
            modules[role] = done[0] / "checkpoints" / "last.ckpt"
        task = task or _task_of(cli.model)
    doc["profile"] = profile
    if datamodule is not None and task is not None:
        from ..metrics.trivial import trivial_score

        labels = {"pose": "mean pose", "parsing": "majority class", "detection": "no boxes"}
        doc["trivial"] = {"score": trivial_score(task, datamodule), "label": labels.get(task, "trivial")}
        doc["pictures"] = [str(p) for p in [_grid(plan, doc, modules, datamodule, task)] if p is not None]
    path = plan.dir / "study.json"
    plan.dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def _task_of(module: Any) -> str | None:
    name = type(module).__name__.lower()
    return next((t for t in ("parsing", "pose", "detection") if t in name), None)


def _grid(plan: StudyPlan, doc: dict[str, Any], ckpts: dict[str, Path], datamodule: Any, task: str) -> Path | None:
    """Ground truth | teacher | baselines | best variant on the first validation images."""
    from ..standalone import load_standalone
    from ..viz import prediction_grid

    metric, which = doc["metric"], doc["score"]

    def mean_score(role: str) -> float:
        values = [_score(run_path(plan.dir, d), metric, which) for d in doc["variants"][role]["runs"].values()]
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else float("-inf")

    best = max(doc["variants"], key=mean_score, default=None)
    roles = [r for r in ("teacher", *plan.study.baselines, best) if r is not None and r in ckpts]
    if not roles:
        return None
    models = {role: load_standalone(ckpts[role]).module for role in roles}
    for module in models.values():
        facts = getattr(datamodule, "facts", None)
        if facts is not None:
            module.link_data(facts)
    title = f"{plan.study.name}: validation predictions ({doc['metric_label']} in the report)"
    return prediction_grid(models, datamodule, plan.dir / "predictions.png", title)
