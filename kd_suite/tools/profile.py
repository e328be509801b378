"""``kd-suite profile --config X.yaml [--input-size H W]``: params, GFLOPs and CPU latency of student and teachers.

Models are built without their weights (no teacher checkpoint, no ``pretrained: true`` download): the profile does not
depend on them, so any config can be profiled before training and without network access.

GFLOPs follow the convention FLOPs = 2 × multiply-accumulates, counted by ``torch.utils.flop_counter`` for one image
(attention matmuls included). Latency is the median wall time of a batch-1 forward in eval mode on the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int]) -> int:
    """FLOPs (2 per multiply-accumulate) of one eval-mode forward at ``input_size`` (H, W), batch 1."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *input_size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def cpu_latency_ms(model: nn.Module, input_size: tuple[int, int], warmup: int = 3, runs: int = 10) -> float:
    """Median milliseconds of a batch-1 eval forward on the CPU."""
    was_training = model.training
    model.eval()
    x = torch.randn(1, 3, *input_size)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - start) * 1e3)
    model.train(was_training)
    return statistics.median(times)


def profile_model(model: nn.Module, input_size: tuple[int, int], runs: int = 10) -> dict[str, float | int | str]:
    """Params, GFLOPs and CPU latency of one model as a JSON-able dict."""
    flops = count_flops(model, input_size)
    return {
        "class": type(model).__name__,
        "params": count_params(model),
        "params_M": round(count_params(model) / 1e6, 3),
        "flops": flops,
        "gflops": round(flops / 1e9, 3),
        "cpu_latency_ms": round(cpu_latency_ms(model, input_size, runs=runs), 2),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kd-suite profile", description=__doc__.splitlines()[0])
    p.add_argument("--config", "-c", required=True, type=Path, help="a kd-suite fit config")
    p.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=None,
        help="input size (default: the model's input_size attribute, else 256 256)",
    )
    p.add_argument("--runs", type=int, default=10, help="timed forwards for the latency median")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from ..cli import KDCLI
    from ..models.pretrained import no_pretrained_weights

    # weights do not change the profile: skip teacher files and pretrained downloads, so a config can be profiled
    # before training and offline
    with no_pretrained_weights():
        cli = KDCLI(
            args=["--config", str(args.config), "--trainer.logger=false", "--model.init_args.teacher_ckpt=null"],
            run=False,
            exit_on_error=False,  # kd-suite's main prints a parse error in a few lines
        )
    module = cli.model
    size = tuple(args.input_size or getattr(module.student, "input_size", None) or (256, 256))
    report = {
        "config": str(args.config),
        "input_size": list(size),
        "flops_convention": "FLOPs = 2 x MACs (torch.utils.flop_counter), batch 1",
        "threads": torch.get_num_threads(),
        "student": profile_model(module.student, size, args.runs),
        "teachers": [profile_model(t, size, args.runs) for t in module.teachers],
    }
    print(json.dumps(report, indent=2))
    return 0
