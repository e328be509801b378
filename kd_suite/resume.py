"""Exact resume: a run killed at any moment and resumed with ``--ckpt_path last`` ends bit-identical to one that never
stopped (same seed, deterministic CPU kernels).

Lightning restores weights, optimizer, scheduler, loop counters and callback states, but not the random streams that
pick the next epoch's sample order, loader-worker seeds, augmentations and dropout. :class:`RandomState` stores them
in every checkpoint (torch CPU and CUDA generators, NumPy's and Python's global streams) and puts them back when a
resumed fit starts, and again after its sanity check (which draws from them too), so the first resumed epoch's loader
iterator — which Lightning creates before that epoch's hooks run — draws from the saved state. Datasets restart
their augmentation streams every epoch from that state (per loader worker, or through
:class:`~kd_suite.data.common.ReseedingSampler` without workers); ``persistent_workers`` keeps worker streams across
epochs, so it is the one loader setting under which a resume is not bit-exact (a warning says so).

:class:`AtomicCheckpointIO` writes a checkpoint to a temporary file and renames it, so a kill during a save leaves the
previous ``last.ckpt`` whole.

Checkpoints are written at epoch ends, so a resume repeats the part of the epoch the kill interrupted.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO


def capture() -> dict[str, Any]:
    """The global random streams as tensors and plain lists (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Put back the streams of :func:`capture`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomState(L.Callback):
    """Save the random streams in every checkpoint; restore them when the first epoch after a resume starts."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()
        datamodule = trainer.datamodule
        if getattr(datamodule, "persistent_workers", False) and getattr(datamodule, "num_workers", 0) > 0:
            warnings.warn(
                "persistent_workers=True: loader workers keep their augmentation streams across epochs, so a run "
                "resumed with --ckpt_path last will not be bit-identical to an uninterrupted one",
                stacklevel=2,
            )

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()  # the sanity check's loader drew from the restored streams

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = None  # the first epoch's loader iterator exists now

    def _restore(self) -> None:
        if self._pending is not None:
            restore(self._pending)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write ``path.tmp`` then rename it onto ``path``: a checkpoint file is always either the old or the new one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        fs = get_filesystem(path)
        if fs.protocol not in ("file", ("file", "local")) and "file" not in fs.protocol:
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, target)
