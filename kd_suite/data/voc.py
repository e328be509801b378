"""PASCAL VOC layout (VOC2007/2012, or a fall-detection set with its own class list) for detection.

``VOCdevkit/VOC<year>/{Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt}``; XML boxes are
1-based inclusive pixels and are read as YOLOX does (``value - 1``). See docs/datasets-and-metrics.md §1.4.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .common import read_id_list
from .detection import DetectionDataModule, DetectionRecord
from .errors import BadSamples, DatasetError, missing
from .schema import VOC_CLASSES
from .validate import image_size


def read_voc_annotation(xml_path: str | Path, class_names: Sequence[str]) -> dict[str, Any]:
    """Parse and validate one VOC XML.

    Returns:
        ``boxes`` (N, 4) float32 0-based xyxy, ``labels`` (N,) int64 indices into ``class_names``, ``difficult``
        (N,) bool, ``size`` (h, w).
    """
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise missing(
            xml_path, "VOC annotation", "restore the XML, drop the id from the ImageSets list, or pass skip_bad=True"
        )
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, ValueError, LookupError) as err:  # LookupError: an unknown encoding declaration
        raise DatasetError(
            xml_path, f"not valid XML ({err})", "re-extract the annotation or pass skip_bad=True"
        ) from err
    size = root.find("size")
    try:
        width, height = image_size(float(size.findtext("width")), float(size.findtext("height")), str(xml_path), "")
    except (AttributeError, TypeError, ValueError) as err:
        raise DatasetError(
            xml_path, "missing or invalid <size><width>/<height>", "add the image size in pixels to the XML"
        ) from err
    boxes, labels, difficult = [], [], []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"{xml_path} [object {k}]"
        if name not in class_names:
            raise DatasetError(
                where,
                f"class {name!r} is not in class_names {list(class_names)}",
                "add it to class_names (in the dataset's class order) or fix the XML",
            )
        bb = obj.find("bndbox")
        try:
            x1, y1, x2, y2 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as err:
            raise DatasetError(where, "missing or invalid <bndbox> coordinates", "give xmin/ymin/xmax/ymax") from err
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise DatasetError(where, f"box ({x1}, {y1}, {x2}, {y2}) holds NaN or Inf", "fix the box coordinates")
        if x2 <= x1 or y2 <= y1:
            raise DatasetError(where, f"degenerate box ({x1}, {y1}, {x2}, {y2})", "fix the box or pass skip_bad=True")
        if x1 < 0 or y1 < 0 or x2 > width + 1 or y2 > height + 1:
            raise DatasetError(
                where,
                f"box ({x1}, {y1}, {x2}, {y2}) lies outside the {width}x{height} image (VOC boxes are 1-based)",
                "fix the box or the <size>, or pass skip_bad=True",
            )
        boxes.append([x1 - 1, y1 - 1, x2 - 1, y2 - 1])
        labels.append(class_names.index(name))
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, np.int64),
        "difficult": np.asarray(difficult, bool),
        "size": (height, width),
    }


def voc_ids(root: Path, year: str, split: str) -> list[str]:
    """Image ids of ``VOC<year>/ImageSets/Main/<split>.txt``."""
    if not root.is_dir():
        raise missing(root, "VOCdevkit folder", "point root at the VOCdevkit folder (or set synth_if_missing)")
    base = root / f"VOC{year}"
    if not base.is_dir():
        raise missing(base, f"VOC{year} folder", f"check the year, or place VOC{year}/ inside {root}")
    return read_id_list(base / "ImageSets" / "Main" / f"{split}.txt")


def voc_records(
    root: Path, year: str, split: str, class_names: Sequence[str], bad: BadSamples, keep_difficult: bool
) -> list[DetectionRecord]:
    """Validated records of one year/split; every XML is parsed up front, images are only checked to exist."""
    base = root / f"VOC{year}"
    out = []
    for image_id in voc_ids(root, year, split):
        image = base / "JPEGImages" / f"{image_id}.jpg"
        try:
            ann = read_voc_annotation(base / "Annotations" / f"{image_id}.xml", class_names)
            if not image.is_file():
                raise missing(image, f"image of VOC id {image_id}", "restore the image or pass skip_bad=True")
        except DatasetError as err:
            bad.handle(err)
            continue
        keep = np.ones(len(ann["labels"]), bool) if keep_difficult else ~ann["difficult"]
        meta = {"year": year, "size": ann["size"]}
        boxes, labels, difficult = ann["boxes"][keep], ann["labels"][keep], ann["difficult"][keep]
        out.append(DetectionRecord(image, boxes, labels, difficult, meta, image_id=image_id))
    if not out:
        raise DatasetError(base / "ImageSets" / "Main" / f"{split}.txt", "no usable images", "check the split list")
    return out


class VOCDataModule(DetectionDataModule):
    """VOC-layout detection as :class:`DetectionBatch` es with ``image_ids`` (VOC ids), ``orig_size``, ``difficult``
    and, for validation, the letterbox ``scale`` and ``pad`` (meta: ``year``, ``size``).

    ``synth_if_missing`` writes a synthetic VOC2007 set, which needs ``standing``/``fallen`` or ``person`` among
    ``class_names``.

    Args:
        root: the VOCdevkit folder.
        class_names: classes in index order (VOC's 20 by default; e.g. ``[standing, fallen]`` for fall detection).
        train_years: years whose ``train_split`` lists are concatenated for training (YOLOX: 2007 and 2012).
        train_split: ImageSets list for training.
        val_year: year of the validation list.
        val_split: ImageSets list for validation (``test`` for VOC2007 mAP).
        input_size: letterbox size (h, w).
        mosaic: 4-image mosaic when training.
        scale_range: random resize range relative to the letterbox size.
        keep_difficult: train on ``difficult`` objects too (YOLOX does).
        **kwargs: :class:`~kd_suite.data.common.BaseDataModule` arguments (batch_size, num_workers, ...).
    """

    synth_format = "voc"

    def __init__(
        self,
        root: str = "data/VOCdevkit",
        class_names: Sequence[str] = VOC_CLASSES,
        train_years: Sequence[int | str] = (2007,),
        train_split: str = "trainval",
        val_year: int | str = 2007,
        val_split: str = "test",
        input_size: tuple[int, int] = (640, 640),
        mosaic: bool = False,
        scale_range: tuple[float, float] = (0.5, 1.5),
        keep_difficult: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=root,
            input_size=input_size,
            train_split=train_split,
            val_split=val_split,
            mosaic=mosaic,
            scale_range=scale_range,
            **kwargs,
        )
        if len(set(class_names)) != len(class_names) or not class_names:
            raise ValueError(f"class_names must be a non-empty list of distinct names, got {class_names}")
        self.class_names = list(class_names)
        self.train_years, self.val_year = [str(y) for y in train_years], str(val_year)
        self.keep_difficult = keep_difficult

    def synth_options(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    @property
    def val_root(self) -> Path:
        """``VOCdevkit/VOC<val_year>``: its ``Annotations/`` hold the GT read by :func:`read_voc_annotation`."""
        return self.root / f"VOC{self.val_year}"

    @property
    def val_ann_file(self) -> Path:
        """The ImageSets list of the validation split."""
        return self.val_root / "ImageSets" / "Main" / f"{self.val_split}.txt"

    @property
    def val_ids(self) -> list[str]:
        """Image ids of the validation split, in list order."""
        return voc_ids(self.root, self.val_year, self.val_split)

    def records(self, train: bool, bad: BadSamples) -> list[DetectionRecord]:
        if not train:
            return voc_records(self.root, self.val_year, self.val_split, self.class_names, bad, keep_difficult=True)
        return [
            r
            for y in self.train_years
            for r in voc_records(self.root, y, self.train_split, self.class_names, bad, self.keep_difficult)
        ]
