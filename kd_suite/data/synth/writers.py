"""Per-scene writers: turn one :class:`Scene` into the files and annotation records of each dataset format.

Each ``write_<format>`` writes the scene's image files and returns plain records; :mod:`.generate` gathers the
records of all scenes into the split-level annotation files (json, .mat, id lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..schema import LIP_CLASSES, LIP_FLIP_PAIRS, MPII_TO_CROWDPOSE
from ..transforms import swap_lut
from .scene import Person, Scene

FORMAT_DIRS = {"lip": "LIP", "mpii": "mpii", "crowdpose": "crowdpose", "voc": "VOCdevkit", "coco": "coco"}
FORMATS: tuple[str, ...] = tuple(FORMAT_DIRS)
_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 92]


def encode_jpeg(image: np.ndarray) -> bytes:
    """RGB uint8 → JPEG bytes (quality 92, deterministic)."""
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), _JPEG)[1].tobytes()


def encode_png(label: np.ndarray) -> bytes:
    """(H, W) uint8 label map → PNG bytes."""
    return cv2.imencode(".png", label)[1].tobytes()  # single channel uint8 → 8-bit grayscale ("L") PNG


def annotated(person: Person, size: tuple[int, int]) -> bool:
    """People big and visible enough to be labelled as objects (boxes, keypoints)."""
    if person.box is None:
        return False
    x1, y1, x2, y2 = person.box
    return person.area >= max(20, 0.0004 * size[0] * size[1]) and x2 - x1 >= 2 and y2 - y1 >= 2


def person_class(person: Person, class_names: Sequence[str]) -> str:
    """Detection class: ``standing``/``fallen`` from the body orientation, or ``person``."""
    if "standing" in class_names and "fallen" in class_names:
        return "fallen" if person.lying else "standing"
    return "person"


def check_class_names(class_names: Sequence[str]) -> None:
    """Raise unless the classes can label synthetic people (see :func:`person_class`)."""
    if not (("standing" in class_names and "fallen" in class_names) or "person" in class_names):
        raise ValueError(
            f"class_names {list(class_names)} cannot label synthetic people; include 'standing' and 'fallen' "
            "(orientation classes) or 'person'"
        )


# ------------------------------------------------------------------------------------------------ LIP
def write_lip(root: Path, scene: Scene, split: str, index: int, rng: np.random.Generator) -> list[str]:
    """Single-person crops around each well visible person; returns the ids written."""
    h, w = scene.labels.shape
    ids = []
    lut = swap_lut(len(LIP_CLASSES), LIP_FLIP_PAIRS)
    for j, person in enumerate(scene.people):
        if person.box is None or person.visible_fraction < 0.5:
            continue
        x1, y1, x2, y2 = person.box
        if max(x2 - x1, y2 - y1) < max(16, 0.15 * min(h, w)):
            continue
        mx, my = rng.uniform(0.05, 0.2, 2) * (x2 - x1 + 1, y2 - y1 + 1) + 2
        cx1, cy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
        cx2, cy2 = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
        crop = scene.image[cy1:cy2, cx1:cx2]
        owner = scene.person_map[cy1:cy2, cx1:cx2] == person.index
        mask = np.where(owner, scene.labels[cy1:cy2, cx1:cx2], 0).astype(np.uint8)
        sid = f"{100000 + index}_{100000 + int(rng.integers(0, 89999)) * 10 + j}"
        (root / "TrainVal_images" / f"{split}_images" / f"{sid}.jpg").write_bytes(encode_jpeg(crop))
        ann = root / "TrainVal_parsing_annotations"
        (ann / f"{split}_segmentations" / f"{sid}.png").write_bytes(encode_png(mask))
        if split == "train":
            (ann / "train_segmentations_reversed" / f"{sid}.png").write_bytes(encode_png(lut[mask[:, ::-1]]))
        ids.append(sid)
    return ids


# ------------------------------------------------------------------------------------------------ MPII
def mpii_records(scene: Scene, image_name: str) -> list[dict]:
    """MPII json instances (HRNet layout, 1-based) plus the head box of each (for ``gt_valid.mat``)."""
    h, w = scene.labels.shape
    out = []
    for person in scene.people:
        if not annotated(person, (h, w)) or person.in_image.sum() < 6 or person.visible_fraction < 0.25:
            continue
        joints = person.body.joints
        vis = person.in_image.astype(int)
        x1, y1, x2, y2 = person.full_box
        scale = max(x2 - x1, y2 - y1) / 200.0
        out.append(
            {
                "image": image_name,
                # MPII's objpos sits 15·scale px above the box centre (readers move it down by that much)
                "center": [round((x1 + x2) / 2 + 1, 2), round((y1 + y2) / 2 + 1 - 15 * scale, 2)],
                "scale": round(scale, 6),
                "joints": [[round(x + 1, 2), round(y + 1, 2)] if v else [-1.0, -1.0] for (x, y), v in zip(joints, vis)],
                "joints_vis": vis.tolist(),
                "head_box": [round(v + 1, 2) for v in person.head_box],
            }
        )
    return out


# ------------------------------------------------------------------------------------------------ CrowdPose
def crowdpose_records(scene: Scene) -> list[dict]:
    """COCO-keypoint annotations (14 joints, v = 0 out of image / 1 occluded / 2 visible) without ids."""
    size = scene.labels.shape
    anns = []
    for person in scene.people:
        if not annotated(person, size):
            continue
        joints = person.body.joints[list(MPII_TO_CROWDPOSE)]
        v = np.where(person.in_image, np.where(person.occluded, 1, 2), 0)[list(MPII_TO_CROWDPOSE)]
        kps = []
        for (x, y), vi in zip(joints, v):
            kps += [round(float(x), 2), round(float(y), 2), int(vi)] if vi else [0, 0, 0]
        x1, y1, x2, y2 = person.box
        anns.append(
            {
                "num_keypoints": int((v[:12] > 0).sum()),
                "iscrowd": 0,
                "keypoints": kps,
                "bbox": [float(x1), float(y1), float(x2 - x1 + 1), float(y2 - y1 + 1)],
                "category_id": 1,
            }
        )
    return anns


def crowd_index(anns: list[dict]) -> float:
    """CrowdPose crowd index: mean over people of (others' labelled joints inside their box) / (own labelled joints)."""
    kps = [np.asarray(a["keypoints"], np.float64).reshape(-1, 3) for a in anns]
    ratios = []
    for i, a in enumerate(anns):
        own = int((kps[i][:, 2] > 0).sum())
        if own == 0:
            continue
        x, y, bw, bh = a["bbox"]
        inside = 0
        for k, other in enumerate(kps):
            if k != i:
                lab = other[other[:, 2] > 0]
                inside += int(
                    ((lab[:, 0] >= x) & (lab[:, 0] <= x + bw) & (lab[:, 1] >= y) & (lab[:, 1] <= y + bh)).sum()
                )
        ratios.append(inside / own)
    return round(float(np.mean(ratios)), 2) if ratios else 0.0


# ------------------------------------------------------------------------------------------------ VOC
_VOC_XML = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>{filename}</filename>
\t<source>
\t\t<database>kd-suite synthetic people</database>
\t\t<annotation>PASCAL VOC2007</annotation>
\t\t<image>synthetic</image>
\t\t<flickrid>0</flickrid>
\t</source>
\t<owner>
\t\t<flickrid>kd-suite</flickrid>
\t\t<name>kd-suite</name>
\t</owner>
\t<size>
\t\t<width>{width}</width>
\t\t<height>{height}</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
_VOC_OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>{pose}</pose>
\t\t<truncated>{truncated}</truncated>
\t\t<difficult>{difficult}</difficult>
\t\t<bndbox>
\t\t\t<xmin>{xmin}</xmin>
\t\t\t<ymin>{ymin}</ymin>
\t\t\t<xmax>{xmax}</xmax>
\t\t\t<ymax>{ymax}</ymax>
\t\t</bndbox>
\t</object>
"""


def voc_objects(scene: Scene, class_names: Sequence[str]) -> list[dict]:
    """VOC objects (1-based inclusive boxes) of the annotated people."""
    h, w = scene.labels.shape
    objs = []
    for person in scene.people:
        if not annotated(person, (h, w)):
            continue
        x1, y1, x2, y2 = person.box
        fx1, fy1, fx2, fy2 = person.full_box
        objs.append(
            {
                "name": person_class(person, class_names),
                "pose": "Frontal" if person.body.facing == "front" else "Rear",
                "truncated": int(fx1 < 0 or fy1 < 0 or fx2 > w - 1 or fy2 > h - 1),
                "difficult": int(person.visible_fraction < 0.3 or max(x2 - x1, y2 - y1) < 0.08 * max(h, w)),
                "xmin": x1 + 1,
                "ymin": y1 + 1,
                "xmax": x2 + 1,
                "ymax": y2 + 1,
            }
        )
    return objs


def voc_xml(filename: str, width: int, height: int, objects: list[dict]) -> str:
    """A VOC2007 annotation with every standard field."""
    body = "".join(_VOC_OBJECT.format(**o) for o in objects)
    return _VOC_XML.format(filename=filename, width=width, height=height, objects=body)


# ------------------------------------------------------------------------------------------------ COCO
def coco_records(scene: Scene, class_names: Sequence[str]) -> tuple[list[dict], dict | None]:
    """COCO detection annotations (no ids) and, for scenes with ≥ 2 people, a crowd region over all of them."""
    size = scene.labels.shape
    anns, union = [], np.zeros(size, np.uint8)
    for person in scene.people:
        if not annotated(person, size):
            continue
        mask = (scene.person_map == person.index).astype(np.uint8)
        union |= mask
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polys = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
        x1, y1, x2, y2 = person.box
        anns.append(
            {
                "category_id": class_names.index(person_class(person, class_names)) + 1,
                "segmentation": polys or [[x1, y1, x2 + 1, y1, x2 + 1, y2 + 1, x1, y2 + 1]],
                "area": float(person.area),
                "bbox": [float(x1), float(y1), float(x2 - x1 + 1), float(y2 - y1 + 1)],
                "iscrowd": 0,
            }
        )
    if len(anns) < 2:
        return anns, None
    ys, xs = np.nonzero(union)
    crowd = {
        "category_id": anns[0]["category_id"],
        "segmentation": {"counts": rle_counts(union), "size": [int(size[0]), int(size[1])]},
        "area": float(len(xs)),
        "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
        "iscrowd": 1,
    }
    return anns, crowd


def rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a binary mask (column-major runs, starting with a run of zeros)."""
    flat = mask.reshape(-1, order="F").astype(np.int8)
    change = np.nonzero(np.diff(flat))[0] + 1
    bounds = np.concatenate([[0], change, [len(flat)]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] == 1 else runs
