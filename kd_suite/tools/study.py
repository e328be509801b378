"""``kd-suite study --config study.yaml``: teacher, baselines and KD variants over seeds, then a report.

Every run is an ordinary ``kd-suite fit`` in ``runs/<study>/<run>/seed<N>/``; a second call re-runs nothing that
finished (``metrics.json`` present) and resumes what was killed. The report (``report.md``, a self-contained
``report.html`` and ``plots/``) compares each variant with its baseline per seed. See :mod:`kd_suite.study.spec` for
the study file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kd-suite study", description=__doc__.splitlines()[0])
    p.add_argument("--config", "-c", required=True, type=Path, help="the study file (YAML)")
    p.add_argument("--parallel", type=int, default=None, help="training processes at once (default: the study's, 0)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the study's seeds")
    p.add_argument("--wandb", action="store_true", help="log every run to W&B (one group per study)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and what is done, train nothing")
    p.add_argument("--report-only", action="store_true", help="write the report from the finished runs")
    return p


def main(argv: list[str]) -> int:
    from ..cli import default_root
    from ..study.runner import StudyPlan, run_study
    from ..study.spec import StudyError, load_study

    args = build_parser().parse_args(argv)
    root = Path(default_root())
    try:
        study = load_study(args.config, root)
    except StudyError as err:
        print(f"kd-suite study: {err}", file=sys.stderr)
        return 2
    if args.seeds:
        study.seeds = list(args.seeds)
    plan = StudyPlan(study, root, wandb=args.wandb)
    print(plan.describe())
    if args.dry_run:
        return 0
    failed = []
    if not args.report_only:
        jobs = run_study(plan, study.parallel if args.parallel is None else args.parallel)
        failed = [key for key, job in jobs.items() if job.error]
    from ..study.report import write_report
    from ..study.summary import summarise

    summarise(plan)
    md, html = write_report(plan.dir)
    print(f"[study] report: {md} and {html}")
    if failed:
        print(f"[study] {len(failed)} run(s) failed: {', '.join(failed)} (see their fit.log)", file=sys.stderr)
        return 1
    return 0
