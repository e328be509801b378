"""Detection samples shared by VOC and COCO: letterbox, random scale/placement, flip, HSV jitter and mosaic.

Boxes are ``(x1, y1, x2, y2)`` float pixels. Validation letterboxes the whole image (centred, padded with 114) and
records ``scale`` and ``pad`` (typed :class:`~kd_suite.data.batch.DetectionBatch` fields) so predictions map back
with ``(box - pad) / scale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .batch import DetectionBatch, sample_id_tensor
from .common import BaseDataModule, SampleDataset, read_image, to_tensor
from .errors import BadSamples
from .facts import DatasetFacts
from .transforms import clip_boxes, hsv_jitter, keep_boxes, letterbox, place


@dataclass
class DetectionRecord:
    """One image: boxes (N, 4) xyxy in original pixels, class indices (N,), VOC difficult flags (N,), free-form
    ``meta`` and the dataset's ``image_id`` (VOC id ``str``, COCO id ``int``)."""

    image: Path
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    image_id: str | int | None = None


class DetectionDataset(SampleDataset):
    """Letterboxed images with boxes.

    Args:
        records: the images.
        input_size: network input (h, w).
        bad: bad-sample policy.
        augment: random resize (``scale_range`` of the letterbox size) and placement/crop, HSV jitter.
        flip: random horizontal flip.
        mosaic: combine 4 images (YOLOX-style) for every training sample.
        scale_range: random resize range relative to the letterbox size.
    """

    def __init__(
        self,
        records: list[DetectionRecord],
        input_size: tuple[int, int],
        bad: BadSamples,
        augment: bool = False,
        flip: bool = False,
        mosaic: bool = False,
        scale_range: tuple[float, float] = (0.5, 1.5),
    ) -> None:
        super().__init__(records, bad)
        self.input_size = input_size
        self.augment, self.flip, self.mosaic = augment, flip, mosaic
        self.scale_range = scale_range

    def _read(self, index: int) -> tuple[np.ndarray, DetectionRecord]:
        rec: DetectionRecord = self.records[index]
        return read_image(rec.image), rec

    def load(self, index: int) -> dict[str, Any]:
        """``image``, ``boxes`` (n, 4), ``labels`` (n,), ``difficult`` (n,) bool aligned with ``boxes``, ``image_id``,
        ``orig_size`` (h, w), the letterbox ``scale`` and ``pad`` (x, y) (``None`` under training augmentation) and
        free-form ``meta``."""
        h, w = self.input_size
        image, rec = self._read(index)
        orig_size = (int(image.shape[0]), int(image.shape[1]))  # (h, w)
        meta, scale, pad = dict(rec.meta), None, None
        boxes, labels = rec.boxes.astype(np.float32), rec.labels.astype(np.int64)
        difficult = np.asarray(rec.difficult, bool).reshape(-1)  # (n,)
        if self.mosaic:
            image, boxes, labels, difficult = self._mosaic(image, rec)
            meta["mosaic"] = True
        elif self.augment:
            r = min(h / image.shape[0], w / image.shape[1]) * self.rng.uniform(*self.scale_range)
            nh, nw = image.shape[0] * r, image.shape[1] * r
            offset = (
                self.rng.uniform(min(0, w - nw), max(0, w - nw)),
                self.rng.uniform(min(0, h - nh), max(0, h - nh)),
            )
            placed, moved = place(image, boxes, (h, w), r, offset)
            keep = keep_boxes(boxes, moved, r)
            image, boxes, labels, difficult = placed, moved[keep], labels[keep], difficult[keep]
        else:
            image, scale, pad = letterbox(image, (h, w))
            boxes = clip_boxes(boxes * scale + np.array([*pad, *pad], np.float32), w, h)  # every box kept
        if self.flip and self.rng.random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1) if len(boxes) else boxes
            meta["flipped"] = True
        if self.augment:
            image = hsv_jitter(image, self.rng)
        return {
            "image": to_tensor(image),
            "boxes": torch.from_numpy(boxes.reshape(-1, 4).astype(np.float32)),
            "labels": torch.from_numpy(labels.astype(np.int64)),
            "difficult": torch.from_numpy(difficult.astype(bool)),
            "image_id": rec.image_id,
            "orig_size": orig_size,
            "scale": scale,
            "pad": pad,
            "meta": meta,
        }

    def _mosaic(self, first: np.ndarray, rec: DetectionRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Four images around a random centre of a 2h × 2w canvas, then a random window resized to (h, w)."""
        h, w = self.input_size
        canvas = np.full((2 * h, 2 * w, 3), 114, np.uint8)
        xc, yc = self.rng.uniform(0.5 * w, 1.5 * w), self.rng.uniform(0.5 * h, 1.5 * h)
        others = self.rng.integers(0, len(self.records), 3)
        all_boxes, all_labels, all_difficult = [], [], []
        for k, (image, r_) in enumerate([(first, rec)] + [self._read(int(i)) for i in others]):
            r = min(h / image.shape[0], w / image.shape[1])
            nh, nw = max(1, round(image.shape[0] * r)), max(1, round(image.shape[1] * r))
            ox = round(xc - nw) if k in (0, 2) else round(xc)
            oy = round(yc - nh) if k in (0, 1) else round(yc)
            resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + nw, 2 * w), min(oy + nh, 2 * h)
            canvas[y0:y1, x0:x1] = resized[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            b = r_.boxes.astype(np.float32) * r + np.array([ox, oy, ox, oy], np.float32)
            all_boxes.append(b)
            all_labels.append(r_.labels.astype(np.int64))
            all_difficult.append(np.asarray(r_.difficult, bool).reshape(-1))
        boxes, labels = np.concatenate(all_boxes).reshape(-1, 4), np.concatenate(all_labels)
        difficult = np.concatenate(all_difficult)
        s = self.rng.uniform(1.0, 2.0)
        ww, wh = w * s, h * s
        wx = float(np.clip(xc - ww / 2, 0, 2 * w - ww))
        wy = float(np.clip(yc - wh / 2, 0, 2 * h - wh))
        window = canvas[int(wy) : int(wy + wh), int(wx) : int(wx + ww)]
        image = cv2.resize(window, (w, h), interpolation=cv2.INTER_LINEAR)
        fx, fy = w / window.shape[1], h / window.shape[0]
        moved = clip_boxes((boxes - np.array([int(wx), int(wy)] * 2, np.float32)) * np.array([fx, fy, fx, fy]), w, h)
        keep = keep_boxes(boxes, moved, min(fx, fy))
        return image, moved[keep], labels[keep], difficult[keep]


def collate_detection(items: list[dict[str, Any]]) -> DetectionBatch:
    """Stack images, pad boxes to the batch maximum (labels -1, difficult False where padded) and gather the
    evaluation targets (``image_ids``, ``orig_size`` and, for letterboxed samples, ``scale`` and ``pad``)."""
    m = max(1, max(len(i["labels"]) for i in items))
    boxes = torch.zeros(len(items), m, 4)  # (B, M, 4)
    labels = torch.full((len(items), m), -1, dtype=torch.int64)  # (B, M)
    difficult = torch.zeros(len(items), m, dtype=torch.bool)  # (B, M)
    for k, item in enumerate(items):
        n = len(item["labels"])
        boxes[k, :n], labels[k, :n], difficult[k, :n] = item["boxes"], item["labels"], item["difficult"]
    letterboxed = all(i["scale"] is not None for i in items)
    return DetectionBatch(
        image=torch.stack([i["image"] for i in items]),  # (B, 3, H, W)
        boxes=boxes,
        labels=labels,
        meta=[i["meta"] for i in items],
        sample_id=sample_id_tensor([i["meta"] for i in items]),  # (B,) int64
        image_ids=[i["image_id"] for i in items],
        orig_size=torch.tensor([i["orig_size"] for i in items], dtype=torch.long).reshape(-1, 2),  # (B, 2) (h, w)
        scale=torch.tensor([i["scale"] for i in items], dtype=torch.float32) if letterboxed else None,  # (B,)
        pad=torch.tensor([i["pad"] for i in items], dtype=torch.float32).reshape(-1, 2) if letterboxed else None,
        difficult=difficult,
    )


class DetectionDataModule(BaseDataModule):
    """Shell of the detection DataModules; subclasses provide :meth:`records` and ``class_names``.

    Args:
        mosaic: 4-image mosaic when training.
        scale_range: random resize range relative to the letterbox size.
        **kwargs: the loader, split and synthetic-data settings of :class:`BaseDataModule`.
    """

    collate = staticmethod(collate_detection)
    datasets: dict[str, DetectionDataset]

    def __init__(self, *, mosaic: bool, scale_range: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mosaic, self.scale_range = mosaic, tuple(scale_range)

    @property
    def num_classes(self) -> int:
        """Number of detection classes."""
        return len(self.class_names)

    @property
    def facts(self) -> DatasetFacts:
        """Class names and, for COCO-style data, the validation GT json (a VOC split list is not one)."""
        ann = getattr(self, "val_ann_file", None)
        gt = Path(ann) if ann is not None and Path(ann).suffix == ".json" else None
        return DatasetFacts("detection", tuple(self.class_names), val_ann_file=gt)

    def records(self, train: bool, bad: BadSamples) -> list[DetectionRecord]:  # pragma: no cover
        raise NotImplementedError

    def dataset(self, train: bool) -> DetectionDataset:
        bad = BadSamples(self.skip_bad, f"{type(self).__name__} {'train' if train else 'val'}")
        return DetectionDataset(
            self.records(train, bad),
            self.input_size,
            bad,
            augment=train and self.augment,
            flip=train and self.flip,
            mosaic=train and self.mosaic,
            scale_range=self.scale_range,
        )

    def split_dataset(self, train: bool) -> DetectionDataset:
        return self.dataset(train)
