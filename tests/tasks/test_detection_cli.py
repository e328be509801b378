"""Every synthetic detection config trains in-process through the CLI (fast_dev_run), KD configs load a teacher
checkpoint written by the teacher config, and the COCO metric path runs on a synthetic COCO set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from kd_suite.cli import KDCLI
from kd_suite.data.coco import COCODetectionDataModule
from kd_suite.data.voc import VOCDataModule

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "detection"
SYNTHETIC = sorted(p.name for p in CONFIGS.glob("synthetic_*.yaml"))
KD_TERMS = {"fsd": "fsd_p3", "fsd_faithful": "fsd_p5", "fgd": "fgd_p4", "cwd": "cwd_p3"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("det_cli") / "VOCdevkit"
    VOCDataModule(
        str(root), ["standing", "fallen"], synth_if_missing=True, synth_num_train=4, synth_num_val=3
    ).prepare_data()
    return root


def run(config: str, *extra: str) -> KDCLI:
    args = ["fit", "--config", str(CONFIGS / config), "--trainer.fast_dev_run=1", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *extra]  # fmt: skip
    return KDCLI(args=args)


def data_args(root: Path) -> list[str]:
    return [f"--data.init_args.root={root}", "--data.init_args.num_workers=0", "--data.init_args.batch_size=2",
            "--data.init_args.pin_memory=false"]  # fmt: skip


def test_the_synthetic_recipe_is_complete():
    stems = {Path(n).stem.removeprefix("synthetic_") for n in SYNTHETIC}
    assert stems == {"teacher", "student", *KD_TERMS}
    for name in SYNTHETIC:
        cfg = yaml.safe_load((CONFIGS / name).read_text())
        assert cfg["data"]["init_args"]["synth_if_missing"] is True
        assert cfg["data"]["init_args"]["root"] == "data/synthetic/VOCdevkit"
        assert 128 <= cfg["data"]["init_args"]["input_size"][0] <= 160


@pytest.mark.parametrize("config", SYNTHETIC)
def test_synthetic_config_fast_dev_run(config, voc_root):
    kd = "teacher_ckpt" in (CONFIGS / config).read_text()
    cli = run(config, *data_args(voc_root), *(["--model.init_args.teacher_ckpt=null"] if kd else []))
    metrics = cli.trainer.callback_metrics
    assert "val/mAP50" in metrics and torch.isfinite(metrics["train/total"])
    for name in ("iou", "obj", "cls"):
        assert torch.isfinite(metrics[f"train/task/{name}"])
    kind = Path(config).stem.removeprefix("synthetic_")
    if kind in KD_TERMS:
        assert torch.isfinite(metrics[f"train/kd/{KD_TERMS[kind]}"]) and "val/teacher_mAP50" in metrics
        assert len(cli.model.losses) == 3 and not any(p.requires_grad for p in cli.model.teachers.parameters())


def test_kd_config_loads_the_teacher_written_by_the_teacher_config(voc_root, tmp_path):
    teacher = run("synthetic_teacher.yaml", *data_args(voc_root))
    ckpt = tmp_path / "teacher.ckpt"
    teacher.trainer.save_checkpoint(ckpt)
    kd = run("synthetic_fsd.yaml", *data_args(voc_root), f"--model.init_args.teacher_ckpt={ckpt}")
    loaded = kd.model.teachers[0].state_dict()
    for key, value in teacher.model.student.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert kd.model.teacher_meta[0]["sha256"]


def test_coco_metric_on_a_synthetic_coco_set(tmp_path):
    root = tmp_path / "coco"
    COCODetectionDataModule(str(root), synth_if_missing=True, synth_num_train=4, synth_num_val=3).prepare_data()
    data = {"class_path": "kd_suite.data.coco.COCODetectionDataModule",
            "init_args": {"root": str(root), "input_size": [128, 128], "batch_size": 2, "num_workers": 0,
                          "pin_memory": False}}  # fmt: skip
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    cli = run("synthetic_student.yaml", f"--data={tmp_path / 'data.yaml'}", "--model.init_args.metric=coco")
    metrics = cli.trainer.callback_metrics
    assert {"val/mAP", "val/mAP50", "val/mAP75"} <= set(metrics)
    assert cli.model.coco_gt == root / "annotations" / "instances_val.json"
