"""DataModules on generated data: batch types, shapes and dtypes; worker seeding; synth_if_missing; CLI and viz."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kd_suite.data.batch import DetectionBatch, ParsingBatch, PoseBatch
from kd_suite.data.coco import COCODetectionDataModule
from kd_suite.data.common import worker_init
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.lip import LIPDataModule, collate_parsing
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.voc import VOCDataModule
from kd_suite.tools.data import main as data_main
from kd_suite.viz import colorize_mask, draw_boxes, draw_pose, lip_palette, overlay_mask, save_grid


def test_parsing_batches(synth_root: Path) -> None:
    dm = LIPDataModule(str(synth_root / "LIP"), batch_size=3, num_workers=0, input_size=(64, 48))
    dm.setup("fit")
    assert dm.num_classes == 20 and dm.class_names[14] == "Left-arm" and (14, 15) in dm.flip_pairs
    for loader, train in ((dm.train_dataloader(), True), (dm.val_dataloader(), False)):
        batch = next(iter(loader))
        assert isinstance(batch, ParsingBatch)
        assert batch.image.shape == (3, 3, 64, 48) and batch.image.dtype == torch.float32
        assert batch.mask.shape == (3, 64, 48) and batch.mask.dtype == torch.int64
        values = set(batch.mask.unique().tolist())
        assert values <= set(range(20)) | {255}
        assert (batch.orig_masks is None) == train and len(batch.ids) == 3 and batch.orig_sizes.shape == (3, 2)


@pytest.mark.parametrize(
    ("cls", "folder", "size", "joints"),
    [(MPIIDataModule, "mpii", (64, 64), 16), (CrowdPoseDataModule, "crowdpose", (64, 48), 14)],
)
def test_pose_batches(synth_root: Path, cls, folder: str, size: tuple[int, int], joints: int) -> None:  # noqa: ANN001
    dm = cls(str(synth_root / folder), batch_size=4, num_workers=0, input_size=size)
    dm.setup("fit")
    assert dm.num_joints == joints and len(dm.flip_pairs) == 6 and len(dm.class_names) == joints
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        batch = next(iter(loader))
        assert isinstance(batch, PoseBatch)
        assert batch.image.shape == (4, 3, *size)
        assert batch.keypoints.shape == (4, joints, 2) and batch.keypoints.dtype == torch.float32
        assert batch.visible.shape == (4, joints) and set(batch.visible.unique().tolist()) <= {0.0, 1.0}
        assert batch.heatmaps.shape == (4, joints, size[0] // 4, size[1] // 4)
        assert batch.inv_affine.shape == (4, 2, 3)
        peaks = batch.heatmaps.flatten(2).max(-1).values  # labelled joints inside the crop peak near 1
        inside = (batch.keypoints >= 0).all(-1) & (batch.keypoints[..., 0] <= size[1] - 1)
        inside &= batch.keypoints[..., 1] <= size[0] - 1
        assert (peaks[(batch.visible > 0) & inside] > 0.8).all()
    assert batch.head_size.isfinite().all() if cls is MPIIDataModule else "crowd_index" in batch.meta[0]


@pytest.mark.parametrize("mosaic", [False, True])
def test_detection_batches(synth_root: Path, mosaic: bool) -> None:
    for dm in (
        VOCDataModule(
            str(synth_root / "VOCdevkit"),
            class_names=["standing", "fallen"],
            batch_size=3,
            num_workers=0,
            input_size=(96, 128),
            mosaic=mosaic,
        ),
        COCODetectionDataModule(
            str(synth_root / "coco"), batch_size=3, num_workers=0, input_size=(96, 128), mosaic=mosaic
        ),
    ):
        dm.setup("fit")
        assert dm.num_classes == 2 and list(dm.class_names) == ["standing", "fallen"]
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            batch = next(iter(loader))
            assert isinstance(batch, DetectionBatch)
            assert batch.image.shape == (3, 3, 96, 128)
            assert batch.boxes.shape[:2] == batch.labels.shape and batch.boxes.shape[-1] == 4
            assert batch.labels.dtype == torch.int64 and set(batch.labels.unique().tolist()) <= {-1, 0, 1}
            real = batch.boxes[batch.valid]
            assert (real[:, 2] > real[:, 0]).all() and (real[:, 3] > real[:, 1]).all()
            assert real[:, [0, 2]].min() >= 0 and real[:, [0, 2]].max() <= 128 and real[:, [1, 3]].max() <= 96
            assert (batch.boxes[~batch.valid] == 0).all()
        assert len(batch.image_ids) == 3 and batch.orig_size.shape == (3, 2)
        assert batch.scale.shape == (3,) and batch.pad.shape == (3, 2) and batch.difficult.shape == batch.labels.shape
    assert dm.val_ann_file.name == "instances_val.json"


def test_workers_draw_different_augmentations(tmp_path: Path) -> None:
    """Forked workers must not replay the same random stream (albumentations keeps its own generator)."""
    image = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), image)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((48, 48), np.uint8))
    from kd_suite.data.errors import BadSamples
    from kd_suite.data.lip import LIPDataset

    records = [("a", tmp_path / "a.jpg", tmp_path / "a.png")] * 8
    ds = LIPDataset(records, (48, 48), BadSamples(False, "t"), augment=True, flip=True)
    loader = DataLoader(
        ds,
        batch_size=1,
        num_workers=2,
        collate_fn=collate_parsing,
        worker_init_fn=worker_init,
        generator=torch.Generator().manual_seed(0),  # fixed worker seeds: one draw can leave an image untouched
    )
    images = [batch.image for batch in loader]  # workers alternate: samples 0, 2, 4, 6 and 1, 3, 5, 7
    replayed = [torch.equal(a, b) for a, b in zip(images[0::2], images[1::2])]
    assert not all(replayed), "both workers drew the same augmentations for every sample"


def test_synth_if_missing_writes_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "data" / "my_lip"
    dm = LIPDataModule(
        str(root),
        batch_size=2,
        num_workers=0,
        input_size=(32, 32),
        synth_if_missing=True,
        synth_num_train=3,
        synth_num_val=2,
    )
    dm.prepare_data()
    assert "writing a synthetic lip dataset" in capsys.readouterr().out
    assert (root / "TrainVal_images" / "train_id.txt").is_file() and not list(tmp_path.glob("data/.*"))
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).image.shape == (2, 3, 32, 32)


def test_viz_overlays(tmp_path: Path) -> None:
    palette = lip_palette()
    assert len({tuple(c) for c in palette[:20]}) == 20 and tuple(palette[0]) == (0, 0, 0)
    image = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:20, 10:20] = 14
    over = overlay_mask(image, mask)
    assert (over[15, 15] > 0).any() and (over[40, 40] == 0).all() and (colorize_mask(mask)[15, 15] == palette[14]).all()
    kps = np.array([[30.0, 10.0 + 2 * k] for k in range(16)])
    assert (draw_pose(image, kps, np.ones(16), "mpii") != 0).any()
    with pytest.raises(ValueError, match="14 joints"):
        draw_pose(image, kps, None, "crowdpose")
    boxed = draw_boxes(image, np.array([[5, 30, 50, 60], [0, 0, 0, 0]]), [1, -1], ["standing", "fallen"])
    assert (boxed[45, 5] != 0).any() and (boxed[45, 30] == 0).all()  # edge drawn, inside untouched
    path = save_grid([image, over, boxed], tmp_path / "g" / "grid.png", ["a", "b", "c"])
    assert cv2.imread(str(path)) is not None


def test_cli_synth_and_show(tmp_path: Path, synth_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        data_main(
            [
                "synth",
                "--out",
                str(tmp_path / "s"),
                "--num-train",
                "2",
                "--num-val",
                "2",
                "--size",
                "64",
                "80",
                "--formats",
                "coco,voc",
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "s" / "coco" / "annotations" / "instances_val.json").is_file()
    assert not (tmp_path / "s" / "LIP").exists()
    for fmt, folder in (("lip", "LIP"), ("mpii", "mpii"), ("crowdpose", "crowdpose"), ("voc", "VOCdevkit")):
        split = "test" if fmt == "voc" else "val"
        out = tmp_path / f"{fmt}.png"
        argv = [
            "show",
            "--format",
            fmt,
            "--root",
            str(synth_root / folder),
            "--out",
            str(out),
            "--n",
            "3",
            "--split",
            split,
            "--input-size",
            "64",
            "64",
        ]
        assert data_main(argv + (["--augmented"] if fmt == "lip" else [])) == 0
        assert cv2.imread(str(out)).shape[0] > 100
    shutil.rmtree(tmp_path / "s" / "coco" / "val")
    assert (
        data_main(
            ["show", "--format", "coco", "--root", str(tmp_path / "s" / "coco"), "--out", str(tmp_path / "c.png")]
        )
        == 2
    )
    assert "COCO val images" in capsys.readouterr().err


def test_alternative_layouts_schp_lip_and_mmpose_mpii(synth_root: Path, tmp_path: Path) -> None:
    flat = tmp_path / "schp"
    flat.mkdir()
    lip = synth_root / "LIP"
    shutil.copytree(lip / "TrainVal_images" / "val_images", flat / "val_images")
    shutil.copytree(lip / "TrainVal_parsing_annotations" / "val_segmentations", flat / "val_segmentations")
    shutil.copy(lip / "TrainVal_images" / "val_id.txt", flat / "val_id.txt")
    dm = LIPDataModule(str(flat), batch_size=2, num_workers=0, input_size=(32, 32))
    dm.setup("validate")
    assert len(dm.datasets["val"]) == len((flat / "val_id.txt").read_text().split())

    mm = tmp_path / "mpii_mm"
    (mm / "annotations").mkdir(parents=True)
    shutil.copytree(synth_root / "mpii" / "images", mm / "images")
    shutil.copy(synth_root / "mpii" / "annot" / "valid.json", mm / "annotations" / "mpii_val.json")
    shutil.copy(synth_root / "mpii" / "annot" / "gt_valid.mat", mm / "annotations" / "mpii_gt_val.mat")
    dm = MPIIDataModule(str(mm), batch_size=2, num_workers=0, input_size=(32, 32), val_split="valid")
    dm.setup("validate")
    assert dm.val_ann_file == mm / "annotations" / "mpii_gt_val.mat"
    assert (next(iter(dm.val_dataloader())).head_size > 0).all()


def test_datamodules_parse_with_jsonargparse() -> None:
    from jsonargparse import ArgumentParser

    for cls in (LIPDataModule, MPIIDataModule, CrowdPoseDataModule, VOCDataModule, COCODetectionDataModule):
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "data")
        cfg = parser.parse_args(["--data.root=x", "--data.input_size=[64, 64]"])
        assert tuple(cfg.data.input_size) == (64, 64)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(VOCDataModule, "data")
    cfg = parser.parse_args(
        ["--data.class_names=[standing, fallen]", "--data.train_years=[2007, 2012]", "--data.val_year=2007"]
    )
    dm = VOCDataModule(**vars(cfg.data))
    assert dm.class_names == ["standing", "fallen"] and dm.train_years == ["2007", "2012"] and dm.val_year == "2007"
