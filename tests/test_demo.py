"""`kd-suite demo` end to end on a few tiny scenes: data generated, three runs per task, report and picture."""

from __future__ import annotations

import json

from kd_suite.cli import main
from kd_suite.tools.report import format_table, gap_closed


def _demo(out, data, *extra):
    args = ["demo", "--tasks", "parsing", "--epochs", "1", "--scenes", "6", "3", "--out", str(out), "--data", str(data)]
    return main([*args, *extra])


def test_demo_parsing_end_to_end(tmp_path, capsys):
    """In this process (``--parallel 0``): data, the four runs, report rows, the study report and picture; then the
    same on 2 workers, and a third call that trains nothing again."""
    out, data = tmp_path / "demo", tmp_path / "synthetic"
    code = _demo(out, data, "--parallel", "0")
    assert code == 0
    assert (data / "LIP" / "TrainVal_images" / "train_id.txt").is_file(), "synthetic LIP generated"
    assert not (data / "mpii").exists(), "only the formats of the chosen tasks are generated"
    rows = json.loads((out / "report.json").read_text())
    runs = [r["run"] for r in rows]
    assert runs[:3] == ["trivial", "teacher", "baseline"] and len(runs) >= 4
    trivial, models = rows[0], rows[1:]
    assert 0.0 < trivial["mean"] < 100.0 and trivial["params_M"] is None  # the per-pixel majority class
    for r in models:
        assert 0.0 <= r["mean"] <= 100.0 and r["params_M"] > 0 and r["gflops"] > 0 and r["cpu_latency_ms"] > 0
        assert 0.0 <= r["val/pixel_acc"] <= 100.0 and r["val/pixel_acc"] >= r["mean"], "pixel acc ≥ mIoU, in percent"
        assert ("not above trivial" in r["flags"]) == (r["mean"] <= trivial["mean"])
    assert all(r["gap_closed"] is None and r["delta"] is None for r in rows[:3])
    for r in rows[3:]:  # KD rows: paired per-seed difference to their own baseline
        assert r["baseline"] == "baseline" and r["delta"][0] == r["values"][0] - rows[2]["values"][0]
    assert (out / "parsing" / "predictions.png").stat().st_size > 10_000
    assert (out / "parsing" / "report.html").is_file() and len(list((out / "parsing" / "plots").glob("*.png"))) >= 3
    printed = capsys.readouterr().out
    assert "| parsing | baseline | mIoU |" in printed and (out / "report.md").read_text().strip() in printed

    # two spawned workers pulling runs from one queue (KD runs after their teacher) give the in-process results
    assert _demo(tmp_path / "pool", data, "--parallel", "2") == 0
    pool = json.loads((tmp_path / "pool" / "report.json").read_text())
    assert [(r["run"], r["mean"]) for r in pool] == [(r["run"], r["mean"]) for r in rows]
    logs = {p.relative_to(tmp_path / "pool" / "parsing").parts[0] for p in tmp_path.glob("pool/parsing/**/fit.log")}
    assert logs == {"teacher", "baseline", "dist", "dist_gskd"}, "one log per run"
    assert "Epoch 0" in (tmp_path / "pool/parsing/dist/seed0/fit.log").read_text(), "a run's output is in its log"
    capsys.readouterr()
    assert _demo(tmp_path / "pool", data, "--parallel", "2") == 0  # finished runs are not trained again
    assert "0 runs" in capsys.readouterr().out
    again = json.loads((tmp_path / "pool" / "report.json").read_text())
    assert [(r["run"], r["mean"]) for r in again] == [(r["run"], r["mean"]) for r in pool]


def test_format_table_gap_closed():
    row = dict(
        task="t",
        run="kd",
        metric="val/mIoU",
        mean=50.0,
        std=1.0,
        seeds=3,
        gap_closed=0.25,
        delta=(2.5, 0.5),
        wins=2,
        flags=["above its teacher"],
        params_M=1.0,
        gflops=2.0,
        cpu_latency_ms=3.0,
    )
    table = format_table([row])
    assert "50.00 ± 1.00 (n=3)" in table and "+25 %" in table
    assert "+2.50 ± 0.50" in table and "2/3" in table and "above its teacher" in table


def test_gap_closed_needs_a_teacher_ahead_of_the_baseline():
    assert gap_closed(11.0, 9.0, 13.0) == 0.5
    assert gap_closed(8.0, 9.0, 13.0) == -0.25
    assert gap_closed(15.0, 17.6, 17.75) is None, "a teacher level with the baseline has no gap to close"
    assert gap_closed(15.0, 17.6, 12.0) is None
