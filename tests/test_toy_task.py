"""The toy 4th task (tests/toy_task.py) trains through the CLI, alone and with a KD term (public protocol only)."""

from __future__ import annotations

from pathlib import Path

import yaml

from kd_suite.cli import KDCLI

from .toy_task import quadrant_images

TRAINER = {
    "max_epochs": 3,
    "accelerator": "cpu",
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def _fit(tmp_path: Path, name: str, model: dict) -> KDCLI:
    config = {
        "seed_everything": 0,
        "trainer": TRAINER | {"default_root_dir": str(tmp_path / name)},
        "model": {"class_path": "tests.toy_task.QuadrantDistiller", "init_args": model},
        "data": {"class_path": "tests.toy_task.QuadrantData"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return KDCLI(args=["fit", "--config", str(path)])


def test_toy_task_trains_alone_and_with_kd_through_the_cli(tmp_path):
    optimizer = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}}
    net = {"class_path": "tests.toy_task.QuadrantNet", "init_args": {"width": 8}}
    teacher = _fit(tmp_path, "teacher", {"student": net | {"init_args": {"width": 16}}, "optimizer": optimizer})
    teacher.trainer.save_checkpoint(tmp_path / "teacher.ckpt", weights_only=False)
    majority = quadrant_images(63, 16, 1).label.bincount().max().item() / 63  # trivial baseline of the val set
    assert teacher.trainer.callback_metrics["val/acc"] > 100 * majority + 30
    kd = {
        "class_path": "kd_suite.losses.KDLoss",
        "init_args": {"temperature": 2.0, "weight": 1.0, "student_tap": "logits"},
    }
    student = _fit(
        tmp_path,
        "student",
        {
            "student": net,
            "teacher": net | {"init_args": {"width": 16}},
            "teacher_ckpt": str(tmp_path / "teacher.ckpt"),
            "losses": {"kd": kd},
            "optimizer": optimizer,
        },
    )
    metrics = student.trainer.callback_metrics
    assert float(metrics["train/kd/kd"]) > 0  # the KD term ran
    assert metrics["val/acc"] > 100 * majority + 30 and "val/teacher_acc" in metrics  # learned; teacher scored once
    assert abs(float(metrics["val/teacher_acc"]) - float(teacher.trainer.callback_metrics["val/acc"])) < 1e-6
