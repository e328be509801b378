"""MPII Human Pose (16 joints, top-down) in the HRNet or mmpose layout.

HRNet: ``annot/{train,valid,trainval,test}.json`` + ``annot/gt_valid.mat``; mmpose:
``annotations/mpii_{train,val,trainval,test}.json`` + ``annotations/mpii_gt_val.mat``; images in ``images/``.
The json is a list of person instances with 1-based ``center``, ``scale`` (height / 200 px), ``joints`` and
``joints_vis`` (docs/datasets-and-metrics.md §1.2). Crops follow HRNet: centre moved down by ``15 * scale`` px,
scale × 1.25.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .common import first_existing, read_json
from .errors import BadSamples, DatasetError, missing
from .matfile import MatFileError, read_mat_array
from .pose import PoseDataModule, PoseInstance
from .schema import MPII_FLIP_PAIRS, MPII_JOINTS
from .validate import MAX_PIXELS, finite_array, finite_number, short

_ALIASES = {"valid": ("valid", "val"), "val": ("val", "valid")}
_MIN_SCALE = 1e-3  # scale is the person height / 200 px: below this the person is under a pixel


def mpii_split_file(root: Path, split: str) -> Path:
    """The json of ``split`` (``valid`` and ``val`` are the same split) in either layout."""
    if not root.is_dir():
        raise missing(
            root, "MPII root folder", "point root at the folder holding images/ and annot/ (or set synth_if_missing)"
        )
    names = _ALIASES.get(split, (split,))
    candidates = [root / "annot" / f"{n}.json" for n in names] + [
        root / "annotations" / f"mpii_{n}.json" for n in names
    ]
    return first_existing(
        candidates, f"MPII {split} annotation file", "use the HRNet (annot/) or mmpose (annotations/) layout"
    )


def mpii_gt_mat(root: Path) -> Path | None:
    """``gt_valid.mat`` / ``mpii_gt_val.mat`` if present."""
    for path in (root / "annot" / "gt_valid.mat", root / "annotations" / "mpii_gt_val.mat"):
        if path.is_file():
            return path
    return None


def read_head_sizes(path: Path, count: int) -> np.ndarray:
    """PCKh head sizes ``0.6 * ||(x2, y2) - (x1, y1)||`` of the head boxes in ``gt_valid.mat`` (instance order)."""
    fix = "use the gt_valid.mat that ships with the MPII annotations"
    try:
        boxes = read_mat_array(path, "headboxes_src")  # (2, 2, N); not scipy's loadmat, which can crash on bad files
    except MatFileError as err:
        raise DatasetError(path, f"cannot read 'headboxes_src': {err}", fix) from err
    boxes = finite_array(boxes, str(path), "headboxes_src", fix)
    if boxes.ndim != 3 or boxes.shape[:2] != (2, 2) or boxes.shape[2] != count:
        raise DatasetError(
            path,
            f"headboxes_src has shape {boxes.shape}, expected (2, 2, {count}) for the json instances",
            "use the .mat made for the same val json (instance order must match)",
        )
    return 0.6 * np.linalg.norm(boxes[1] - boxes[0], axis=0)  # (N,)


def mpii_instances(
    root: Path, split: str, input_size: tuple[int, int], bad: BadSamples, head_sizes: bool = False
) -> list[PoseInstance]:
    """Read and validate the instances of ``split``; images are checked for existence, their pixels lazily."""
    path = mpii_split_file(root, split)
    fix = "fix the entry (image, finite center [x, y], scale > 0, 16 joints / joints_vis) or pass skip_bad=True"
    entries = read_json(path, fix)
    if not isinstance(entries, list) or not entries:
        raise DatasetError(path, "expected a non-empty list of person instances", fix)
    heads = None
    if head_sizes:
        mat = mpii_gt_mat(root)
        if mat is None:
            warnings.warn(
                f"{root}: no gt_valid.mat / mpii_gt_val.mat, so batches have no head_size (PCKh needs it)", stacklevel=2
            )
        else:
            heads = read_head_sizes(mat, len(entries))
    aspect = input_size[1] / input_size[0]
    out = []
    for i, e in enumerate(entries):
        where = f"{path} [entry {i}]"
        try:
            if not isinstance(e, dict) or not isinstance(e.get("image"), str):
                raise TypeError(f"expected an object with an 'image' file name, got {short(e)}")
            image = root / "images" / e["image"]
            center = finite_array(e["center"], where, "center", fix)
            scale = finite_number(e["scale"], where, "scale", fix, _MIN_SCALE, MAX_PIXELS / 200.0)
            joints = finite_array(e.get("joints", np.zeros((16, 2))), where, "joints", fix)
            vis = finite_array(e.get("joints_vis", np.zeros(16)), where, "joints_vis", fix).astype(np.float32)
        except (KeyError, TypeError, ValueError) as err:
            bad.handle(err if isinstance(err, DatasetError) else DatasetError(where, f"malformed entry ({err!r})", fix))
            continue
        if joints.shape != (16, 2) or vis.shape != (16,):
            bad.handle(
                DatasetError(
                    where,
                    f"wrong keypoint count: joints {joints.shape}, joints_vis {vis.shape}, expected (16, 2) and (16,)",
                    "MPII has 16 joints; fix the entry or pass skip_bad=True",
                )
            )
            continue
        if center.shape != (2,):
            bad.handle(DatasetError(where, f"invalid center {short(center.tolist())} / scale {scale}", fix))
            continue
        if not image.is_file():
            bad.handle(missing(image, f"image of {where}", "restore the image or pass skip_bad=True"))
            continue
        if center[0] != -1:  # HRNet: objpos sits high on the body; move down and pad
            center[1] += 15 * scale
        scale *= 1.25
        side = scale * 200.0
        size = np.array([side, side]) if aspect == 1 else np.array([max(side, side * aspect), max(side, side / aspect)])
        meta = {
            "image": str(e["image"]),
            "index": i,
            "bbox": _joint_box(joints - 1, vis),
            "scale_200": scale / 1.25,
            "joints": (joints - 1).tolist(),
            "joints_vis": vis.tolist(),
        }
        meta["area"] = meta["bbox"][2] * meta["bbox"][3]
        head = float("nan") if heads is None else float(heads[i])
        out.append(
            PoseInstance(image, center - 1, size, joints - 1, (vis > 0).astype(np.float32), meta, head_size=head)
        )
    if not out:
        raise DatasetError(path, "no usable person instances", fix)
    return out


def _joint_box(joints: np.ndarray, vis: np.ndarray) -> list[float]:
    pts = joints[vis > 0]
    if not len(pts):
        return [0.0, 0.0, 0.0, 0.0]
    (x1, y1), (x2, y2) = pts.min(0), pts.max(0)
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


class MPIIDataModule(PoseDataModule):
    """MPII top-down pose as :class:`PoseBatch` es with ``head_size`` on the val split (from ``gt_valid.mat``;
    ``image_id`` is -1: MPII has no integer image ids). meta: ``image`` (file name), ``index`` (row of the split
    json), ``center``, ``scale``, ``bbox``, ``area``, ``joints`` (original, 0-based).

    Args:
        root: the MPII folder (HRNet or mmpose layout).
        input_size: crop (h, w).
        batch_size: crops per batch.
        heatmap_stride: input pixels per heatmap pixel.
        sigma: heatmap Gaussian std (heatmap pixels).
        scale_factor: scale jitter std / bound.
        rotation: rotation std in degrees (bounded at twice this).
        val_split: split json for validation (``valid``; ``val`` works too).
        **kwargs: :class:`~kd_suite.data.common.BaseDataModule` arguments (num_workers, train_split, ...).
    """

    synth_format = "mpii"
    flip_pairs = MPII_FLIP_PAIRS
    class_names = MPII_JOINTS
    skeleton = "mpii"

    def __init__(
        self,
        root: str = "data/mpii",
        input_size: tuple[int, int] = (256, 256),
        batch_size: int = 32,
        heatmap_stride: int = 4,
        sigma: float = 2.0,
        scale_factor: float = 0.25,
        rotation: float = 30.0,
        val_split: str = "valid",
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
            val_split=val_split,
            **kwargs,
        )

    @property
    def val_ann_file(self) -> Path | None:
        """The PCKh ground truth (``gt_valid.mat`` / ``mpii_gt_val.mat``), or None if absent."""
        return mpii_gt_mat(self.root)

    def instances(self, split: str, train: bool, bad: BadSamples) -> list[PoseInstance]:
        heads = not train and split == self.val_split  # gt_valid.mat holds the head boxes of the val split only
        return mpii_instances(self.root, split, self.input_size, bad, head_sizes=heads)
