"""Write predicted parsing label PNGs (one ``<id>.png`` per image, raw class ids, original size) for evaluation.

The folder is what ``kd-suite evaluate --format lip --gt DIR --pred DIR`` scores. Two ways to fill it: the
:class:`ParsingPredictionWriter` callback under ``kd-suite predict``, or :func:`write_predictions` from Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from tqdm import tqdm

from ...data.batch import ParsingBatch, require_targets
from .module import ParsingDistiller


def save_label_png(label: np.ndarray, path: Path) -> None:
    """Save (H, W) class ids as a single-channel 8-bit PNG (mode L, as LIP GT and CE2P/SCHP readers expect)."""
    if label.ndim != 2 or label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(f"{path}: a label map must be (H, W) with ids in [0, 255], got shape {label.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8), mode="L").save(path)


class ParsingPredictionWriter(BasePredictionWriter):
    """Lightning callback writing each ``ParsingDistiller.predict_step`` result to ``output_dir/<id>.png``.

    Example: ``kd-suite predict --config C.yaml --ckpt_path S.ckpt --return_predictions=false
    --trainer.callbacks+=kd_suite.tasks.parsing.ParsingPredictionWriter --trainer.callbacks.output_dir=preds``.

    Args:
        output_dir: folder for the PNGs (created if missing).
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for item in prediction:
            save_label_png(item["label"], self.output_dir / f"{item['id']}.png")


@torch.no_grad()
def write_predictions(module: ParsingDistiller, batches: Iterable[ParsingBatch], output_dir: str | Path) -> int:
    """Predict every batch with ``module`` (eval mode, its ``flip_test`` setting) and write ``<id>.png`` files.

    Args:
        module: a trained distiller (its student predicts).
        batches: e.g. ``datamodule.val_dataloader()``; each batch needs ``ids`` (the file names) and ``orig_sizes``
            (the label size), which :func:`~kd_suite.data.lip.collate_parsing` fills.
        output_dir: destination folder.

    Returns:
        Number of PNGs written.

    Raises:
        MissingTargetError: a batch lacks ``ids`` or ``orig_sizes``.
    """
    was_training = module.training
    module.eval()
    out, count = Path(output_dir), 0
    for i, batch in enumerate(tqdm(batches, desc="predict", unit="batch")):
        require_targets(batch, ("ids", "orig_sizes"), "write_predictions (files scored at the original size)")
        batch.image = batch.image.to(module.device)
        for item in module.predict_step(batch, i):
            save_label_png(item["label"], out / f"{item['id']}.png")
            count += 1
    module.train(was_training)
    return count
