"""The report of a study folder: ``report.md`` (tables, linked plots) and a self-contained ``report.html``.

``write_report(study_dir)`` reads ``study.json`` and the runs it lists, draws the plots into ``study_dir/plots/`` and
writes both files into ``study_dir``. Re-render from the command line with::

    python -m kd_suite.study.report STUDY_DIR

Contents: the main table (mean ± std over seeds, per-seed values, paired Δ to the baseline with a 95 % t-interval,
seeds won, gap closed, params / GFLOPs / CPU latency, flags), the missing runs, one table per ablated or gridded
variant, accuracy vs GFLOPs, validation and training curves, per-class / per-joint differences of the best variant,
and the runner's prediction pictures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from ..tools.report import MIN_GAP
from .document import Block, Bullets, Heading, Image, Paragraph, Table, to_html, to_markdown
from .plot_curves import training_curves, validation_curves
from .plot_gflops import accuracy_vs_gflops
from .plots import Drawn, item_word, per_item_differences
from .report_inputs import Study, load_study
from .report_rows import Row, SectionRow, best_variant, main_rows, sections
from .stats import Paired, Spread, seed_order

DASH = "—"


def fmt_spread(s: Spread) -> str:
    """``40.12 ± 0.31 (n=3)``; no std for one value; a dash without any."""
    if s.mean is None:
        return f"{DASH} (n=0)"
    return f"{s.mean:.2f} ± {s.std:.2f} (n={s.n})" if s.std is not None else f"{s.mean:.2f} (n={s.n})"


def fmt_paired(p: Paired | None) -> str:
    """``+1.23 [+0.45, +2.01] (n=3)``: mean difference and 95 % interval; no interval for one pair."""
    if p is None:
        return DASH
    if p.mean is None:
        return f"{DASH} (no common seed)"
    if p.low is None or p.high is None:
        return f"{p.mean:+.2f} (n={p.n})"
    return f"{p.mean:+.2f} [{p.low:+.2f}, {p.high:+.2f}] (n={p.n})"


def fmt_wins(p: Paired | None) -> str:
    """Seeds won, ``k/n``."""
    return DASH if p is None or p.n == 0 else f"{p.wins}/{p.n}"


def fmt_gap(gap: float | None) -> str:
    """Gap closed in percent of the teacher–baseline gap."""
    return DASH if gap is None else f"{100 * gap:+.0f} %"


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return DASH
    return f"{value:.3f}" if digits == 2 and 0 < abs(value) < 0.1 else f"{value:.{digits}f}"


def _per_seed(row: Row) -> str:
    if row.role == "trivial" or not (row.scores or row.missing):
        return "given" if row.role == "teacher" and row.spread.mean is not None else DASH
    seeds = sorted({*row.scores, *row.missing}, key=seed_order)
    return ", ".join(f"{s}: {row.scores[s]:.2f}" if s in row.scores else f"{s}: missing" for s in seeds)


def main_table(study: Study, rows: list[Row]) -> Table:
    """The main comparison table."""
    unit = "%" if study.unit == "percent" else study.unit
    delta_unit = "points" if study.unit == "percent" else study.unit
    several = sum(m.role == "baseline" for m in study.models.values()) > 1
    headers = [
        "model", "role", f"{study.metric_label} ({unit}), mean ± std (n)", "per seed",
        f"Δ vs baseline ({delta_unit}), paired, mean [95 % CI] (n)", "seeds won", "gap closed",
        "params (M)", "GFLOPs", "CPU latency (ms)", "note",
    ]  # fmt: skip
    body = []
    for r in rows:
        delta = fmt_paired(r.delta) if r.baseline is not None else DASH
        if several and r.baseline is not None:
            delta += f" vs {r.baseline}"
        given = not r.scores and r.spread.mean is not None  # trivial, or a teacher score from study.json
        value = f"{r.spread.mean:.2f}" + (" (given)" if r.role == "teacher" else "") if given else fmt_spread(r.spread)
        body.append(
            [
                r.label, r.role, value, _per_seed(r), delta, fmt_wins(r.delta), fmt_gap(r.gap),
                _num(r.profile.get("params_m"), 2), _num(r.profile.get("gflops"), 2),
                _num(r.profile.get("latency_ms"), 1), "; ".join(r.notes),
            ]
        )  # fmt: skip
    return Table(headers, body, numeric={2, 4, 5, 6, 7, 8, 9})


def _header(study: Study) -> list[Block]:
    compared = (
        "the final validation epoch of each run"
        if study.score == "final"
        else f"the best validation epoch of each run (highest {study.metric})"
    )
    seeds = ", ".join(study.seeds) or DASH
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return [
        Heading(f"Study report: {study.name}", 1),
        Paragraph(
            f"Metric: {study.metric_label} ({study.metric}), in {study.unit}. Compared: {compared}. "
            f"Seeds: {seeds}. Written {when} from {study.folder}.",
            meta=True,
        ),
    ]


def _summary(study: Study, rows: list[Row]) -> Paragraph:
    """One sentence on the best variant: its score and paired difference to its baseline."""
    best = best_variant(study)
    row = next((r for r in rows if best is not None and r.name == best.name), None)
    if row is None or row.spread.mean is None:
        return Paragraph("No variant has a score yet.")
    unit = " %" if study.unit == "percent" else f" {study.unit}"
    text = f"Best variant: {row.label}, {study.metric_label} {row.spread.mean:.2f}{unit} (n={row.spread.n})"
    d = row.delta
    if d is not None and d.mean is not None:
        points = "points" if study.unit == "percent" else study.unit
        text += f"; Δ vs {row.baseline} {d.mean:+.2f} {points}"
        if d.low is not None and d.high is not None:
            zero = ", includes 0" if d.low <= 0 <= d.high else ""
            text += f" (95 % CI {d.low:+.2f} to {d.high:+.2f}{zero})"
        text += f", winning {fmt_wins(d)} seeds"
    if row.gap is not None:
        text += f", closing {fmt_gap(row.gap).lstrip('+')} of the teacher–baseline gap"
    return Paragraph(text + ".")


def _legend(study: Study) -> Bullets:
    points = "percentage points" if study.unit == "percent" else study.unit
    return Bullets(
        [
            f"Scores in {'percent' if study.unit == 'percent' else study.unit}; differences (Δ) in {points}.",
            "mean ± std: over the seeds that have a score; std is the sample standard deviation (ddof=1), "
            "omitted for a single seed.",
            "Δ vs baseline: the per-seed difference to the variant's baseline over the seeds both have, its mean and "
            "95 % t-interval (t(0.975, n−1) · s / √n; no interval for fewer than two pairs).",
            "seeds won: seeds where the variant scores strictly above its baseline.",
            f"gap closed: (KD − baseline) / (teacher − baseline) on the means, given only when teacher and baseline "
            f"are at least {MIN_GAP:g} point apart ({DASH} otherwise).",
            "Flags: a model at or below the trivial score; a student above its teacher.",
        ]
    )


def _missing(study: Study) -> list[Block]:
    rows = [
        [m.label, r.seed, str(r.folder), r.problem or ""] for m in study.models.values() for r in m.runs if r.problem
    ]
    if not rows:
        return [Heading("Missing runs"), Paragraph("Every listed run has a score.")]
    lead = Paragraph(f"{len(rows)} listed run(s) have no score and are left out of the means and pairs above.")
    return [Heading("Missing runs"), lead, Table(["model", "seed", "run folder", "why"], rows)]


def _section_table(study: Study, parent: str, lines: list[SectionRow]) -> list[Block]:
    model = study.models.get(parent)
    base = model.baseline if model is not None else None
    headers = [
        "model", "change", "mean ± std (n)", f"Δ vs {base or 'baseline'}", f"won vs {base or 'baseline'}",
        f"Δ vs {parent}", f"won vs {parent}",
    ]  # fmt: skip
    body = [
        [s.name, s.change, fmt_spread(s.spread), fmt_paired(s.to_baseline), fmt_wins(s.to_baseline),
         fmt_paired(s.to_parent) if s.to_parent is not None else DASH, fmt_wins(s.to_parent)]
        for s in lines
    ]  # fmt: skip
    blocks: list[Block] = [Heading(f"{parent}: ablations and grid", 3)]
    if model is None:
        blocks.append(Paragraph(f"{parent} is not a variant of this study; differences to it are not available."))
    blocks.append(Table(headers, body, numeric={2, 3, 4, 5, 6}))
    grid = [study.models[s.name] for s in lines if study.models[s.name].overrides]
    overrides = [f"{m.name}: {' '.join(m.overrides)}" for m in grid]
    if overrides:
        blocks.append(Bullets(overrides))
    return blocks


def _plot(drawn: Drawn, title: str) -> list[Block]:
    body: Block = Image(drawn.path, drawn.text, title) if drawn.path is not None else Paragraph(drawn.text)
    return [Heading(title, 3), body]


def report_blocks(study: Study) -> list[Block]:
    """Every block of the report; draws the plots into ``study.folder / "plots"``."""
    rows = main_rows(study)
    plots = study.folder / "plots"
    blocks = _header(study) + [Heading("Results"), _summary(study, rows), main_table(study, rows), _legend(study)]
    blocks += _missing(study)
    groups = sections(study)
    if groups:
        blocks.append(Heading("Ablations and grids"))
        blocks.append(Paragraph("Each table compares a variant's ablations and grid points with it, paired by seed."))
        for parent, lines in groups.items():
            blocks += _section_table(study, parent, lines)
    best = best_variant(study)
    word = item_word(study.per_item_prefix)
    blocks.append(Heading("Plots"))
    figures = {
        "Accuracy vs GFLOPs": (plots / "accuracy_vs_gflops.png", lambda p: accuracy_vs_gflops(study, rows, p)),
        "Validation curves": (plots / "validation_curves.png", lambda p: validation_curves(study, p)),
        "Training curves": (plots / "training_curves.png", lambda p: training_curves(study, p)),
        f"Per-{word} differences": (plots / "per_item_differences.png", lambda p: per_item_differences(study, best, p)),
    }
    for title, (path, draw) in figures.items():
        drawn = draw(path)
        if drawn.path is None:
            path.unlink(missing_ok=True)  # a figure of an earlier rendering that no longer applies
        blocks += _plot(drawn, title)
    if study.pictures:
        blocks.append(Heading("Predictions"))
        for p in study.pictures:
            found = Image(p, f"Predictions made by the study runner: {p.name}", p.stem)
            blocks.append(found if p.is_file() else Paragraph(f"Picture not found: {p}"))
    return blocks


def write_report(study_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (and ``plots/*.png``) into the study folder.

    Args:
        study_dir: the folder holding ``study.json``.

    Returns:
        The paths of ``report.md`` and ``report.html``.
    """
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    blocks = report_blocks(study)
    md, page = study_dir / "report.md", study_dir / "report.html"
    md.write_text(to_markdown(blocks, study_dir), encoding="utf-8")
    page.write_text(to_html(blocks, f"Study report: {study.name}"), encoding="utf-8")
    return md, page


def main(argv: list[str] | None = None) -> int:
    """``python -m kd_suite.study.report STUDY_DIR``: re-render a study's report."""
    parser = argparse.ArgumentParser(
        prog="python -m kd_suite.study.report", description="Re-render the report of a study folder."
    )
    parser.add_argument("study_dir", type=Path, help="the study folder (holding study.json)")
    args = parser.parse_args(argv)
    if not (args.study_dir / "study.json").is_file():
        print(f"error: {args.study_dir / 'study.json'} not found", file=sys.stderr)
        return 2
    md, page = write_report(args.study_dir)
    print(f"report: {md}\n        {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
