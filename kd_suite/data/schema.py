"""Class lists, joint orders, flip pairs and skeletons of the supported datasets (one source for loaders and drawing).

Sources (see docs/datasets-and-metrics.md §1): LIP ids from SCHP ``utils/miou.py``; MPII joint order and flip pairs
from HRNet ``lib/dataset/mpii.py`` / mmpose ``configs/_base_/datasets/mpii.py``; CrowdPose order, flip pairs and
skeleton from mmpose ``crowdpose.py`` (the official json ``skeleton`` is COCO-17 and invalid for 14 joints); VOC
class order from YOLOX ``voc_classes.py``.
"""

from __future__ import annotations

LIP_CLASSES: tuple[str, ...] = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks", "Pants",
    "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)  # fmt: skip
#: (left, right) parsing ids swapped by a horizontal flip
LIP_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((14, 15), (16, 17), (18, 19))
IGNORE_INDEX = 255

MPII_JOINTS: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)  # fmt: skip
#: short names stored in ``gt_valid.mat`` ``dataset_joints``
MPII_MAT_NAMES: tuple[str, ...] = (
    "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head", "rwri", "relb", "rsho", "lsho",
    "lelb", "lwri",
)  # fmt: skip
MPII_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (10, 11), (11, 12), (12, 7), (13, 7), (13, 14), (14, 15),
)  # fmt: skip

CROWDPOSE_JOINTS: tuple[str, ...] = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)  # fmt: skip
CROWDPOSE_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11))
CROWDPOSE_SKELETON: tuple[tuple[int, int], ...] = (
    (10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1),
    (0, 2), (1, 3), (2, 4), (3, 5), (12, 13), (1, 13), (0, 13),
)  # fmt: skip
#: MPII joint index of each CrowdPose joint (head = head_top, neck = upper_neck)
MPII_TO_CROWDPOSE: tuple[int, ...] = (13, 12, 14, 11, 15, 10, 3, 2, 4, 1, 5, 0, 9, 8)
#: OKS sigmas of the 14 CrowdPose joints (crowdposetools ``computeOks``)
CROWDPOSE_SIGMAS: tuple[float, ...] = (
    0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079,
)  # fmt: skip

COCO_JOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
#: default classes of the synthetic fall-detection set, from the body orientation of each person
FALL_CLASSES: tuple[str, ...] = ("standing", "fallen")


def joint_sides(names: tuple[str, ...]) -> list[str]:
    """``"left"``, ``"right"`` or ``"center"`` for each joint name (used to colour skeletons)."""
    sides = []
    for name in names:
        low = name.lower()
        sides.append(
            "left" if low.startswith(("l_", "left")) else "right" if low.startswith(("r_", "right")) else "center"
        )
    return sides
