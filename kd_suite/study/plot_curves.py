"""Curves of a study report: training loss terms vs step and the validation metric vs epoch, mean over seeds.

Training values come from each run's ``curves.json`` (``train/task/*`` and ``train/kd/*`` sampled every k steps),
validation values from the ``epochs`` of ``metrics.json``. A model's curve is the mean over its seeds at each step or
epoch that all of them reached (every seed's points when they share none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .plots import Drawn, axis_label, colours, new_figure, save, trivial_near
from .report_inputs import Model, Study
from .stats import is_number

TERM_PREFIXES = ("train/task/", "train/kd/")


def mean_over_seeds(series: list[dict[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per x shared by every series (else present in any): x, mean, min and max of the series' values.

    Args:
        series: one ``{x: value}`` per seed.

    Returns:
        ``(x, mean, low, high)``, each of shape (points,), x increasing.
    """
    common = set.intersection(*(set(s) for s in series)) if series else set()
    xs = sorted(common or {x for s in series for x in s})
    values = [[s[x] for s in series if x in s] for x in xs]  # (points, ≤ seeds)
    mean = np.array([np.mean(v) for v in values], dtype=float)
    low = np.array([np.min(v) for v in values], dtype=float)
    high = np.array([np.max(v) for v in values], dtype=float)
    return np.asarray(xs, dtype=float), mean, low, high


def training_terms(study: Study) -> list[str]:
    """Every ``train/task/*`` and ``train/kd/*`` key in any ``curves.json``: task terms first, then KD terms."""
    keys = {
        k
        for m in study.models.values()
        for r in m.runs
        if r.curves
        for p in r.curves["points"]
        if isinstance(p, dict)
        for k in p
        if k.startswith(TERM_PREFIXES)
    }
    return sorted(keys, key=lambda k: (not k.startswith("train/task/"), k))


def _term_series(model: Model, term: str) -> list[dict[int, float]]:
    out = []
    for r in model.runs:
        if not r.curves:
            continue
        s = {int(p["step"]): float(p[term]) for p in r.curves["points"] if "step" in p and is_number(p.get(term))}
        if s:
            out.append(s)
    return out


def _log_worthy(values: Sequence[np.ndarray]) -> bool:
    """Whether positive values span more than two decades (then a log y axis reads better)."""
    v = np.concatenate([np.ravel(x) for x in values]) if values else np.zeros(0)
    return v.size > 0 and bool(np.all(v > 0)) and float(v.max() / v.min()) > 100


def training_curves(study: Study, path: Path) -> Drawn:
    """One subplot per loss term (task and distillation) vs step: each model's mean over its seeds."""
    terms = training_terms(study)
    if not terms:
        return Drawn(
            None, "No run has a curves.json with train/task/* or train/kd/* values: training curves not drawn."
        )
    colour = colours(study)
    ncols = min(3, len(terms))
    nrows = math.ceil(len(terms) / ncols)
    fig = new_figure(4.3 * ncols, 3.1 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    shown: dict[str, Line2D] = {}
    for ax, term in zip(axes.flat, terms):
        means = []
        for model in study.models.values():
            series = _term_series(model, term)
            if not series:
                continue
            x, mean, _, _ = mean_over_seeds(series)
            style = "--" if model.role == "teacher" else "-"
            (line,) = ax.plot(x, mean, style, color=colour[model.name], lw=1.3, label=model.label)
            shown.setdefault(model.label, line)
            means.append(mean)
        if _log_worthy(means):
            ax.set_yscale("log")
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(terms) :]:
        ax.set_visible(False)
    fig.suptitle(f"{study.name}: training loss terms (mean over seeds)", fontsize=11)
    handles, labels = list(shown.values()), list(shown)
    column = (0.6 * 9 * max(len(t) for t in labels) + 40) / 72  # inches one legend entry needs (9 pt text)
    ncol = max(1, min(len(labels), int(4.3 * ncols / column)))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=9, frameon=False)
    without = [f"{m.label} seed {r.seed}" for m in study.models.values() for r in m.runs if not r.curves]
    note = f" No curves.json: {', '.join(without)}." if without else ""
    caption = (
        "Training loss terms vs step, mean over the seeds with curves.json; log y where values span more than two "
        f"decades.{note}"
    )
    return Drawn(save(fig, path), caption)


def _epoch_series(model: Model, metric: str) -> list[dict[int, float]]:
    out = []
    for r in model.runs:
        s = {int(e["epoch"]): float(e[metric]) for e in r.epochs if "epoch" in e and is_number(e.get(metric))}
        if s:
            out.append(s)
    return out


def validation_curves(study: Study, path: Path) -> Drawn:
    """The headline metric vs epoch for teacher, baselines and variants: mean over seeds, min–max band."""
    colour = colours(study)
    fig = new_figure(8.5, 4.8)
    ax = fig.add_subplot()
    drawn, lows, highs = 0, [], []
    for model in study.models.values():
        series = _epoch_series(model, study.metric)
        if not series:
            continue
        x, mean, low, high = mean_over_seeds(series)
        style = "--" if model.role == "teacher" else "-"
        ax.plot(x, mean, style, color=colour[model.name], lw=1.5, marker="." if len(x) < 30 else None,
                label=f"{model.label} (n={len(series)})")  # fmt: skip
        if len(series) > 1:
            ax.fill_between(x, low, high, color=colour[model.name], alpha=0.15, lw=0)
        drawn += 1
        lows.append(float(low.min()))
        highs.append(float(high.max()))
    if not drawn:
        return Drawn(None, f"No run has {study.metric} in its epochs: validation curves not drawn.")
    if study.trivial is not None and trivial_near(study, lows, highs):
        ax.axhline(study.trivial[0], ls=":", color=colour["trivial"], lw=1.2, label=f"trivial: {study.trivial[1]}")
    elif study.trivial is not None:
        label = f"trivial: {study.trivial[1]} ({study.trivial[0]:.2f}, below the axis)"
        ax.plot([], [], ls="", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(axis_label(study))
    ax.set_title(f"{study.name}: validation {study.metric_label} (mean over seeds, band: min–max)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    caption = f"Validation {study.metric} per epoch: mean over seeds (n in the legend), shaded band from min to max."
    return Drawn(save(fig, path), caption)
