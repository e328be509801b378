"""Shared pieces of a study report's figures, and the per-class / per-joint differences of the best variant.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch) and saved as
PNG. Every drawing function returns a :class:`Drawn`: the file and its caption, or no file and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .report_inputs import Model, Study

DPI = 120


@dataclass(frozen=True)
class Drawn:
    """A figure written (``path``) with its caption, or not written (``path is None``) and why (``text``)."""

    path: Path | None
    text: str


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches on an Agg canvas, with constrained layout."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write the figure as PNG (parent folders created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def colours(study: Study) -> dict[str, str | tuple[float, ...]]:
    """One colour per model, the same in every figure: teacher black, baselines grey, variants from tab10/tab20."""
    variants = [n for n, m in study.models.items() if m.role == "variant"]
    cmap = colormaps["tab10" if len(variants) <= 10 else "tab20"]
    out: dict[str, str | tuple[float, ...]] = {"teacher": "black", "trivial": "0.35"}
    greys = ["0.5", "0.65", "0.35", "0.75"]
    baselines = [n for n, m in study.models.items() if m.role == "baseline"]
    out |= {n: greys[i % len(greys)] for i, n in enumerate(baselines)}
    out |= {n: cmap(i % cmap.N) for i, n in enumerate(variants)}
    return out


def axis_label(study: Study) -> str:
    """The metric's axis label with its unit: ``mIoU (%)``."""
    return study.metric_label + (" (%)" if study.unit == "percent" else f" ({study.unit})")


def trivial_near(study: Study, lows: list[float], highs: list[float]) -> bool:
    """Whether the trivial score lies within half the models' range below them (else drawing it squashes them)."""
    if study.trivial is None or not lows:
        return False
    return study.trivial[0] >= min(lows) - 0.5 * (max(highs) - min(lows))


def item_word(prefix: str) -> str:
    """``"joint"`` for per-joint keys (``val/PCKh/``), else ``"class"``."""
    return "joint" if "pck" in prefix.lower() or "joint" in prefix.lower() else "class"


def per_item_differences(study: Study, best: Model | None, path: Path) -> Drawn:
    """Mean per-class / per-joint difference of the best variant to its baseline, over the seeds both have."""
    prefix = study.per_item_prefix
    base = study.models.get(best.baseline or "") if best is not None else None
    if not prefix or best is None or base is None:
        return Drawn(None, "No per_item_prefix, best variant or baseline: per-item differences not drawn.")
    ours = {r.seed: r.entry for r in best.runs if r.score is not None}
    theirs = {r.seed: r.entry for r in base.runs if r.score is not None}
    seeds = [s for s in ours if s in theirs]
    keys = sorted({k for s in seeds for k in ours[s] if k.startswith(prefix) and all(k in theirs[t] for t in seeds)})
    keys = [k for k in keys if all(k in ours[s] for s in seeds)]
    if not keys:
        return Drawn(None, f"No {prefix}* keys in the compared epochs: per-item differences not drawn.")
    diffs = np.array([[ours[s][k] - theirs[s][k] for k in keys] for s in seeds], dtype=float)  # (seeds, items)
    mean = diffs.mean(axis=0)  # (items,)
    std = diffs.std(axis=0, ddof=1) if len(seeds) > 1 else None  # (items,)
    order = np.argsort(mean)
    names = [keys[j][len(prefix) :] for j in order]
    fig = new_figure(7.5, max(3.0, 0.3 * len(keys) + 1.5))
    ax = fig.add_subplot()
    colour = ["#2a9d4b" if m >= 0 else "#d1453b" for m in mean[order]]
    xerr = std[order] if std is not None else None
    ax.barh(np.arange(len(keys)), mean[order], xerr=xerr, color=colour, ecolor="0.4", capsize=2, height=0.7)
    ax.set_yticks(np.arange(len(keys)), names, fontsize=8 if len(keys) > 25 else 9)
    ax.axvline(0.0, color="0.2", lw=0.8)
    err = std[order] if std is not None else np.zeros(len(keys))  # (items,)
    ends = mean[order] + np.sign(mean[order]) * err  # (items,) where each bar's error bar ends
    reach = float(np.max(np.abs(ends))) or 1.0
    ax.set_xlim(min(0.0, float(ends.min())) - 0.3 * reach, max(0.0, float(ends.max())) + 0.3 * reach)
    for y, (m, end) in enumerate(zip(mean[order], ends)):
        ax.text(end, y, f"  {m:+.2f}  ", va="center", ha="left" if m >= 0 else "right", fontsize=8, color="0.15")
    word = item_word(prefix)
    points = "points" if study.unit == "percent" else study.unit
    ax.set_xlabel(f"Δ {prefix}* ({points}), mean over {len(seeds)} paired seed{'s' * (len(seeds) > 1)}")
    ax.set_title(f"{best.label} − {base.label}: per-{word} difference", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    bars = " ± std over seeds" if std is not None else ""
    caption = (
        f"Per-{word} difference of the best variant ({best.label}) to its baseline ({base.label}) in the compared "
        f"epoch, mean{bars}; sorted by difference."
    )
    return Drawn(save(fig, path), caption)
