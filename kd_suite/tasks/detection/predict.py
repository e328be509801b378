"""Detect objects on plain photos as validation does and write COCO results for ``kd-suite evaluate``.

``detections.json`` is a COCO results list ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` in
original-image pixels, every detection above the module's ``score_thresh`` (as evaluated); ``images.json`` lists
the images and the categories; ``overlays/<stem>.jpg`` shows the confident detections (score ≥ ``RENDER_SCORE``).

Ids follow the evaluators: ``image_id`` is the file stem (an integer when all digits, :func:`kd_suite.photos.image_id`).
``category_id`` is the 0-based class index for VOC-metric checkpoints (``kd-suite evaluate --format voc``) and a
COCO category id for COCO-metric ones (``--format coco-bbox``): the rank-``k`` id of a COCO json's sorted categories,
the same rule as validation, or ``k + 1`` without a json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.common import to_tensor
from ...data.transforms import letterbox
from ...photos import PhotoReader
from ...prediction_files import OVERLAY_DIR, PredictReport, image_entry, images_document, save_overlay, write_json
from ...viz import draw_boxes
from .decode import unletterbox
from .module import RENDER_SCORE, DetectionDistiller


class CategoryError(ValueError):
    """A COCO json given for the category ids cannot be used (unreadable, or a class count that differs)."""


def category_ids(module: DetectionDistiller, coco_gt: Path | None = None) -> tuple[list[int], str]:
    """The ``category_id`` of each class index and a note saying where they come from.

    Args:
        module: the detector (its ``metric`` picks the convention).
        coco_gt: a COCO json whose sorted category ids the classes map to (COCO-metric checkpoints).

    Raises:
        CategoryError: ``coco_gt`` is unreadable or lists another number of categories than the detector's classes.
    """
    k = module.num_classes
    if module.metric == "voc":
        return list(range(k)), "category_id = class index (0-based, kd-suite evaluate --format voc)"
    if coco_gt is None:
        return [i + 1 for i in range(k)], "category_id = class index + 1 (give --coco-gt GT.json for its own ids)"
    try:
        ids = sorted(int(c["id"]) for c in json.loads(Path(coco_gt).read_text())["categories"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CategoryError(f"--coco-gt {coco_gt}: no readable COCO categories ({type(err).__name__}: {err})") from err
    if len(ids) != k:
        raise CategoryError(f"--coco-gt {coco_gt} lists {len(ids)} categories but the detector has {k} classes")
    return ids, f"category_id = the sorted category ids of {coco_gt}"


def coco_results(
    image_id: int | str, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, ids: Sequence[int]
) -> list[dict[str, Any]]:
    """COCO results of one image from (n, 4) xyxy original-pixel ``boxes``, their (n,) scores and class indices."""
    xyxy = boxes.astype(np.float64)  # widths in float64: x + w gives back x2 (a float32 difference would round)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)  # (n, 4)
    return [
        {"image_id": image_id, "category_id": ids[int(k)], "bbox": [float(v) for v in b], "score": float(s)}
        for b, s, k in zip(xywh, scores, labels, strict=True)
    ]


@torch.no_grad()
def predict_photos(
    module: DetectionDistiller,
    input_size: tuple[int, int],
    photos: PhotoReader,
    out: Path,
    overlays: bool = True,
    coco_gt: Path | None = None,
) -> PredictReport:
    """Detect on plain photos and write ``detections.json``, ``images.json`` and the overlays.

    Each photo is letterboxed to ``input_size`` as in validation (:func:`~kd_suite.data.transforms.letterbox`),
    decoded by :meth:`DetectionDistiller.detect` (its score threshold, NMS and ``max_det``) and mapped back to the
    photo's pixels with :func:`~kd_suite.tasks.detection.decode.unletterbox`, as validation scores them.

    Args:
        module: the detector (eval mode, on its device).
        input_size: (h, w) letterbox size it was trained at.
        photos: the photos, in batches.
        out: output folder.
        overlays: also write the overlay pictures.
        coco_gt: COCO json of the category ids (COCO-metric checkpoints; see :func:`category_ids`).
    """
    ids, note = category_ids(module, coco_gt)
    names = module.label_names()
    report, results, images = PredictReport("detection", notes=[note]), [], []
    for batch in photos:
        boxed = [letterbox(p.image, input_size) for p in batch]  # (image, scale, pad) each
        image = torch.stack([to_tensor(b[0]) for b in boxed]).to(module.device)  # (B, 3, h, w)
        for photo, (_, scale, pad), det in zip(batch, boxed, module.detect(image), strict=True):
            boxes = unletterbox(det["boxes"], scale, pad, photo.size).cpu().numpy()  # (n, 4) xyxy original pixels
            scores, labels = det["scores"].cpu().numpy(), det["labels"].cpu().numpy()  # (n,), (n,)
            results += coco_results(photo.id, boxes, scores, labels, ids)
            images.append(image_entry(photo))
            if overlays:
                keep = scores >= RENDER_SCORE
                picture = draw_boxes(photo.image, boxes[keep], labels[keep].tolist(), names, scores[keep].tolist())
                save_overlay(picture, out, photo.stem)
        report.images += len(batch)
    categories = [{"id": i, "name": n} for i, n in zip(ids, names, strict=True)]
    write_json(out / "detections.json", results)
    write_json(out / "images.json", images_document(images, categories))
    report.outputs.append(("detections", f"{out / 'detections.json'} ({len(results)} boxes, COCO results)"))
    report.outputs.append(("images", f"{out / 'images.json'} (file names, ids, sizes, categories)"))
    if overlays:
        report.outputs.append(("overlays", f"{out / OVERLAY_DIR}/<stem>.jpg (score ≥ {RENDER_SCORE})"))
    return report
