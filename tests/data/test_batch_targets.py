"""The collate functions fill the typed evaluation targets of the batches from the files on disk; meta holds none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.io import loadmat

from kd_suite.data.batch import DetectionBatch, ParsingBatch, PoseBatch, move_batch
from kd_suite.data.coco import COCODetectionDataModule
from kd_suite.data.common import read_id_list
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.lip import LIPDataModule, lip_split_paths
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.voc import VOCDataModule, read_voc_annotation, voc_ids

#: meta keys that used to carry evaluation targets; no batch's meta may hold them any more
TARGET_KEYS = {"orig_mask", "orig_size", "id", "head_size", "score", "image_id", "pad", "difficult"}
CLASSES = ["standing", "fallen"]


def _loader_args(batch_size: int) -> dict:
    return {"batch_size": batch_size, "num_workers": 0, "pin_memory": False}


def test_parsing_targets_are_the_original_label_files(synth_root: Path) -> None:
    root = synth_root / "LIP"
    _, label_dir, id_file = lip_split_paths(root, "val")
    dm = LIPDataModule(str(root), input_size=(48, 40), **_loader_args(3))
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert isinstance(batch, ParsingBatch) and batch.ids == read_id_list(id_file)[:3]
    assert batch.orig_sizes.dtype == torch.int64 and batch.orig_sizes.shape == (3, 2)
    by_id = {p.stem: p for p in label_dir.glob("*.png")}
    for sid, orig, size in zip(batch.ids, batch.orig_masks, batch.orig_sizes.tolist()):
        want = cv2.imread(str(by_id[sid]), cv2.IMREAD_UNCHANGED)  # (H0, W0) uint8
        assert orig.dtype == torch.int64 and tuple(orig.shape) == tuple(size) == want.shape
        np.testing.assert_array_equal(orig.numpy(), want)
    train = next(iter(dm.train_dataloader()))
    assert train.orig_masks is None and train.orig_sizes.shape == (3, 2) and len(train.ids) == 3
    for b in (batch, train):
        assert not TARGET_KEYS & set(b.meta[0]) and "path" in b.meta[0]


def test_mpii_targets_are_the_gt_mat_head_sizes(synth_root: Path) -> None:
    root = synth_root / "mpii"
    dm = MPIIDataModule(str(root), input_size=(64, 64), **_loader_args(64))
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    boxes = loadmat(str(root / "annot" / "gt_valid.mat"))["headboxes_src"]  # (2, 2, N)
    heads = 0.6 * np.linalg.norm(boxes[1] - boxes[0], axis=0)  # (N,)
    rows = [m["index"] for m in batch.meta]  # json row of each crop
    assert isinstance(batch, PoseBatch) and batch.head_size.dtype == torch.float32
    np.testing.assert_allclose(batch.head_size.numpy(), heads[rows], rtol=1e-6)
    assert (batch.image_id == -1).all() and batch.image_id.dtype == torch.int64  # MPII has no integer image ids
    assert (batch.box_score == 1.0).all()
    entries = json.loads((root / "annot" / "valid.json").read_text())
    assert [m["image"] for m in batch.meta] == [entries[r]["image"] for r in rows]
    train = next(iter(dm.train_dataloader()))
    assert train.head_size.isnan().all()  # gt_valid.mat holds the val split's head boxes only
    for b in (batch, train):
        assert not TARGET_KEYS & set(b.meta[0])


def test_crowdpose_targets_are_the_json_image_ids(synth_root: Path) -> None:
    root = synth_root / "crowdpose"
    dm = CrowdPoseDataModule(str(root), input_size=(64, 48), **_loader_args(64))
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    gt = json.loads(dm.val_ann_file.read_text())
    by_ann = {a["id"]: a["image_id"] for a in gt["annotations"]}
    files = {im["id"]: im["file_name"] for im in gt["images"]}
    want = [by_ann[m["ann_id"]] for m in batch.meta]
    assert batch.image_id.tolist() == want and (batch.box_score == 1.0).all()
    assert [m["image"] for m in batch.meta] == [files[i] for i in want]
    assert batch.head_size.isnan().all() and not TARGET_KEYS & set(batch.meta[0])


def _letterbox(orig: tuple[int, int], size: tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """Resize factor and (x, y) padding of a centred letterbox of an (h, w) image into ``size``."""
    (h0, w0), (h, w) = orig, size
    r = min(h / h0, w / w0)
    return r, ((w - max(1, round(w0 * r))) // 2, (h - max(1, round(h0 * r))) // 2)


def _check_voc(batch: DetectionBatch, base: Path, letterboxed: bool, size: tuple[int, int]) -> None:
    assert batch.difficult.dtype == torch.bool and batch.difficult.shape == batch.labels.shape
    assert not batch.difficult[~batch.valid].any()  # padded rows are False
    for i, image_id in enumerate(batch.image_ids):
        ann = read_voc_annotation(base / "Annotations" / f"{image_id}.xml", CLASSES)
        h0, w0 = cv2.imread(str(base / "JPEGImages" / f"{image_id}.jpg")).shape[:2]
        assert batch.orig_size[i].tolist() == [h0, w0]
        if letterboxed:  # every object is kept, in annotation order
            n = len(ann["labels"])
            np.testing.assert_array_equal(batch.difficult[i, :n].numpy(), ann["difficult"])
            np.testing.assert_array_equal(batch.labels[i, :n].numpy(), ann["labels"])
            r, pad = _letterbox((h0, w0), size)
            assert batch.scale[i].item() == pytest.approx(r, rel=1e-6) and batch.pad[i].tolist() == list(pad)
            back = (batch.boxes[i, :n] - batch.pad[i].repeat(2)) / batch.scale[i]  # (n, 4) original pixels
            np.testing.assert_allclose(back.numpy(), ann["boxes"], atol=1e-3)


def _with_difficult_objects(synth_root: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic VOC set in which exactly the ``fallen`` objects are difficult, so that under any
    augmentation a box's flag must equal ``label == fallen``."""
    root = tmp_path / "VOCdevkit"
    shutil.copytree(synth_root / "VOCdevkit", root)
    for xml in (root / "VOC2007" / "Annotations").glob("*.xml"):
        objects = xml.read_text().split("<object>")
        marked = [o.replace("<difficult>0</difficult>", "<difficult>1</difficult>") if "<name>fallen<" in o else o
                  for o in objects]  # fmt: skip
        xml.write_text("<object>".join(marked))
    return root


def test_voc_targets_follow_the_annotations_and_the_letterbox(synth_root: Path, tmp_path: Path) -> None:
    root, size = _with_difficult_objects(synth_root, tmp_path), (96, 128)
    base = root / "VOC2007"
    dm = VOCDataModule(str(root), CLASSES, input_size=size, augment=False, flip=False, mosaic=False,
                       **_loader_args(4))  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch.image_ids == voc_ids(root, "2007", "test")[:4] and batch.scale.dtype == torch.float32
    assert (~batch.valid).any(), "images with fewer boxes leave padded rows"
    _check_voc(batch, base, letterboxed=True, size=size)
    assert batch.difficult.any() and (batch.difficult != batch.valid).any()  # some difficult objects, not all
    plain = next(iter(dm.train_dataloader()))  # training without augmentation is letterboxed too
    assert plain.scale is not None
    _check_voc(plain, base, letterboxed=True, size=size)
    augmented = VOCDataModule(str(root), CLASSES, input_size=size, mosaic=True, **_loader_args(4))
    augmented.setup("fit")
    train = next(iter(augmented.train_dataloader()))
    assert train.scale is None and train.pad is None  # no single letterbox under random placement
    _check_voc(train, base, letterboxed=False, size=size)
    for b in (batch, plain, train):  # the flags travel with their boxes through every transform
        assert torch.equal(b.difficult, b.valid & (b.labels == CLASSES.index("fallen")))
    for b in (batch, train):
        assert not TARGET_KEYS & set(b.meta[0]) and "year" in b.meta[0]


def test_coco_targets_are_the_json_image_ids(synth_root: Path) -> None:
    root = synth_root / "coco"
    dm = COCODetectionDataModule(str(root), input_size=(96, 128), **_loader_args(4))
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    gt = json.loads(dm.val_ann_file.read_text())
    sizes = {im["id"]: [im["height"], im["width"]] for im in gt["images"]}
    assert all(isinstance(i, int) for i in batch.image_ids)
    assert batch.orig_size.tolist() == [sizes[i] for i in batch.image_ids]
    assert not batch.difficult.any() and batch.scale.shape == (4,) and not TARGET_KEYS & set(batch.meta[0])


def test_move_batch_moves_tensor_targets_and_keeps_lists_on_the_host() -> None:
    masks = [torch.zeros(5, 7, dtype=torch.long)]
    batch = ParsingBatch(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), ids=["a"],
                         orig_sizes=torch.tensor([[5, 7]]), orig_masks=masks)  # fmt: skip
    moved = move_batch(batch, torch.device("meta"))
    assert moved.image.is_meta and moved.orig_sizes.is_meta
    assert moved.orig_masks is masks and not masks[0].is_meta and moved.ids == ["a"]
