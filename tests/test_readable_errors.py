"""User errors at the command line: a few lines with the problem and the fix (traceback with --debug); bad teacher
files say what they are; evaluate writes strict JSON; profile and fit behave offline with pretrained: true."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
import yaml

import kd_suite.models.pretrained as pretrained
from kd_suite.cli import main
from kd_suite.data.errors import DatasetError
from kd_suite.data.voc import VOCDataModule
from kd_suite.teacher import TeacherFileError, load_weights

from .support import TinySegNet

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "configs" / "tiny_kd.yaml")
PARSING = REPO / "configs" / "parsing" / "synthetic_student.yaml"


def test_a_data_error_prints_the_file_and_fix_in_a_few_lines(tmp_path, capsys):
    args = ["fit", "--config", str(PARSING), f"--data.init_args.root={tmp_path / 'absent'}",
            "--data.init_args.synth_if_missing=false", "--trainer.logger=false"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kd-suite fit: data error:") and str(tmp_path / "absent") in err and "Fix:" in err
    assert len(err.splitlines()) <= 3 and "Traceback" not in err and "Namespace(" not in err
    with pytest.raises(DatasetError):
        main([*args, "--debug"])


def test_a_constructor_error_is_short_and_debug_env_shows_the_traceback(capsys, monkeypatch):
    args = ["fit", "--config", TINY, "--model.init_args.scheduler_interval=hourly"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "scheduler_interval must be 'epoch' or 'step', got 'hourly'" in err and len(err.splitlines()) <= 3
    monkeypatch.setenv("KD_SUITE_DEBUG", "1")
    with pytest.raises(ValueError, match="hourly"):
        main(args)


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("teacher_files")
    good = out / "good.pt"
    torch.save(TinySegNet(16).state_dict(), good)
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "random": os.urandom(4096), "text": b"epoch,loss\n0,1.25\n"}
    paths = {}
    for name, content in files.items():
        (out / f"{name}.pt").write_bytes(content)
        paths[name] = out / f"{name}.pt"
    torch.save(TinySegNet(8).state_dict(), out / "wrong_arch.pt")
    partial = TinySegNet(16).state_dict()
    partial.pop("head.weight")
    torch.save(partial, out / "missing_keys.pt")
    return paths | {"wrong_arch": out / "wrong_arch.pt", "missing_keys": out / "missing_keys.pt", "good": good}


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("truncated", "truncated or corrupt"),
        ("random", "not a PyTorch checkpoint or safetensors file"),
        ("text", "a text file (it starts 'epoch,loss"),
        ("wrong_arch", "shape mismatch 13"),
        ("missing_keys", "missing 1: ['head.weight']"),
    ],
)
def test_bad_teacher_files_say_what_is_wrong_and_what_is_expected(teacher_files, kind, problem):
    with pytest.raises(TeacherFileError) as info:
        load_weights(TinySegNet(16), teacher_files[kind])
    message = str(info.value)
    assert str(teacher_files[kind]) in message and problem in message and "expected" in message
    assert "weights_only" not in message and "\n" not in message


def test_a_bad_teacher_file_on_the_command_line_is_one_line(teacher_files, capsys):
    assert main(["fit", "--config", TINY, f"--model.init_args.teacher_ckpt={teacher_files['random']}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("kd-suite fit: checkpoint error: teacher weights") and len(err) == 2


def test_evaluate_writes_valid_json_with_null_for_undefined_scores(tmp_path, capsys):
    root = tmp_path / "VOCdevkit"
    VOCDataModule(
        str(root), ["standing", "fallen"], synth_if_missing=True, synth_num_train=1, synth_num_val=2
    ).prepare_data()
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    out = tmp_path / "scores.json"
    capsys.readouterr()
    code = main(["evaluate", "--format", "voc", "--gt", str(root), "--pred", str(pred),
                 "--classes", "standing,fallen,ghost", "--out", str(out)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    for written in (text, out.read_text()):
        json.loads(written, parse_constant=lambda c: pytest.fail(f"{c} is not valid JSON"))
    assert "NaN" not in text and "null" in text


def _pretrained_config(tmp_path: Path) -> Path:
    config = yaml.safe_load(PARSING.read_text())
    config["model"]["init_args"]["student"]["init_args"].update(backbone="resnet18", pretrained=True)
    path = tmp_path / "pretrained.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub, an empty weights cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def test_profile_works_offline_with_a_pretrained_config(offline, tmp_path, capsys):
    start = time.perf_counter()
    assert (
        main(["profile", "--config", str(_pretrained_config(tmp_path)), "--input-size", "64", "64", "--runs", "1"]) == 0
    )
    assert time.perf_counter() - start < 30
    assert json.loads(capsys.readouterr().out)["student"]["params"] > 0


def test_fit_offline_with_a_pretrained_config_says_why_in_one_line(offline, tmp_path, capsys):
    start = time.perf_counter()
    assert main(["fit", "--config", str(_pretrained_config(tmp_path)), "--trainer.logger=false"]) == 1
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "pretrained weights unavailable" in err[0] and "resnet18" in err[0]
    assert "pretrained: false" in err[0]
