"""Top-down pose samples shared by MPII and CrowdPose: affine person crops, joint targets and the DataModule shell.

A sample is one person: the image is warped so that the person's (padded) box fills ``input_size``; training adds
random scale, rotation and a horizontal flip that swaps left/right joints. Targets are the joints in crop pixels,
their weights and Gaussian heatmaps at ``heatmap_stride``; ``inv_affine`` maps crop pixels back to the original
image (for predictions and metrics in original coordinates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .batch import PoseBatch, sample_id_tensor
from .common import BaseDataModule, SampleDataset, read_image, to_tensor
from .errors import BadSamples
from .facts import DatasetFacts
from .transforms import affine_matrix, flip_joints, gaussian_heatmaps, invert_affine, warp_points


@dataclass
class PoseInstance:
    """One annotated (or detected) person.

    Attributes:
        image: image file.
        center: (2,) crop centre in original pixels (0-based).
        size: (2,) crop box (w, h) in original pixels, with the input aspect ratio and padding applied.
        joints: (K, 2) joints in original pixels (0-based).
        visible: (K,) 1 = labelled joint.
        meta: free-form facts passed through to the batch (``image`` file name, ``bbox``, ``area`` ...).
        image_id: COCO-style integer image id (CrowdPose AP); -1 when the dataset has none (MPII).
        head_size: MPII head size (0.6 × head-box diagonal, the PCKh normaliser); NaN when unknown.
        box_score: score of the person box (1 for GT boxes, the detector's score for detected ones).
    """

    image: Path
    center: np.ndarray
    size: np.ndarray
    joints: np.ndarray
    visible: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    image_id: int = -1
    head_size: float = float("nan")
    box_score: float = 1.0


def warp_crop(image: np.ndarray, warp: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The (h, w, 3) person crop of ``image`` under the (2, 3) image → crop affine ``warp`` (bilinear, black border);
    validation, training and ``kd-suite predict`` crop with it."""
    h, w = input_size
    return cv2.warpAffine(image, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


class TopDownDataset(SampleDataset):
    """Person crops with joint targets.

    Args:
        instances: the people.
        input_size: crop (h, w).
        flip_pairs: left/right joint pairs swapped by a horizontal flip.
        bad: bad-sample policy.
        heatmap_stride: input pixels per heatmap pixel.
        sigma: heatmap Gaussian std in heatmap pixels.
        augment: random scale (``1 ± scale_factor``, normal) and rotation (``±rotation``, normal, 60 % of samples).
        flip: random horizontal flip.
        scale_factor: scale jitter std and bound.
        rotation: rotation std in degrees (bounded at twice this).
        clip_visible: zero the weight of joints that fall outside the crop (training). Off for evaluation, where
            every labelled joint counts (PCKh/OKS protocols).
    """

    def __init__(
        self,
        instances: list[PoseInstance],
        input_size: tuple[int, int],
        flip_pairs: Sequence[tuple[int, int]],
        bad: BadSamples,
        heatmap_stride: int = 4,
        sigma: float = 2.0,
        augment: bool = False,
        flip: bool = False,
        scale_factor: float = 0.25,
        rotation: float = 30.0,
        clip_visible: bool = True,
    ) -> None:
        super().__init__(instances, bad)
        self.clip_visible = clip_visible
        self.input_size = input_size
        self.flip_pairs = flip_pairs
        self.stride, self.sigma = heatmap_stride, sigma
        self.augment, self.flip = augment, flip
        self.scale_factor, self.rotation = scale_factor, rotation

    def load(self, index: int) -> dict[str, Any]:
        inst: PoseInstance = self.records[index]
        image = read_image(inst.image)
        h_img, w_img = image.shape[:2]
        center, size, rot = inst.center.copy(), inst.size.copy(), 0.0
        joints, visible = inst.joints.astype(np.float64), inst.visible.astype(np.float32)
        if self.augment:
            size = size * np.clip(
                self.rng.normal() * self.scale_factor + 1, 1 - self.scale_factor, 1 + self.scale_factor
            )
            if self.rng.random() < 0.6:
                rot = float(np.clip(self.rng.normal() * self.rotation, -2 * self.rotation, 2 * self.rotation))
        flipped = self.flip and self.rng.random() < 0.5
        h, w = self.input_size
        if flipped:  # mirror the source first (x → W - 1 - x), then crop around the mirrored centre
            center[0] = w_img - 1 - center[0]
            joints, visible = flip_joints(joints, visible, w_img, self.flip_pairs)
        matrix = affine_matrix(center, size, rot, (w, h))  # (mirrored) image → crop
        warp = matrix
        if flipped:
            mirror = np.array([[-1.0, 0.0, w_img - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            warp = (np.concatenate([matrix, [[0.0, 0.0, 1.0]]]) @ mirror)[:2]  # original image → crop
        crop = warp_crop(image, warp, self.input_size)
        keypoints = warp_points(joints, matrix)  # (K, 2) crop pixels
        inside = (
            (keypoints[:, 0] >= 0) & (keypoints[:, 0] <= w - 1) & (keypoints[:, 1] >= 0) & (keypoints[:, 1] <= h - 1)
        )
        heatmaps, weight = gaussian_heatmaps(
            keypoints, visible * inside, (w // self.stride, h // self.stride), self.stride, self.sigma
        )
        if self.clip_visible:
            visible = weight
        meta = {
            **inst.meta,
            "center": inst.center.tolist(),
            "scale": inst.size.tolist(),
            "flipped": flipped,
            "rotation": rot,
            "image_size": (h_img, w_img),
        }
        return {
            "image": to_tensor(crop),
            "keypoints": torch.from_numpy(keypoints.astype(np.float32)),
            "visible": torch.from_numpy(visible.astype(np.float32)),
            "heatmaps": torch.from_numpy(heatmaps),
            "inv_affine": torch.from_numpy(invert_affine(warp).astype(np.float32)),
            "image_id": int(inst.image_id),
            "head_size": float(inst.head_size),
            "box_score": float(inst.box_score),
            "meta": meta,
        }


def collate_pose(items: list[dict[str, Any]]) -> PoseBatch:
    """Stack person crops into a :class:`PoseBatch` with its evaluation targets (``head_size``, ``image_id``,
    ``box_score``)."""
    return PoseBatch(
        image=torch.stack([i["image"] for i in items]),  # (B, 3, H, W)
        keypoints=torch.stack([i["keypoints"] for i in items]),  # (B, K, 2)
        visible=torch.stack([i["visible"] for i in items]),  # (B, K)
        heatmaps=torch.stack([i["heatmaps"] for i in items]),  # (B, K, H/s, W/s)
        inv_affine=torch.stack([i["inv_affine"] for i in items]),  # (B, 2, 3)
        meta=[i["meta"] for i in items],
        sample_id=sample_id_tensor([i["meta"] for i in items]),  # (B,) int64
        head_size=torch.tensor([i["head_size"] for i in items], dtype=torch.float32),  # (B,) NaN = unknown
        image_id=torch.tensor([i["image_id"] for i in items], dtype=torch.long),  # (B,) -1 = unknown
        box_score=torch.tensor([i["box_score"] for i in items], dtype=torch.float32),  # (B,)
    )


class PoseDataModule(BaseDataModule):
    """Shell of the top-down pose DataModules; subclasses provide :meth:`instances` and the joint definitions.

    Args:
        heatmap_stride: input pixels per heatmap pixel (must divide ``input_size``).
        sigma: heatmap Gaussian std (heatmap pixels).
        scale_factor: scale jitter std / bound.
        rotation: rotation std in degrees (bounded at twice this).
        **kwargs: the loader, split and synthetic-data settings of :class:`BaseDataModule`.
    """

    collate = staticmethod(collate_pose)
    flip_pairs: tuple[tuple[int, int], ...] = ()
    class_names: tuple[str, ...] = ()
    datasets: dict[str, TopDownDataset]

    def __init__(
        self, *, heatmap_stride: int, sigma: float, scale_factor: float, rotation: float, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if self.input_size[0] % heatmap_stride or self.input_size[1] % heatmap_stride:
            raise ValueError(f"input_size {self.input_size} must be divisible by heatmap_stride={heatmap_stride}")
        self.heatmap_stride, self.sigma = heatmap_stride, sigma
        self.scale_factor, self.rotation = scale_factor, rotation

    #: the kd_suite.viz skeleton of the joints
    skeleton: str | None = None

    @property
    def facts(self) -> DatasetFacts:
        """Joint names, flip pairs, skeleton, heatmap stride and the validation GT file."""
        ann = getattr(self, "val_ann_file", None)
        pairs = tuple(tuple(p) for p in self.flip_pairs)
        return DatasetFacts(
            "pose",
            tuple(self.class_names),
            pairs,
            self.skeleton,
            None if ann is None else Path(ann),
            self.heatmap_stride,
        )

    @property
    def num_joints(self) -> int:
        """Number of joints K."""
        return len(self.class_names)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(h, w) of the GT heatmaps."""
        return self.input_size[0] // self.heatmap_stride, self.input_size[1] // self.heatmap_stride

    def instances(self, split: str, train: bool, bad: BadSamples) -> list[PoseInstance]:  # pragma: no cover
        raise NotImplementedError

    def dataset(self, split: str, train: bool) -> TopDownDataset:
        """The dataset of ``split`` with training augmentation when ``train``."""
        bad = BadSamples(self.skip_bad, f"{type(self).__name__} {split}")
        return TopDownDataset(
            self.instances(split, train, bad),
            self.input_size,
            self.flip_pairs,
            bad,
            self.heatmap_stride,
            self.sigma,
            augment=train and self.augment,
            flip=train and self.flip,
            scale_factor=self.scale_factor,
            rotation=self.rotation,
            clip_visible=train,
        )

    def split_dataset(self, train: bool) -> TopDownDataset:
        return self.dataset(self.train_split if train else self.val_split, train)
