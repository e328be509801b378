"""Every shipped parsing config trains one step on tiny synthetic LIP; a trained teacher checkpoint feeds a KD run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from kd_suite.cli import KDCLI, main
from kd_suite.data.lip import LIPDataModule
from kd_suite.teacher import sha256_file

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "parsing").glob("*.yaml"))
SYNTH_ROOT = "data/synthetic/LIP"  # the synthetic configs' root, relative to the working directory

#: tiny sizes for CPU: 32 px inputs, two images per batch, no worker processes
TINY = [
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.precision=32",  # the LIP configs ask for bf16-mixed (GPU); CPU autocast would only be slower
    "--data.init_args.input_size=[32,32]",
    "--data.init_args.batch_size=2",
    "--data.init_args.num_workers=0",
    "--data.init_args.pin_memory=false",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding a tiny synthetic LIP at the synthetic configs' root."""
    root = tmp_path_factory.mktemp("parsing_runs")
    LIPDataModule(root=str(root / SYNTH_ROOT), synth_if_missing=True, synth_num_train=1, synth_num_val=1).prepare_data()
    return root


def overrides(config: Path) -> list[str]:
    """TINY plus what a config on real LIP needs to run offline on the synthetic set."""
    args = list(TINY)
    init = yaml.safe_load(config.read_text())["model"]["init_args"]
    if "teacher_ckpt" in init:
        args.append("--model.init_args.teacher_ckpt=null")  # random teacher; the round trip below loads a real one
    if config.name.startswith("lip_"):
        args += [f"--data.init_args.root={SYNTH_ROOT}", "--model.init_args.student.init_args.pretrained=false"]
    return args


def test_every_parsing_experiment_is_shipped():
    names = {c.stem for c in CONFIGS}
    for data in ("lip", "synthetic"):  # real LIP and its CPU-sized synthetic twin
        assert {f"{data}_{x}" for x in ("teacher", "student", "dist", "dist_gskd", "cwd", "kd")} <= names
    for config in CONFIGS:
        cfg = yaml.safe_load(config.read_text())
        data = cfg["data"]["init_args"]
        if config.name.startswith("synthetic_"):
            assert data["root"] == SYNTH_ROOT and data["synth_if_missing"] and 128 <= data["input_size"][0] <= 192
        else:
            assert data["root"] == "data/LIP" and not data["synth_if_missing"] and data["input_size"] == [473, 473]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_fast_dev_run(config: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(workdir)
    cli = KDCLI(args=["--config", str(config), "--trainer.fast_dev_run=1", *overrides(config)], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.callback_metrics
    assert 0.0 <= float(metrics["val/mIoU"]) <= 100.0 and "val/iou/Background" in metrics
    losses = yaml.safe_load(config.read_text())["model"]["init_args"].get("losses", {})
    for name in losses:
        assert math.isfinite(float(metrics[f"train/kd/{name}"])), name
    assert ("val/teacher_mIoU" in metrics) == bool(losses)


def test_teacher_checkpoint_round_trip(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("KD_SUITE_RUNS")  # runs/ of the working directory, where the KD config's teacher_ckpt points
    teacher_cfg, kd_cfg = (
        str(REPO / "configs" / "parsing" / f"{n}.yaml") for n in ("synthetic_teacher", "synthetic_dist")
    )
    one_epoch = ["--trainer.max_epochs=1", "--trainer.num_sanity_val_steps=0"]  # the tiny set: one batch each way
    assert main(["fit", "--config", teacher_cfg, *TINY, *one_epoch]) == 0
    run = workdir / "runs" / "parsing_synthetic" / "synthetic_teacher"
    ckpt = run / "checkpoints" / "best.ckpt"  # the KD configs' teacher_ckpt
    assert ckpt.is_file() and (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    raw = torch.load(ckpt, weights_only=True)
    teacher_score = json.loads((run / "metrics.json").read_text())["best"]["val/mIoU"]

    cli = KDCLI(args=["--config", kd_cfg, *TINY, *one_epoch], run=False)
    module = cli.model
    assert module.teacher_meta[0]["sha256"] == sha256_file(ckpt)
    for key, value in module.teachers[0].state_dict().items():
        assert torch.equal(value, raw["state_dict"][f"student.{key}"]), key
    cli.trainer.fit(module, datamodule=cli.datamodule)
    # same val set, same frozen weights: the KD run measures the teacher exactly as the teacher run did
    assert float(cli.trainer.callback_metrics["val/teacher_mIoU"]) == pytest.approx(teacher_score, abs=1e-6)
