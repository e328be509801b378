"""Study report: table numbers against hand computations, missing runs, self-contained HTML and valid plot files."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from kd_suite.study.report import fmt_paired, main, main_table, write_report
from kd_suite.study.report_inputs import load_study
from kd_suite.study.report_rows import best_variant, main_rows, sections

METRIC = "val/mIoU"
CLASSES = ("background", "hat", "hair", "face", "upper-clothes", "pants", "left-arm", "right-arm", "left-leg", "dress")
EPOCHS = 6

# final val/mIoU per seed of every run of the fake study (None: the run failed, no metrics.json)
FINAL = {
    "teacher": {"0": 48.3},
    "baseline": {"0": 40.1, "1": 40.9, "2": 39.6},
    "DIST+GSKD": {"0": 43.1, "1": 42.6, "2": None},
    "DIST+GSKD -gskd": {"0": 41.5, "1": 40.7, "2": 40.2},
    "DIST+GSKD w=2": {"0": 43.4, "1": 41.9},
}
PROFILE = {
    "teacher": {"params_m": 13.0, "gflops": 3.4, "latency_ms": 42.1},
    "baseline": {"params_m": 2.1, "gflops": 0.21, "latency_ms": 6.3},
    "DIST+GSKD": {"params_m": 2.1, "gflops": 0.21, "latency_ms": 6.3},
    "DIST+GSKD -gskd": {"params_m": 2.1, "gflops": 0.21},
}
WITH_CURVES = {("baseline", "0"), ("DIST+GSKD", "0"), ("DIST+GSKD", "1"), ("DIST+GSKD -gskd", "0")}


def _metrics(final: float, seed: int, shift: float) -> dict:
    """A metrics.json like RunSummary.record: a rising history ending at ``final``, per-class IoU every epoch."""
    rng = np.random.default_rng(seed + int(10 * final))
    epochs = []
    for e in range(EPOCHS):
        score = final if e == EPOCHS - 1 else final * (1 - 0.45 * math.exp(-e / 1.4)) + rng.normal(0, 0.4)
        per_class = {f"val/iou/{c}": score + 12 * math.sin(i) + shift * (i % 3 - 1) + rng.normal(0, 1.5)
                     for i, c in enumerate(CLASSES)}  # fmt: skip
        epochs.append({"epoch": e, "step": 50 * (e + 1), METRIC: score, "val/pixel_acc": score + 40} | per_class)
    best = max(epochs, key=lambda h: h[METRIC])
    return {"unit": "percent (every score); loss values as logged", "monitor": METRIC, "best": best,
            "final": epochs[-1], "epochs": epochs, "checkpoints": {}, "wall_s": 12.5}  # fmt: skip


def _curves(name: str, seed: int) -> dict:
    """A curves.json: task and KD terms decaying over 300 steps (gskd spans three decades)."""
    rng = np.random.default_rng(seed)
    points = []
    for step in range(0, 300, 10):
        decay = math.exp(-step / 90)
        p = {"step": step, "epoch": step // 50, "train/task/ce": 0.35 + 2.2 * decay + rng.normal(0, 0.02)}
        if name != "baseline":
            p["train/kd/dist"] = 0.6 + 4 * decay + rng.normal(0, 0.05)
            p["train/weight/dist"] = 1.0
        if name == "DIST+GSKD":
            p["train/kd/gskd"] = 900 * math.exp(-step / 35) + 1.5
        p["train/total"] = sum(v for k, v in p.items() if k.startswith(("train/task/", "train/kd/")))
        points.append(p)
    return {"every": 10, "points": points}


def make_study(root: Path) -> Path:
    """A fake study folder: teacher, baseline, a KD variant with a failed seed, an ablation and a grid point."""
    root.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, str]] = {}
    for n, (name, seeds) in enumerate(FINAL.items()):
        for seed, final in seeds.items():
            folder = root / "runs" / name.replace(" ", "_") / f"seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            if final is not None:
                shift = 0.0 if name == "baseline" else 1.5 * n
                (folder / "metrics.json").write_text(json.dumps(_metrics(final, int(seed), shift)))
            if (name, seed) in WITH_CURVES:
                (folder / "curves.json").write_text(json.dumps(_curves(name, int(seed))))
            # half the paths relative to the study folder, half absolute
            runs.setdefault(name, {})[seed] = str(folder if int(seed) % 2 else folder.relative_to(root))
    Image.fromarray(np.full((150, 240, 3), 200, np.uint8)).save(root / "predictions.png")
    variants = {
        "DIST+GSKD": {"baseline": "baseline", "terms": ["dist", "gskd"], "runs": runs["DIST+GSKD"], "kind": "config"},
        "DIST+GSKD -gskd": {"baseline": "baseline", "terms": ["dist"], "runs": runs["DIST+GSKD -gskd"],
                            "kind": "ablation", "of": "DIST+GSKD"},
        "DIST+GSKD w=2": {"baseline": "baseline", "terms": ["dist", "gskd"], "runs": runs["DIST+GSKD w=2"],
                          "kind": "grid", "of": "DIST+GSKD",
                          "overrides": ["--model.init_args.losses.gskd.init_args.weight=2"]},
    }  # fmt: skip
    spec = {
        "name": "demo_parsing", "metric": METRIC, "metric_label": "mIoU", "unit": "percent", "score": "final",
        "per_item_prefix": "val/iou/", "teacher": {"runs": runs["teacher"]},
        "trivial": {"score": 5.18, "label": "majority class"}, "baselines": {"baseline": {"runs": runs["baseline"]}},
        "variants": variants, "profile": PROFILE, "pictures": ["predictions.png"],
    }  # fmt: skip
    (root / "study.json").write_text(json.dumps(spec, indent=2))
    return root


def _scores(name: str) -> dict[str, float]:
    return {s: v for s, v in FINAL[name].items() if v is not None}


def test_table_numbers_match_hand_computations(tmp_path):
    study = load_study(make_study(tmp_path / "study"))
    rows = {r.name: r for r in main_rows(study)}
    assert list(rows) == ["teacher", "trivial", "baseline", "DIST+GSKD", "DIST+GSKD -gskd", "DIST+GSKD w=2"]
    base = list(_scores("baseline").values())
    assert rows["baseline"].spread.mean == pytest.approx(np.mean(base))
    assert rows["baseline"].spread.std == pytest.approx(np.std(base, ddof=1)) and rows["baseline"].spread.n == 3
    assert rows["teacher"].spread.std is None and rows["teacher"].spread.n == 1  # one seed: no std
    teacher = FINAL["teacher"]["0"]
    for name in ("DIST+GSKD", "DIST+GSKD -gskd", "DIST+GSKD w=2"):
        ours, r = _scores(name), rows[name]
        diffs = np.array([ours[s] - FINAL["baseline"][s] for s in ours])  # paired over the seeds both have
        assert r.delta.n == len(diffs) and r.delta.mean == pytest.approx(diffs.mean())
        low, high = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
        assert (r.delta.low, r.delta.high) == (pytest.approx(low), pytest.approx(high))
        assert r.delta.wins == int((diffs > 0).sum())
        kd = np.mean(list(ours.values()))
        assert r.gap == pytest.approx((kd - np.mean(base)) / (teacher - np.mean(base)))
    assert rows["DIST+GSKD"].delta.seeds == ("0", "1") and rows["DIST+GSKD -gskd"].delta.wins == 2
    assert rows["DIST+GSKD"].missing == {"2": "no metrics.json (failed or not run)"}
    assert "missing seed 2" in rows["DIST+GSKD"].notes and "Δ paired over seed 0, 1" in rows["DIST+GSKD"].notes
    assert "ablation of DIST+GSKD (−gskd)" in rows["DIST+GSKD -gskd"].notes
    assert "grid point of DIST+GSKD (gskd.weight=2)" in rows["DIST+GSKD w=2"].notes
    assert rows["trivial"].spread.mean == 5.18 and not any(r.notes and "trivial" in r.notes[0] for r in rows.values())
    # the ablation table: each child against the parent's baseline and against the parent, paired by seed
    parent, ablation, grid = sections(study)["DIST+GSKD"]
    assert (parent.change, ablation.change, grid.change) == ("parent", "−gskd", "gskd.weight=2")
    assert ablation.to_parent.seeds == ("0", "1")
    assert ablation.to_parent.mean == pytest.approx(np.mean([41.5 - 43.1, 40.7 - 42.6]))
    assert grid.to_baseline.mean == pytest.approx(np.mean([43.4 - 40.1, 41.9 - 40.9]))
    assert best_variant(study).name == "DIST+GSKD"


def test_gap_rule_flags_and_a_given_teacher_score(tmp_path):
    root = make_study(tmp_path / "study")
    spec = json.loads((root / "study.json").read_text())
    # teacher from a checkpoint, 0.5 point above the baseline: no gap closed; trivial above the ablation
    spec["teacher"] = {"runs": {}, "score": float(np.mean(list(_scores("baseline").values()))) + 0.5}
    spec["teacher"]["label"] = "teacher (ckpt)"
    spec["trivial"] = {"score": 40.9, "label": "majority class"}
    spec["score"] = "best"
    (root / "study.json").write_text(json.dumps(spec))
    study = load_study(root)
    rows = {r.name: r for r in main_rows(study)}
    assert rows["teacher"].spread.mean == pytest.approx(spec["teacher"]["score"]) and rows["teacher"].label == (
        "teacher (ckpt)")  # fmt: skip
    assert all(rows[n].gap is None for n in ("DIST+GSKD", "DIST+GSKD -gskd", "DIST+GSKD w=2"))
    assert "teacher and baseline within 1 point: no gap to close" in rows["DIST+GSKD"].notes
    assert "above its teacher" in rows["DIST+GSKD"].notes and "above its teacher" not in rows["baseline"].notes
    assert any(n.startswith("at or below trivial") for n in rows["DIST+GSKD -gskd"].notes)
    assert any(n.startswith("at or below trivial") for n in rows["baseline"].notes)
    # "best": every run's best epoch by the metric is compared
    best = {s: max(e[METRIC] for e in json.loads((r.folder / "metrics.json").read_text())["epochs"])
            for s, r in ((r.seed, r) for r in study.models["baseline"].runs)}  # fmt: skip
    assert study.models["baseline"].scores == pytest.approx(best)
    table = main_table(study, list(rows.values()))
    gap = table.headers.index("gap closed")
    assert [r[gap] for r in table.rows] == ["—"] * len(rows)
    assert table.rows[0][2] == f"{spec['teacher']['score']:.2f} (given)"
    one = rows["DIST+GSKD"].delta.__class__(1.5, None, None, 1, 1, ("0",), (1.5,))
    assert fmt_paired(one) == "+1.50 (n=1)"  # one pair: no interval


def test_report_files_html_self_contained_and_plots_valid(tmp_path, capsys):
    root = make_study(tmp_path / "study")
    md_path, html_path = write_report(root)
    md, page = md_path.read_text(), html_path.read_text()
    rows = {r.name: r for r in main_rows(load_study(root))}
    base = rows["baseline"].spread
    assert f"| baseline | baseline | {base.mean:.2f} ± {base.std:.2f} (n=3) |" in md
    assert "0: 43.10, 1: 42.60, 2: missing" in md and "| DIST+GSKD | 2 |" in md  # per seed; the missing-runs table
    d = rows["DIST+GSKD -gskd"].delta
    assert f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] (n=3)" in md and "in percent" in md and "(%)" in md
    assert "no metrics.json (failed or not run)" in page and "DIST+GSKD: ablations and grid" in page
    assert md.startswith("# Study report: demo_parsing") and "Best variant: DIST+GSKD, mIoU 42.85 % (n=2)" in md
    plots = sorted((root / "plots").glob("*.png"))
    names = {p.name for p in plots}
    assert names == {"accuracy_vs_gflops.png", "validation_curves.png", "training_curves.png",
                     "per_item_differences.png"}  # fmt: skip
    for p in plots:
        assert f"](plots/{p.name})" in md
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    assert "](predictions.png)" in md
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", page)
    assert len(sources) == len(plots) + 1 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(href|src)=\"(?!data:)|url\(", page)  # nothing outside the file
    assert main([str(root)]) == 0 and "report.html" in capsys.readouterr().out


def test_study_without_curves_or_profile_still_reports(tmp_path):
    root = make_study(tmp_path / "study")
    write_report(root)  # every figure; the re-rendering below removes those that no longer apply
    for f in root.rglob("curves.json"):
        f.unlink()
    spec = json.loads((root / "study.json").read_text())
    spec.pop("profile")
    spec.pop("per_item_prefix")
    spec["pictures"] = ["gone.png"]
    (root / "study.json").write_text(json.dumps(spec))
    md = write_report(root)[0].read_text()
    assert "training curves not drawn" in md and "accuracy vs GFLOPs not drawn" in md
    assert "per-item differences not drawn" in md and "Picture not found" in md
    assert {p.name for p in (root / "plots").glob("*.png")} == {"validation_curves.png"}
