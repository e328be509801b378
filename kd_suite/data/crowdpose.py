"""CrowdPose (14 joints, top-down, COCO-keypoints json with ``crowdIndex``).

Layouts: official/DEKR ``json/crowdpose_{split}.json`` or mmpose ``annotations/mmpose_crowdpose_{split}.json``,
images in ``images/`` (docs/datasets-and-metrics.md §1.3). Crops follow HRNet's COCO recipe: the box grown to the
input aspect ratio and padded × 1.25. Validation uses GT boxes, or a COCO results json of person detections
(``det_file``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .common import first_existing, read_json
from .errors import BadSamples, DatasetError, missing
from .pose import PoseDataModule, PoseInstance
from .schema import CROWDPOSE_FLIP_PAIRS, CROWDPOSE_JOINTS
from .transforms import box_to_center_size, sanitize_box
from .validate import as_record, check_box, coco_images, finite_array, integer_id


def crowdpose_split_file(root: Path, split: str) -> Path:
    """The GT json of ``split`` in the official or the mmpose layout."""
    if not root.is_dir():
        raise missing(
            root,
            "CrowdPose root folder",
            "point root at the folder holding images/ and json/ (or set synth_if_missing)",
        )
    return first_existing(
        [root / "json" / f"crowdpose_{split}.json", root / "annotations" / f"mmpose_crowdpose_{split}.json"],
        f"CrowdPose {split} annotation file",
        "use the official (json/) or mmpose (annotations/) layout",
    )


def read_coco_keypoints(path: Path, num_joints: int, bad: BadSamples) -> tuple[dict[int, dict], list[dict]]:
    """Images by id and validated annotations of a COCO-keypoints json (crowd annotations are kept)."""
    fix = "fix the annotation or pass skip_bad=True"
    data = read_json(path, "give a COCO-keypoints json with images, annotations and categories")
    if not isinstance(data, dict) or not data.get("images") or not data.get("annotations"):
        raise DatasetError(path, "no images or no annotations", "give a COCO-keypoints json with both lists filled")
    if not isinstance(data["annotations"], list):
        raise DatasetError(path, "'annotations' is not a list", "give a COCO-keypoints json")
    images = coco_images(path, data["images"], bad)
    anns = []
    for k, a in enumerate(data["annotations"]):
        where = f"{path} [annotation {k}, id {a.get('id') if isinstance(a, dict) else None}]"
        try:
            as_record(a, where, "annotation", fix)
            image = images[integer_id(a["image_id"], where, "image_id", fix)]
            kps = finite_array(a["keypoints"], where, "keypoints", fix)
            if kps.shape != (num_joints * 3,):
                raise DatasetError(
                    where,
                    f"wrong keypoint count: {kps.size} values, expected {num_joints} × 3",
                    f"CrowdPose annotations hold {num_joints} (x, y, v) triplets; {fix}",
                )
            if not a.get("iscrowd", 0):
                check_box(a["bbox"], int(image["width"]), int(image["height"]), where, fix)
        except KeyError as err:
            bad.handle(DatasetError(where, f"missing key or unknown image_id ({err})", fix))
            continue
        except DatasetError as err:
            bad.handle(err)
            continue
        anns.append(a)
    return images, anns


class CrowdPoseDataModule(PoseDataModule):
    """CrowdPose top-down pose as :class:`PoseBatch` es with ``image_id`` and ``box_score`` (1 for GT boxes, the
    detector's score with ``det_file``). meta: ``image`` (file name), ``ann_id``, ``center``, ``scale``, ``bbox``,
    ``area`` (= bbox w·h; evaluators use 0.53·w·h themselves), ``crowd_index``.
    The protocol trains on ``train_split="trainval"`` and reports numbers on ``val_split="test"``.

    Args:
        root: the CrowdPose folder.
        input_size: crop (h, w).
        batch_size: crops per batch.
        heatmap_stride: input pixels per heatmap pixel.
        sigma: heatmap Gaussian std (heatmap pixels).
        scale_factor: scale jitter std / bound.
        rotation: rotation std in degrees (bounded at twice this).
        det_file: optional COCO results json of person boxes used instead of GT boxes for validation.
        det_score_thr: detections below this score are dropped.
        **kwargs: :class:`~kd_suite.data.common.BaseDataModule` arguments (num_workers, train_split, ...).
    """

    synth_format = "crowdpose"
    flip_pairs = CROWDPOSE_FLIP_PAIRS
    class_names = CROWDPOSE_JOINTS
    skeleton = "crowdpose"

    def __init__(
        self,
        root: str = "data/crowdpose",
        input_size: tuple[int, int] = (256, 192),
        batch_size: int = 32,
        heatmap_stride: int = 4,
        sigma: float = 2.0,
        scale_factor: float = 0.35,
        rotation: float = 45.0,
        det_file: str | None = None,
        det_score_thr: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=root,
            input_size=input_size,
            batch_size=batch_size,
            heatmap_stride=heatmap_stride,
            sigma=sigma,
            scale_factor=scale_factor,
            rotation=rotation,
            **kwargs,
        )
        self.det_file = Path(det_file) if det_file else None
        self.det_score_thr = det_score_thr

    @property
    def val_ann_file(self) -> Path:
        """GT json of the val split (evaluators must load it from this path: AP(E/M/H) re-reads crowdIndex)."""
        return crowdpose_split_file(self.root, self.val_split)

    def instances(self, split: str, train: bool, bad: BadSamples) -> list[PoseInstance]:
        path = crowdpose_split_file(self.root, split)
        images, anns = read_coco_keypoints(path, len(CROWDPOSE_JOINTS), bad)
        aspect = self.input_size[1] / self.input_size[0]
        missing_images: set[int] = set()
        for image_id, im in images.items():
            if not (self.root / "images" / im.get("file_name", "")).is_file():
                missing_images.add(image_id)
                bad.handle(
                    missing(
                        self.root / "images" / im.get("file_name", ""),
                        f"image {image_id} of {path}",
                        "restore the image or pass skip_bad=True",
                    )
                )
        if not train and self.det_file is not None:
            return self._detections(images, missing_images, aspect)
        out = []
        for a in anns:
            image_id = int(a["image_id"])
            kps = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
            labelled = int((kps[:12, 2] > 0).sum())
            if a.get("iscrowd", 0) or image_id in missing_images or (train and a.get("num_keypoints", labelled) == 0):
                continue
            im = images[image_id]
            box = sanitize_box(a["bbox"], int(im["width"]), int(im["height"]))
            if box is None:
                continue
            meta = {
                "ann_id": a.get("id"),
                "bbox": list(box),
                "area": box[2] * box[3],
                "crowd_index": float(im.get("crowdIndex", 0.0)),
                "joints": kps[:, :2].tolist(),
                "joints_vis": kps[:, 2].tolist(),
            }
            vis = (kps[:, 2] > 0).astype(np.float32)
            out.append(self._instance(im, image_id, box, aspect, kps[:, :2], vis, meta, score=1.0))
        if not out:
            raise DatasetError(
                path, "no usable person annotations", "check the annotations (non-crowd, with keypoints)"
            )
        return out

    def _detections(self, images: dict[int, dict], missing_images: set[int], aspect: float) -> list[PoseInstance]:
        dets = read_json(self.det_file, "give a COCO results json: [{image_id, bbox, score, category_id}, ...]")
        if not isinstance(dets, list) or not dets:
            raise DatasetError(self.det_file, "expected a non-empty list of detections", "pass a COCO results json")
        out, k = [], len(CROWDPOSE_JOINTS)
        fix = "each detection needs image_id, bbox [x, y, w, h] and score; pass a COCO results json"
        for i, d in enumerate(dets):
            where = f"{self.det_file} [detection {i}]"
            image_id = integer_id(as_record(d, where, "detection", fix).get("image_id"), where, "image_id", fix)
            if image_id not in images:
                raise DatasetError(where, f"image_id {image_id} is not in the GT json", "use detections of the split")
            score = float(finite_array(d.get("score"), where, "score", fix, limit=1e6))
            box = finite_array(d.get("bbox"), where, "bbox", fix)
            if box.shape != (4,):
                raise DatasetError(where, f"bbox {d.get('bbox')} is not 4 numbers", fix)
            if d.get("category_id", 1) != 1 or score < self.det_score_thr or image_id in missing_images:
                continue
            im = images[image_id]
            box = sanitize_box(box, int(im["width"]), int(im["height"]))
            if box is None:
                continue
            meta = {"bbox": list(box), "area": box[2] * box[3], "crowd_index": float(im.get("crowdIndex", 0.0))}
            out.append(
                self._instance(im, image_id, box, aspect, np.zeros((k, 2)), np.zeros(k, np.float32), meta, score)
            )
        return out

    def _instance(
        self,
        im: dict,
        image_id: int,
        box: tuple[float, float, float, float],
        aspect: float,
        joints: np.ndarray,
        visible: np.ndarray,
        meta: dict[str, Any],
        score: float,
    ) -> PoseInstance:
        """The person crop of a clipped ``box`` (with box ``score``) on image ``image_id`` whose record is ``im``:
        HRNet's aspect-fitted box padded × 1.25."""
        center, size = box_to_center_size(box, aspect)
        meta = {"image": im["file_name"], **meta}
        path = self.root / "images" / im["file_name"]
        return PoseInstance(path, center, size, joints, visible, meta, image_id=image_id, box_score=score)
