"""The numbers of a study report: one row per model, and the ablation / grid comparisons under their parent.

A row holds the score's mean ± sample std over seeds, the per-seed values, and for a KD variant the paired per-seed
difference to its baseline (mean and 95 % t-interval), the seeds it wins and the share of the teacher–baseline gap it
closes: ``(KD − baseline) / (teacher − baseline)`` on the means, given only when teacher and baseline are at least
:data:`~kd_suite.tools.report.MIN_GAP` points apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tools.report import MIN_GAP, gap_closed
from .report_inputs import Model, Study
from .stats import Paired, Spread, paired, spread

ROLE_NAMES = {"config": "KD", "ablation": "KD ablation", "grid": "KD grid point"}


@dataclass
class Row:
    """One line of the main table.

    Attributes:
        name: the model's key in ``study.json`` (``"trivial"`` for the trivial predictor).
        label: the name shown.
        role: ``"teacher"``, ``"trivial"``, ``"baseline"``, ``"KD"``, ``"KD ablation"`` or ``"KD grid point"``.
        spread: mean ± std of the score over seeds (a given score counts as one value).
        scores: seed → score.
        missing: seed → why that run has no score.
        baseline: a variant's baseline name.
        delta: paired difference to the baseline, for variants.
        gap: gap closed as a fraction, ``None`` when not defined.
        profile: ``params_m``, ``gflops``, ``latency_ms`` where known.
        notes: flags and remarks for the note column.
    """

    name: str
    label: str
    role: str
    spread: Spread
    scores: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    baseline: str | None = None
    delta: Paired | None = None
    gap: float | None = None
    profile: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class SectionRow:
    """One line of an ablation / grid table.

    Attributes:
        name: the variant's key.
        change: what differs from the parent (``"parent"`` for the parent itself).
        spread: mean ± std of its score.
        to_baseline: paired difference to the parent's baseline.
        to_parent: paired difference to the parent, ``None`` for the parent itself.
    """

    name: str
    change: str
    spread: Spread
    to_baseline: Paired | None
    to_parent: Paired | None


def gap_fraction(kd: float, baseline: float, teacher: float) -> float | None:
    """``(KD − baseline) / (teacher − baseline)`` when ``|teacher − baseline| ≥ MIN_GAP``, else ``None``."""
    if teacher >= baseline:
        return gap_closed(kd, baseline, teacher)
    return gap_closed(-kd, -baseline, -teacher)  # the same ratio; the shared helper checks the teacher-ahead side


def model_spread(model: Model) -> Spread:
    """Mean ± std over the model's scored runs; a given score (teacher checkpoint) when it has none."""
    if not model.scores and model.fixed_score is not None:
        return Spread(model.fixed_score, None, 1)
    return spread(list(model.scores.values()))


def short_override(override: str) -> str:
    """``--model.init_args.losses.dist.init_args.weight=2`` → ``dist.weight=2``."""
    key, _, value = override.lstrip("-").partition("=")
    parts = [p for p in key.split(".") if p != "init_args"]
    while len(parts) > 2 and parts[0] in ("model", "data", "losses", "trainer"):
        parts = parts[1:]
    return ".".join(parts) + (f"={value}" if value else "")


def change_of(model: Model, parent: Model | None) -> str:
    """What an ablation or grid point changes: removed / added terms and overrides."""
    bits = [short_override(o) for o in model.overrides]
    if parent is None:
        return ", ".join(bits or ["terms " + "+".join(model.terms)])
    removed = [f"−{t}" for t in parent.terms if t not in model.terms]
    added = [f"+{t}" for t in model.terms if t not in parent.terms]
    return ", ".join(removed + added + bits) or "same terms"


def _flags(row: Row, study: Study, teacher_mean: float | None) -> None:
    mean = row.spread.mean
    if mean is None:
        row.notes.append("no score: every run missing" if row.missing else "no score: no run listed")
        return
    if study.trivial is not None and row.role != "trivial" and mean <= study.trivial[0]:
        row.notes.append(f"at or below trivial ({study.trivial[0]:.2f})")
    if row.role not in ("teacher", "trivial") and teacher_mean is not None and mean > teacher_mean:
        row.notes.append("above its teacher")


def main_rows(study: Study) -> list[Row]:
    """Teacher, trivial, baselines and variants, in that order, with every column of the main table."""
    teacher = study.teacher
    teacher_mean = model_spread(teacher).mean if teacher is not None else None
    rows: list[Row] = []
    for model in study.models.values():
        role = model.role if model.role != "variant" else ROLE_NAMES.get(model.kind, model.kind)
        row = Row(model.name, model.label, role, model_spread(model), model.scores, profile=model.profile)
        row.missing = {r.seed: r.problem or "" for r in model.missing}
        if model.role == "teacher" and not model.scores and model.fixed_score is not None:
            row.notes.append("score given in study.json")
        if model.role == "variant":
            _compare(row, model, study, teacher_mean)
        _flags(row, study, teacher_mean)
        if row.missing and row.spread.mean is not None:
            row.notes.append("missing seed " + ", ".join(row.missing))
        rows.append(row)
        if model.role == "teacher" and study.trivial is not None:
            rows.append(Row("trivial", study.trivial[1], "trivial", Spread(study.trivial[0], None, 1)))
    if teacher is None and study.trivial is not None:
        rows.insert(0, Row("trivial", study.trivial[1], "trivial", Spread(study.trivial[0], None, 1)))
    return rows


def _compare(row: Row, model: Model, study: Study, teacher_mean: float | None) -> None:
    """Fill a variant's baseline columns: paired Δ, seeds won, gap closed and their notes."""
    if model.kind in ("ablation", "grid") and model.of:
        parent = study.models.get(model.of)
        kind = "ablation" if model.kind == "ablation" else "grid point"
        row.notes.append(f"{kind} of {model.of} ({change_of(model, parent)})")
    base = study.models.get(model.baseline or "")
    row.baseline = model.baseline
    if base is None:
        row.notes.append(f"baseline {model.baseline!r} not in the study")
        return
    row.delta = paired(model.scores, base.scores)
    if 0 < row.delta.n < max(len(model.runs), len(base.runs)):
        row.notes.append(f"Δ paired over seed {', '.join(row.delta.seeds)}")
    base_mean = model_spread(base).mean
    if teacher_mean is None or base_mean is None or row.spread.mean is None:
        return
    row.gap = gap_fraction(row.spread.mean, base_mean, teacher_mean)
    if row.gap is None:
        row.notes.append(f"teacher and baseline within {MIN_GAP:g} point: no gap to close")
    elif teacher_mean < base_mean:
        row.notes.append("teacher below baseline: gap closed < 0 means a gain")


def sections(study: Study) -> dict[str, list[SectionRow]]:
    """Parent variant → its row followed by one row per ablation / grid point of it."""
    out: dict[str, list[SectionRow]] = {}
    for model in study.models.values():
        if model.role != "variant" or model.kind not in ("ablation", "grid") or not model.of:
            continue
        parent = study.models.get(model.of)
        base = study.models.get(parent.baseline or "") if parent is not None else None
        if model.of not in out:
            first = []
            if parent is not None:
                to_base = paired(parent.scores, base.scores) if base is not None else None
                first = [SectionRow(parent.name, "parent", model_spread(parent), to_base, None)]
            out[model.of] = first
        out[model.of].append(
            SectionRow(
                model.name,
                change_of(model, parent),
                model_spread(model),
                paired(model.scores, base.scores) if base is not None else None,
                paired(model.scores, parent.scores) if parent is not None else None,
            )
        )
    return out


def best_variant(study: Study) -> Model | None:
    """The variant with the highest mean score (over its scored runs), ``None`` when no variant has a score."""
    scored = [m for m in study.models.values() if m.role == "variant" and m.scores]
    return max(scored, key=lambda m: sum(m.scores.values()) / len(m.scores)) if scored else None
