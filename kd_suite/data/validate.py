"""Checks on annotation values shared by the loaders: numeric, finite, in a sane range, of the right type.

Every check raises :class:`~kd_suite.data.errors.DatasetError` naming the file and the entry, so a NaN joint, an
infinite box or a string where a number belongs stops at load time instead of reaching a batch as NaN or as a crop
of garbage.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadSamples, DatasetError

#: no dataset image is this large; a coordinate or size beyond it is a corrupt value, not a real annotation
MAX_PIXELS = 100_000.0


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (error messages quote values, not whole files)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finite_array(value: Any, where: str, what: str, fix: str, limit: float = MAX_PIXELS) -> np.ndarray:
    """``value`` as a float64 array whose entries are finite and at most ``limit`` in magnitude.

    Raises:
        DatasetError: ``value`` is not numeric (wrong type, ragged lists), holds NaN/Inf, or an absurd value.
    """
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DatasetError(where, f"{what} {short(value)} is not numeric", fix) from err
    if not np.isfinite(array).all():
        raise DatasetError(where, f"{what} holds NaN or Inf values ({short(value)})", fix)
    if array.size and np.abs(array).max() > limit:
        raise DatasetError(where, f"{what} holds absurd values (|v| > {limit:g}: {short(value)})", fix)
    return array


def finite_number(value: Any, where: str, what: str, fix: str, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]`` (booleans, strings, lists, NaN and Inf rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(where, f"{what} {short(value)} is not a number", fix)
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise DatasetError(where, f"{what} {short(value)} is outside [{low:g}, {high:g}]", fix)
    return number


def image_size(width: Any, height: Any, where: str, fix: str) -> tuple[int, int]:
    """Validated ``(width, height)`` of an image record: whole positive numbers no larger than :data:`MAX_PIXELS`."""
    w = finite_number(width, where, "image width", fix, 1, MAX_PIXELS)
    h = finite_number(height, where, "image height", fix, 1, MAX_PIXELS)
    return int(w), int(h)


def check_box(box: Any, width: int, height: int, where: str, fix: str) -> tuple[float, float, float, float]:
    """Validate a COCO ``[x, y, w, h]`` box: 4 finite numbers, positive size and inside the image (small tolerance)."""
    if isinstance(box, (str, bytes, dict)) or not hasattr(box, "__len__") or len(box) != 4:
        raise DatasetError(where, f"bbox {short(box)} is not 4 numbers", fix)
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError, OverflowError) as err:
        raise DatasetError(where, f"bbox {short(box)} is not 4 numbers", fix) from err
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise DatasetError(where, f"bbox {short(box)} holds NaN or Inf values", fix)
    if not (w > 0 and h > 0):
        raise DatasetError(where, f"degenerate bbox {box} (width and height must be > 0)", fix)
    tol_x, tol_y = max(2.0, 0.01 * width), max(2.0, 0.01 * height)
    if x < -tol_x or y < -tol_y or x + w > width + tol_x or y + h > height + tol_y:
        raise DatasetError(where, f"bbox {box} lies outside the {width}x{height} image", fix)
    return x, y, w, h


def coco_images(path: Path, images: Any, bad: BadSamples) -> dict[int, dict]:
    """Image records of a COCO-style json by id; each needs an integer ``id``, a ``file_name`` and a valid size.

    A bad record is reported through ``bad`` (raised, or skipped with a count) and left out.
    """
    if not isinstance(images, list):
        raise DatasetError(path, f"'images' is {type(images).__name__}, expected a list", "give a COCO-format json")
    fix = "each image needs an integer id, a file_name and width/height in pixels; fix it or pass skip_bad=True"
    out: dict[int, dict] = {}
    for k, im in enumerate(images):
        where = f"{path} [image {k}]"
        try:
            im = as_record(im, where, "image record", fix)
            image_id = integer_id(im.get("id"), where, "image id", fix)
            if not isinstance(im.get("file_name", ""), str):
                raise DatasetError(where, f"file_name {short(im.get('file_name'))} is not a string", fix)
            image_size(im.get("width"), im.get("height"), where, fix)
            if "crowdIndex" in im:
                finite_number(im["crowdIndex"], where, "crowdIndex", fix, 0.0, 1e3)
        except DatasetError as err:
            bad.handle(err)
            continue
        out[image_id] = im
    return out


def as_record(entry: Any, where: str, what: str, fix: str) -> dict:
    """``entry`` if it is a json object, else a :class:`DatasetError` (a number or a list where a record belongs)."""
    if not isinstance(entry, dict):
        raise DatasetError(where, f"{what} {short(entry)} is not an object", fix)
    return entry


def integer_id(value: Any, where: str, what: str, fix: str) -> int:
    """``value`` as an int id (ints, and floats holding whole numbers as some exporters write them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise DatasetError(where, f"{what} {short(value)} is not an integer", fix)
    return int(value)
