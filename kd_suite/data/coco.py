"""COCO detection json (as YOLOX reads it): ``annotations/instances_<split>.json`` + ``<split>/`` images.

Class index = position of ``category_id`` in the sorted category ids; crowd annotations are dropped for training
and kept out of the boxes (evaluators read them from the GT file). See docs/datasets-and-metrics.md §1.6.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .common import first_existing, read_json
from .detection import DetectionDataModule, DetectionRecord
from .errors import BadSamples, DatasetError, missing
from .validate import as_record, check_box, coco_images, finite_number, integer_id, short


def coco_ann_file(root: Path, split: str) -> Path:
    """``<root>/annotations/instances_<split>.json`` (must exist)."""
    if not root.is_dir():
        raise missing(
            root, "COCO root folder", "point root at the folder holding annotations/ (or set synth_if_missing)"
        )
    path = root / "annotations" / f"instances_{split}.json"
    if not path.is_file():
        raise missing(path, f"COCO {split} annotation file", "put instances_<split>.json under annotations/")
    return path


def coco_categories(path: Path, data: Any = None) -> list[str]:
    """Category names in class-index order (sorted category id); ``data`` is the parsed json when already read."""
    data = read_json(path, "give a COCO instances json") if data is None else data
    cats = data.get("categories") if isinstance(data, dict) else None
    if not cats or not isinstance(cats, list):
        raise DatasetError(path, "no categories", "list the classes under 'categories'")
    fix = "each category needs an integer id and a name, ids distinct"
    by_id: dict[int, str] = {}
    for k, c in enumerate(cats):
        where = f"{path} [category {k}]"
        cat_id = integer_id(as_record(c, where, "category", fix).get("id"), where, "category id", fix)
        if not isinstance(c.get("name"), str) or cat_id in by_id:
            raise DatasetError(where, f"category {short(c)} has no name or repeats id {cat_id}", fix)
        by_id[cat_id] = c["name"]
    return [by_id[i] for i in sorted(by_id)]


def coco_records(
    root: Path, split: str, class_names: Sequence[str] | None, bad: BadSamples, train: bool
) -> list[DetectionRecord]:
    """Validated records of one split (images without annotations are kept)."""
    path = coco_ann_file(root, split)
    data = read_json(path, "give a COCO instances json")
    if not isinstance(data, dict) or not data.get("images"):
        raise DatasetError(path, "no images", "give a COCO instances json with 'images', 'annotations', 'categories'")
    names = coco_categories(path, data)
    if class_names is not None and list(class_names) != names:
        raise DatasetError(
            path,
            f"categories {names} differ from class_names {list(class_names)}",
            "pass class_names in the json's category-id order, or leave it unset",
        )
    index = {c["id"]: k for k, c in enumerate(sorted(data["categories"], key=lambda c: c["id"]))}
    images = coco_images(path, data["images"], bad)
    per_image: dict[int, list[tuple[list[float], int]]] = {i: [] for i in images}
    fix = "fix the annotation or pass skip_bad=True"
    annotations = data.get("annotations")
    if not isinstance(annotations, list):
        raise DatasetError(path, "'annotations' is missing or not a list", "give a COCO instances json")
    if not annotations:
        warnings.warn(
            f"{path}: the annotation list is empty, so every image trains as background; "
            "check that this is the instances json of the split",
            stacklevel=2,
        )
    for k, a in enumerate(annotations):
        where = f"{path} [annotation {k}, id {a.get('id') if isinstance(a, dict) else None}]"
        try:
            im = images[integer_id(as_record(a, where, "annotation", fix)["image_id"], where, "image_id", fix)]
            category = a["category_id"]
            if isinstance(category, bool) or not isinstance(category, int) or category not in index:
                raise DatasetError(
                    where,
                    f"category_id {short(category)} is not in the categories {names}",
                    "add the category to 'categories' or fix the annotation",
                )
            if a.get("iscrowd", 0):
                continue
            x, y, w, h = check_box(a["bbox"], int(im["width"]), int(im["height"]), where, fix)
            area = finite_number(a.get("area", w * h), where, "area", fix, -1e12, 1e12)
        except KeyError as err:
            bad.handle(DatasetError(where, f"missing key or unknown image_id ({err})", fix))
            continue
        except DatasetError as err:
            bad.handle(err)
            continue
        if train and area <= 0:
            continue  # YOLOX keeps only annotations with a positive area
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(float(im["width"]), x + w), min(float(im["height"]), y + h)
        per_image[int(a["image_id"])].append(([x1, y1, x2, y2], index[a["category_id"]]))
    image_dir = first_existing(
        [root / split, root / f"{split}2017", root / "images" / split],
        f"COCO {split} images",
        "put the images in <root>/<split>/",
    )
    out = []
    for image_id, im in images.items():
        image = image_dir / im.get("file_name", f"{image_id:012d}.jpg")
        if not image.is_file():
            bad.handle(missing(image, f"image {image_id} of {path}", "restore the image or pass skip_bad=True"))
            continue
        objs = per_image[image_id]
        boxes = np.asarray([b for b, _ in objs], np.float32).reshape(-1, 4)
        labels = np.asarray([c for _, c in objs], np.int64)
        meta = {"size": (int(im["height"]), int(im["width"]))}
        out.append(DetectionRecord(image, boxes, labels, np.zeros(len(labels), bool), meta, image_id=image_id))
    if not out:
        raise DatasetError(path, "no usable images", "check the image folder")
    return out


class COCODetectionDataModule(DetectionDataModule):
    """COCO-json detection as :class:`DetectionBatch` es with ``image_ids`` (COCO ids), ``orig_size`` and, for
    validation, the letterbox ``scale`` and ``pad`` (meta: ``size``).

    Args:
        root: folder holding ``annotations/`` and the split image folders (``instances_<split>.json`` and image
            folder ``<split>/`` or ``<split>2017/`` for each of ``train_split`` and ``val_split``).
        class_names: expected classes in category-id order; ``None`` reads them from the val json (and the synthetic
            set of ``synth_if_missing`` uses ``standing``/``fallen``).
        input_size: letterbox size (h, w).
        mosaic: 4-image mosaic when training.
        scale_range: random resize range relative to the letterbox size.
        **kwargs: :class:`~kd_suite.data.common.BaseDataModule` arguments (batch_size, num_workers, ...).
    """

    synth_format = "coco"

    def __init__(
        self,
        root: str = "data/coco",
        class_names: Sequence[str] | None = None,
        input_size: tuple[int, int] = (640, 640),
        mosaic: bool = False,
        scale_range: tuple[float, float] = (0.5, 1.5),
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, input_size=input_size, mosaic=mosaic, scale_range=scale_range, **kwargs)
        self._class_names = list(class_names) if class_names is not None else None

    @property
    def class_names(self) -> list[str]:
        """Class names in index order (read from the val json when not given)."""
        if self._class_names is None:
            self._class_names = coco_categories(coco_ann_file(self.root, self.val_split))
        return self._class_names

    @property
    def val_ann_file(self) -> Path:
        """GT json of the validation split (for COCO mAP)."""
        return coco_ann_file(self.root, self.val_split)

    def synth_options(self) -> dict[str, Any]:
        return {"class_names": self._class_names} if self._class_names else {}

    def records(self, train: bool, bad: BadSamples) -> list[DetectionRecord]:
        split = self.train_split if train else self.val_split
        return coco_records(self.root, split, self._class_names, bad, train)
