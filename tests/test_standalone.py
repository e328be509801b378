"""A KD student stands alone: validate without the teacher file, a command-line teacher_ckpt wins over the stored
one (and a different teacher is reported), and ``load_standalone`` rebuilds the student from the checkpoint alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from kd_suite.cli import KDCLI, main
from kd_suite.data.lip import LIPDataModule
from kd_suite.standalone import load_standalone

from .support import TinySegNet

SEG = {"class_path": "tests.support.TinySegNet", "init_args": {"width": 8, "num_classes": 20}}
BIG = SEG | {"init_args": {"width": 16, "num_classes": 20}}


def config(tmp: Path, student: dict, **model: object) -> Path:
    cfg = {
        "seed_everything": 0,
        "experiment": "alone",
        "trainer": {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp / "runs")},
        "model": {"class_path": "kd_suite.tasks.parsing.ParsingDistiller", "init_args": {"student": student, **model}},
        "data": {"class_path": "kd_suite.data.lip.LIPDataModule",
                 "init_args": {"root": str(tmp / "LIP"), "input_size": [32, 32], "batch_size": 2, "num_workers": 0,
                               "pin_memory": False}},
    }  # fmt: skip
    name = "teacher" if not model else "kd"
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("alone")
    LIPDataModule(root=str(tmp / "LIP"), input_size=(32, 32), synth_if_missing=True, synth_num_train=4,
                  synth_num_val=2).prepare_data()  # fmt: skip
    assert main(["fit", "--config", str(config(tmp, BIG))]) == 0
    teacher = tmp / "runs" / "alone" / "teacher" / "checkpoints" / "best.ckpt"
    losses = {"kl": {"class_path": "tests.support.PixelKL", "init_args": {"weight": 1.0}}}
    kd_cfg = config(tmp, SEG, teacher=BIG, teacher_ckpt=str(teacher), losses=losses)
    assert main(["fit", "--config", str(kd_cfg)]) == 0
    kd = tmp / "runs" / "alone" / "kd"
    assert json.loads((kd / "metrics.json").read_text())["role"] == "kd"
    return {"tmp": tmp, "teacher": teacher, "kd_cfg": kd_cfg, "kd": kd}


def validate(runs: dict[str, Path], *extra: str) -> KDCLI:
    ckpt = runs["kd"] / "checkpoints" / "best.ckpt"
    return KDCLI(args=["validate", "--config", str(runs["kd_cfg"]), "--ckpt_path", str(ckpt), *extra])


def test_validate_without_the_teacher_file(runs):
    moved = runs["tmp"] / "elsewhere.ckpt"
    shutil.move(runs["teacher"], moved)
    try:
        with pytest.warns(UserWarning, match="not found: teacher 0 is not loaded"):
            cli = validate(runs)
    finally:
        shutil.move(moved, runs["teacher"])
    metrics = cli.trainer.callback_metrics
    assert "val/mIoU" in metrics and "val/teacher_mIoU" not in metrics  # the student is scored, no teacher
    assert (runs["kd"] / "validate" / "config.yaml").is_file()  # inside the run's folder, the run's config untouched


def test_command_line_teacher_ckpt_wins_and_a_different_teacher_is_reported(runs):
    other = runs["tmp"] / "other_teacher.pt"
    torch.manual_seed(1)
    torch.save(TinySegNet(16, 20).state_dict(), other)
    with pytest.warns(UserWarning, match=rf"recorded {runs['teacher']} .* now {other}"):
        cli = validate(runs, f"--model.init_args.teacher_ckpt={other}")
    assert cli.model.teacher_meta[0]["ckpt"] == str(other)
    cli = validate(runs)  # the stored teacher again: scored, no warning needed
    assert "val/teacher_mIoU" in cli.trainer.callback_metrics


def test_load_standalone_needs_only_the_checkpoint(runs):
    ckpt = runs["kd"] / "checkpoints" / "best.ckpt"
    alone = load_standalone(ckpt)
    assert len(alone.module.teachers) == 0 and not alone.module.losses
    assert alone.input_size == (32, 32) and alone.task == "parsing" and alone.facts.num_classes == 20
    stored = torch.load(ckpt, weights_only=True)["state_dict"]
    for key, value in alone.module.student.state_dict().items():
        assert torch.equal(value, stored[f"student.{key}"]), key
