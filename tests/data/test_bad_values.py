"""NaN/Inf/absurd keypoints, centres, scales and boxes raise DatasetError naming file and entry (or are skipped with a
count); an empty COCO annotation list warns, naming the file."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from kd_suite.data.coco import COCODetectionDataModule
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.errors import DatasetError
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.voc import VOCDataModule

NAN, INF = float("nan"), float("inf")


def _copy(synth_root: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(synth_root / name, tmp_path / name))


def _edit(path: Path, edit) -> None:  # noqa: ANN001
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity literals, as broken exporters do


def _raises(where: str, *words: str):  # noqa: ANN202
    return pytest.raises(DatasetError, match=re.escape(where) + "".join(f"(?s:.*){re.escape(w)}" for w in words))


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("joints", lambda j: [[NAN, NAN]] + j[1:], ("joints", "NaN or Inf")),
        ("joints", lambda j: [[1e9, 5.0]] + j[1:], ("joints", "absurd")),
        ("center", lambda c: [NAN, c[1]], ("center", "NaN or Inf")),
        ("scale", lambda s: INF, ("scale", "outside")),
        ("scale", lambda s: -s, ("scale", "outside")),
        ("joints_vis", lambda v: [NAN] + v[1:], ("joints_vis", "NaN or Inf")),
    ],
)
def test_mpii_non_finite_or_absurd_values(synth_root: Path, tmp_path: Path, key, value, words) -> None:  # noqa: ANN001
    root = _copy(synth_root, tmp_path, "mpii")
    valid = root / "annot" / "valid.json"
    _edit(valid, lambda d: d[1].update({key: value(d[1][key])}))
    with _raises(f"{valid} [entry 1]", *words):
        MPIIDataModule(str(root)).setup("validate")
    dm = MPIIDataModule(str(root), skip_bad=True)
    with pytest.warns(UserWarning, match=r"skipped bad sample #1"):
        dm.setup("validate")
    assert 1 not in [inst.meta["index"] for inst in dm.datasets["val"].records]


def test_crowdpose_nan_joints_and_boxes(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "crowdpose")
    val = root / "json" / "crowdpose_val.json"
    original = val.read_text()
    _edit(val, lambda d: d["annotations"][0]["keypoints"].__setitem__(0, NAN))
    with _raises(f"{val} [annotation 0", "keypoints", "NaN or Inf"):
        CrowdPoseDataModule(str(root)).setup("validate")
    val.write_text(original)
    _edit(val, lambda d: d["annotations"][1].update(bbox=[NAN, 10, 20, 20]))
    with _raises(f"{val} [annotation 1", "bbox", "NaN or Inf"):
        CrowdPoseDataModule(str(root)).setup("validate")
    dm = CrowdPoseDataModule(str(root), skip_bad=True)
    with pytest.warns(UserWarning, match=r"skipped bad sample #1"):
        dm.setup("validate")
    ids = json.loads(val.read_text())
    assert ids["annotations"][1]["id"] not in [inst.meta["ann_id"] for inst in dm.datasets["val"].records]
    assert all(math.isfinite(v) for inst in dm.datasets["val"].records for v in inst.meta["bbox"])


def test_coco_nan_box_and_absurd_image_size(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "coco")
    val = root / "annotations" / "instances_val.json"
    original = val.read_text()
    _edit(val, lambda d: d["annotations"][0].update(bbox=[5, NAN, 10, 10], iscrowd=0))
    with _raises(f"{val} [annotation 0", "bbox", "NaN or Inf"):
        COCODetectionDataModule(str(root)).setup("validate")
    val.write_text(original)
    _edit(val, lambda d: d["images"][0].update(width=INF))
    with _raises(f"{val} [image 0]", "image width"):
        COCODetectionDataModule(str(root)).setup("validate")


def test_coco_empty_annotation_list_warns_naming_the_file(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "coco")
    val = root / "annotations" / "instances_val.json"
    _edit(val, lambda d: d.update(annotations=[]))
    with pytest.warns(UserWarning, match=re.escape(str(val)) + r".*annotation list is empty.*background"):
        COCODetectionDataModule(str(root)).setup("validate")


def test_voc_nan_box(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path, "VOCdevkit")
    first = (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    xml = root / "VOC2007" / "Annotations" / f"{first}.xml"
    xml.write_text(re.sub(r"<xmin>\d+</xmin>", "<xmin>nan</xmin>", xml.read_text(), count=1))
    with _raises(f"{xml} [object 0]", "NaN or Inf"):
        VOCDataModule(str(root), class_names=["standing", "fallen"]).setup("validate")
