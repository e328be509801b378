"""Cost of distillation over its parts, measured in one process on the same models and batch.

    (a) student-only train step (forward + CE + backward + optimizer step, plain PyTorch)
    (b) teacher no-grad forward
    (c) full Distiller KD step with three terms, through Lightning (Trainer.fit)
    (d) the same KD step as a plain PyTorch loop

Prints c / (a + b) (target <= 1.10: distillation adds little beyond running both networks), c / d (Lightning
overhead, target <= 1.05) and the peak memory of each phase (CUDA: max allocated; CPU: peak RSS growth measured in a
fresh subprocess per phase).

    python benchmarks/kd_overhead.py [--size 128] [--batch 4] [--steps 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from kd_suite.data.batch import ParsingBatch
from kd_suite.losses import CWDLoss, DISTLoss, KDLoss
from kd_suite.tasks.parsing import ParsingDistiller, ParsingNet, PSPParsingNet

PHASES = ("student", "teacher", "lightning_kd", "raw_kd")


def build(size: int, batch: int, device: str) -> tuple[ParsingDistiller, ParsingBatch]:
    torch.manual_seed(0)
    student = ParsingNet(backbone="resnet18", num_classes=20)
    teacher = PSPParsingNet(backbone="resnet34", num_classes=20, output_stride=8, psp_channels=256)
    losses = {
        "dist": DISTLoss(weight=1.0),
        "kd": KDLoss(temperature=2.0, weight=1.0),
        "cwd": CWDLoss(temperature=4.0, weight=1.0, student_tap="embedding"),
    }
    module = ParsingDistiller(student, teacher=teacher, losses=losses).to(device)
    g = torch.Generator().manual_seed(0)
    data = ParsingBatch(
        image=torch.randn(batch, 3, size, size, generator=g).to(device),
        mask=torch.randint(0, 20, (batch, size, size), generator=g).to(device),
    )
    return module, data


class _Repeat(Dataset):
    def __init__(self, batch: ParsingBatch, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> ParsingBatch:
        return self.batch


class _StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._t)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_phase(phase: str, module: ParsingDistiller, batch: ParsingBatch, steps: int, device: str) -> list[float]:
    """Per-step seconds of one phase (after 3 warm-up steps)."""
    times = []
    if phase == "lightning_kd":
        timer = _StepTimer()
        trainer = L.Trainer(
            accelerator=device,
            devices=1,
            max_steps=steps + 3,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        trainer.fit(module, DataLoader(_Repeat(batch, steps + 3), batch_size=None))
        return timer.times[3:]
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    module.train()
    for i in range(steps + 3):
        _sync(device)
        start = time.perf_counter()
        if phase == "teacher":
            module.teacher_forward(batch.image)
        else:
            out = module.student(batch.image)
            loss = sum(module.task_loss(out, batch).values())
            if phase == "raw_kd":
                loss = loss + sum(module.distill_terms(out, module.teacher_forward(batch.image), batch).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return times


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class _PeakRSS:
    """Samples the resident set size every 2 ms on a thread; ``peak`` = highest RSS above the starting RSS (MiB)."""

    def __enter__(self) -> _PeakRSS:
        self.start, self.peak, self._run = _rss_mib(), 0.0, True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while self._run:
            self.peak = max(self.peak, _rss_mib() - self.start)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._run = False
        self._thread.join()


def peak_memory_mb(phase: str, args: argparse.Namespace) -> float:
    """CUDA: max allocated during the phase; CPU: peak RSS growth of a fresh process running only that phase."""
    if args.device == "cuda":
        module, batch = build(args.size, args.batch, args.device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_phase(phase, module, batch, 2, args.device)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    cmd = [sys.executable, __file__, "--phase", phase, "--size", str(args.size), "--batch", str(args.batch)]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: memory of one phase
    args = p.parse_args()
    if args.phase:  # child process: report peak RSS growth of this phase alone, in MiB
        module, batch = build(args.size, args.batch, "cpu")
        with _PeakRSS() as rss:
            run_phase(args.phase, module, batch, 2, "cpu")
        print(rss.peak)
        return
    module, batch = build(args.size, args.batch, args.device)
    # interleave repeated rounds so drift in machine load hits every phase alike
    samples: dict[str, list[float]] = {k: [] for k in PHASES}
    for _ in range(2):
        for phase in PHASES:
            samples[phase] += run_phase(phase, module, batch, args.steps // 2, args.device)
    med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    result = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "input": [args.batch, 3, args.size, args.size],
        "student_params_M": round(sum(p.numel() for p in module.student.parameters()) / 1e6, 2),
        "teacher_params_M": round(sum(p.numel() for p in module.teachers.parameters()) / 1e6, 2),
        "terms": list(module.losses),
        "median_ms": {k: round(v, 1) for k, v in med.items()},
        "kd_over_parts": round(med["lightning_kd"] / (med["student"] + med["teacher"]), 3),
        "lightning_over_raw": round(med["lightning_kd"] / med["raw_kd"], 3),
        "peak_mem_MiB": {k: round(peak_memory_mb(k, args), 1) for k in PHASES},
    }
    print(json.dumps(result, indent=2))
    print(f"KD step / (student step + teacher forward) = {result['kd_over_parts']:.3f}  (target <= 1.10)")
    print(f"Lightning KD step / raw-loop KD step      = {result['lightning_over_raw']:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
