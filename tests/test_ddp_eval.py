"""Validation under 2 processes (ddp_spawn, gloo) equals 1 process on odd-sized val sets, for every task.

DistributedSampler pads an uneven set by repeating samples; the shared protocol drops them by ``batch.sample_id``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from kd_suite.data.lip import LIPDataModule
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.synth import synthesize
from kd_suite.data.voc import VOCDataModule
from kd_suite.tasks.detection import YOLOX, DetectionDistiller
from kd_suite.tasks.parsing import ParsingDistiller, ParsingNet, PSPParsingNet
from kd_suite.tasks.pose import HeatmapNet, PoseDistiller


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp_synth")
    for fmt, scenes in (("lip", 5), ("voc", 6), ("mpii", 3)):  # each gives an odd-sized val set (5 samples)
        synthesize(root, 2, scenes, size=(96, 96), formats=(fmt,), workers=0, progress=False)
    return root


def _loader_args() -> dict:
    return {"batch_size": 2, "num_workers": 0, "pin_memory": False}


def _parsing(root: Path) -> tuple[L.LightningModule, L.LightningDataModule, str]:
    torch.manual_seed(0)
    student = ParsingNet("test_resnet", 20, context_channels=8, fusion_channels=(8, 8, 8), head_channels=8)
    teacher = PSPParsingNet("test_resnet", 20, psp_channels=8, head_channels=8)
    module = ParsingDistiller(student, teacher=teacher)
    return module, LIPDataModule(str(root / "LIP"), input_size=(64, 64), **_loader_args()), "val/mIoU"


def _pose(root: Path) -> tuple[L.LightningModule, L.LightningDataModule, str]:
    torch.manual_seed(0)
    student = HeatmapNet("test_resnet", 16, deconv_channels=8, num_deconv=3)
    teacher = HeatmapNet("test_resnet", 16, deconv_channels=8, num_deconv=3)
    module = PoseDistiller(student, teacher=teacher, metric="pckh")
    return module, MPIIDataModule(str(root / "mpii"), input_size=(64, 64), **_loader_args()), "val/PCKh"


def _detection(root: Path) -> tuple[L.LightningModule, L.LightningDataModule, str]:
    torch.manual_seed(0)
    student, teacher = YOLOX(2, "s", depth=0.33, width=0.125), YOLOX(2, "s", depth=0.33, width=0.125)
    for net in (student, teacher):
        with torch.no_grad():
            for conv in net.head.reg_preds:  # boxes of a few strides: an untrained net then hits some people
                conv.bias[2:] = 1.5
    module = DetectionDistiller(student, teacher=teacher, score_thresh=0.0, max_det=300)
    dm = VOCDataModule(str(root / "VOCdevkit"), ("standing", "fallen"), input_size=(96, 96), **_loader_args())
    return module, dm, "val/mAP50"


def _validate(module: L.LightningModule, dm: L.LightningDataModule, devices: int) -> dict[str, float]:
    extra = {"strategy": "ddp_spawn"} if devices > 1 else {}
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **extra,
    )
    return trainer.validate(module, datamodule=dm, verbose=False)[0]


@pytest.mark.parametrize("build", [_parsing, _pose, _detection], ids=["parsing", "pose", "detection"])
def test_two_process_validation_equals_one_process(root, build):
    module, dm, key = build(root)
    dm.setup("validate")
    n = len(dm.val_dataloader().dataset)
    assert n % 2 == 1, f"the val set must be odd-sized to exercise the sampler's padding (got {n})"
    one = _validate(module, dm, 1)
    module.teacher_evaluated = False
    two = _validate(module, dm, 2)
    teacher_key = f"val/teacher_{key.split('/')[1]}"
    assert one[key] > 0 and one[teacher_key] > 0  # a zero score would hide duplicates
    for k in (key, teacher_key):
        assert two[k] == pytest.approx(one[k], abs=1e-6), k
