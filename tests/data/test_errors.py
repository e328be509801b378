"""Bad input raises DatasetError naming the file (and the fix), or is skipped with a counted warning."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from kd_suite.data.coco import COCODetectionDataModule
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.errors import DatasetError
from kd_suite.data.lip import LIPDataModule
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.synth import write_gt_mat
from kd_suite.data.voc import VOCDataModule, read_voc_annotation

FALL = ["standing", "fallen"]


def _copy(synth_root: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(synth_root / name, tmp_path / name))


def _raises(path: Path | str, *words: str):  # noqa: ANN202 - pytest context manager
    return pytest.raises(DatasetError, match=re.escape(str(path)) + "".join(f"(?s:.*){re.escape(w)}" for w in words))


@pytest.mark.parametrize(
    "make",
    [
        lambda root: LIPDataModule(str(root)),
        lambda root: MPIIDataModule(str(root)),
        lambda root: CrowdPoseDataModule(str(root)),
        lambda root: VOCDataModule(str(root), class_names=FALL),
        lambda root: COCODetectionDataModule(str(root)),
    ],
)
def test_missing_root_folder(tmp_path: Path, make) -> None:  # noqa: ANN001
    with _raises(tmp_path / "absent", "not found", "Fix:"):
        make(tmp_path / "absent").setup("fit")


def test_lip_missing_corrupt_and_out_of_range_samples(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "LIP")
    ids = (root / "TrainVal_images" / "val_id.txt").read_text().split()
    images, labels = (
        root / "TrainVal_images" / "val_images",
        root / "TrainVal_parsing_annotations" / "val_segmentations",
    )
    (images / f"{ids[0]}.jpg").unlink()
    with _raises(images / f"{ids[0]}.jpg", "skip_bad=True"):
        LIPDataModule(str(root), num_workers=0).setup("validate")
    dm = LIPDataModule(str(root), num_workers=0, skip_bad=True)
    with pytest.warns(UserWarning, match="skipped bad sample #1"):
        dm.setup("validate")
    dataset = dm.datasets["val"]
    assert len(dataset) == len(ids) - 1
    (images / f"{ids[1]}.jpg").write_bytes(b"not a jpeg")  # found lazily, when loaded
    label = cv2.imread(str(labels / f"{ids[2]}.png"), cv2.IMREAD_UNCHANGED)
    label[0, 0], label[0, 1] = 20, 255
    cv2.imwrite(str(labels / f"{ids[2]}.png"), label)
    strict = LIPDataModule(str(root), num_workers=0, skip_bad=False)
    (images / f"{ids[0]}.jpg").write_bytes((images / f"{ids[3]}.jpg").read_bytes())
    strict.setup("validate")
    with _raises(images / f"{ids[1]}.jpg", "cannot be decoded"):
        strict.datasets["val"][1]
    with _raises(labels / f"{ids[2]}.png", "[20]", "out of range"):
        strict.datasets["val"][2]
    with pytest.warns(UserWarning, match="skipped bad sample"):
        sample = dm.datasets["val"][0]  # ids[1] is index 0 after skipping ids[0]: replaced by the next good one
    assert sample["id"] not in (ids[1], ids[2])


def test_lip_empty_id_list(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "LIP")
    (root / "TrainVal_images" / "val_id.txt").write_text("\n")
    with _raises(root / "TrainVal_images" / "val_id.txt", "empty"):
        LIPDataModule(str(root)).setup("validate")


def test_mpii_wrong_keypoint_count_empty_file_and_mat_mismatch(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "mpii")
    valid = root / "annot" / "valid.json"
    entries = json.loads(valid.read_text())
    entries[1]["joints"] = entries[1]["joints"][:15]
    valid.write_text(json.dumps(entries))
    with _raises(f"{valid} [entry 1]", "wrong keypoint count"):
        MPIIDataModule(str(root)).setup("validate")
    with pytest.warns(UserWarning, match="wrong keypoint count"):
        MPIIDataModule(str(root), skip_bad=True).setup("validate")
    mat = root / "annot" / "gt_valid.mat"
    write_gt_mat(mat, [{**e, "joints": [[1, 1]] * 16, "head_box": [0, 0, 5, 5]} for e in entries[:2]])
    entries[1]["joints"] += [[-1.0, -1.0]]
    valid.write_text(json.dumps(entries))
    with _raises(mat, "(2, 2, 2)", f"(2, 2, {len(entries)})"):
        MPIIDataModule(str(root)).setup("validate")
    valid.write_text("")
    with _raises(valid, "empty"):
        MPIIDataModule(str(root)).setup("validate")


def _edit_json(path: Path, edit) -> None:  # noqa: ANN001
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_crowdpose_bad_annotations(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "crowdpose")
    val = root / "json" / "crowdpose_val.json"
    original = val.read_text()
    _edit_json(val, lambda d: d["annotations"][0].update(keypoints=d["annotations"][0]["keypoints"][:39]))
    with _raises(f"{val} [annotation 0", "wrong keypoint count", "39 values"):
        CrowdPoseDataModule(str(root)).setup("validate")
    val.write_text(original)
    _edit_json(val, lambda d: d["annotations"][1].update(bbox=[10, 10, 0, 20]))
    with _raises(f"{val} [annotation 1", "degenerate bbox"):
        CrowdPoseDataModule(str(root)).setup("validate")
    val.write_text(original)
    _edit_json(val, lambda d: d["annotations"][0].update(bbox=[500, 10, 20, 20]))
    with _raises(f"{val} [annotation 0", "outside"):
        CrowdPoseDataModule(str(root)).setup("validate")
    val.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with _raises(val, "no images or no annotations"):
        CrowdPoseDataModule(str(root)).setup("validate")


def test_voc_class_not_in_list_degenerate_box_and_missing_xml(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "VOCdevkit")
    ann = root / "VOC2007" / "Annotations"
    first = (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    xml = ann / f"{first}.xml"
    original = xml.read_text()
    xml.write_text(re.sub(r"<name>\w+</name>", "<name>dog</name>", original, count=1))
    with _raises(xml, "'dog'", "class_names"):
        VOCDataModule(str(root), class_names=FALL).setup("validate")
    xml.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>0</xmax>", original, count=1))
    with _raises(xml, "degenerate box"):
        read_voc_annotation(xml, FALL)
    xml.write_text(re.sub(r"<ymax>\d+</ymax>", "<ymax>900</ymax>", original, count=1))
    with _raises(xml, "outside"):
        read_voc_annotation(xml, FALL)
    xml.unlink()
    with _raises(xml, "not found"):
        VOCDataModule(str(root), class_names=FALL).setup("validate")
    dm = VOCDataModule(str(root), class_names=FALL, skip_bad=True)
    with pytest.warns(UserWarning, match="skipped bad sample #1"):
        dm.setup("validate")
    assert first not in [r.image_id for r in dm.datasets["val"].records]


def test_coco_bad_annotations(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "coco")
    val = root / "annotations" / "instances_val.json"
    original = val.read_text()
    _edit_json(val, lambda d: d["annotations"][0].update(bbox=[5, 5, 0, 10], iscrowd=0))
    with _raises(f"{val} [annotation 0", "degenerate bbox"):
        COCODetectionDataModule(str(root)).setup("validate")
    dm = COCODetectionDataModule(str(root), skip_bad=True)
    with pytest.warns(UserWarning, match="degenerate bbox"):
        dm.setup("validate")
    val.write_text(original)
    _edit_json(val, lambda d: d["annotations"][0].update(category_id=7))
    with _raises(f"{val} [annotation 0", "category_id 7"):
        COCODetectionDataModule(str(root)).setup("validate")
    val.write_text(original)
    with _raises(val, "differ from class_names"):
        COCODetectionDataModule(str(root), class_names=["person"]).setup("validate")
    val.write_text("")
    with _raises(val, "empty"):
        COCODetectionDataModule(str(root)).setup("validate")


def test_corrupt_pose_image_is_lazy_and_skippable(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "mpii")
    entries = json.loads((root / "annot" / "valid.json").read_text())
    bad = root / "images" / entries[0]["image"]
    bad.write_bytes(np.zeros(10, np.uint8).tobytes())
    dm = MPIIDataModule(str(root), input_size=(64, 64))
    dm.setup("validate")
    with _raises(bad, "cannot be decoded"):
        dm.datasets["val"][0]
    dm = MPIIDataModule(str(root), input_size=(64, 64), skip_bad=True)
    dm.setup("validate")
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        sample = dm.datasets["val"][0]
    assert sample["meta"]["image"] != entries[0]["image"]
