"""Synthetic generator: formats, determinism, and write → read round trips against the rendered scenes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from kd_suite.data.schema import MPII_TO_CROWDPOSE
from kd_suite.data.synth import make_scene, render_scene, synthesize
from kd_suite.data.voc import read_voc_annotation

from .conftest import NUM_TRAIN, NUM_VAL, SEED, SIZE


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _scene(index: int):
    return render_scene(SEED, index, SIZE, empty=index == NUM_TRAIN + NUM_VAL - 1)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    synthesize(tmp_path / "a", 3, 2, (64, 64), seed=1, workers=0, progress=False)
    synthesize(tmp_path / "b", 3, 2, (64, 64), seed=1, workers=2, progress=False)
    synthesize(tmp_path / "c", 3, 2, (64, 64), seed=2, workers=0, progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) > 20 and a == b
    assert a != c


def test_unknown_format_and_classes_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        synthesize(tmp_path, 1, 1, formats=["yolo"], workers=0, progress=False)
    with pytest.raises(ValueError, match="standing"):
        synthesize(tmp_path, 1, 1, class_names=["cat", "dog"], workers=0, progress=False)


def test_easy_difficulty_is_simpler_and_keeps_the_label_protocol(tmp_path: Path) -> None:
    """``difficulty="easy"``: 1–2 upright people, no occluders, plain clothes, clutter-free background."""
    full = [render_scene(3, i, (96, 96)) for i in range(30)]
    easy = [render_scene(3, i, (96, 96), difficulty="easy") for i in range(30)]
    assert all(1 <= len(s.people) <= 2 for s in easy)
    assert max(len(s.people) for s in full) > 2
    assert not any(p.lying for s in easy for p in s.people) and any(p.lying for s in full for p in s.people)
    assert not any((s.person_map == 255).any() for s in easy)
    for s in easy:  # labels belong to drawn people only, and every person pixel is labelled
        assert ((s.labels > 0) == (s.person_map > 0)).all()

    def rough(s):  # mean absolute Laplacian of the background: clutter and textures make it larger
        grey = s.image.astype(np.float32).mean(-1)
        lap = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
        return lap.mean()

    assert np.mean([rough(s) for s in easy]) < np.mean([rough(s) for s in full])
    with pytest.raises(ValueError, match="difficulty"):
        synthesize(tmp_path, 1, 1, workers=0, progress=False, difficulty="hard")


def _seg_dist(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _chain_dist(points: np.ndarray, joints: np.ndarray, chain: tuple[int, ...]) -> np.ndarray:
    return np.min([_seg_dist(points, joints[i], joints[j]) for i, j in zip(chain[:-1], chain[1:])], axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_left_right_labels_follow_the_left_right_joints(seed: int) -> None:
    """Pixels labelled Left-arm/leg/shoe lie on the skeleton's left limb (MPII l_* joints), and vice versa."""
    scene = make_scene(np.random.default_rng(seed), (192, 192), 3)
    checked = 0
    # (left id, right id, left chain, right chain) with MPII joint indices
    limbs = [(14, 15, (13, 14, 15), (12, 11, 10)), (16, 17, (3, 4, 5), (2, 1, 0)), (18, 19, (4, 5), (1, 0))]
    for person in scene.people:
        mine = scene.person_map == person.index
        for left, right, lchain, rchain in limbs:
            for label, own, other in ((left, lchain, rchain), (right, rchain, lchain)):
                ys, xs = np.nonzero(mine & (scene.labels == label))
                if len(xs) < 30:
                    continue
                pts = np.stack([xs, ys], 1).astype(float)
                closer = _chain_dist(pts, person.body.joints, own) < _chain_dist(pts, person.body.joints, other)
                assert closer.mean() > 0.7, (label, closer.mean())
                checked += 1
    assert checked >= 6


def test_mpii_round_trip_and_gt_mat(synth_root: Path) -> None:
    entries = json.loads((synth_root / "mpii" / "annot" / "valid.json").read_text())
    assert entries and {"image", "center", "scale", "joints", "joints_vis"} <= set(entries[0])
    for e in entries:
        scene = _scene(int(e["image"][:9]) - 1)
        joints = np.asarray(e["joints"])
        vis = np.asarray(e["joints_vis"])
        errors = [np.abs((p.body.joints + 1)[vis > 0] - joints[vis > 0]).max() for p in scene.people]
        person = scene.people[int(np.argmin(errors))]
        assert min(errors) < 0.01
        assert (vis == person.in_image).all()
        assert (joints[vis == 0] == -1).all()
        assert (synth_root / "mpii" / "images" / e["image"]).is_file()
    mat = loadmat(str(synth_root / "mpii" / "annot" / "gt_valid.mat"))
    n = len(entries)
    assert mat["jnt_missing"].shape == (16, n) and mat["pos_gt_src"].shape == (16, 2, n)
    assert mat["headboxes_src"].shape == (2, 2, n)
    assert np.where(mat["dataset_joints"] == "head")[1][0] == 9  # HRNet's lookup
    np.testing.assert_allclose(mat["pos_gt_src"][:, :, 0], np.asarray(entries[0]["joints"]))
    np.testing.assert_array_equal(mat["jnt_missing"][:, 0], 1 - np.asarray(entries[0]["joints_vis"]))


def _crowd_index_loop(images: list[dict], anns: list[dict]) -> dict[int, float]:
    out = {}
    for im in images:
        people = [a for a in anns if a["image_id"] == im["id"]]
        ratios = []
        for a in people:
            own = sum(1 for k in range(14) if a["keypoints"][3 * k + 2] > 0)
            if own == 0:
                continue
            x, y, w, h = a["bbox"]
            inside = 0
            for b in people:
                if b is a:
                    continue
                for k in range(14):
                    px, py, v = b["keypoints"][3 * k : 3 * k + 3]
                    inside += int(v > 0 and x <= px <= x + w and y <= py <= y + h)
            ratios.append(inside / own)
        out[im["id"]] = round(sum(ratios) / len(ratios), 2) if ratios else 0.0
    return out


def test_crowdpose_json_fields_and_round_trip(synth_root: Path) -> None:
    data = json.loads((synth_root / "crowdpose" / "json" / "crowdpose_train.json").read_text())
    assert data["categories"][0]["keypoints"][12:] == ["head", "neck"]
    expected = _crowd_index_loop(data["images"], data["annotations"])
    for im in data["images"]:
        assert im["crowdIndex"] == pytest.approx(expected[im["id"]])
    for a in data["annotations"]:
        assert "area" not in a and a["iscrowd"] == 0 and len(a["keypoints"]) == 42
        kps = np.asarray(a["keypoints"], float).reshape(14, 3)
        assert a["num_keypoints"] == int((kps[:12, 2] > 0).sum())
        scene = _scene(a["image_id"] - 100000)
        errors = [
            np.abs(p.body.joints[list(MPII_TO_CROWDPOSE)][kps[:, 2] > 0] - kps[kps[:, 2] > 0, :2]).max(initial=0)
            for p in scene.people
        ]
        person = scene.people[int(np.argmin(errors))]
        assert min(errors) < 0.01
        assert ((kps[:, 2] > 0) == person.in_image[list(MPII_TO_CROWDPOSE)]).all()
        x1, y1, x2, y2 = person.box
        assert a["bbox"] == [x1, y1, x2 - x1 + 1, y2 - y1 + 1]


def test_voc_xml_fields_and_boxes(synth_root: Path) -> None:
    base = synth_root / "VOCdevkit" / "VOC2007"
    main = base / "ImageSets" / "Main"
    trainval, test = main.joinpath("trainval.txt").read_text().split(), main.joinpath("test.txt").read_text().split()
    assert (
        sorted(main.joinpath("train.txt").read_text().split() + main.joinpath("val.txt").read_text().split())
        == trainval
    )
    assert trainval and test and not set(trainval) & set(test)
    for image_id in trainval + test:
        root = ET.parse(base / "Annotations" / f"{image_id}.xml").getroot()
        for tag in (
            "folder",
            "filename",
            "source/database",
            "owner/name",
            "size/width",
            "size/height",
            "size/depth",
            "segmented",
        ):
            assert root.find(tag) is not None, tag
        for obj in root.iter("object"):
            for tag in ("name", "pose", "truncated", "difficult", "bndbox/xmin", "bndbox/ymax"):
                assert obj.find(tag) is not None, tag
        ann = read_voc_annotation(base / "Annotations" / f"{image_id}.xml", ["standing", "fallen"])
        scene = _scene(int(image_id) - 1)
        assert ann["size"] == SIZE
        for box, label in zip(ann["boxes"], ann["labels"]):
            match = [p for p in scene.people if np.array_equal(box, np.asarray(p.box, np.float32))]
            assert len(match) == 1
            ys, xs = np.nonzero(scene.person_map == match[0].index)  # tight around the visible pixels
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == tuple(box)
            assert label == int(match[0].lying)


def test_coco_json_conventions(synth_root: Path) -> None:
    for split in ("train", "val"):
        data = json.loads((synth_root / "coco" / "annotations" / f"instances_{split}.json").read_text())
        assert "info" in data and "licenses" in data
        assert [c["name"] for c in data["categories"]] == ["standing", "fallen"]
        assert all(a["area"] > 0 for a in data["annotations"])
        for a in data["annotations"]:
            if a["iscrowd"]:
                continue
            scene = _scene(a["image_id"] - 1)
            x, y, w, h = a["bbox"]
            match = [p for p in scene.people if p.box == (x, y, x + w - 1, y + h - 1)]
            assert len(match) == 1 and a["area"] == (scene.person_map == match[0].index).sum()
    val = json.loads((synth_root / "coco" / "annotations" / "instances_val.json").read_text())
    assert sum(a["iscrowd"] for a in val["annotations"]) == 1
    annotated = {a["image_id"] for a in val["annotations"]}
    assert any(im["id"] not in annotated for im in val["images"])  # an image without annotations


def test_lip_crops_masks_and_reversed_labels(synth_root: Path) -> None:
    lip = synth_root / "LIP"
    ids = (lip / "TrainVal_images" / "val_id.txt").read_text().split()
    assert ids and all(len(i.split("_")) == 2 for i in ids)
    for sid in ids:
        label = Image.open(lip / "TrainVal_parsing_annotations" / "val_segmentations" / f"{sid}.png")
        image = Image.open(lip / "TrainVal_images" / "val_images" / f"{sid}.jpg")
        assert label.mode == "L" and label.size == image.size
        mask = np.asarray(label)
        assert mask.max() <= 19
        scene = _scene(int(sid.split("_")[0]) - 100000)
        hist = np.bincount(mask[mask > 0], minlength=20)
        person_hists = [np.bincount(scene.labels[scene.person_map == p.index], minlength=20) for p in scene.people]
        assert any(np.array_equal(hist[1:], h[1:]) for h in person_hists)  # the whole visible person, nothing else
    swap = np.arange(256)
    swap[[14, 15, 16, 17, 18, 19]] = [15, 14, 17, 16, 19, 18]
    for sid in (lip / "TrainVal_images" / "train_id.txt").read_text().split():
        ann = lip / "TrainVal_parsing_annotations"
        mask = np.asarray(Image.open(ann / "train_segmentations" / f"{sid}.png"))
        rev = np.asarray(Image.open(ann / "train_segmentations_reversed" / f"{sid}.png"))
        np.testing.assert_array_equal(rev, swap[mask[:, ::-1]])
