"""Overlays for samples and predictions: parsing masks, skeletons and boxes, plus a titled image grid.

Every drawing function takes and returns an RGB uint8 (H, W, 3) array (the input is not modified). Skeleton colours:
**left limbs blue, right limbs red**, centre green.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .data.schema import (
    COCO_JOINTS,
    COCO_SKELETON,
    CROWDPOSE_JOINTS,
    CROWDPOSE_SKELETON,
    MPII_JOINTS,
    MPII_SKELETON,
    joint_sides,
)

#: format → (skeleton edges, joint names)
SKELETONS: dict[str, tuple[tuple[tuple[int, int], ...], tuple[str, ...]]] = {
    "mpii": (MPII_SKELETON, MPII_JOINTS),
    "crowdpose": (CROWDPOSE_SKELETON, CROWDPOSE_JOINTS),
    "coco": (COCO_SKELETON, COCO_JOINTS),
}
SIDE_COLOURS = {"left": (30, 144, 255), "right": (235, 50, 50), "center": (40, 200, 60)}


def lip_palette(num: int = 256) -> np.ndarray:
    """(num, 3) uint8 colours: the PASCAL/LIP colour map (class bits spread over the RGB high bits); 255 → white."""
    palette = np.zeros((num, 3), np.uint8)
    for k in range(num):
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[k] = (r, g, b)
    if num > 255:
        palette[255] = 255
    return palette


_PALETTE = lip_palette()


def colorize_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) class ids → (H, W, 3) RGB with the LIP palette."""
    return _PALETTE[np.asarray(mask, np.uint8)]


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend the coloured mask over the image where the mask is not background (0) or ignore (255)."""
    out = image.astype(np.float32).copy()
    on = (mask > 0) & (mask != 255)
    out[on] = (1 - alpha) * out[on] + alpha * colorize_mask(mask)[on]
    return out.astype(np.uint8)


def _thickness(image: np.ndarray) -> int:
    return max(1, round(min(image.shape[:2]) / 160))


def draw_pose(
    image: np.ndarray, keypoints: np.ndarray, visible: np.ndarray | None = None, skeleton: str = "mpii"
) -> np.ndarray:
    """Draw one person's joints (K, 2) and limbs; joints with ``visible <= 0`` are skipped."""
    edges, names = SKELETONS[skeleton]
    if len(keypoints) != len(names):
        raise ValueError(f"{skeleton} skeleton has {len(names)} joints, got {len(keypoints)} keypoints")
    sides = joint_sides(names)
    vis = np.ones(len(keypoints), bool) if visible is None else np.asarray(visible) > 0
    out = np.ascontiguousarray(image).copy()
    t = _thickness(out)
    pts = [(int(round(x)), int(round(y))) for x, y in np.asarray(keypoints, np.float64)]
    for a, b in edges:
        if vis[a] and vis[b]:
            side = sides[a] if sides[a] == sides[b] else "center"
            cv2.line(out, pts[a], pts[b], SIDE_COLOURS[side], t + 1, cv2.LINE_AA)
    for k, p in enumerate(pts):
        if vis[k]:
            cv2.circle(out, p, t + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, p, t, SIDE_COLOURS[sides[k]], -1, cv2.LINE_AA)
    return out


def box_colour(label: int) -> tuple[int, int, int]:
    """A distinct saturated RGB colour per class index."""
    hue = (label * 47) % 180
    rgb = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[int],
    class_names: Sequence[str],
    scores: Sequence[float] | None = None,
) -> np.ndarray:
    """Draw (N, 4) xyxy boxes with their class names (and scores); labels < 0 (padding) are skipped."""
    out = np.ascontiguousarray(image).copy()
    t = _thickness(out)
    for k, (box, label) in enumerate(zip(np.asarray(boxes, np.float64), labels)):
        if label < 0:
            continue
        colour = box_colour(int(label))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, t)
        text = class_names[int(label)] + (f" {scores[k]:.2f}" if scores is not None else "")
        scale = 0.3 + 0.1 * t
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(y1, th + 2)
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty), colour, -1)
        cv2.putText(out, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def save_grid(
    images: Sequence[np.ndarray], path: str | Path, titles: Sequence[str] | None = None, ncols: int | None = None
) -> Path:
    """Save RGB images as a titled grid PNG (images may differ in size) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not images:
        raise ValueError("save_grid needs at least one image")
    n = len(images)
    ncols = ncols or min(n, max(1, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k])
            if titles is not None:
                ax.set_title(str(titles[k]), fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def prediction_grid(models: dict[str, Any], datamodule: Any, path: Path, title: str, n: int = 4) -> Path:
    """Ground truth and each model's predictions (columns) on the first ``n`` validation images (rows), saved as PNG.

    ``models`` maps a label to a task module (its ``render`` draws, its ``student`` predicts), in column order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = {label: module.eval() for label, module in models.items()}
    datamodule.setup("validate")
    batch = next(iter(datamodule.val_dataloader()))
    reference = next(iter(models.values()))
    columns = {"ground truth": reference.render(batch, None, n)}
    with torch.no_grad():
        for label, module in models.items():
            columns[label] = module.render(batch, module.student(batch.image), n)
    n = min(n, len(columns["ground truth"]))
    fig, axes = plt.subplots(n, len(columns), figsize=(2.6 * len(columns), 2.6 * n), squeeze=False)
    for col, (label, pictures) in enumerate(columns.items()):
        for row in range(n):
            ax = axes[row][col]
            ax.imshow(pictures[row])
            ax.set_axis_off()
            if row == 0:
                ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
