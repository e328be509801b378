"""Loader throughput (images/s) of every kd-suite DataModule, and the time to synthesise the data they read.

Run: ``python benchmarks/data_throughput.py [--scenes 300] [--workers 2] [--batches 20] [--synth-bench 1000]``.
Writes a synthetic dataset at 256×256 into a temporary folder (or reads ``--root``), then times the training
loader (augmentations on) of each DataModule after one warm-up batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from kd_suite.data.coco import COCODetectionDataModule
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.lip import LIPDataModule
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.synth import synthesize
from kd_suite.data.voc import VOCDataModule


def throughput(dm, batches: int) -> float:  # noqa: ANN001 - any kd-suite DataModule
    """Training images (or person crops) per second, after one warm-up batch."""
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        count += batch.image.shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=None, help="existing synthetic root (default: generate one)")
    p.add_argument("--scenes", type=int, default=300, help="train scenes to generate")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=20, help="timed batches per DataModule")
    p.add_argument("--synth-bench", type=int, default=0, help="also time synthesising this many 256x256 scenes")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.synth_bench:
            start = time.perf_counter()
            n_val = args.synth_bench // 10
            synthesize(Path(tmp) / "bench", args.synth_bench - n_val, n_val, (256, 256), seed=0, workers=args.workers)
            print(
                f"synthesised {args.synth_bench} scenes at 256x256 in all 5 formats with {args.workers} workers: "
                f"{time.perf_counter() - start:.1f} s"
            )
        root = args.root or synthesize(Path(tmp) / "data", args.scenes, 8, (256, 256), seed=1, workers=args.workers)
        root = Path(root["lip"]).parent if isinstance(root, dict) else root
        common = {"batch_size": args.batch_size, "num_workers": args.workers, "persistent_workers": True}
        modules = [
            ("LIPDataModule", "256x256", LIPDataModule(str(root / "LIP"), input_size=(256, 256), **common)),
            ("MPIIDataModule", "256x256", MPIIDataModule(str(root / "mpii"), input_size=(256, 256), **common)),
            ("CrowdPoseDataModule", "256x192", CrowdPoseDataModule(str(root / "crowdpose"), **common)),
            (
                "CrowdPoseDataModule",
                "256x256",
                CrowdPoseDataModule(str(root / "crowdpose"), input_size=(256, 256), **common),
            ),
            (
                "VOCDataModule",
                "256x256",
                VOCDataModule(
                    str(root / "VOCdevkit"), class_names=["standing", "fallen"], input_size=(256, 256), **common
                ),
            ),
            (
                "VOCDataModule+mosaic",
                "256x256",
                VOCDataModule(
                    str(root / "VOCdevkit"),
                    class_names=["standing", "fallen"],
                    input_size=(256, 256),
                    mosaic=True,
                    **common,
                ),
            ),
            (
                "COCODetectionDataModule",
                "256x256",
                COCODetectionDataModule(str(root / "coco"), input_size=(256, 256), **common),
            ),
        ]
        print(f"\n{'DataModule':<26} {'input':>8} {'batch':>6} {'workers':>8} {'img/s':>8}")
        for name, size, dm in modules:
            print(f"{name:<26} {size:>8} {args.batch_size:>6} {args.workers:>8} {throughput(dm, args.batches):>8.0f}")


if __name__ == "__main__":
    main()
