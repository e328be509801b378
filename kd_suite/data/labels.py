"""Label maps on disk: single-channel 8-bit PNGs of class ids, grayscale (LIP) or palette (SCHP, ``kd-suite predict``).

A palette PNG's pixels are palette indices, the palette only colours them; OpenCV would expand it to colours, so such
files are decoded with PIL, which keeps the indices.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError, missing


def is_palette_png(data: np.ndarray) -> bool:
    """True for the bytes of a PNG whose colour type is 3 (palette): its pixels are indices, the palette only
    colours them (how SCHP and ``kd-suite predict`` write label maps)."""
    return data.size > 25 and data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and int(data[25]) == 3


def read_label(path: str | Path, num_classes: int) -> np.ndarray:
    """Read a single-channel 8-bit label PNG (grayscale, or palette: its indices are the ids); ids must be
    < ``num_classes`` or 255 (ignore)."""
    data = np.fromfile(str(path), np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise missing(path, "label file", "check the annotation folder, or pass skip_bad=True")
    if is_palette_png(data):  # OpenCV expands a palette to colours; PIL keeps the indices
        label = _palette_indices(data)
    else:
        label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if label is None:
        raise DatasetError(path, "label image cannot be decoded", "re-extract the file or pass skip_bad=True")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(
            path,
            f"label must be a single-channel 8-bit PNG of class ids, got shape {label.shape} dtype {label.dtype}",
            "save labels as mode 'L' (or palette) PNGs holding raw ids (a colour rendering is not a label map)",
        )
    bad = (label >= num_classes) & (label != 255)
    if bad.any():
        raise DatasetError(
            path,
            f"label ids {sorted(np.unique(label[bad]).tolist())[:8]} out of range 0..{num_classes - 1} (255 = ignore)",
            "fix the label file or pass skip_bad=True",
        )
    return label


def _palette_indices(data: np.ndarray) -> np.ndarray | None:
    """(H, W) uint8 indices of palette-PNG bytes, ``None`` if they cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            return np.asarray(image, dtype=np.uint8) if image.mode == "P" else None
    except (OSError, UnidentifiedImageError, ValueError):
        return None
