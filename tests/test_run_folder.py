"""Run folders: one folder per run with versions, metrics.json and the summary, W&B set up for comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kd_suite.cli import KDCLI, main
from kd_suite.run_folder import infer_role, names_from, next_version, resolve_layout

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "configs" / "tiny_kd.yaml")
TOY = {"class_path": "tests.toy_task.QuadrantNet", "init_args": {"width": 8}}


def test_names_versions_and_roles(tmp_path):
    assert names_from(["configs/parsing/lip_dist.yaml"], None, None) == ("parsing", "lip_dist")
    assert names_from(["a/b.yaml"], "exp", "run 1") == ("exp", "run-1")
    assert next_version(tmp_path, "e", "r") == tmp_path / "e" / "r"
    (tmp_path / "e" / "r").mkdir(parents=True)
    assert next_version(tmp_path, "e", "r") == tmp_path / "e" / "r-v2"
    (tmp_path / "e" / "r-v2").mkdir()
    (tmp_path / "e" / "r-v10").mkdir()
    assert next_version(tmp_path, "e", "r") == tmp_path / "e" / "r-v11"
    with pytest.raises(FileNotFoundError, match="no .*last.ckpt"):
        resolve_layout(tmp_path, "e", "r", "kd", resume=True)
    (tmp_path / "e" / "r-v2" / "checkpoints").mkdir()
    (tmp_path / "e" / "r-v2" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_layout(tmp_path, "e", "r", "kd", resume=True).run_dir == tmp_path / "e" / "r-v2"
    assert [infer_role(None, True, "x"), infer_role(None, False, "lip_teacher"), infer_role(None, False, "s")] == [
        "kd", "teacher", "baseline"]  # fmt: skip
    with pytest.raises(ValueError, match="role must be one of"):
        infer_role("student", False, "x")


def test_fit_writes_one_folder_per_run_and_summarises(tmp_path, capsys):
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 3, "logger": False, "enable_progress_bar": False, "enable_model_summary": False},
        "model": {"class_path": "tests.toy_task.QuadrantDistiller", "init_args": {"student": TOY}},
        "data": {"class_path": "tests.toy_task.QuadrantData", "init_args": {}},
    }
    path = tmp_path / "toy_student.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["fit", "--config", str(path), f"--trainer.default_root_dir={tmp_path / 'runs'}"]
    assert main(args) == 0
    run = tmp_path / "runs" / tmp_path.name / "toy_student"
    files = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert {"config.yaml", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= files
    record = json.loads((run / "metrics.json").read_text())
    assert record["unit"].startswith("percent") and record["monitor"] == "val/acc" and record["role"] == "baseline"
    assert [e["epoch"] for e in record["epochs"]] == [0, 1, 2]
    assert record["best"] == max(record["epochs"], key=lambda e: e["val/acc"]) and record["final"]["epoch"] == 2
    assert 0 <= record["best"]["val/acc"] <= 100 and record["best"]["val/acc"] > 1  # percent, not a fraction
    curves = json.loads((run / "curves.json").read_text())
    steps = [c["step"] for c in curves["points"]]
    assert steps == sorted(steps) and len(steps) >= 3 * 10 and all(s % curves["every"] == 0 for s in steps)
    assert all(c["train/total"] > 0 and any(k.startswith("train/task/") for k in c) for c in curves["points"])
    out = capsys.readouterr().out
    assert f"best   val/acc = {record['best']['val/acc']:.2f} % at epoch {record['best']['epoch']}" in out
    assert str(run / "checkpoints" / "best.ckpt") in out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["experiment"] == tmp_path.name and saved["run_name"] == "toy_student"
    assert main(args) == 0  # the same config again: a new version, nothing overwritten
    assert (run.parent / "toy_student-v2" / "metrics.json").is_file()
    assert json.loads((run / "metrics.json").read_text()) == record
    longer = [*args, "--trainer.max_epochs=4", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    assert main(longer) == 0  # a run's own checkpoint continues in its folder
    assert [e["epoch"] for e in json.loads((run / "metrics.json").read_text())["epochs"]] == [0, 1, 2, 3]
    assert not (run.parent / "toy_student-v3").exists()


def test_wandb_run_is_grouped_typed_tagged_and_named(tmp_path):
    cli = KDCLI(
        args=["--config", TINY, "--experiment", "cmp", f"--trainer.default_root_dir={tmp_path}",
              "--trainer.logger=kd_suite.loggers.KDWandbLogger", "--seed_everything=3"],
        run=False,
    )  # fmt: skip
    init = cli.trainer.logger._wandb_init
    run_dir = tmp_path / "cmp" / "tiny_kd"
    assert init["group"] == "cmp" and init["job_type"] == "kd" and init["name"] == "tiny_kd-seed3"
    assert {"kd", "PixelKL", "HintMSE"} <= set(init["tags"]) and init["dir"] == str(run_dir)
    assert init["id"] == (run_dir / "wandb_id.txt").read_text().strip()
    names = {type(c).__name__ for c in cli.trainer.callbacks}
    assert {"RunSummary", "RandomState", "BestCheckpoint", "LearningRateMonitor", "LoggedConfig"} <= names
