"""Every loader on real dataset files (MPII, CrowdPose, LIP, VOC; COCO via the CrowdPose json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from kd_suite.data.coco import COCODetectionDataModule
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.lip import LIPDataModule
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.schema import VOC_CLASSES
from kd_suite.data.synth import write_gt_mat
from kd_suite.data.voc import VOCDataModule, read_voc_annotation


def _to_original(batch) -> torch.Tensor:  # noqa: ANN001
    a = batch.inv_affine
    return torch.einsum("bij,bkj->bki", a[:, :, :2], batch.keypoints) + a[:, None, :, 2]  # (B, K, 2)


def _mpii_layout(real: Path, root: Path) -> list[dict]:
    (root / "annot").mkdir(parents=True)
    shutil.copytree(real / "mpii", root / "images", ignore=shutil.ignore_patterns("*.json"))
    entries = json.loads((real / "mpii" / "test_mpii.json").read_text())
    for name in ("train.json", "valid.json"):
        shutil.copy(real / "mpii" / "test_mpii.json", root / "annot" / name)
    return entries


def test_mpii_real_json_and_images(real_fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "mpii"
    entries = _mpii_layout(real_fixtures, root)
    heads = []
    for e in entries:  # a head box around head_top / upper_neck, 1-based like the joints
        (hx, hy), (nx, ny) = e["joints"][9], e["joints"][8]
        heads.append([min(hx, nx) - 10, min(hy, ny), max(hx, nx) + 10, max(hy, ny)])
    write_gt_mat(root / "annot" / "gt_valid.mat", [{**e, "head_box": h} for e, h in zip(entries, heads)])
    dm = MPIIDataModule(str(root), batch_size=len(entries), num_workers=0, input_size=(128, 128))
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch.image.shape == (5, 3, 128, 128) and batch.heatmaps.shape == (5, 16, 32, 32)
    assert dm.val_ann_file == root / "annot" / "gt_valid.mat"
    for i, e in enumerate(entries):
        vis = np.asarray(e["joints_vis"]) > 0
        assert batch.meta[i]["index"] == i and batch.meta[i]["image"] == e["image"] and batch.image_id[i] == -1
        back = _to_original(batch)[i].numpy()
        np.testing.assert_allclose(back[vis], np.asarray(e["joints"])[vis] - 1, atol=1e-3)  # 1-based → 0-based
        np.testing.assert_array_equal(batch.visible[i].numpy() > 0, vis)
        (x1, y1, x2, y2) = heads[i]
        assert batch.head_size[i].item() == pytest.approx(0.6 * np.hypot(x2 - x1, y2 - y1), rel=1e-6)
    train = next(iter(dm.train_dataloader()))
    assert train.image.shape[1:] == (3, 128, 128) and train.keypoints.dtype == torch.float32


def _crowdpose_layout(real: Path, root: Path) -> dict:
    (root / "json").mkdir(parents=True)
    (root / "images").mkdir()
    for p in (real / "crowdpose").glob("*.jpg"):
        shutil.copy(p, root / "images" / p.name)
    for split in ("train", "val"):
        shutil.copy(real / "crowdpose" / "test_crowdpose.json", root / "json" / f"crowdpose_{split}.json")
    return json.loads((real / "crowdpose" / "test_crowdpose.json").read_text())


def test_crowdpose_real_json_gt_boxes_and_detections(real_fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "crowdpose"
    gt = _crowdpose_layout(real_fixtures, root)
    dm = CrowdPoseDataModule(str(root), batch_size=16, num_workers=0, input_size=(64, 48))
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    people = [a for a in gt["annotations"] if not a["iscrowd"]]
    assert batch.image.shape == (len(people), 3, 64, 48) and batch.heatmaps.shape[1:] == (14, 16, 12)
    crowd = {im["id"]: im["crowdIndex"] for im in gt["images"]}
    back = _to_original(batch).numpy()
    for i, a in enumerate(people):
        kps = np.asarray(a["keypoints"], float).reshape(14, 3)
        lab = kps[:, 2] > 0
        assert batch.image_id[i] == a["image_id"] and batch.meta[i]["crowd_index"] == crowd[a["image_id"]]
        assert batch.box_score[i] == 1.0  # GT boxes
        np.testing.assert_allclose(back[i][lab], kps[lab, :2], atol=1e-3)
        np.testing.assert_array_equal(batch.visible[i].numpy() > 0, lab)
    assert dm.val_ann_file == root / "json" / "crowdpose_val.json"

    dets = json.loads((real_fixtures / "crowdpose" / "test_crowdpose_det_AP_40.json").read_text())
    dm = CrowdPoseDataModule(
        str(root),
        batch_size=64,
        num_workers=0,
        input_size=(64, 48),
        det_file=str(real_fixtures / "crowdpose" / "test_crowdpose_det_AP_40.json"),
        det_score_thr=0.5,
    )
    dm.setup("validate")
    kept = [d for d in dets if d["score"] >= 0.5]
    assert len(dm.datasets["val"]) == len(kept)
    scores = next(iter(dm.val_dataloader())).box_score.tolist()
    assert sorted(scores) == pytest.approx(sorted(d["score"] for d in kept), rel=1e-6)  # float32 box scores


def test_lip_real_images_with_jppnet_list(real_fixtures: Path, tmp_path: Path) -> None:
    """Real LIP val JPGs + the JPPNet list file as the id list; labels painted per image (left/right halves)."""
    root = tmp_path / "LIP"
    images = root / "TrainVal_images" / "val_images"
    labels = root / "TrainVal_parsing_annotations" / "TrainVal_parsing_annotations" / "val_segmentations"  # doubled
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    shutil.copy(real_fixtures / "lip" / "val_list_jppnet_format.txt", root / "TrainVal_images" / "val_id.txt")
    written = {}
    for p in sorted((real_fixtures / "lip" / "images").glob("*.jpg")):
        shutil.copy(p, images / p.name)
        h, w = cv2.imread(str(p)).shape[:2]
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 :, : w // 2], mask[h // 4 :, w // 2 :], mask[: h // 8] = 14, 15, 255
        cv2.imwrite(str(labels / f"{p.stem}.png"), mask)
        written[p.stem] = mask
    dm = LIPDataModule(str(root), batch_size=6, num_workers=0, input_size=(96, 64))
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch.image.shape == (6, 3, 96, 64) and batch.mask.shape == (6, 96, 64) and batch.mask.dtype == torch.int64
    order = [line.split("/")[-1][:-4] for line in (root / "TrainVal_images" / "val_id.txt").read_text().split()]
    assert batch.ids == order
    for sid, orig, size in zip(batch.ids, batch.orig_masks, batch.orig_sizes.tolist()):
        np.testing.assert_array_equal(orig.numpy(), written[sid])
        assert orig.dtype == torch.int64 and tuple(size) == written[sid].shape
    assert set(batch.mask.unique().tolist()) == {0, 14, 15, 255}


def test_voc_real_xml(real_fixtures: Path, tmp_path: Path) -> None:
    base = tmp_path / "VOCdevkit" / "VOC2007"
    shutil.copytree(real_fixtures / "voc" / "VOCdevkit" / "VOC2007", base)
    (base / "JPEGImages").mkdir()
    cv2.imwrite(str(base / "JPEGImages" / "000002.jpg"), np.full((500, 335, 3), 90, np.uint8))  # declared size
    ann = read_voc_annotation(base / "Annotations" / "000002.xml", VOC_CLASSES)
    np.testing.assert_array_equal(ann["boxes"], [[138, 199, 206, 300]])  # 1-based → 0-based, as YOLOX reads it
    assert ann["labels"].tolist() == [VOC_CLASSES.index("train")] and ann["size"] == (500, 335)
    dm = VOCDataModule(
        str(tmp_path / "VOCdevkit"), train_split="test", batch_size=1, num_workers=0, input_size=(128, 128)
    )
    dm.setup("fit")
    assert dm.val_ids == ["000002"] and dm.num_classes == 20
    batch = next(iter(dm.val_dataloader()))
    assert batch.image.shape == (1, 3, 128, 128) and batch.orig_size[0].tolist() == [500, 335]
    pad, scale = batch.pad[0].numpy(), batch.scale[0].item()
    back = (batch.boxes[0, 0].numpy() - np.array([*pad, *pad])) / scale
    np.testing.assert_allclose(back, ann["boxes"][0], atol=1e-3)
    train = next(iter(dm.train_dataloader()))
    assert train.boxes.shape[-1] == 4 and (train.labels[train.labels >= 0] == 18).all()


def test_coco_loader_on_real_crowdpose_json(real_fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(real_fixtures / "crowdpose" / "test_crowdpose.json", root / "annotations" / "instances_val.json")
    shutil.copytree(real_fixtures / "crowdpose", root / "val", ignore=shutil.ignore_patterns("*.json"))
    gt = json.loads((root / "annotations" / "instances_val.json").read_text())
    dm = COCODetectionDataModule(
        str(root), class_names=["person"], val_split="val", batch_size=2, num_workers=0, input_size=(160, 160)
    )
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    for i, image_id in enumerate(batch.image_ids):
        want = [a["bbox"] for a in gt["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
        valid = batch.labels[i] >= 0
        pad = np.array([*batch.pad[i].numpy(), *batch.pad[i].numpy()])
        back = (batch.boxes[i][valid].numpy() - pad) / batch.scale[i].item()
        want_xyxy = np.array([[x, y, min(x + w, 640), y + h] for x, y, w, h in want])
        np.testing.assert_allclose(back, want_xyxy, atol=1e-2)
