"""LIP (Look Into Person) single-person human parsing: layouts, dataset and LightningDataModule.

Layouts accepted (docs/datasets-and-metrics.md §1.1): the official release
``TrainVal_images/{split}_images``, ``TrainVal_images/{split}_id.txt``,
``TrainVal_parsing_annotations/{split}_segmentations`` (also with the doubled top folders unzipping creates), and
SCHP's flat ``{split}_images``, ``{split}_segmentations``, ``{split}_id.txt``. Id lists may be plain stems, HRNet
pair lists or JPPNet triplets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from .batch import ParsingBatch, sample_id_tensor
from .common import BaseDataModule, SampleDataset, first_existing, read_id_list, read_image, to_tensor
from .errors import BadSamples, DatasetError, missing
from .facts import DatasetFacts
from .labels import read_label
from .schema import IGNORE_INDEX, LIP_CLASSES, LIP_FLIP_PAIRS
from .transforms import hflip_parsing, swap_lut


def lip_split_paths(root: Path, split: str) -> tuple[Path, Path, Path]:
    """(image folder, label folder, id list) of ``split`` under ``root`` in any supported layout."""
    if not root.is_dir():
        raise missing(
            root, "LIP root folder", "point root at the folder holding TrainVal_images/ (or set synth_if_missing)"
        )
    fix = "use the official LIP layout or SCHP's flat layout (see kd_suite/data/lip.py)"
    images = first_existing(
        [
            root / "TrainVal_images" / f"{split}_images",
            root / "TrainVal_images" / "TrainVal_images" / f"{split}_images",
            root / f"{split}_images",
        ],
        f"LIP {split} image folder",
        fix,
    )
    ann = "TrainVal_parsing_annotations"
    labels = first_existing(
        [
            root / ann / f"{split}_segmentations",
            root / ann / ann / f"{split}_segmentations",
            root / f"{split}_segmentations",
        ],
        f"LIP {split} label folder",
        fix,
    )
    ids = first_existing(
        [images.parent / f"{split}_id.txt", root / "TrainVal_images" / f"{split}_id.txt", root / f"{split}_id.txt"],
        f"LIP {split} id list",
        f"write one image id per line into {split}_id.txt next to {images.name}/",
    )
    return images, labels, ids


def val_transform(input_size: tuple[int, int]) -> A.Compose:
    """The validation transform, also ``kd-suite predict``'s: the whole image resized to ``input_size`` (h, w)."""
    return A.Compose([A.Resize(int(input_size[0]), int(input_size[1]))])


def lip_records(root: Path, split: str, bad: BadSamples) -> list[tuple[str, Path, Path]]:
    """(id, image path, label path) per listed sample; files missing on disk are reported eagerly."""
    images, labels, id_file = lip_split_paths(root, split)
    records = []
    for sid in read_id_list(id_file):
        image, label = images / f"{sid}.jpg", labels / f"{sid}.png"
        for path, what in ((image, "image"), (label, "label")):
            if not path.is_file():
                bad.handle(
                    missing(
                        path,
                        f"{what} of id {sid} listed in {id_file}",
                        "restore the file, remove the id from the list, or pass skip_bad=True",
                    )
                )
                break
        else:
            records.append((sid, image, label))
    if not records:
        raise DatasetError(id_file, "no usable samples", "check the id list and the image/label folders")
    return records


class LIPDataset(SampleDataset):
    """LIP samples as dicts: ``image`` (3, H, W) float, ``mask`` (H, W) int64, ``id``, ``orig_size`` (h, w),
    ``orig_mask`` ((H0, W0) int64 GT at the original size, or ``None`` when ``keep_original`` is off) and ``meta``
    (``path``, ``flipped``).

    Training: optional horizontal flip that swaps the left/right classes (14↔15, 16↔17, 18↔19), then an
    albumentations pipeline (fit into ``input_size`` and pad with ignore, random scale/rotation, colour jitter)
    that moves image and mask together. Validation: the whole image resized to ``input_size``; ``orig_mask`` keeps
    the original mask for metrics at the original resolution.
    """

    def __init__(
        self,
        records: list[tuple[str, Path, Path]],
        input_size: tuple[int, int],
        bad: BadSamples,
        augment: bool = False,
        flip: bool = False,
        keep_original: bool = True,
        scale_factor: float = 0.25,
        rotation: float = 30.0,
        color_jitter: bool = True,
    ) -> None:
        self.flip, self.keep_original = flip, keep_original
        self.lut = swap_lut(len(LIP_CLASSES), LIP_FLIP_PAIRS)
        h, w = input_size
        if augment:
            steps = [
                A.LongestMaxSize(max_size_hw=(h, w)),
                A.PadIfNeeded(h, w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX),
                A.Affine(
                    scale=(1 - scale_factor, 1 + scale_factor),
                    rotate=(-rotation, rotation),
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    fill_mask=IGNORE_INDEX,
                    p=0.8,
                ),
            ]
            if color_jitter:
                steps.append(A.ColorJitter(0.25, 0.25, 0.25, 0.03, p=0.5))
        self.transform = A.Compose(steps) if augment else val_transform(input_size)
        super().__init__(records, bad)

    def reseed(self, seed: int) -> None:
        super().reseed(seed)
        self.transform.set_random_seed(seed)

    def load(self, index: int) -> dict[str, Any]:
        sid, image_path, label_path = self.records[index]
        image = read_image(image_path)
        mask = read_label(label_path, len(LIP_CLASSES))
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                label_path,
                f"label size {mask.shape} differs from image size {image.shape[:2]}",
                "labels must have the image's height and width; or pass skip_bad=True",
            )
        orig_size = (int(mask.shape[0]), int(mask.shape[1]))  # (h, w)
        orig_mask = torch.from_numpy(mask.astype(np.int64)) if self.keep_original else None  # (H0, W0) int64
        meta: dict[str, Any] = {"path": str(image_path)}
        if self.flip and self.rng.random() < 0.5:
            image, mask = hflip_parsing(image, mask, self.lut)
            meta["flipped"] = True
        out = self.transform(image=image, mask=mask)
        return {
            "image": to_tensor(out["image"]),  # (3, H, W)
            "mask": torch.from_numpy(out["mask"].astype(np.int64)),  # (H, W) int64
            "id": sid,
            "orig_size": orig_size,
            "orig_mask": orig_mask,
            "meta": meta,
        }


def collate_parsing(items: list[dict[str, Any]]) -> ParsingBatch:
    """Stack LIP samples into a :class:`ParsingBatch` with its evaluation targets (``ids``, ``orig_sizes`` and, for
    val/test samples, ``orig_masks``)."""
    masks = [i["orig_mask"] for i in items]
    return ParsingBatch(
        image=torch.stack([i["image"] for i in items]),  # (B, 3, H, W)
        mask=torch.stack([i["mask"] for i in items]),  # (B, H, W) int64
        meta=[i["meta"] for i in items],
        sample_id=sample_id_tensor([i["meta"] for i in items]),  # (B,) int64
        ids=[str(i["id"]) for i in items],
        orig_sizes=torch.tensor([i["orig_size"] for i in items], dtype=torch.long).reshape(-1, 2),  # (B, 2) (h, w)
        orig_masks=None if any(m is None for m in masks) else masks,  # [(H0, W0) int64]
    )


class LIPDataModule(BaseDataModule):
    """LIP human parsing (20 classes) as :class:`ParsingBatch` es.

    Args:
        root: the LIP folder (official or SCHP layout).
        input_size: network input (h, w); 473×473 is the usual LIP setting.
        scale_factor: random scale range ``1 ± scale_factor``.
        rotation: random rotation range in degrees.
        color_jitter: random brightness/contrast/saturation/hue.
        **kwargs: :class:`~kd_suite.data.common.BaseDataModule` arguments (batch_size, num_workers, ...).
    """

    synth_format = "lip"
    collate = staticmethod(collate_parsing)
    num_classes = len(LIP_CLASSES)
    class_names = LIP_CLASSES
    flip_pairs = LIP_FLIP_PAIRS
    datasets: dict[str, LIPDataset]

    def __init__(
        self,
        root: str = "data/LIP",
        input_size: tuple[int, int] = (256, 256),
        scale_factor: float = 0.25,
        rotation: float = 30.0,
        color_jitter: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, input_size=input_size, **kwargs)
        self.scale_factor, self.rotation, self.color_jitter = scale_factor, rotation, color_jitter

    @property
    def facts(self) -> DatasetFacts:
        """LIP's 20 classes and the left/right class pairs a flip swaps."""
        return DatasetFacts("parsing", tuple(self.class_names), tuple(map(tuple, self.flip_pairs)))

    def dataset(self, split: str, train: bool) -> LIPDataset:
        """Build the dataset of ``split`` (training transforms when ``train``)."""
        bad = BadSamples(self.skip_bad, f"LIP {split}")
        return LIPDataset(
            lip_records(self.root, split, bad),
            self.input_size,
            bad,
            augment=train and self.augment,
            flip=train and self.flip,
            keep_original=not train,
            scale_factor=self.scale_factor,
            rotation=self.rotation,
            color_jitter=self.color_jitter,
        )

    def split_dataset(self, train: bool) -> LIPDataset:
        return self.dataset(self.train_split if train else self.val_split, train)
