"""The comparison report of teacher, baselines and KD students: paired differences, gap closed, costs and flags.

Rows are plain dicts (JSON-able, metrics in percent); :func:`summarise` builds them from one task's ``study.json`` and
:func:`format_table` renders them as Markdown. ``gap closed = (KD − baseline) / (teacher − baseline)`` is reported only
when the teacher leads the baseline by at least :data:`MIN_GAP` points.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

MIN_GAP = 1.0  # metric points (percent) a teacher must lead the baseline by for "gap closed" to mean anything


def gap_closed(kd: float, baseline: float, teacher: float) -> float | None:
    """``(KD − baseline) / (teacher − baseline)``, or ``None`` when the teacher is not ahead by ``MIN_GAP`` points."""
    if teacher - baseline < MIN_GAP:
        return None
    return (kd - baseline) / (teacher - baseline)


def _scores(runs: dict[str, str], key: str, which: str, base: Path) -> dict[str, float]:
    """Seed → ``key`` of each run's ``metrics.json`` entry ``which`` (``"final"`` or ``"best"``), finished runs only;
    relative run folders are under ``base`` (the study folder)."""
    out = {}
    for seed, run_dir in runs.items():
        path = (Path(run_dir) if Path(run_dir).is_absolute() else base / run_dir) / "metrics.json"
        entry = json.loads(path.read_text()).get(which) if path.is_file() else None
        if entry and key in entry:
            out[seed] = float(entry[key])
    return out


def summarise(task: str, doc: dict[str, Any], base: Path, extra_metrics: tuple[str, ...] = ()) -> list[dict]:
    """The demo table of one task's study (``study.json`` in ``base``): mean ± std of the metric per role, the paired
    per-seed difference of each KD row to its baseline, gap closed, model costs, flags.

    A trivial row comes first; a model row that does not beat it is flagged, and so is a student above its teacher.
    """
    metric, which = doc["metric"], doc.get("score", "final")
    roles = {"teacher": (doc["teacher"]["runs"], None)}
    roles |= {b: (r["runs"], None) for b, r in doc["baselines"].items()}
    roles |= {v: (r["runs"], r["baseline"]) for v, r in doc["variants"].items()}
    scores = {role: _scores(runs, metric, which, base) for role, (runs, _) in roles.items()}
    teacher, trivial = statistics.mean(scores["teacher"].values()), doc["trivial"]["score"]
    table = [
        {"task": task, "run": "trivial", "metric": metric, "mean": trivial, "std": 0.0, "seeds": 1}
        | {"delta": None, "wins": None, "gap_closed": None, "params_M": None, "gflops": None, "cpu_latency_ms": None}
        | {"flags": [], "baseline": None}
    ]
    for role, (runs, baseline) in roles.items():
        by_seed = scores[role]
        v = [by_seed[s] for s in sorted(by_seed, key=int)]
        if not v:
            continue
        delta = wins = gap = None
        if baseline is not None:
            paired = [s for s in sorted(by_seed, key=int) if s in scores[baseline]]
            diffs = [by_seed[s] - scores[baseline][s] for s in paired]
            delta = (statistics.mean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0) if diffs else None
            wins = sum(d > 0 for d in diffs)
            gap = gap_closed(statistics.mean(v), statistics.mean(scores[baseline].values()), teacher)
        flags = []
        if statistics.mean(v) <= trivial:
            flags.append("not above trivial")
        if role != "teacher" and statistics.mean(v) > teacher:
            flags.append("above its teacher")
        cost = doc.get("profile", {}).get(role, {})
        extra = {m: statistics.mean(_scores(runs, m, which, base).values() or [float("nan")]) for m in extra_metrics}
        table.append(
            {"task": task, "run": role, "metric": metric, "mean": statistics.mean(v),
             "std": statistics.stdev(v) if len(v) > 1 else 0.0, "seeds": len(v), "values": v, "baseline": baseline,
             "delta": delta, "wins": wins, "gap_closed": gap, "flags": flags, "params_M": cost.get("params_m"),
             "gflops": cost.get("gflops"), "cpu_latency_ms": cost.get("latency_ms"), **extra}
        )  # fmt: skip
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
