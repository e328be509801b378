"""Teacher forward, plain vs the frozen-teacher fast path, for the shipped teachers at their real input sizes.

Each teacher of the shipped configs (``--scale``: the real-dataset ones by default) is built with random weights and
timed on a random batch of its config's input size for every ``--batch`` size, with the parts of the fast path
alone and together, interleaved call by call (load drift hits all alike):

    plain            the teacher as the Distiller ran it before (no_grad, BatchNorms, NCHW)
    fold             BatchNorms folded into their convolutions
    channels_last    channels_last memory format alone
    fold+channels_last  both
    fast_whole       fold, exact rewrites and channels_last, every output field computed, eager
    fast_untraced    fast_whole computing only the fields the config's KD terms read
    fast             the default fast path: fast_untraced with its parts traced into frozen TorchScript (CPU)
    fast+inference   the default fast path under torch.inference_mode (outputs cloned into normal tensors)
    fast+compile     the fast path torch.compile'd with Inductor freezing (``--compile``; the one-off compile is
                     excluded)
    fast+bf16        CPU bf16 autocast on top (``--bf16``; not exact, for reference only)

Prints ms per forward (median), plain/variant speed-ups and each variant's largest relative output difference (over
the fields it computes), the fields the terms read and those the fast copy skips.

    python benchmarks/teacher_forward.py [--scale real|synthetic|demo] [--batch 1 8] [--steps 5] [--threads 1]
        [--task parsing pose detection] [--compile] [--bf16]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from kd_step import CONFIGS  # the shipped KD configs per scale and task (same folder)

from kd_suite.fast_teacher import FastPathOptions, TeacherFastPath, max_relative_error

REPO = Path(__file__).resolve().parents[1]


def teacher_of(config: Path) -> tuple[torch.nn.Module, tuple[int, int]]:
    """The (first) teacher of a KD config, random weights, frozen; and the config's input size."""
    cfg = yaml.safe_load(config.read_text())
    spec = cfg["model"]["init_args"]["teacher"]
    spec = spec[0] if isinstance(spec, list) else spec
    module, _, name = spec["class_path"].rpartition(".")
    args = dict(spec.get("init_args") or {})
    if "pretrained" in args:
        args["pretrained"] = False
    torch.manual_seed(0)
    teacher = getattr(importlib.import_module(module), name)(**args)
    return teacher.requires_grad_(False).eval(), tuple(cfg["data"]["init_args"]["input_size"])


def term_fields(config: Path) -> frozenset[str] | None:
    """The first teacher's output fields that the config's distillation terms read (``None``: all)."""
    specs = (yaml.safe_load(config.read_text())["model"]["init_args"].get("losses") or {}).values()
    fields: frozenset[str] = frozenset()
    for spec in specs:
        module, _, name = spec["class_path"].rpartition(".")
        loss = getattr(importlib.import_module(module), name)(**(spec.get("init_args") or {}))
        read = loss.teacher_fields()
        if loss.uses_guides or read is None:
            return None
        fields |= read if loss.teacher_index == 0 else frozenset()
    return fields


def variants(args: argparse.Namespace) -> dict[str, TeacherFastPath | None]:
    whole = {"rewrite": False, "prune": False, "trace": False}
    out: dict[str, TeacherFastPath | None] = {
        "plain": None,
        "fold": TeacherFastPath(FastPathOptions(channels_last=False, **whole)),
        "channels_last": TeacherFastPath(FastPathOptions(fold_bn=False, channels_last=True, **whole)),
        "fold+channels_last": TeacherFastPath(FastPathOptions(channels_last=True, **whole)),
        "fast_whole": TeacherFastPath(FastPathOptions(prune=False, trace=False)),
        "fast_untraced": TeacherFastPath(FastPathOptions(trace=False)),
        "fast": TeacherFastPath(),
        "fast+inference": TeacherFastPath(FastPathOptions(inference_mode=True)),
    }
    if args.compile:
        out["fast+compile"] = TeacherFastPath(FastPathOptions(compile=True))
    if args.bf16:
        out["fast+bf16"] = TeacherFastPath()  # run under an ambient CPU bf16 autocast below
    return out


def measure(
    teacher: torch.nn.Module, image: torch.Tensor, fields: frozenset[str] | None, args: argparse.Namespace
) -> dict[str, Any]:
    paths = variants(args)

    def call(name: str) -> Any:
        path = paths[name]
        bf16 = (
            torch.autocast("cpu", dtype=torch.bfloat16) if name == "fast+bf16" else torch.autocast("cpu", enabled=False)
        )
        with torch.no_grad(), bf16:
            return teacher(image) if path is None else path.forward(teacher, image, fields)

    outputs = {name: call(name) for name in paths}  # warm-up: builds (and compiles) every copy
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.steps):
        for name in paths:
            start = time.perf_counter()
            call(name)
            times[name].append(1e3 * (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "median_ms": {k: round(v, 1) for k, v in med.items()},
        "plain_over": {k: round(med["plain"] / v, 3) for k, v in med.items() if k != "plain"},
        "plain_over_by_min": {k: round(min(times["plain"]) / min(v), 3) for k, v in times.items() if k != "plain"},
        "max_rel_diff": {
            k: f"{max_relative_error(outputs['plain'], o):.1e}" for k, o in outputs.items() if k != "plain"
        },
        "bn_folded": str(paths["fast"].reports()[0]),
        "fast_layout": paths["fast"].layouts()[0],
        "rewritten": paths["fast"].rewrites()[0],
        "terms_read": "all" if fields is None else sorted(fields),
        "not_computed": paths["fast"].skipped()[0],
        "traced": paths["fast"].traced()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=list(CONFIGS), default="real")
    p.add_argument(
        "--task", nargs="+", choices=["parsing", "pose", "detection"], default=["parsing", "pose", "detection"]
    )
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=5, help="timed calls per variant, interleaved")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd fast copy")
    p.add_argument("--bf16", action="store_true", help="also time CPU bf16 autocast (not exact)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for task in args.task:
        config = REPO / "configs" / f"{CONFIGS[args.scale][task]}.yaml"
        teacher, size = teacher_of(config)
        fields = term_fields(config)
        for batch in args.batch:
            image = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))
            result = {"config": str(config.relative_to(REPO)), "teacher": type(teacher).__name__}
            result |= {"input": [batch, 3, *size], "threads": torch.get_num_threads()}
            result |= measure(teacher, image, fields, args)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
