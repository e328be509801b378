"""Pieces shared by the DataModules: image/label IO with clear errors, normalisation, layouts and loaders."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, get_worker_info

from .errors import BadSamples, DatasetError, missing

#: ImageNet statistics in 0..255 RGB, the normalisation timm backbones expect
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); a missing or undecodable file raises :class:`DatasetError`."""
    data = np.fromfile(str(path), np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise missing(path, "image file", "check the dataset root and the image folder, or pass skip_bad=True")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(
            path, "image cannot be decoded (corrupt or not an image)", "re-extract the file or pass skip_bad=True"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_json(path: Path, fix: str) -> Any:
    """Load a json file; missing, empty or malformed files raise :class:`DatasetError`."""
    if not path.is_file():
        raise missing(path, "annotation file", fix)
    data = path.read_bytes()
    if not data.strip():
        raise DatasetError(path, "annotation file is empty", fix)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8 (UnicodeDecodeError), absurd nesting
        raise DatasetError(path, f"not valid json ({str(e)[:200]})", fix) from e


def read_id_list(path: Path) -> list[str]:
    """Read an id list: one stem per line, or HRNet pairs / JPPNet triplets (the stem of the first path is used)."""
    if not path.is_file():
        raise missing(path, "id list", "give the split's id list (one image id per line)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(path, f"id list is not UTF-8 text ({e.reason})", "list one image id per line") from e
    ids = [Path(line.split()[0]).stem for line in text.splitlines() if line.strip()]
    if not ids:
        raise DatasetError(path, "id list is empty", "list one image id per line")
    return ids


def first_existing(candidates: Sequence[Path], what: str, fix: str) -> Path:
    """Return the first existing path of ``candidates`` (alternative dataset layouts), else raise naming them all."""
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates[1:])
    raise missing(candidates[0], what, f"{fix} (also looked for {tried})" if tried else fix)


_MEAN_T = torch.from_numpy(MEAN)[:, None, None]
_INV_STD_T = torch.from_numpy(1.0 / STD)[:, None, None]


def to_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 RGB → (3, H, W) float32 normalised with ImageNet mean/std."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # (3, H, W) uint8 view
    return x.to(torch.float32, memory_format=torch.contiguous_format).sub_(_MEAN_T).mul_(_INV_STD_T)


def denormalize(image: Tensor) -> np.ndarray:
    """(3, H, W) normalised float → (H, W, 3) uint8 RGB (inverse of :func:`to_tensor`)."""
    x = image.detach().float().cpu().numpy().transpose(1, 2, 0) * STD + MEAN  # (H, W, 3)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def worker_init(worker_id: int) -> None:
    """One torch thread per loader worker (OpenCV: see BaseDataModule.loader) and a distinct random stream each.

    Forked workers inherit the parent's generators (including albumentations' own), so without reseeding every
    worker would draw the same augmentations. The global rank is mixed in so DDP ranks differ too (their loaders
    share a base seed after ``seed_everything``).
    """
    torch.set_num_threads(1)
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, SampleDataset):
        info.dataset.reseed((info.seed + 1_000_003 * int(rank_zero_only.rank)) % 2**32)


class SampleDataset(Dataset):
    """Map-style dataset over prepared sample records, skipping lazily found bad samples when asked.

    Subclasses implement :meth:`load` (read and transform one record) and draw randomness from ``self.rng``. With
    ``bad.skip`` a record whose image turns out unreadable is replaced by the next good one and counted in a warning.
    """

    def __init__(self, records: list[Any], bad: BadSamples) -> None:
        self.records = records
        self.bad = bad
        self.reseed(torch.initial_seed() % 2**32)  # follows seed_everything in the main process

    def reseed(self, seed: int) -> None:
        """Restart the random stream (called per loader worker by :func:`worker_init`)."""
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            try:
                item = self.load(i)
            except DatasetError as e:
                self.bad.handle(e)
                continue
            meta = item["meta"] if isinstance(item, dict) else item[-1]
            meta["sample_index"] = i  # the record read; becomes batch.sample_id (DDP de-duplication)
            return item
        raise DatasetError("dataset", "every sample is bad", "check the dataset files")


class ReseedingSampler(RandomSampler):
    """Random order that also restarts the dataset's augmentation stream each epoch, from torch's global generator.

    Loader workers get a fresh stream per epoch from their seed (:func:`worker_init`); without workers this sampler
    does the same in the main process, so an epoch's augmentations depend only on the global random state at its
    start, which checkpoints store (:mod:`kd_suite.resume`): a resumed run augments as an uninterrupted one.
    """

    def __init__(self, data_source: SampleDataset) -> None:
        super().__init__(data_source)

    def __iter__(self) -> Iterator[int]:
        self.data_source.reseed(int(torch.randint(0, 2**31 - 1, ())))
        return super().__iter__()


class BaseDataModule(L.LightningDataModule):
    """Loader settings, splits, the optional synthetic dataset and the loaders shared by every kd-suite DataModule.

    Subclasses set ``synth_format`` (the ``kd-suite data synth`` format whose folder ``root`` is) and ``collate``
    (a ``staticmethod`` stacking samples into a batch), and implement :meth:`split_dataset`. :meth:`setup` builds the
    training dataset for ``fit`` (or no stage) and the validation dataset for every stage, each once; the test loader
    is the validation loader.

    Args:
        root: the dataset folder.
        input_size: network input (h, w).
        batch_size: samples per batch.
        num_workers: loader processes.
        pin_memory: pin host memory (only when CUDA is available).
        persistent_workers: keep loader processes between epochs.
        augment: random geometric/photometric augmentation on the training split.
        flip: random horizontal flip on the training split.
        train_split: split used for training.
        val_split: split used for validation and test.
        skip_bad: skip missing/corrupt/invalid samples with a counted warning instead of raising.
        synth_if_missing: write a small synthetic dataset into ``root`` when it does not exist.
        synth_num_train: synthetic train scenes.
        synth_num_val: synthetic val scenes.
    """

    synth_format: str = ""
    collate: Callable[[list[Any]], Any]
    datasets: dict[str, Dataset]

    def __init__(
        self,
        root: str | Path,
        input_size: tuple[int, int],
        batch_size: int = 16,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        augment: bool = True,
        flip: bool = True,
        train_split: str = "train",
        val_split: str = "val",
        skip_bad: bool = False,
        synth_if_missing: bool = False,
        synth_num_train: int = 64,
        synth_num_val: int = 16,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augment, self.flip = augment, flip
        self.train_split, self.val_split = train_split, val_split
        self.skip_bad = skip_bad
        self.synth_if_missing = synth_if_missing
        self.synth_num_train = synth_num_train
        self.synth_num_val = synth_num_val
        self.datasets = {}

    def synth_options(self) -> dict[str, Any]:
        """Extra keyword arguments for :func:`kd_suite.data.synth.synthesize` (e.g. the class list)."""
        return {}

    def prepare_data(self) -> None:
        """With ``synth_if_missing``, write a small synthetic dataset into ``root`` when the folder does not exist."""
        if self.root.exists() or not self.synth_if_missing:
            return
        from .synth import FORMAT_DIRS, synthesize  # local: the generator is only needed here

        tmp = self.root.parent / f".{self.root.name}.synth-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"{type(self).__name__}: {self.root} is missing; writing a synthetic {self.synth_format} dataset "
            f"({self.synth_num_train} train / {self.synth_num_val} val images) there"
        )
        synthesize(
            tmp,
            self.synth_num_train,
            self.synth_num_val,
            formats=(self.synth_format,),
            workers=0,
            **self.synth_options(),
        )
        self.root.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / FORMAT_DIRS[self.synth_format], self.root)
        shutil.rmtree(tmp, ignore_errors=True)

    def split_dataset(self, train: bool) -> Dataset:  # pragma: no cover - abstract
        """The training dataset (``train``, with augmentation) or the validation dataset."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and "train" not in self.datasets:
            self.datasets["train"] = self.split_dataset(train=True)
        if "val" not in self.datasets:
            self.datasets["val"] = self.split_dataset(train=False)

    def loader(self, dataset: Dataset, collate: Callable, train: bool) -> DataLoader:
        """A DataLoader with this module's worker settings (shuffled and last batch dropped when training)."""
        workers = self.num_workers
        if workers > 0:
            # one OpenCV thread, set in the parent before the workers fork: calling cv2.setNumThreads inside a forked
            # worker after the parent used OpenCV's pool can deadlock that worker
            cv2.setNumThreads(1)
        reseed = train and workers == 0 and isinstance(dataset, SampleDataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and not reseed,
            sampler=ReseedingSampler(dataset) if reseed else None,
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
            collate_fn=collate,
            worker_init_fn=worker_init if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["train"], self.collate, train=True)

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["val"], self.collate, train=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
