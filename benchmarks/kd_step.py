"""The whole distillation step of each task, by part, in one run: where the time of a KD epoch goes.

For each task the student, teacher and distillation terms come from a shipped KD config (``--scale`` picks the demo,
synthetic or real-dataset one; teacher weights random, ``pretrained`` off) at the config's input size. The data are a
few scenes synthesised at that size in a temporary folder, read by the config's DataModule. One batch from its train
loader is then timed through:

    loader            train-loader batches, augmentations on (images/s, ms per batch)
    student           student forward + task loss + backward + optimizer step
    teacher_plain     the teachers' forward as before (no_grad, BatchNorms, NCHW)
    teacher_fast      the frozen-teacher fast path (kd_suite.fast_teacher: BNs folded, exact rewrites, only the output
                      fields the KD terms read, channels_last, parts traced into frozen TorchScript on CPU)
    kd_plain/kd_fast  the full KD step (student + teacher + task and KD terms + backward + step), plain loop

and prints the ratios: teacher plain/fast (target >= 1.3 on CPU), KD step plain/fast, kd_fast / (student +
teacher_fast) (what distillation adds beyond running both networks), KD step / student step, loader ms per batch /
KD step, and how far the KD terms move between the plain and the fast teacher (relative). ``--ablation`` also times
the parts of the fast path alone (untraced, every output field computed, fold only, + rewrites, + channels_last,
channels_last only, + inference_mode, + torch.compile with ``--compile``). Phases are interleaved call by call so
machine-load drift hits each alike; medians (and minima) are reported.

    python benchmarks/kd_step.py [--task all|parsing|pose|detection] [--scale demo|synthetic|real] [--batch 4]
        [--steps 6] [--threads 1] [--workers 2] [--ablation] [--compile] [--config PATH]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from kd_suite.data.synth import FORMAT_DIRS, synthesize
from kd_suite.fast_teacher import FastPathOptions, TeacherFastPath, max_relative_error

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "demo": {"parsing": "demo/parsing_dist", "pose": "demo/pose_distilpose", "detection": "demo/detection_fsd"},
    "synthetic": {
        "parsing": "parsing/synthetic_dist",
        "pose": "pose/synthetic_crowdpose_distilpose",
        "detection": "detection/synthetic_fsd",
    },
    "real": {"parsing": "parsing/lip_dist", "pose": "pose/crowdpose_distilpose", "detection": "detection/fall_fsd"},
}
FORMATS = {"LIPDataModule": "lip", "MPIIDataModule": "mpii", "CrowdPoseDataModule": "crowdpose"}
FORMATS |= {"VOCDataModule": "voc", "COCODetectionDataModule": "coco"}
_DATA_DROP = ("root", "synth_if_missing", "batch_size", "num_workers", "persistent_workers", "pin_memory")
_DATA_DROP += ("train_years", "train_split", "val_year", "val_split")


def instantiate(spec: Any) -> Any:
    """Build ``{class_path, init_args}`` specs recursively (``pretrained`` forced off: no downloads)."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        args = {k: instantiate(v) for k, v in (spec.get("init_args") or {}).items()}
        if "pretrained" in args:
            args["pretrained"] = False
        return getattr(importlib.import_module(module), name)(**args)
    if isinstance(spec, dict):
        return {k: instantiate(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [instantiate(v) for v in spec]
    return spec


def build(config: Path, tmp: Path, batch: int, workers: int) -> tuple[Any, Any, dict]:
    """The config's Distiller (no optimizer/scheduler/teacher file) and DataModule on freshly synthesised data."""
    cfg = yaml.safe_load(config.read_text())
    model = dict(cfg["model"])
    drop = ("optimizer", "scheduler", "teacher_ckpt")
    model["init_args"] = {k: v for k, v in model["init_args"].items() if k not in drop}
    torch.manual_seed(0)
    module = instantiate(model)
    data = cfg["data"]
    fmt = FORMATS[data["class_path"].rsplit(".", 1)[-1]]
    args = {k: v for k, v in data["init_args"].items() if k not in _DATA_DROP}
    size = tuple(args.get("input_size", (256, 256)))
    synthesize(tmp, max(2 * batch, 8), 2, size, seed=0, formats=[fmt], workers=workers, progress=False)
    args |= {"root": str(tmp / FORMAT_DIRS[fmt]), "batch_size": batch, "num_workers": workers}
    dm = instantiate({"class_path": data["class_path"], "init_args": args})
    return module, dm, {"input": [batch, 3, *size], "format": fmt}


def loader_rate(dm: Any, batches: int) -> tuple[float, float, Any]:
    """Train-loader images/s and ms per batch after one warm-up batch; also returns the first batch."""
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    first = next(it)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        count += b.image.shape[0]
    elapsed = time.perf_counter() - start
    return count / elapsed, 1e3 * elapsed / batches, first


def step(module: Any, batch: Any, opt: torch.optim.Optimizer, kd: bool) -> dict[str, float]:
    """One training step as ``Distiller.training_step`` does it (plain loop); returns the KD terms."""
    out = module.student(batch.image)
    loss = sum(module.task_loss(out, batch).values())
    terms = {}
    if kd:
        terms = module.distill_terms(out, module.teacher_forward(batch.image), batch)
        loss = loss + sum(terms.values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {k: float(v.detach()) for k, v in terms.items()}


def interleaved(phases: dict[str, Any], steps: int) -> dict[str, list[float]]:
    """ms per call of each phase, one call of every phase per iteration (machine-load drift hits all alike)."""
    for fn in phases.values():
        fn()  # warm-up (and, for the fast path, the lazy build of its copy)
    times: dict[str, list[float]] = {k: [] for k in phases}
    for _ in range(steps):
        for name, fn in phases.items():
            start = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def run_task(config: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        module, dm, info = build(config, Path(tmp), args.batch, args.workers)
        rate, ms_batch, batch = loader_rate(dm, args.loader_batches)
    module.train()
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    fast = TeacherFastPath()
    variants = {"teacher_plain": None, "teacher_fast": fast}
    if args.ablation:
        variants |= {
            "fast_untraced": TeacherFastPath(FastPathOptions(trace=False)),
            "fast_whole_output": TeacherFastPath(FastPathOptions(prune=False, trace=False)),
            "fold_only": TeacherFastPath(FastPathOptions(rewrite=False, channels_last=False, prune=False, trace=False)),
            "fold+rewrite": TeacherFastPath(FastPathOptions(channels_last=False, prune=False, trace=False)),
            "fold+channels_last": TeacherFastPath(FastPathOptions(rewrite=False, prune=False, trace=False)),
            "channels_last_only": TeacherFastPath(
                FastPathOptions(fold_bn=False, rewrite=False, prune=False, trace=False)
            ),
            "fast+inference_mode": TeacherFastPath(FastPathOptions(inference_mode=True)),
        }
        if args.compile:
            variants["fast+compile"] = TeacherFastPath(FastPathOptions(compile=True))

    def teacher(path: TeacherFastPath | None) -> Any:
        def run() -> None:
            module.teacher_fast = path
            module.teacher_forward(batch.image)

        return run

    def kd(path: TeacherFastPath | None) -> Any:
        def run() -> None:
            module.teacher_fast = path
            step(module, batch, opt, kd=True)

        return run

    phases = {name: teacher(path) for name, path in variants.items()}
    phases |= {"student": lambda: step(module, batch, opt, kd=False), "kd_plain": kd(None), "kd_fast": kd(fast)}
    samples = interleaved(phases, args.steps)
    med = {k: statistics.median(v) for k, v in samples.items()}
    low = {k: min(v) for k, v in samples.items()}
    with torch.no_grad():
        module.teacher_fast = None
        plain_out = module.teacher_forward(batch.image)
        module.teacher_fast = fast
        fast_out = module.teacher_forward(batch.image)
        s_out = module.student(batch.image)
        plain_terms = module.distill_terms(s_out, plain_out, batch)
        fast_terms = module.distill_terms(s_out, fast_out, batch)
    term_moves = {k: abs(float(fast_terms[k] - v)) / max(abs(float(v)), 1e-12) for k, v in plain_terms.items()}
    return {
        "config": str(config.relative_to(REPO)),
        **info,
        "teacher": [type(t).__name__ for t in module.teachers],
        "bn_folded": [str(r) for r in fast.reports()],
        "fast_layout": fast.layouts(),
        "rewritten": fast.rewrites(),
        "not_computed": fast.skipped(),
        "traced": fast.traced(),
        "median_ms": {k: round(v, 1) for k, v in med.items()},
        "min_ms": {k: round(v, 1) for k, v in low.items()},
        "loader_img_per_s": round(rate, 1),
        "loader_ms_per_batch": round(ms_batch, 1),
        "teacher_plain_over_fast": round(med["teacher_plain"] / med["teacher_fast"], 3),
        "teacher_plain_over_fast_by_min": round(low["teacher_plain"] / low["teacher_fast"], 3),
        "kd_plain_over_kd_fast": round(med["kd_plain"] / med["kd_fast"], 3),
        "kd_fast_over_parts": round(med["kd_fast"] / (med["student"] + med["teacher_fast"]), 3),
        "kd_plain_over_student": round(med["kd_plain"] / med["student"], 3),
        "kd_fast_over_student": round(med["kd_fast"] / med["student"], 3),
        "loader_over_kd_fast": round(ms_batch / med["kd_fast"], 3),
        "teacher_outputs_max_rel_diff": f"{max_relative_error(plain_out, fast_out):.2e}",
        "kd_terms_max_rel_diff": f"{max(term_moves.values(), default=0.0):.2e}",
        **(
            {
                f"teacher_plain_over_{k}": round(med["teacher_plain"] / med[k], 3)
                for k in variants
                if k != "teacher_plain"
            }
            if args.ablation
            else {}
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=["all", "parsing", "pose", "detection"], default="all")
    p.add_argument("--scale", choices=list(CONFIGS), default="synthetic")
    p.add_argument("--config", type=Path, default=None, help="a KD config instead of the --task/--scale one")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6, help="timed calls per phase, interleaved")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="loader workers")
    p.add_argument("--loader-batches", type=int, default=8)
    p.add_argument("--ablation", action="store_true", help="also time each part of the fast path alone")
    p.add_argument("--compile", action="store_true", help="with --ablation: also torch.compile the fast copy")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tasks = ["parsing", "pose", "detection"] if args.task == "all" else [args.task]
    configs = (
        [args.config.resolve()] if args.config else [REPO / "configs" / f"{CONFIGS[args.scale][t]}.yaml" for t in tasks]
    )
    for config in configs:
        result = {"threads": torch.get_num_threads(), "batch": args.batch, **run_task(config, args)}
        print(json.dumps(result, indent=2), flush=True)
        m = result["median_ms"]
        print(
            f"{result['config']}: teacher {m['teacher_plain']:.0f} -> {m['teacher_fast']:.0f} ms "
            f"(x{result['teacher_plain_over_fast']:.2f}, target >= 1.3); KD step {m['kd_plain']:.0f} -> "
            f"{m['kd_fast']:.0f} ms (x{result['kd_plain_over_kd_fast']:.2f}); KD/(student+teacher) "
            f"{result['kd_fast_over_parts']:.3f}; KD/student {result['kd_plain_over_student']:.2f} -> "
            f"{result['kd_fast_over_student']:.2f}; loader {result['loader_ms_per_batch']:.0f} ms/batch "
            f"({result['loader_over_kd_fast']:.2f} of a KD step)",
            flush=True,
        )


if __name__ == "__main__":
    main()
