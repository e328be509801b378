"""The README's worked example of a new distillation loss runs as written: its class and its config block."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch
import yaml

from kd_suite.cli import KDCLI

REPO = Path(__file__).resolve().parents[1]


def section_blocks(title: str) -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split(f"### {title}", 1)[1].split("\n### ", 1)[0]
    return {lang: body for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S)}


def test_the_readme_loss_example_trains_and_logs_its_term(tmp_path, monkeypatch):
    blocks = section_blocks("Adding a distillation loss")
    (tmp_path / "my_losses.py").write_text(blocks["python"])
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_losses", None)
    config = yaml.safe_load((REPO / "tests" / "configs" / "tiny_kd.yaml").read_text())
    config["model"]["init_args"]["losses"] = yaml.safe_load(blocks["yaml"])["losses"]
    path = tmp_path / "cos.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = KDCLI(args=["fit", "--config", str(path), f"--trainer.default_root_dir={tmp_path}"])
    module = cli.model
    cos = module.losses["cos"]
    assert type(cos).__name__ == "CosineFeatureLoss" and cos.student_tap == "features.-1"
    optimized = {id(p) for g in cli.trainer.optimizers[0].param_groups for p in g["params"]}
    assert all(id(p) in optimized for p in cos.adapter.parameters())  # the adapter trains with the student
    logged = cli.trainer.logged_metrics | cli.trainer.callback_metrics
    assert torch.isfinite(logged["train/kd/cos"]) and float(logged["train/kd/cos"]) > 0
    assert "train/weight/cos" in logged
