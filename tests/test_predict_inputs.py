"""The inputs and small pieces of ``kd-suite predict``: label PNGs, photo ids, ``--boxes`` files, category ids."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from kd_suite.cli import main
from kd_suite.data.labels import read_label
from kd_suite.metrics.parsing import read_label_png
from kd_suite.photos import PhotoError, find_images, image_id
from kd_suite.tasks.detection.predict import CategoryError, category_ids
from kd_suite.tasks.parsing import save_label_png
from kd_suite.tasks.pose.boxes import BoxesError, read_person_boxes
from kd_suite.viz import lip_palette


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_palette_label_png_keeps_the_ids(tmp_path):
    ids = np.arange(20 * 3, dtype=np.uint8).reshape(6, 10) % 20
    ids[0, 0] = 255
    save_label_png(ids, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "P" and np.array_equal(np.asarray(im.getpalette(), np.uint8)[:60], lip_palette(20).ravel())
    np.testing.assert_array_equal(read_label_png(tmp_path / "a.png"), ids)  # kd-suite evaluate (PIL)
    np.testing.assert_array_equal(read_label(tmp_path / "a.png", 20), ids)  # the LIP loader (OpenCV otherwise)


def test_photo_ids_and_outputs_that_would_collide(tmp_path):
    assert image_id("000002") == 2 and image_id("2008_000001") == "2008_000001" and image_id("²") == "²"
    for name in ("b.JPG", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_images(tmp_path)] == ["a.png", "b.JPG"]
    assert find_images(tmp_path / "a.png") == [tmp_path / "a.png"]
    with pytest.raises(PhotoError, match="not an image file"):
        find_images(tmp_path / "notes.txt")
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(PhotoError, match="a.jpg and a.png .* would write the same output"):
        find_images(tmp_path)
    (tmp_path / "a.jpg").unlink()
    (tmp_path / "7.jpg").write_bytes(b"")
    (tmp_path / "007.png").write_bytes(b"")
    with pytest.raises(PhotoError, match="007.png and 7.jpg .* would write the same output"):
        find_images(tmp_path)


def test_person_boxes_by_category_name_id_and_score(tmp_path):
    dets = [
        {"image_id": 2, "category_id": 0, "bbox": [1, 2, 30, 40], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10], "score": 0.8},
        {"image_id": "2008_000001", "category_id": 0, "bbox": [0, 0, 8, 9], "score": 0.2},
        {"image_id": 7, "category_id": 0, "bbox": [0, 0, 0, 9], "score": 0.9},  # empty box: dropped
    ]
    _write(tmp_path / "detections.json", dets)
    images = [{"file_name": "000002.jpg", "id": 2}, {"file_name": "other.png", "id": 7}]
    _write(tmp_path / "images.json", {"images": images, "categories": [{"id": 0, "name": "standing"}]})
    photo = SimpleNamespace(stem="000002", id=image_id("000002"))
    standing = read_person_boxes(tmp_path / "detections.json", "standing", 0.3)
    assert standing.for_photo(photo) == [([1.0, 2.0, 30.0, 40.0], 0.9)] and standing.kept == 1
    assert len(read_person_boxes(tmp_path / "detections.json", "1", 0.3).for_photo(photo)) == 1
    everything = read_person_boxes(tmp_path / "detections.json", None, 0.0)  # no category named person: all kept
    assert everything.kept == 3 and everything.for_photo(SimpleNamespace(stem="2008_000001", id="2008_000001"))
    assert read_person_boxes(tmp_path / "detections.json", None).for_photo(SimpleNamespace(stem="x", id="x")) == []
    with pytest.raises(BoxesError, match=r"--box-category 'person'.*\['standing'\]"):
        read_person_boxes(tmp_path / "detections.json", "person")
    _write(tmp_path / "bad.json", [{"image_id": 1, "bbox": [0, 0, 5]}])
    with pytest.raises(BoxesError, match="entry 0 .* bbox of 4 finite numbers"):
        read_person_boxes(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(BoxesError, match="not a readable json"):
        read_person_boxes(tmp_path / "broken.json")


def test_help_and_coco_category_ids(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and all(option in out for option in ("--ckpt", "--boxes", "--input-size"))
    coco = SimpleNamespace(metric="coco", num_classes=2)
    assert category_ids(coco)[0] == [1, 2] and category_ids(SimpleNamespace(metric="voc", num_classes=2))[0] == [0, 1]
    gt = _write(tmp_path / "gt.json", {"categories": [{"id": 9, "name": "b"}, {"id": 3, "name": "a"}]})
    assert category_ids(coco, gt)[0] == [3, 9]  # class index = rank of the sorted category id, as in validation
    with pytest.raises(CategoryError, match="lists 2 categories but the detector has 3 classes"):
        category_ids(SimpleNamespace(metric="coco", num_classes=3), gt)
