"""Accuracy vs GFLOPs of a study: every model's mean score ± std over seeds at its cost, each point labelled.

Students of one architecture share their GFLOPs, so their points would sit on one vertical line: they are spread a
little sideways (the caption says so) and their labels stacked beside them with thin leader lines. Labels never
overlap each other or a point: they are placed bottom-up, each moved above whatever it would cover, and the y axis
grows when the stack needs more room. When the names would crowd (more than :data:`MAX_NAMED` points, or a name
pushed far from its point), the points get numbers in table order and a key beside the axes names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from .plots import DPI, Drawn, axis_label, colours, new_figure, save, trivial_near
from .report_inputs import Study
from .report_rows import Row

MARKERS = {"teacher": "*", "baseline": "s", "KD": "o", "KD ablation": "v", "KD grid point": "D"}
FONT = 9  # label size, points
LINE = 1.45 * FONT  # vertical room of one label, points
MARK = 5.0  # half size of a point (marker) that labels keep clear of, points
GAP = 0.03  # between a cluster and its labels, axes fraction
MAX_NAMED = 12  # more points than this are numbered, with a key beside the axes
MAX_SHIFT = 3.0  # so are they when a name would sit more than this many label heights from its point


@dataclass
class _Label:
    """A point's label: what it says, where its point is, and where the text goes."""

    text: str
    index: int  # the point's place in the table
    x: float  # the point, data coordinates
    y: float
    lo: float  # the point's cluster spans lo..hi (axes fraction)
    hi: float
    left: bool = False  # text to the left of the cluster
    width: float = 0.0  # text width, axes fraction
    at: float = 0.0  # text centre height, axes fraction

    @property
    def span(self) -> tuple[float, float]:
        """Horizontal extent of the text (axes fraction)."""
        return (self.lo - GAP - self.width, self.lo - GAP) if self.left else (self.hi + GAP, self.hi + GAP + self.width)


def _axes_fraction(ax: Axes, x: float, y: float) -> tuple[float, float]:
    fx, fy = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))
    return float(fx), float(fy)


def _clusters(xs: list[float]) -> list[list[int]]:
    """Indices of points grouped by (nearly, 2 %) equal x, in increasing x."""
    groups: list[list[int]] = []
    for i in sorted(range(len(xs)), key=lambda i: xs[i]):
        if groups and abs(xs[i] - xs[groups[-1][0]]) <= 0.02 * max(abs(xs[groups[-1][0]]), 1e-12):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _x_limits(xs: list[float], log: bool) -> tuple[float, float]:
    low, high = min(xs), max(xs)
    if log:
        return low / 2.5, high * 2.5
    span = high - low or max(abs(high), 1.0)
    return (max(0.0, low - 0.35 * span) if low >= 0 else low - 0.35 * span), high + 0.35 * span


def _spread_x(x: float, k: int, size: int, limits: tuple[float, float], log: bool) -> float:
    """The ``k``-th of ``size`` points at ``x``, moved sideways by up to 5 % of the axis width in all."""
    if size < 2:
        return x
    step = min(0.012, 0.05 / (size - 1)) * (k - (size - 1) / 2)  # axes fraction
    if log:
        return x * (limits[1] / limits[0]) ** step
    return x + step * (limits[1] - limits[0])


def _place(labels: list[_Label], ax: Axes) -> float:
    """Set every label's ``at``: no label covers another or a point; return how far the stack sticks out at the top.

    Labels are placed bottom-up at their point's height and moved just above whatever they would cover; the labels
    of one cluster stay in the order of its points.
    """
    box = ax.get_window_extent()
    half = LINE * DPI / 72 / box.height / 2  # half a label's height, axes fraction
    mark_x, mark_y = MARK * DPI / 72 / box.width, MARK * DPI / 72 / box.height
    points = [_axes_fraction(ax, lab.x, lab.y) for lab in labels]
    blocks = [(fx - mark_x, fx + mark_x, fy, mark_y) for fx, fy in points]  # (x0, x1, centre, half height)
    floor: dict[tuple[float, float], float] = {}  # per cluster: the lowest height its next label may take
    for lab, (_, fy) in sorted(zip(labels, points), key=lambda p: p[1][1]):
        lab.at = max(fy, floor.get((lab.lo, lab.hi), fy))  # a cluster's labels keep the order of its points
        x0, x1 = lab.span
        for _ in range(len(blocks) + 1):
            hit = [b for b in blocks if x0 < b[1] and b[0] < x1 and abs(lab.at - b[2]) < 0.999 * (half + b[3])]
            if not hit:
                break
            lab.at = max(b[2] + b[3] for b in hit) + half
        blocks.append((x0, x1, lab.at, half))
        floor[(lab.lo, lab.hi)] = lab.at + 2 * half
    return max((lab.at for lab in labels), default=0.0) + half - 1.0


def _choose_sides(labels: list[_Label]) -> None:
    """Labels right of their cluster, unless they would leave the axes or cover another cluster and fit on the left."""
    for lo, hi in dict.fromkeys((lab.lo, lab.hi) for lab in labels):
        group = [lab for lab in labels if (lab.lo, lab.hi) == (lo, hi)]
        width = max(lab.width for lab in group)
        others = [lab.hi for lab in labels if (lab.lo, lab.hi) != (lo, hi)] + [
            lab.lo for lab in labels if (lab.lo, lab.hi) != (lo, hi)
        ]
        right = (hi + GAP, hi + GAP + width)
        left = (lo - GAP - width, lo - GAP)
        blocked = any(right[0] < x < right[1] for x in others)
        fits_left = left[0] >= 0 and not any(left[0] < x < left[1] for x in others)
        for lab in group:
            lab.left = fits_left and (right[1] > 1.0 or blocked)


def _layout(ax: Axes, labels: list[_Label]) -> float:
    """Measure, choose sides and place the labels, growing the y axis until the stack fits.

    Returns:
        The largest distance of a label from its point's height, in label heights.
    """
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[union-attr]
    width_px = ax.get_window_extent().width
    for lab in labels:
        probe = ax.text(0, 0, lab.text, fontsize=FONT, transform=ax.transAxes)
        lab.width = probe.get_window_extent(renderer).width / width_px
        probe.remove()
    _choose_sides(labels)
    for _ in range(6):
        over = _place(labels, ax)
        if over <= 0:
            break
        y0, y1 = ax.get_ylim()
        ax.set_ylim(y0, y1 + 1.1 * over * (y1 - y0))
    line = LINE * DPI / 72 / ax.get_window_extent().height
    return max((lab.at - _axes_fraction(ax, lab.x, lab.y)[1]) / line for lab in labels) if labels else 0.0


def _draw(ax: Axes, labels: list[_Label]) -> None:
    """The labels at their places, each joined to its point by a thin line."""
    for lab in labels:
        ax.annotate(
            lab.text, xy=(lab.x, lab.y), xytext=(lab.lo - GAP if lab.left else lab.hi + GAP, lab.at),
            textcoords="axes fraction", fontsize=FONT, ha="right" if lab.left else "left", va="center",
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkA": 2, "shrinkB": 5},
        )  # fmt: skip


def accuracy_vs_gflops(study: Study, rows: list[Row], path: Path) -> Drawn:
    """Mean score ± std over seeds against GFLOPs for every model with a GFLOPs entry in the profile."""
    points = [r for r in rows if r.role != "trivial" and r.spread.mean is not None and "gflops" in r.profile]
    if not points:
        return Drawn(None, "No GFLOPs in study.json's profile: accuracy vs GFLOPs not drawn.")
    colour = colours(study)
    xs = [r.profile["gflops"] for r in points]
    means = [float(r.spread.mean) for r in points]  # type: ignore[arg-type]
    log = min(xs) > 0 and max(xs) / min(xs) > 4
    limits = _x_limits(xs, log)
    lows = [m - (r.spread.std or 0.0) for m, r in zip(means, points)]
    highs = [m + (r.spread.std or 0.0) for m, r in zip(means, points)]
    trivial_shown = trivial_near(study, lows, highs)  # far below, the trivial line would squash every point
    if trivial_shown and study.trivial is not None:
        lows.append(study.trivial[0])
    pad = 0.12 * (max(highs) - min(lows) or 1.0)
    fig = new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    ax.set_xlim(*limits)
    ax.set_ylim(min(lows) - pad, max(highs) + pad)
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    labels = []
    for group in _clusters(xs):
        edge = [_spread_x(xs[i], k, len(group), limits, log) for k, i in enumerate(group)]
        lo, hi = (_axes_fraction(ax, x, 0.0)[0] for x in (min(edge), max(edge)))
        for i, x in zip(group, edge):
            r = points[i]
            ax.errorbar(
                [x], [means[i]], yerr=[r.spread.std or 0.0], fmt=MARKERS.get(r.role, "o"), color=colour[r.name],
                ms=11 if r.role == "teacher" else 7, capsize=3, elinewidth=1.2, zorder=3,
            )  # fmt: skip
            labels.append(_Label(f"{r.label} ({means[i]:.2f})", i, x, means[i], lo, hi))
    if trivial_shown and study.trivial is not None:
        ax.axhline(study.trivial[0], ls=":", color=colour["trivial"], lw=1.2)
    fig.draw_without_rendering()
    start, names = ax.get_ylim(), [lab.text for lab in sorted(labels, key=lambda lab: lab.index)]
    numbered = len(labels) > MAX_NAMED or _layout(ax, labels) > MAX_SHIFT
    if numbered:  # too crowded for names: number the points (table order) and list them beside the axes
        ax.set_ylim(*start)
        for lab in labels:
            lab.text = str(lab.index + 1)
        _layout(ax, labels)
    _draw(ax, labels)
    ax.set_xlabel("GFLOPs per image" + (" (log scale)" if log else ""))
    ax.set_ylabel(axis_label(study))
    ax.set_title(f"{study.name}: {study.metric_label} vs GFLOPs (mean ± std over seeds)", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    handles = [
        Line2D([], [], ls="", marker=MARKERS.get(role, "o"), color="0.3", label=role)
        for role in dict.fromkeys(r.role for r in points)
    ]
    if study.trivial is not None:
        where = "" if trivial_shown else ", below the axis"
        label = f"trivial: {study.trivial[1]} ({study.trivial[0]:.2f}{where})"
        handles.append(Line2D([], [], ls=":" if trivial_shown else "", color=colour["trivial"], label=label))
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    if numbered:
        fig.set_size_inches(8.0 + 0.065 * max(len(n) for n in names), 5.0)
        key = [
            Line2D([], [], ls="", marker=MARKERS.get(r.role, "o"), color=colour[r.name], label=f"{k + 1}  {name}")
            for k, (r, name) in enumerate(zip(points, names))
        ]
        fig.legend(handles=key, loc="outside right upper", fontsize=8, frameon=False)
    missing = [r.label for r in rows if r.role != "trivial" and r.spread.mean is not None and r not in points]
    note = f" Not plotted (no GFLOPs): {', '.join(missing)}." if missing else ""
    shared = any(len(g) > 1 for g in _clusters(xs))
    side = " Points of equal GFLOPs are spread slightly sideways to stay visible." if shared else ""
    return Drawn(save(fig, path), f"{study.metric_label} against GFLOPs; error bars: std over seeds.{side}{note}")
