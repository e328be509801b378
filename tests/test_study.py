"""``kd-suite study`` on tiny data: a 2-seed study with an ablation finishes, a second call re-runs nothing, the
report holds the table and the plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kd_suite.cli import main
from kd_suite.data.lip import LIPDataModule
from kd_suite.study.spec import StudyError, load_study

SEG = {"class_path": "tests.support.TinySegNet", "init_args": {"width": 8, "num_classes": 20}}
BIG = {"class_path": "tests.support.TinySegNet", "init_args": {"width": 16, "num_classes": 20}}
LOSSES = {
    "kl": {"class_path": "tests.support.PixelKL", "init_args": {"weight": 1.0}},
    "hint": {"class_path": "tests.support.HintMSE", "init_args": {"student_tap": "embedding", "weight": 1.0}},
}


def write_config(path: Path, root: Path, student: dict, **model: object) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "enable_model_summary": False},
        "model": {"class_path": "kd_suite.tasks.parsing.ParsingDistiller",
                  "init_args": {"student": student, "log_images": 0, **model}},
        "data": {"class_path": "kd_suite.data.lip.LIPDataModule",
                 "init_args": {"root": str(root / "LIP"), "input_size": [32, 32], "batch_size": 2, "num_workers": 0,
                               "pin_memory": False}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("study")
    LIPDataModule(root=str(tmp / "LIP"), input_size=(32, 32), synth_if_missing=True, synth_num_train=4,
                  synth_num_val=2).prepare_data()  # fmt: skip
    teacher = write_config(tmp / "teacher.yaml", tmp, BIG)
    student = write_config(tmp / "student.yaml", tmp, SEG)
    kd = write_config(tmp / "kd.yaml", tmp, SEG, teacher=BIG, losses=LOSSES)
    study = {
        "name": "tiny",
        "seeds": [0, 1],
        "teacher": str(teacher),
        "baseline": str(student),
        "variants": {"KL+hint": {"config": str(kd), "ablate": True}},
        "grid": {"KL+hint": {"losses.kl.init_args.weight": [0.5]}},
        "calibrate": {"variant": "KL+hint", "share": 0.5, "batches": 2},
    }
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def test_study_file_expands_ablations_and_grids(study_file, tmp_path):
    study = load_study(study_file, tmp_path)
    assert list(study.variants) == [
        "KL+hint", "KL+hint kl.weight=0.5", "KL+hint only hint", "KL+hint only kl", "KL+hint calibrated"]  # fmt: skip
    ablation = study.variants["KL+hint only kl"]
    assert ablation.kind == "ablation" and ablation.of == "KL+hint" and ablation.terms == ["kl"]
    assert list(yaml.safe_load(ablation.config.read_text())["model"]["init_args"]["losses"]) == ["kl"]
    grid = study.variants["KL+hint kl.weight=0.5"]
    assert grid.overrides == ["--model.init_args.losses.kl.init_args.weight=0.5"] and grid.kind == "grid"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"baseline": str(study_file), "variantz": {}}))
    with pytest.raises(StudyError, match="unknown key.*variantz"):
        load_study(bad, tmp_path)


def test_study_runs_once_and_reports(study_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KD_SUITE_RUNS", "runs")  # relative, as by default
    assert main(["study", "--config", str(study_file)]) == 0
    out = tmp_path / "runs" / "tiny"
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("metrics.json"))
    assert runs == ["baseline/seed0", "baseline/seed1", "kl_hint/seed0", "kl_hint/seed1", "kl_hint_calibrated/seed0",
                    "kl_hint_calibrated/seed1",
                    "kl_hint_kl.weight=0.5/seed0", "kl_hint_kl.weight=0.5/seed1",
                    "kl_hint_only_hint/seed0", "kl_hint_only_hint/seed1", "kl_hint_only_kl/seed0",
                    "kl_hint_only_kl/seed1", "teacher"]  # fmt: skip
    kd = json.loads((out / "kl_hint" / "seed1" / "metrics.json").read_text())
    assert kd["role"] == "kd" and kd["experiment"] == "tiny"
    config = yaml.safe_load((out / "kl_hint" / "seed1" / "config.yaml").read_text())
    assert config["model"]["init_args"]["teacher_ckpt"] == "runs/tiny/teacher/checkpoints/last.ckpt"
    assert config["seed_everything"] == 1
    weights = json.loads((out / "calibration.json").read_text())["suggested_weights"]
    calibrated = yaml.safe_load((out / "kl_hint_calibrated" / "seed0" / "config.yaml").read_text())
    used = {k: v["init_args"]["weight"] for k, v in calibrated["model"]["init_args"]["losses"].items()}
    assert used == pytest.approx(weights, rel=1e-5) and set(weights) == {"kl", "hint"}
    doc = json.loads((out / "study.json").read_text())
    assert len(doc["variants"]) == 5 and doc["variants"]["KL+hint calibrated"]["kind"] == "calibrated"
    assert doc["profile"]["baseline"]["params_m"] > 0 and doc["trivial"]["score"] >= 0
    assert doc["teacher"]["runs"] == {"0": "teacher"}  # run folders relative to the study folder
    report = (out / "report.md").read_text()
    assert "KL+hint only kl" in report and "95 %" in report and "| teacher" in report
    assert "Every listed run has a score." in report and "not drawn" not in report
    plots = sorted((out / "plots").glob("*.png"))
    assert len(plots) >= 3 and all(p.stat().st_size > 5_000 for p in plots)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= len(plots) and '<img src="plots/' not in html
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    capsys.readouterr()
    assert main(["study", "--config", str(study_file)]) == 0  # everything is done: nothing is trained again
    assert "every run is done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == stamps
