"""The kd-suite command line: help, config printing, strict parsing, fit/checkpoint round trip, shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from kd_suite.cli import main

from .support import TinySegDistiller, TinySegNet

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "configs" / "tiny_kd.yaml")
SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("fit", "validate", "test", "predict", "data", "evaluate", "profile", "demo"):
        assert cmd in out


def test_print_config_is_complete(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", TINY, "--print_config"])
    assert exc.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["class_path"] == "tests.support.TinySegDistiller"
    hint = cfg["model"]["init_args"]["losses"]["hint"]["init_args"]
    assert hint["student_tap"] == "embedding" and hint["teacher_tap"] is None  # base-class args are exposed
    assert hint["schedule"]["warmup_epochs"] == 1.0


def test_dotted_override(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", TINY, "--model.init_args.losses.kl.init_args.weight=0.25", "--print_config"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["init_args"]["losses"]["kl"]["init_args"]["weight"] == 0.25


@pytest.mark.parametrize(
    ("override", "message", "suggestion"),
    [
        ("--model.init_args.losses.kl.init_args.temprature=3", "temprature", "did you mean 'temperature'?"),
        ("--trainer.max_epoch=3", "max_epoch", "did you mean --trainer.max_epochs?"),
        ("--data.init_args.batchsize=2", "batchsize", "did you mean 'batch_size'?"),
    ],
)
def test_misspelled_keys_are_rejected_at_parse_time_with_the_closest_key(capsys, override, message, suggestion):
    assert main(["fit", "--config", TINY, override]) == 2
    err = capsys.readouterr().err
    assert message in err and suggestion in err
    assert len(err.strip().splitlines()) <= 3 and "Namespace(" not in err and "usage:" not in err


def test_fit_then_load_checkpoint_with_weights_only(tmp_path):
    main(["fit", "--config", TINY, f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_checkpointing=true"])
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert len(ckpts) == 1
    raw = torch.load(ckpts[0], weights_only=True)
    assert raw["hyper_parameters"]["student"]["class_path"] == "tests.support.TinySegNet"
    assert not [k for k in raw["state_dict"] if k.startswith("teachers.")]
    module = TinySegDistiller.load_from_checkpoint(ckpts[0], weights_only=True)  # rebuilt from the stored config
    assert type(module.student).__name__ == "TinySegNet" and len(module.teachers) == 1
    assert set(module.losses) == {"kl", "hint"}
    main(["validate", "--config", TINY, f"--ckpt_path={ckpts[0]}", f"--trainer.default_root_dir={tmp_path}"])


def test_profile_prints_json(capsys):
    assert main(["profile", "--config", TINY, "--input-size", "32", "32", "--runs", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["student"]["params"] == sum(p.numel() for p in TinySegNet(8, 4).parameters())
    assert report["teachers"][0]["params"] > report["student"]["params"]
    # 3x3 conv 3->8 at 16x16 output: 2 * 8*16*16 * 3*3*3 FLOPs, plus the rest: a lower bound
    assert report["student"]["flops"] >= 2 * 8 * 16 * 16 * 27
    assert report["flops_convention"].startswith("FLOPs = 2 x MACs")


@pytest.mark.parametrize("config", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(config), "--print_config"])
    assert exc.value.code == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    "config",
    ["configs/demo/parsing_dist.yaml", "configs/demo/pose_distilpose.yaml", "configs/demo/detection_fsd.yaml"],
)
def test_task_modules_expose_and_check_the_distiller_arguments(capsys, config):
    """Task modules pass the Distiller's arguments through **kwargs: still shown, defaulted and checked."""
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / config), "--print_config"])
    args = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    for key in ("teacher", "teacher_ckpt", "losses", "optimizer", "scheduler", "teacher_fast_path", "log_images"):
        assert key in args, key
    assert args["teacher_fast_path"] is True and args["log_images"] == 4
    assert main(["fit", "--config", str(REPO / config), "--model.init_args.teacher_fast_pth=false"]) == 2
    assert "did you mean 'teacher_fast_path'?" in capsys.readouterr().err
