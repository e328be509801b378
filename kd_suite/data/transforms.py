"""Geometric and photometric transforms shared by the pose, parsing and detection loaders (NumPy/OpenCV).

Coordinate convention: pixel ``i`` has its centre at ``i`` (OpenCV's), so an image of width ``W`` spans
``[-0.5, W - 0.5]``. Boxes are ``(x1, y1, x2, y2)`` in the same continuous coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


# ---------------------------------------------------------------------------------------------------------- affine
def affine_matrix(
    center: Sequence[float], size: Sequence[float], rotation: float, output_size: Sequence[int]
) -> np.ndarray:
    """(2, 3) matrix mapping a rotated box of the source image onto an output crop.

    The box of width/height ``size`` centred on ``center`` fills the output of ``output_size`` (w, h); its content
    appears rotated counter-clockwise by ``rotation`` degrees. ``size`` must already have the output's aspect ratio
    (the x factor ``out_w / size_w`` is used for both axes, as in HRNet's ``get_affine_transform``).
    """
    out_w, out_h = output_size
    f = out_w / float(size[0])
    c, s = np.cos(np.deg2rad(rotation)), np.sin(np.deg2rad(rotation))
    lin = f * np.array([[c, s], [-s, c]])  # visual CCW rotation in y-down image coordinates
    shift = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0]) - lin @ np.asarray(center, np.float64)
    return np.concatenate([lin, shift[:, None]], axis=1)


def warp_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine."""
    return cv2.invertAffineTransform(matrix.astype(np.float64))


def box_to_center_size(box: Sequence[float], aspect: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """COCO ``[x, y, w, h]`` → (centre, size) grown to the crop aspect ``w / h`` and padded (HRNet ``_box2cs``)."""
    x, y, w, h = (float(v) for v in box)
    center = np.array([x + w / 2.0, y + h / 2.0])
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h]) * padding


def sanitize_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float] | None:
    """COCO ``[x, y, w, h]`` clipped to a ``width`` × ``height`` image as pixel-inclusive ``(x, y, w - 1, h - 1)``
    (HRNet's ``_sanitize``, the person boxes of CrowdPose validation and ``kd-suite predict``); ``None`` when nothing
    is left."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(width - 1.0, x1 + max(0.0, w - 1)), min(height - 1.0, y1 + max(0.0, h - 1))
    if x2 < x1 or y2 < y1 or w * h <= 0 or (x2 == x1 and y2 == y1):  # a point box has no crop size
        return None
    return x1, y1, x2 - x1, y2 - y1


# ---------------------------------------------------------------------------------------------------------- pose
def gaussian_heatmaps(
    joints: np.ndarray, visible: np.ndarray, heatmap_size: Sequence[int], stride: float, sigma: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """GT heatmaps: an unnormalised Gaussian (peak 1) per joint at its sub-pixel heatmap location.

    A joint at input pixel ``x`` sits at heatmap coordinate ``x / stride`` (decode with ``u * stride``), the
    HRNet/mmpose ``MSRAHeatmap`` convention without rounding. Joints outside the heatmap get an all-zero map and
    weight 0.

    Args:
        joints: (K, 2) joint positions in input pixels.
        visible: (K,) 1 for labelled joints.
        heatmap_size: (w, h).
        stride: input pixels per heatmap pixel.
        sigma: Gaussian std in heatmap pixels.

    Returns:
        heatmaps (K, h, w) float32 and the updated (K,) float32 weights.
    """
    w, h = heatmap_size
    uv = joints / stride  # (K, 2)
    inside = (uv[:, 0] >= -0.5) & (uv[:, 0] <= w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= h - 0.5)
    weight = ((visible > 0) & inside).astype(np.float32)  # (K,)
    gx = np.exp(-((np.arange(w)[None, :] - uv[:, :1]) ** 2) / (2 * sigma**2))  # (K, w)
    gy = np.exp(-((np.arange(h)[None, :] - uv[:, 1:]) ** 2) / (2 * sigma**2))  # (K, h)
    maps = gy[:, :, None] * gx[:, None, :] * weight[:, None, None]  # (K, h, w)
    return maps.astype(np.float32), weight


def flip_joints(
    joints: np.ndarray, visible: np.ndarray, width: int, pairs: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror (K, 2) joints of an image of ``width`` pixels and swap the left/right ``pairs``."""
    joints, visible = joints.copy(), visible.copy()
    joints[:, 0] = width - 1 - joints[:, 0]
    for a, b in pairs:
        joints[[a, b]] = joints[[b, a]]
        visible[[a, b]] = visible[[b, a]]
    return joints, visible


# ---------------------------------------------------------------------------------------------------------- parsing
def swap_lut(num_classes: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """(256,) uint8 lookup table that swaps the class ids of ``pairs`` (255 and others unchanged)."""
    lut = np.arange(256, dtype=np.uint8)
    for a, b in pairs:
        if max(a, b) >= num_classes:
            raise ValueError(f"flip pair {(a, b)} out of range for {num_classes} classes")
        lut[a], lut[b] = b, a
    return lut


def hflip_parsing(image: np.ndarray, mask: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an image and its label map; left/right classes are swapped with ``lut`` (see :func:`swap_lut`)."""
    return np.ascontiguousarray(image[:, ::-1]), lut[mask[:, ::-1]]


# ---------------------------------------------------------------------------------------------------------- detection
def letterbox(image: np.ndarray, size: Sequence[int], fill: int = 114) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to ``size`` (h, w), image centred.

    Returns:
        the (h, w, 3) image, the resize factor ``r`` and the (x, y) padding; a box maps as ``box * r + pad``.
    """
    h, w = size
    ih, iw = image.shape[:2]
    r = min(h / ih, w / iw)
    nh, nw = max(1, round(ih * r)), max(1, round(iw * r))
    px, py = (w - nw) // 2, (h - nh) // 2
    out = np.full((h, w, 3), fill, np.uint8)
    out[py : py + nh, px : px + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out, r, (float(px), float(py))


def place(
    image: np.ndarray, boxes: np.ndarray, size: Sequence[int], r: float, offset: Sequence[float], fill: int = 114
) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``image`` by ``r`` and paste it with its top-left at ``offset`` (x, y) into an (h, w) canvas.

    Boxes (N, 4) are mapped the same way and clipped to the canvas (they may become degenerate: filter after).
    """
    h, w = size
    ih, iw = image.shape[:2]
    nh, nw = max(1, round(ih * r)), max(1, round(iw * r))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    ox, oy = round(offset[0]), round(offset[1])
    out = np.full((h, w, 3), fill, np.uint8)
    x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + nw, w), min(oy + nh, h)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = resized[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    boxes = boxes * r + np.array([ox, oy, ox, oy], np.float32)
    return out, clip_boxes(boxes, w, h)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip (N, 4) xyxy boxes to ``[0, width] × [0, height]``."""
    out = boxes.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def keep_boxes(original: np.ndarray, transformed: np.ndarray, r: float, min_size: float = 2.0) -> np.ndarray:
    """(N,) bool: boxes at least ``min_size`` px wide/high that kept ≥ 20 % of their (scaled) area after clipping."""
    wh = transformed[:, 2:] - transformed[:, :2]
    area = wh.prod(1)
    before = ((original[:, 2:] - original[:, :2]) * r).prod(1)
    return (wh >= min_size).all(1) & (area >= 0.2 * np.maximum(before, 1e-6))


def hsv_jitter(
    image: np.ndarray, rng: np.random.Generator, hgain: float = 0.015, sgain: float = 0.7, vgain: float = 0.4
) -> np.ndarray:
    """Random hue/saturation/value gains on an RGB uint8 image (YOLO-style, via lookup tables)."""
    gains = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
