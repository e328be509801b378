"""What ``kd-suite predict`` writes besides each task's own files: json documents, overlay pictures, the summary.

``images.json`` lists the predicted images COCO-style (``file_name``, ``id``, ``width``, ``height``) with the
``categories`` the results' ``category_id`` s refer to, so a results file can be matched back to its pictures and
class names (``kd-suite predict --boxes`` reads it next to a detector's ``detections.json``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .photos import Photo

OVERLAY_DIR = "overlays"
JPEG_QUALITY = 92


def write_json(path: Path, document: Any) -> Path:
    """Write ``document`` as strict JSON (no NaN) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, allow_nan=False) + "\n")
    return path


def save_overlay(picture: np.ndarray, out: Path, stem: str) -> Path:
    """Save an (H, W, 3) RGB uint8 picture as ``out/overlays/<stem>.jpg``."""
    path = out / OVERLAY_DIR / f"{stem}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"cannot encode the overlay of {stem} as JPEG")
    path.write_bytes(data.tobytes())
    return path


def image_entry(photo: Photo) -> dict[str, Any]:
    """The COCO ``images`` entry of a photo: ``file_name``, ``id``, ``width``, ``height``."""
    h, w = photo.size
    return {"file_name": photo.path.name, "id": photo.id, "width": w, "height": h}


def images_document(entries: Sequence[dict[str, Any]], categories: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``images.json`` document: ``{"images": [...], "categories": [{"id", "name", ...}]}``."""
    return {"images": list(entries), "categories": list(categories)}


@dataclass
class PredictReport:
    """What one ``kd-suite predict`` run did, for its closing summary.

    Attributes:
        task: ``"parsing"``, ``"detection"`` or ``"pose"``.
        images: images predicted.
        outputs: (what, where) of every file kind written.
        notes: extra summary lines (fallbacks taken, images without person boxes ...).
        skipped: unreadable input files.
    """

    task: str
    images: int = 0
    outputs: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def summary(self, ckpt: Path, out: Path) -> str:
        """The lines printed at the end of the run."""
        lines = [f"kd-suite predict: {self.images} image{'s' * (self.images != 1)} ({self.task}, {ckpt}) → {out}"]
        lines += [f"  {what:<11} {where}" for what, where in self.outputs]
        if self.skipped:
            names = ", ".join(p.name for p in self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
            lines.append(f"  {'skipped':<11} {len(self.skipped)} unreadable file(s): {names}")
        lines += [f"  {'note':<11} {note}" for note in self.notes]
        return "\n".join(lines)
