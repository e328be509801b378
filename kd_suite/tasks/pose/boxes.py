"""Person boxes for ``kd-suite predict`` with a pose checkpoint (``--boxes``), filtered and keyed by image.

The file is a COCO results list ``[{"image_id", "bbox": [x, y, w, h], "score", "category_id"}]`` (a detector's
output, e.g. ``detections.json`` of ``kd-suite predict`` on a detection checkpoint) or a COCO instances / keypoints
json (its non-crowd ``annotations``, score 1). Boxes are kept when their category is the one asked for and their
score reaches the threshold.

Images are matched to photos the way detection predict names them: through an ``images`` list (the json's own, or
that of the ``images.json`` next to a results list) from file stem to id, else by the photo's id (its stem, an
integer when all digits). Ids compare as :func:`kd_suite.photos.image_id` reads them, so ``"000002"`` matches ``2``.
Category names resolve through the same file's ``categories``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...photos import Photo, image_id

FORMAT = "a COCO results list [{image_id, bbox: [x, y, w, h], score, category_id}] or a COCO json with annotations"


class BoxesError(ValueError):
    """The ``--boxes`` file cannot be used; the message names the file, the entry and the expected format."""


@dataclass
class PersonBoxes:
    """The kept person boxes of a ``--boxes`` file.

    Attributes:
        source: the file.
        by_image: image id → ``[(box [x, y, w, h] original pixels, score)]``.
        ids_by_stem: file stem → image id, from an ``images`` list (empty without one).
        selection: which boxes were kept, in words (category, score threshold).
        total: boxes in the file before filtering.
    """

    source: Path
    by_image: dict[int | str, list[tuple[list[float], float]]] = field(default_factory=dict)
    ids_by_stem: dict[str, int | str] = field(default_factory=dict)
    selection: str = ""
    total: int = 0

    def for_photo(self, photo: Photo) -> list[tuple[list[float], float]]:
        """The boxes of ``photo`` (empty when the file has none for it)."""
        return self.by_image.get(self.ids_by_stem.get(photo.stem, photo.id), [])

    @property
    def kept(self) -> int:
        """Boxes kept after filtering."""
        return sum(len(v) for v in self.by_image.values())


def _canonical(value: Any) -> int | str:
    return image_id(str(value))


def _load(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise BoxesError(f"{what} {path}: not a readable json file ({type(err).__name__}: {str(err)[:120]})") from err


def _entries(path: Path) -> tuple[list[Any], dict[str, Any]]:
    """The box entries of the file and the document holding its ``images`` / ``categories`` (may be empty)."""
    data = _load(path, "--boxes")
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        return [a for a in data["annotations"] if not (isinstance(a, dict) and a.get("iscrowd"))], data
    if not isinstance(data, list):
        raise BoxesError(f"--boxes {path}: expected {FORMAT}")
    sibling = path.parent / "images.json"
    meta = _load(sibling, "images.json next to --boxes") if sibling.is_file() and sibling != path else {}
    return data, meta if isinstance(meta, dict) else {}


def _category(category: str | None, categories: list[Any], path: Path) -> tuple[int | None, str]:
    """The category id to keep (``None``: all) and its description."""
    named = {str(c["name"]): c["id"] for c in categories if isinstance(c, dict) and "name" in c and "id" in c}
    if category is None:
        if "person" in named:
            return int(named["person"]), f"category {named['person']} (person)"
        return None, "every category"
    text = category.strip()
    if text.lstrip("-").isdigit():
        name = next((n for n, i in named.items() if i == int(text)), None)
        return int(text), f"category {int(text)}" + (f" ({name})" if name is not None else "")
    if text not in named:
        where = f"the categories {sorted(named)}" if named else "no categories (no images.json beside it)"
        raise BoxesError(
            f"--box-category {text!r}: {path} has {where}; give one of those names or a category id (a number)"
        )
    return int(named[text]), f"category {named[text]} ({text})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_person_boxes(path: str | Path, category: str | None = None, threshold: float = 0.3) -> PersonBoxes:
    """Read, check and filter the person boxes of ``path``.

    Args:
        path: the ``--boxes`` json.
        category: a category name (looked up in the file's categories) or id; ``None`` keeps the category named
            ``person`` when the file names one, else every box.
        threshold: boxes scoring below it are dropped.

    Raises:
        BoxesError: the file is missing, not json, not one of the two formats, holds a malformed entry, or
            ``category`` names a category it does not list.
    """
    path = Path(path)
    if not path.is_file():
        raise BoxesError(f"--boxes {path} does not exist; give {FORMAT}")
    entries, meta = _entries(path)
    wanted, described = _category(category, meta.get("categories") or [], path)
    boxes = PersonBoxes(path, selection=f"{described}, score ≥ {threshold:g}", total=len(entries))
    for im in meta.get("images") or []:
        if isinstance(im, dict) and isinstance(im.get("file_name"), str) and "id" in im:
            boxes.ids_by_stem[Path(im["file_name"]).stem] = _canonical(im["id"])
    for n, entry in enumerate(entries):
        box = entry.get("bbox") if isinstance(entry, dict) else None
        xywh = [_number(v) for v in box] if isinstance(box, list) and len(box) == 4 else None
        score = _number(entry.get("score", 1.0)) if isinstance(entry, dict) else None
        if xywh is None or None in xywh or score is None or isinstance(entry.get("image_id"), (bool, type(None))):
            raise BoxesError(
                f"--boxes {path}: entry {n} ({str(entry)[:100]}) lacks an image_id, a bbox of 4 finite numbers or a "
                f"finite score; expected {FORMAT}"
            )
        if wanted is not None and entry.get("category_id", 1) != wanted:
            continue
        if score < threshold or xywh[2] <= 0 or xywh[3] <= 0:
            continue
        boxes.by_image.setdefault(_canonical(entry["image_id"]), []).append((xywh, score))
    return boxes
