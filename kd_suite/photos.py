"""Plain photos for ``kd-suite predict``: the images of a file or folder, their ids, read in batches.

A photo's id follows the results convention of kd-suite's evaluators: the file stem, as an integer when it is all
digits (COCO and CrowdPose ids; VOC's ``000123``, which ``evaluate --format voc`` maps back to its zero-padded id),
else the stem itself (VOC ids such as ``2008_000123``). Output files are named by stem, so two images of one folder
may not share a stem (``a.jpg`` and ``a.png``) nor an id (``7.jpg`` and ``007.jpg``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .data.common import read_image
from .data.errors import DatasetError

#: file endings read as images (case-insensitive)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class PhotoError(ValueError):
    """The input names no usable images; the message says which path and what to give instead."""


def image_id(stem: str) -> int | str:
    """The results id of a file stem: ``int`` when the stem is all ASCII digits, else the stem."""
    return int(stem) if stem.isascii() and stem.isdigit() else stem


def find_images(path: str | Path) -> list[Path]:
    """The image files to predict: ``path`` itself, or the images directly inside the folder ``path`` (sorted).

    Raises:
        PhotoError: ``path`` does not exist, is not an image, is a folder without images, or two of its images would
            write the same output file (same stem or same id).
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise PhotoError(f"--input {path} is not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        return [path]
    if not path.is_dir():
        raise PhotoError(f"--input {path} does not exist; give an image file or a folder of images")
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise PhotoError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {path}; sub-folders are not searched, so give "
            "the folder that holds the image files"
        )
    seen: dict[int | str, Path] = {}
    for image in images:
        for key in {image.stem, image_id(image.stem)}:
            if key in seen:
                raise PhotoError(
                    f"{seen[key].name} and {image.name} in {path} would write the same output (outputs are named "
                    "by file stem, ids are stems read as numbers); rename one of them"
                )
            seen[key] = image
    return images


@dataclass
class Photo:
    """One readable image.

    Attributes:
        path: the file.
        image: (H, W, 3) RGB uint8 pixels.
    """

    path: Path
    image: np.ndarray

    @property
    def stem(self) -> str:
        """The file name without its ending (names the output files)."""
        return self.path.stem

    @property
    def id(self) -> int | str:
        """The results id (:func:`image_id` of the stem)."""
        return image_id(self.path.stem)

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) in pixels."""
        return int(self.image.shape[0]), int(self.image.shape[1])


class PhotoReader:
    """Batches of readable photos with a progress bar over the images; unreadable files are skipped with a warning.

    Args:
        paths: the image files, in order.
        batch_size: photos per batch (the last batch may be smaller).
        desc: progress-bar label.
        progress: show the progress bar (on stderr).

    Attributes:
        skipped: the files that could not be read, in order.
        read: number of photos yielded so far.
    """

    def __init__(self, paths: Sequence[Path], batch_size: int, desc: str = "predict", progress: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.paths, self.batch_size, self.desc, self.progress = list(paths), batch_size, desc, progress
        self.skipped: list[Path] = []
        self.read = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[list[Photo]]:
        bar = tqdm(total=len(self.paths), desc=self.desc, unit="img", disable=not self.progress, file=sys.stderr)
        batch: list[Photo] = []
        try:
            for path in self.paths:
                try:
                    batch.append(Photo(path, read_image(path)))
                except DatasetError as err:
                    self.skipped.append(path)
                    tqdm.write(f"kd-suite predict: warning: skipping {path}: {err.problem or 'unreadable'}", sys.stderr)
                    bar.update(1)
                    continue
                if len(batch) == self.batch_size:
                    yield from self._emit(batch, bar)
                    batch = []
            if batch:
                yield from self._emit(batch, bar)
        finally:
            bar.close()

    def _emit(self, batch: list[Photo], bar: tqdm) -> Iterator[list[Photo]]:
        self.read += len(batch)
        yield batch
        bar.update(len(batch))
