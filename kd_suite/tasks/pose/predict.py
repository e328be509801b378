"""Estimate poses on plain photos as top-down validation does and write COCO keypoint results.

Each person box (from ``--boxes``, :mod:`.boxes`; else the whole photo as one person) is cropped exactly as the
CrowdPose validation crops a detected person: clipped to the image (:func:`~kd_suite.data.transforms.sanitize_box`),
grown to the input aspect ratio and padded × 1.25 (:func:`~kd_suite.data.transforms.box_to_center_size`), warped
to ``input_size`` (:func:`~kd_suite.data.pose.warp_crop`). :meth:`PoseDistiller.predict_joints` (flip-tested like
validation) maps the joints back through the inverse affine.

``keypoints.json``: ``[{"image_id", "category_id": 1, "keypoints": [x, y, confidence] * K, "score"}]`` in original
pixels, ``score`` the mean confidence of the joints above ``vis_threshold`` times the box score (validation's
rescoring, :func:`~kd_suite.metrics.keypoints.keypoint_results`); ``images.json`` and skeleton overlays beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...data.common import to_tensor
from ...data.pose import warp_crop
from ...data.transforms import affine_matrix, box_to_center_size, invert_affine, sanitize_box
from ...metrics.keypoints import keypoint_results
from ...photos import Photo, PhotoReader
from ...prediction_files import OVERLAY_DIR, PredictReport, image_entry, images_document, save_overlay, write_json
from ...viz import SKELETONS, draw_boxes, draw_pose
from .boxes import PersonBoxes
from .module import PoseDistiller


@dataclass
class PersonCrop:
    """One person to predict.

    Attributes:
        photo: the photo it is on.
        box: ``(x, y, w, h)`` clipped box in original pixels (the whole photo without ``--boxes``).
        score: the box score (1 for the whole photo).
        image: (3, h, w) normalised crop.
        inv_affine: (2, 3) crop pixels → photo pixels.
        from_boxes: the box came from ``--boxes``.
    """

    photo: Photo
    box: tuple[float, float, float, float]
    score: float
    image: Tensor
    inv_affine: Tensor
    from_boxes: bool


def person_crop(
    photo: Photo, box: Sequence[float], score: float, input_size: tuple[int, int], from_boxes: bool = True
) -> PersonCrop | None:
    """The validation crop of COCO box ``[x, y, w, h]`` on ``photo``; ``None`` when nothing of it lies inside."""
    h, w = input_size
    clipped = sanitize_box(box, photo.size[1], photo.size[0])
    if clipped is None:
        return None
    center, size = box_to_center_size(clipped, w / h)
    warp = affine_matrix(center, size, 0.0, (w, h))  # (2, 3) photo → crop
    crop = to_tensor(warp_crop(photo.image, warp, input_size))  # (3, h, w)
    inverse = torch.from_numpy(invert_affine(warp).astype(np.float32))  # (2, 3) crop → photo
    return PersonCrop(photo, clipped, score, crop, inverse, from_boxes)


def photo_people(photo: Photo, boxes: PersonBoxes | None, input_size: tuple[int, int]) -> list[PersonCrop]:
    """The crops of ``photo``: its usable ``--boxes``, or the whole photo when there are none."""
    found = [] if boxes is None else boxes.for_photo(photo)
    crops = [c for box, score in found if (c := person_crop(photo, box, score, input_size)) is not None]
    if crops:
        return crops
    h, w = photo.size
    return [c for c in [person_crop(photo, [0.0, 0.0, float(w), float(h)], 1.0, input_size, False)] if c]


def drawing_skeleton(module: PoseDistiller, num_joints: int) -> tuple[str | None, str | None]:
    """The :mod:`kd_suite.viz` skeleton to draw and a note when it is not the checkpoint's own.

    Checkpoints record the skeleton with the dataset facts; for older ones the only skeleton with ``num_joints``
    joints is used for the pictures (nothing else depends on it).
    """
    if module.skeleton is not None:
        return module.skeleton, None
    same = [name for name, (_, joints) in SKELETONS.items() if len(joints) == num_joints]
    if len(same) == 1:
        return same[0], f"no skeleton recorded in the checkpoint: drawn with the {num_joints}-joint {same[0]} one"
    return None, f"no skeleton recorded in the checkpoint and none has {num_joints} joints: overlays not drawn"


def _draw(people: list[PersonCrop], joints: np.ndarray, shown: np.ndarray, skeleton: str) -> np.ndarray:
    """The photo with the ``--boxes`` boxes and every person's (K, 2) joints whose ``shown`` flag is set."""
    picture = people[0].photo.image
    boxed = [p for p in people if p.from_boxes]
    if boxed:
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (p.box for p in boxed)])  # (n, 4)
        picture = draw_boxes(picture, xyxy, [0] * len(boxed), ["person"], [p.score for p in boxed])
    for xy, vis in zip(joints, shown, strict=True):
        picture = draw_pose(picture, xy, vis, skeleton)
    return picture


@torch.no_grad()
def predict_photos(
    module: PoseDistiller,
    input_size: tuple[int, int],
    photos: PhotoReader,
    out: Path,
    overlays: bool = True,
    boxes: PersonBoxes | None = None,
) -> PredictReport:
    """Predict every person of plain photos and write ``keypoints.json``, ``images.json`` and the overlays.

    Args:
        module: the pose model (eval mode, on its device).
        input_size: (h, w) crop size it was trained at.
        photos: the photos, in batches (``photos.batch_size`` crops go through the network at a time).
        out: output folder.
        overlays: also write the overlay pictures.
        boxes: person boxes (``--boxes``); ``None`` predicts one person per photo on the whole image.
    """
    report, results, images, whole = PredictReport("pose"), [], [], []
    notes: set[str] = set()
    for batch in photos:
        people = [person for photo in batch for person in photo_people(photo, boxes, input_size)]
        if not people:  # only photos too small to crop (a single pixel)
            report.images += len(batch)
            continue
        joints = [
            module.predict_joints(
                torch.stack([p.image for p in chunk]).to(module.device),  # (n, 3, h, w)
                torch.stack([p.inv_affine for p in chunk]).to(module.device),  # (n, 2, 3)
            ).cpu()
            for chunk in (people[i : i + photos.batch_size] for i in range(0, len(people), photos.batch_size))
        ]
        pred = torch.cat(joints).double().numpy()  # (N, K, 3) x, y original pixels, confidence
        scored = keypoint_results(pred, np.arange(len(people)), module.vis_threshold, [p.score for p in people])
        for person, result in zip(people, scored, strict=True):
            results.append(result | {"image_id": person.photo.id})
        skeleton, note = drawing_skeleton(module, pred.shape[1])
        notes.update([note] if note else [])
        for photo in batch:
            mine = [k for k, p in enumerate(people) if p.photo is photo]
            images.append(image_entry(photo))
            if not mine:
                continue
            whole += [photo.path.name] if boxes is not None and not people[mine[0]].from_boxes else []
            if overlays and skeleton is not None:
                shown = pred[mine, :, 2] >= module.vis_threshold  # (n, K)
                save_overlay(_draw([people[k] for k in mine], pred[mine, :, :2], shown, skeleton), out, photo.stem)
        report.images += len(batch)
    names = list(module.data_facts.class_names) if module.data_facts is not None else []
    write_json(out / "keypoints.json", results)
    write_json(out / "images.json", images_document(images, [{"id": 1, "name": "person", "keypoints": names}]))
    report.outputs.append(("keypoints", f"{out / 'keypoints.json'} ({len(results)} people, COCO keypoint results)"))
    report.outputs.append(("images", f"{out / 'images.json'} (file names, ids, sizes)"))
    if overlays and not any("not drawn" in n for n in notes):
        report.outputs.append(("overlays", f"{out / OVERLAY_DIR}/<stem>.jpg (joints with confidence ≥ "
                                           f"{module.vis_threshold:g})"))  # fmt: skip
    report.notes += sorted(notes)
    if boxes is None:
        report.notes.append("no --boxes: each image is one person, the whole image as its box")
    else:
        report.notes.append(f"--boxes {boxes.source}: {boxes.kept} of {boxes.total} boxes kept ({boxes.selection})")
        if whole:
            shown_names = ", ".join(whole[:5]) + (" ..." if len(whole) > 5 else "")
            report.notes.append(f"{len(whole)} image(s) without a usable box, whole image used: {shown_names}")
    return report
