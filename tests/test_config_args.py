"""Every class a shipped config names runs with exactly the init_args its YAML writes plus the class's own defaults.

The failure this guards against: a class-valued signature default (``optimizer = torch.optim.AdamW``, the default
W&B logger) whose init_args jsonargparse hands on to the class a config names instead, e.g. AdamW's
``weight_decay=0.01`` silently applied to every config's ``torch.optim.Adam`` as coupled L2.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonargparse import ArgumentParser

from kd_suite.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))
_DEFAULTS: dict[str, dict] = {}


def resolved(config: Path, capsys: pytest.CaptureFixture) -> dict:
    """What ``kd-suite fit --config X --print_config`` prints, as data."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(config), "--print_config"])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err[-2000:]
    return yaml.safe_load(out.out)


def class_defaults(class_path: str) -> dict:
    """The class's own signature defaults, dumped the way ``--print_config`` dumps values."""
    if class_path not in _DEFAULTS:
        module, name = class_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "c", fail_untyped=False, sub_configs=True)
        _DEFAULTS[class_path] = yaml.safe_load(parser.dump(parser.get_defaults(), skip_validation=True))["c"] or {}
    return _DEFAULTS[class_path]


def leaks(value: Any, given: Any, where: str) -> list[str]:
    """Init_args in ``value`` (resolved) that are neither in ``given`` (the YAML) nor the class's default."""
    found = []
    if isinstance(value, list):
        given = given if isinstance(given, list) and len(given) == len(value) else [None] * len(value)
        for i, (v, g) in enumerate(zip(value, given)):
            found += leaks(v, g, f"{where}[{i}]")
        return found
    if not isinstance(value, dict):
        return found
    if "class_path" not in value:
        given = given if isinstance(given, dict) else {}
        for key, v in value.items():
            found += leaks(v, given.get(key), f"{where}.{key}")
        return found
    given = given if isinstance(given, dict) and given.get("class_path") == value["class_path"] else {}
    given_args = given.get("init_args") or {}
    defaults = class_defaults(value["class_path"])
    for key, v in (value.get("init_args") or {}).items():
        leak = f"{where}.{key} = {v!r} (YAML: absent, {value['class_path']} default: {defaults.get(key)!r})"
        if key in given_args:
            found += leaks(v, given_args[key], f"{where}.{key}")
        elif isinstance(v, (dict, list)) and v:
            found += leaks(v, None, f"{where}.{key}")
            if not isinstance(v, list) and "class_path" not in v and v != defaults.get(key):
                found.append(leak)
        elif key in defaults and v != defaults[key]:
            found.append(leak)
    return found


def only_lr(config: dict) -> dict:
    """The config with every optimizer block reduced to its ``lr``."""
    config = copy.deepcopy(config)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, v in node.items():
                if key == "optimizer" and isinstance(v, dict) and "class_path" in v:
                    lr = (v.get("init_args") or {}).get("lr")
                    v["init_args"] = {} if lr is None else {"lr": lr}
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    return config


def test_every_shipped_config_resolves_to_its_yaml_plus_class_defaults(capsys, tmp_path):
    problems, checked = [], 0
    for path in SHIPPED:
        raw = yaml.safe_load(path.read_text())
        reduced = tmp_path / path.name
        reduced.write_text(yaml.safe_dump(only_lr(raw)))
        for variant, source in (("as shipped", path), ("optimizer reduced to lr", reduced)):
            problems += [f"{path.relative_to(REPO)} ({variant}): {p}" for p in leaks(resolved(source, capsys), raw, "")]
            checked += 1
    assert checked == 2 * len(SHIPPED) > 100
    assert not problems, "\n".join(problems)


def test_adam_config_gets_no_weight_decay_it_does_not_write(capsys):
    cfg = resolved(REPO / "configs" / "pose" / "mpii_student.yaml", capsys)
    opt = cfg["model"]["init_args"]["optimizer"]
    assert opt["class_path"] == "torch.optim.Adam" and opt["init_args"]["weight_decay"] == 0.0


def test_a_second_config_that_switches_class_drops_the_first_class_arguments(capsys, tmp_path):
    csv = tmp_path / "csv.yaml"
    csv.write_text(yaml.safe_dump({"trainer": {"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger"}}}))
    sgd = tmp_path / "sgd.yaml"
    sgd.write_text(
        yaml.safe_dump(
            {"model": {"init_args": {"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}}}}
        )
    )
    base = REPO / "configs" / "parsing" / "synthetic_student.yaml"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(base), "--config", str(csv), "--config", str(sgd), "--print_config"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["logger"]["init_args"]["name"] == "lightning_logs"  # CSVLogger's own, not W&B's None
    sgd_args = cfg["model"]["init_args"]["optimizer"]["init_args"]
    assert sgd_args["weight_decay"] == 0.0 and sgd_args["momentum"] == 0.0
