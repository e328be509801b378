"""Read a study folder for its report: ``study.json`` and every listed run's ``metrics.json`` and ``curves.json``.

``study.json`` names the teacher, the baselines and the KD variants, each with ``runs`` (seed → run folder, absolute
or relative to the study folder). A run whose ``metrics.json`` is absent or unreadable, or lacks the study's metric,
is kept as a *missing* run with the reason, so the report says what failed instead of failing itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stats import is_number, seed_order

SCORES = ("final", "best")


@dataclass
class Run:
    """One seed of one model.

    Attributes:
        seed: the seed's key in ``study.json``.
        folder: the run folder.
        score: the compared score (percent), ``None`` when the run is missing.
        entry: the compared validation epoch of ``metrics.json`` (``{"epoch", "step", "val/...": ...}``).
        epochs: every validation epoch of ``metrics.json``, in order.
        curves: ``curves.json`` (``{"every", "points"}``) or ``None``.
        problem: why the run has no score, ``None`` when it has one.
    """

    seed: str
    folder: Path
    score: float | None = None
    entry: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class Model:
    """The teacher, a baseline or a KD variant, with its runs.

    Attributes:
        name: its key in ``study.json`` (``"teacher"`` for the teacher).
        role: ``"teacher"``, ``"baseline"`` or ``"variant"``.
        runs: one per listed seed, in seed order.
        label: the name shown in the report.
        fixed_score: a score given in ``study.json`` instead of runs (a teacher checkpoint), else ``None``.
        baseline: a variant's baseline name.
        terms: a variant's distillation terms.
        kind: ``"config"``, ``"ablation"`` or ``"grid"``.
        of: the parent variant of an ablation or grid point.
        overrides: a grid point's command-line overrides.
        profile: ``params_m``, ``gflops``, ``latency_ms`` where known.
    """

    name: str
    role: str
    runs: list[Run]
    label: str
    fixed_score: float | None = None
    baseline: str | None = None
    terms: tuple[str, ...] = ()
    kind: str = "config"
    of: str | None = None
    overrides: tuple[str, ...] = ()
    profile: dict[str, float] = field(default_factory=dict)

    @property
    def scores(self) -> dict[str, float]:
        """Seed → compared score of the runs that have one."""
        return {r.seed: r.score for r in self.runs if r.score is not None}

    @property
    def missing(self) -> list[Run]:
        """The runs without a score."""
        return [r for r in self.runs if r.score is None]


@dataclass
class Study:
    """What the report is made of.

    Attributes:
        folder: the study folder (the report is written there).
        name: the study's name.
        metric: the compared key of ``metrics.json`` (``"val/mIoU"``).
        metric_label: its short name (``"mIoU"``).
        unit: the metric's unit (``"percent"``).
        score: ``"final"`` or ``"best"``: which epoch of each run is compared.
        per_item_prefix: prefix of the per-class or per-joint keys (``"val/iou/"``), ``""`` when none.
        models: teacher (if any), baselines, then variants, by name.
        trivial: ``(score, label)`` of the trivial predictor, or ``None``.
        pictures: prediction pictures made by the runner.
    """

    folder: Path
    name: str
    metric: str
    metric_label: str
    unit: str
    score: str
    per_item_prefix: str
    models: dict[str, Model]
    trivial: tuple[float, str] | None
    pictures: list[Path]

    @property
    def seeds(self) -> list[str]:
        """Every seed listed for any model, in order."""
        return sorted({r.seed for m in self.models.values() for r in m.runs}, key=seed_order)

    @property
    def teacher(self) -> Model | None:
        """The teacher, if the study has one."""
        return self.models.get("teacher")


def resolve(folder: Path, path: str | Path) -> Path:
    """``path`` as given when absolute, else relative to the study folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else folder / p


def _compared_entry(metrics: dict[str, Any], metric: str, score: str) -> dict[str, Any] | None:
    """The epoch entry compared: the final one, or the best one by ``metric`` (recomputed if monitored otherwise)."""
    if score == "final":
        return metrics.get("final")
    if metrics.get("monitor") == metric and metrics.get("best"):
        return metrics["best"]
    scored = [e for e in metrics.get("epochs") or [] if is_number(e.get(metric))]
    return max(scored, key=lambda e: e[metric]) if scored else None


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as err:
        return None, f"{path.name} unreadable ({type(err).__name__}: {err})"


def load_run(seed: str, folder: Path, metric: str, score: str) -> Run:
    """Read one run folder; a missing or unusable ``metrics.json`` gives a run with ``problem`` set."""
    run = Run(seed, folder)
    curves_file = folder / "curves.json"
    if curves_file.is_file():
        curves, _ = _read_json(curves_file)
        run.curves = curves if isinstance(curves, dict) and isinstance(curves.get("points"), list) else None
    metrics_file = folder / "metrics.json"
    if not metrics_file.is_file():
        run.problem = "no metrics.json (failed or not run)"
        return run
    metrics, problem = _read_json(metrics_file)
    if problem is not None or not isinstance(metrics, dict):
        run.problem = problem or "metrics.json is not a JSON object"
        return run
    run.epochs = [e for e in metrics.get("epochs") or [] if isinstance(e, dict)]
    entry = _compared_entry(metrics, metric, score)
    if not entry:
        run.problem = "no validation epoch in metrics.json"
    elif not is_number(entry.get(metric)):
        run.problem = f"{metric} not in the {score} epoch of metrics.json" if metric not in entry else f"{metric} = nan"
    else:
        run.entry, run.score = entry, float(entry[metric])
    return run


def _runs(folder: Path, spec: dict[str, Any], metric: str, score: str) -> list[Run]:
    runs = spec.get("runs") or {}
    return [load_run(str(s), resolve(folder, runs[s]), metric, score) for s in sorted(runs, key=seed_order)]


def load_study(folder: Path) -> Study:
    """Read ``folder/study.json`` and the runs it lists.

    Raises:
        FileNotFoundError: the folder has no ``study.json``.
        ValueError: ``score`` is neither ``"final"`` nor ``"best"``.
    """
    folder = Path(folder)
    spec = json.loads((folder / "study.json").read_text())
    metric = spec["metric"]
    score = spec.get("score", "final")
    if score not in SCORES:
        raise ValueError(f"study.json: score must be one of {SCORES}, got {score!r}")
    profile = spec.get("profile") or {}
    models: dict[str, Model] = {}
    if spec.get("teacher"):
        t = spec["teacher"]
        fixed = float(t["score"]) if is_number(t.get("score")) else None
        runs = _runs(folder, t, metric, score)
        models["teacher"] = Model("teacher", "teacher", runs, t.get("label", "teacher"), fixed_score=fixed)
    for name, b in (spec.get("baselines") or {}).items():
        models[name] = Model(name, "baseline", _runs(folder, b, metric, score), b.get("label", name))
    for name, v in (spec.get("variants") or {}).items():
        models[name] = Model(
            name,
            "variant",
            _runs(folder, v, metric, score),
            v.get("label", name),
            baseline=v.get("baseline"),
            terms=tuple(v.get("terms") or ()),
            kind=v.get("kind", "config"),
            of=v.get("of"),
            overrides=tuple(v.get("overrides") or ()),
        )
    for name, m in models.items():
        m.profile = {k: float(x) for k, x in (profile.get(name) or {}).items() if is_number(x)}
    trivial = spec.get("trivial")
    return Study(
        folder=folder,
        name=spec.get("name", folder.name),
        metric=metric,
        metric_label=spec.get("metric_label", metric.rsplit("/", 1)[-1]),
        unit=spec.get("unit", "percent"),
        score=score,
        per_item_prefix=spec.get("per_item_prefix") or "",
        models=models,
        trivial=(float(trivial["score"]), trivial.get("label", "trivial")) if trivial else None,
        pictures=[resolve(folder, p) for p in spec.get("pictures") or []],
    )
