"""Statistics of a study's scores over seeds: mean ± sample std, and paired per-seed differences with a t-interval.

Scores are keyed by seed (the strings of ``study.json``); a paired difference uses only the seeds present in both
models, so a failed run removes its seed from the comparison instead of mixing seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95  # confidence level of the paired-difference interval


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of values over seeds.

    Attributes:
        mean: the mean, ``None`` without values.
        std: the sample standard deviation (ddof=1), ``None`` for fewer than two values.
        n: how many values.
    """

    mean: float | None
    std: float | None
    n: int


@dataclass(frozen=True)
class Paired:
    """The per-seed difference ``a − b`` over the seeds both have.

    Attributes:
        mean: mean difference, ``None`` without a common seed.
        low: lower end of the t-interval at :data:`LEVEL`, ``None`` for fewer than two pairs.
        high: upper end of the interval, ``None`` for fewer than two pairs.
        n: how many pairs.
        wins: pairs where ``a`` is strictly above ``b``.
        seeds: the paired seeds, in order.
        diffs: the differences, one per paired seed.
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int
    wins: int
    seeds: tuple[str, ...]
    diffs: tuple[float, ...]


def is_number(x: object) -> bool:
    """Whether ``x`` is a finite int or float (not a bool): a usable score or loss value from JSON."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def seed_order(seed: str) -> tuple[int, int | str]:
    """Sort key of a seed: numeric seeds numerically, before any other names."""
    return (0, int(seed)) if seed.lstrip("-").isdigit() else (1, seed)


def spread(values: Sequence[float]) -> Spread:
    """Mean and sample std (ddof=1) of ``values``; ``std`` is ``None`` for a single value."""
    x = np.asarray(list(values), dtype=float)  # (n,)
    if x.size == 0:
        return Spread(None, None, 0)
    std = float(x.std(ddof=1)) if x.size > 1 else None
    return Spread(float(x.mean()), std, int(x.size))


def t_half_width(std: float, n: int, level: float = LEVEL) -> float:
    """Half width of the two-sided t-interval of a mean: ``t.ppf((1 + level) / 2, n − 1) · std / √n``."""
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)


def paired(a: Mapping[str, float], b: Mapping[str, float], level: float = LEVEL) -> Paired:
    """Per-seed differences ``a[seed] − b[seed]`` over the seeds in both, their mean, t-interval and wins.

    Args:
        a: seed → score of the model compared (e.g. a KD variant).
        b: seed → score of the reference (e.g. its baseline).
        level: confidence level of the interval.

    Returns:
        The paired comparison; the interval is ``None`` for fewer than two pairs.
    """
    seeds = tuple(sorted(set(a) & set(b), key=seed_order))
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=float)  # (n,)
    if diffs.size == 0:
        return Paired(None, None, None, 0, 0, (), ())
    mean = float(diffs.mean())
    low = high = None
    if diffs.size > 1:
        half = t_half_width(float(diffs.std(ddof=1)), int(diffs.size), level)
        low, high = mean - half, mean + half
    wins = int((diffs > 0).sum())
    return Paired(mean, low, high, int(diffs.size), wins, seeds, tuple(float(d) for d in diffs))
