"""``kd-suite calibrate --config kd.yaml``: the weight each distillation term needs for a chosen gradient share.

Measures a KD config's terms and task loss over a few training batches (:mod:`kd_suite.calibration`: the student at
its initial weights, or ``--ckpt``'s), prints a table (mean ± std over the batches) of each term's value, unweighted
and weighted, the L2 norm of the gradient it sends into the student's parameters, and its ratio to the task loss's,
then the weights that give each term a gradient norm of ``share`` × the task's (``--share 0.5``; per term
``--share dist=0.3``), as command-line overrides and as a YAML block. Dotted overrides after the config are the
same as ``kd-suite fit``'s (``--data.init_args.root=...``); ``--out calib.json`` writes everything as JSON.

The config's ``seed_everything`` sets the initial weights, as in training; ``--seed`` draws the batches and the
dropout masks. Measurements run in fp32 whatever the trainer's precision.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..calibration import CalibrationResult, TermMeasure, calibrate, calibrated_weights
from ..distiller import Distiller
from ..explain import ConfigError

PREFIX = "--model.init_args.losses"

DEFINITION = {
    "theta": "the student's trainable parameters (distillation adapters and teachers excluded)",
    "value": "the term with weight 1 and no schedule (task: the sum of the task loss terms)",
    "weighted_value": "factor x value, as the training step adds it to the total",
    "factor": "weight x schedule_factor; schedule_factor is the schedule at 'epoch' (null: full strength, 1)",
    "grad_norm": "||d value / d theta||_2, one L2 norm over all student parameter tensors, per batch",
    "weighted_grad_norm": "|factor| x grad_norm",
    "ratio": "weighted_grad_norm / task grad_norm, per batch",
    "share": "mean(weighted_grad_norm) / mean(task grad_norm) over the batches (ratio of means)",
    "suggested_weight": "weight x target_share / share = target_share x mean(task grad_norm) / "
    "(schedule_factor x mean(grad_norm)); null when the term sends no gradient or is switched off",
    "statistics": "mean and std (population, ddof 0) over the batches; per_batch lists every batch",
}
UNIT = (
    "values in each loss's own unit; gradient norms in loss units per parameter unit (L2 over theta); ratio, share "
    "and target_share are dimensionless"
)


def parse_shares(specs: list[str] | None, names: list[str]) -> dict[str, float]:
    """Target share of every term from ``--share`` values: ``0.5`` sets the default, ``name=0.3`` one term's."""
    default, per_term = 0.5, {}
    for spec in specs or []:
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, eq, value = item.partition("=")
            try:
                number = float(value if eq else key)
            except ValueError:
                raise ConfigError(f"--share {item!r}: expected a number (0.5) or term=number (dist=0.3)") from None
            if not (math.isfinite(number) and number > 0):
                raise ConfigError(f"--share {item!r}: the share must be a positive number")
            if eq:
                per_term[key.strip()] = number
            else:
                default = number
    unknown = sorted(set(per_term) - set(names))
    if unknown:
        raise ConfigError(f"--share names unknown term(s) {unknown}; the config's terms are {names}")
    return {n: per_term.get(n, default) for n in names}


def load_checkpoint(module: Distiller, path: Path) -> None:
    """Load a ``kd-suite fit`` checkpoint's student and adapter weights (the teachers stay the config's)."""
    from ..standalone import StandaloneError, read_checkpoint

    try:
        ckpt = read_checkpoint(path)
    except StandaloneError as err:
        raise ConfigError(f"--ckpt: {err}") from err
    state = ckpt["state_dict"]
    module.on_load_checkpoint(ckpt)  # fills in the teachers, warns when they differ from the ones it trained with
    missing, unexpected = module.load_state_dict(state, strict=False)
    bad = [k for k in [*missing, *unexpected] if k.startswith(("student.", "losses."))]
    if bad:
        raise ConfigError(
            f"--ckpt {str(path)!r} does not fit the config's model ({len(bad)} mismatched keys, e.g. {bad[:3]}); "
            "give a checkpoint of this config"
        )


def training_batches(datamodule: Any, module: Distiller, n: int, seed: int) -> list[Any]:
    """The first ``n`` batches of the training loader, shuffled under ``seed``, the datamodule set up for fit."""
    import lightning as L

    from ..data.facts import DatasetFacts

    datamodule.prepare_data()
    datamodule.setup("fit")
    facts = getattr(datamodule, "facts", None)
    if isinstance(facts, DatasetFacts):
        module.link_data(facts)  # what Distiller.setup does under a Trainer
    L.seed_everything(seed, verbose=False)
    iterator = iter(datamodule.train_dataloader())
    batches = []
    for _ in range(n):
        try:
            batches.append(next(iterator))
        except StopIteration:
            break
    del iterator
    return batches


def _stats(x: Tensor) -> dict[str, Any]:
    return {"mean": float(x.mean()), "std": float(x.std(correction=0)), "per_batch": [float(v) for v in x]}


def _pm(x: Tensor) -> str:
    return f"{float(x.mean()):.4g} ± {float(x.std(correction=0)):.2g}"


def number(value: float) -> str:
    """Four significant digits, always readable back as a float (``1.0e-05``, never ``1e-05``)."""
    text = f"{value:.4g}"
    return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text


def _measure_json(result: CalibrationResult, m: TermMeasure) -> dict[str, Any]:
    return {
        "weight": m.weight,
        "schedule_factor": m.schedule,
        "factor": m.factor,
        "value": _stats(m.value),
        "weighted_value": _stats(m.weighted_value),
        "grad_norm": _stats(m.grad_norm),
        "weighted_grad_norm": _stats(m.weighted_grad_norm),
        "ratio": _stats(m.weighted_grad_norm / result.task.grad_norm),
    }


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def table(result: CalibrationResult, shares: dict[str, float], weights: dict[str, float]) -> str:
    """The measurement as a text table, task first, then each task component and each term."""
    rows = [("term", "weight×sched", "value", "weighted value", "‖g‖", "weighted ‖g‖", "ratio", "target", "new w")]
    t = result.task
    rows.append(("task", "1", _pm(t.value), _pm(t.value), _pm(t.grad_norm), _pm(t.grad_norm), "1", "", ""))
    for name, m in result.task_parts.items():
        ratio = _pm(result.ratio(name))
        rows.append((f"  {name}", "1", _pm(m.value), _pm(m.value), _pm(m.grad_norm), "", ratio, "", ""))
    for name, m in result.terms.items():
        new = number(weights[name]) if name in weights else "n/a"
        weight = f"{m.weight:g}×{m.schedule:g}"
        values = (_pm(m.value), _pm(m.weighted_value), _pm(m.grad_norm), _pm(m.weighted_grad_norm))
        rows.append((name, weight, *values, _pm(result.ratio(name)), f"{shares[name]:g}", new))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def yaml_block(losses: dict[str, Any], weights: dict[str, float]) -> str:
    """The config's whole ``losses`` block with the new weights (a later ``--config`` replaces the losses dict)."""
    import yaml

    block = {name: dict(spec, init_args=dict(spec.get("init_args") or {})) for name, spec in losses.items()}
    for name, w in weights.items():
        block[name]["init_args"]["weight"] = float(number(w))
    return yaml.safe_dump({"model": {"init_args": {"losses": block}}}, sort_keys=False)


def report(result: CalibrationResult, shares: dict[str, float], weights: dict[str, float], yaml_text: str) -> str:
    """Everything ``main`` prints: table, definitions, suggested weights, overrides, YAML."""
    stopped = [n for n in result.terms if n not in weights]
    where = "schedules at full strength" if result.epoch is None else f"schedules at epoch {result.epoch:g}"
    lines = [
        f"loss-scale calibration over {result.batches} batch(es), {where} (mean ± std over batches):",
        "",
        table(result, shares, weights),
        "",
        "‖g‖: L2 norm of d(term)/d(student parameters), adapters excluded; ratio: weighted ‖g‖ / task ‖g‖;",
        "new w = weight × target / (mean weighted ‖g‖ / mean task ‖g‖), the ratio of means over the batches.",
    ]
    if stopped:
        lines.append(f"not calibrated (no gradient reaches the student, or switched off here): {', '.join(stopped)}")
    if weights:
        overrides = " ".join(f"{PREFIX}.{n}.init_args.weight={number(w)}" for n, w in weights.items())
        lines += ["", "command-line overrides:", f"  {overrides}", "", "YAML (as a second --config):", yaml_text]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="kd-suite calibrate",
        description=__doc__.splitlines()[0],
        epilog="Other --key=value options are config overrides, as for kd-suite fit.",
    )
    p.add_argument("--config", "-c", required=True, action="append", help="a kd-suite KD config (repeatable)")
    p.add_argument("--ckpt", type=Path, default=None, help="measure at this checkpoint's weights (default: initial)")
    p.add_argument("--batches", type=int, default=8, help="training batches to measure over (default 8)")
    p.add_argument("--share", action="append", help="target share of the task gradient norm: 0.5 (default) or term=0.3")
    p.add_argument("--seed", type=int, default=0, help="seed of the batch draw and dropout masks (default 0)")
    p.add_argument("--epoch", type=float, default=None, help="evaluate schedules at this epoch (default: full)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--out", type=Path, default=None, help="write the measurement and suggestions as JSON")
    args, overrides = p.parse_known_args(argv)
    stray = [a for a in overrides if not a.startswith("--")]
    if stray:
        p.error(f"unexpected argument(s) {stray}; config overrides are written --key=value")
    if args.batches < 1:
        p.error("--batches must be at least 1")

    import yaml

    from ..cli import KDCLI

    configs = [f"--config={c}" for c in args.config]
    with warnings.catch_warnings():  # a missing teacher file is reported below, in one line
        warnings.filterwarnings("ignore", message="teacher weights .* not found")
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # our own options in sys.argv
        cli = KDCLI(args=[*configs, *overrides, "--trainer.logger=false"], run=False, exit_on_error=False)
    module: Distiller = cli.model
    if not module.losses:
        raise ConfigError(
            f"{' + '.join(args.config)} has no distillation terms (model.init_args.losses is empty): calibrate "
            "measures KD terms against the task loss; give a KD config"
        )
    shares = parse_shares(args.share, list(module.losses))
    if args.ckpt is not None:
        load_checkpoint(module, args.ckpt)
    module.require_teachers()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    batches = training_batches(cli.datamodule, module, args.batches, args.seed)
    if len(batches) < args.batches:
        print(f"the training loader has {len(batches)} batch(es); measuring over those")
    module.to(device)
    max_epochs = cli.trainer.max_epochs
    result = calibrate(module, batches, epoch=args.epoch, max_epochs=max_epochs, seed=args.seed, progress=True)
    weights = calibrated_weights(result, shares)
    dumped = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    yaml_text = yaml_block(dumped["model"]["init_args"]["losses"], weights)
    print(report(result, shares, weights, yaml_text), end="")
    if args.out is not None:
        record = {
            "definition": DEFINITION,
            "unit": UNIT,
            "config": args.config,
            "overrides": overrides,
            "ckpt": None if args.ckpt is None else str(args.ckpt),
            "device": str(device),
            "batches": result.batches,
            "seed": args.seed,
            "epoch": args.epoch,
            "max_epochs": max_epochs,
            "task": _measure_json(result, result.task),
            "task_parts": {k: _measure_json(result, m) for k, m in result.task_parts.items()},
            "terms": {
                n: _measure_json(result, m)
                | {"target_share": shares[n], "share": result.share(n), "suggested_weight": weights.get(n)}
                for n, m in result.terms.items()
            },
            "suggested_weights": weights,
            "command_line": " ".join(f"{PREFIX}.{n}.init_args.weight={number(w)}" for n, w in weights.items()),
            "yaml": yaml_text,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(_finite(record), indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0
