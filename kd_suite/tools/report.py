"""The comparison report of teacher, baselines and KD students: paired differences, gap closed, costs and flags.

Rows are plain dicts (JSON-able, metrics in percent); :func:`summarise` builds them from the runs of one task and
:func:`format_table` renders them as Markdown. ``gap closed = (KD − baseline) / (teacher − baseline)`` is reported only
when the teacher leads the baseline by at least :data:`MIN_GAP` points.
"""

from __future__ import annotations

import statistics
from typing import Any

from .profile import profile_model

MIN_GAP = 1.0  # metric points (percent) a teacher must lead the baseline by for "gap closed" to mean anything


def gap_closed(kd: float, baseline: float, teacher: float) -> float | None:
    """``(KD − baseline) / (teacher − baseline)``, or ``None`` when the teacher is not ahead by ``MIN_GAP`` points."""
    if teacher - baseline < MIN_GAP:
        return None
    return (kd - baseline) / (teacher - baseline)


def summarise(exp: Any, rows: dict, input_size: tuple[int, int]) -> list[dict]:
    """Per role: mean ± std of the metric, paired per-seed difference to its baseline, gap closed, model costs, flags.

    A trivial row (``rows["_trivial"]``) comes first; a model row that does not beat it is flagged, and so is a
    student that beats its teacher.
    """
    values = {
        role: [m.get(exp.metric, float("nan")) for m in r["metrics"]]
        for role, r in rows.items()
        if not role.startswith("_")
    }
    teacher, trivial = statistics.mean(values["teacher"]), rows["_trivial"]
    table = [
        {"task": exp.task, "run": "trivial", "metric": exp.metric, "mean": trivial, "std": 0.0, "seeds": 1}
        | {"delta": None, "wins": None, "gap_closed": None, "params_M": None, "gflops": None, "cpu_latency_ms": None}
        | {"flags": [], "baseline": None}
    ]
    for role, r in rows.items():
        if role.startswith("_"):
            continue
        v, baseline = values[role], r.get("baseline")
        delta = wins = gap = None
        if baseline is not None:
            diffs = [a - b for a, b in zip(v, values[baseline])]  # paired by seed
            delta = (statistics.mean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0)
            wins = sum(d > 0 for d in diffs)
            gap = gap_closed(statistics.mean(v), statistics.mean(values[baseline]), teacher)
        flags = []
        if statistics.mean(v) <= trivial:
            flags.append("not above trivial")
        if role != "teacher" and statistics.mean(v) > teacher:
            flags.append("above its teacher")
        cost = profile_model(r["module"].student, input_size, runs=5)
        table.append(
            {
                "task": exp.task,
                "run": role,
                "metric": exp.metric,
                "mean": statistics.mean(v),
                "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                "seeds": len(v),
                "values": v,
                "baseline": baseline,
                "delta": delta,
                "wins": wins,
                "gap_closed": gap,
                "flags": flags,
                **{k: cost[k] for k in ("params_M", "gflops", "cpu_latency_ms")},
                **{m: statistics.mean(x.get(m, float("nan")) for x in r["metrics"]) for m in exp.extra_metrics},
            }
        )
    return table


def format_table(rows: list[dict]) -> str:
    """Markdown table of the report (metrics in percent)."""
    head = (
        "| task | run | metric | value (mean ± std, n) | Δ vs baseline (paired) | wins | gap closed | "
        "params (M) | GFLOPs | CPU ms | note |"
    )
    lines = [head, "|" + "---|" * 11]

    def num(x: float | None, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    for r in rows:
        gap = "—" if r.get("gap_closed") is None else f"{100 * r['gap_closed']:+.0f} %"
        value = f"{r['mean']:.2f} ± {r['std']:.2f} (n={r['seeds']})"
        delta = r.get("delta")
        delta = "—" if delta is None else f"{delta[0]:+.2f} ± {delta[1]:.2f}"
        wins = "—" if r.get("wins") is None else f"{r['wins']}/{r['seeds']}"
        note = "; ".join(r.get("flags") or [])
        if r["run"] == "trivial":
            note = {"pose": "mean pose", "parsing": "per-pixel majority class", "detection": "no boxes"}.get(
                r["task"], ""
            )
        lines.append(
            f"| {r['task']} | {r['run']} | {r['metric'].split('/')[-1]} | {value} | {delta} | {wins} | {gap} | "
            f"{num(r.get('params_M'), '.2f')} | {num(r.get('gflops'), '.2f')} | {num(r.get('cpu_latency_ms'), '.1f')} "
            f"| {note} |"
        )
    return "\n".join(lines)
