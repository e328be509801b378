"""Write predicted parsing label PNGs (one ``<id>.png`` per image, raw class ids, original size) for evaluation.

The folder is what ``kd-suite evaluate --format lip --gt DIR --pred DIR`` scores. Three ways to fill it:
``kd-suite predict`` on plain photos (:func:`predict_photos`, which also draws overlays), the
:class:`ParsingPredictionWriter` callback under ``Trainer.predict``, or :func:`write_predictions` from Python.
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
from ...data.common import to_tensor
from ...data.lip import val_transform
from ...photos import PhotoReader
from ...prediction_files import OVERLAY_DIR, PredictReport, save_overlay
from ...viz import lip_palette, overlay_mask
from .module import ParsingDistiller

_PALETTE = lip_palette().reshape(-1).tolist()  # 768 values: the LIP colours of ids 0..255


def save_label_png(label: np.ndarray, path: Path) -> None:
    """Save (H, W) class ids as an 8-bit palette PNG: the pixel values are the raw ids (what LIP GT holds and
    ``kd-suite evaluate`` / ``read_label`` read back), the attached LIP palette only colours them in image viewers."""
    if label.ndim != 2 or label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(f"{path}: a label map must be (H, W) with ids in [0, 255], got shape {label.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label.astype(np.uint8))  # (H, W) uint8 → mode L
    image.putpalette(_PALETTE)  # mode L → P, values kept
    image.save(path)


class ParsingPredictionWriter(BasePredictionWriter):
    """Lightning callback writing each ``ParsingDistiller.predict_step`` result to ``output_dir/<id>.png``.

    Example: ``trainer = L.Trainer(callbacks=[ParsingPredictionWriter("preds")]);
    trainer.predict(module, datamodule.val_dataloader(), return_predictions=False)`` (photos without a dataset
    layout: ``kd-suite predict``).

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


@torch.no_grad()
def predict_photos(
    module: ParsingDistiller, input_size: tuple[int, int], photos: PhotoReader, out: Path, overlays: bool = True
) -> PredictReport:
    """Parse plain photos as validation does and write ``out/<stem>.png`` (+ ``out/overlays/<stem>.jpg``).

    Each photo goes through the LIP validation transform (:func:`~kd_suite.data.lip.val_transform`: the whole image
    resized to ``input_size``), the module's logits (flip-tested when its ``flip_test`` is on) are upsampled to the
    photo's own size and argmaxed, exactly as :meth:`ParsingDistiller.decode`. The label PNGs hold the class ids
    (:func:`save_label_png`); the overlays blend the LIP colours over the photo.

    Args:
        module: the parser (eval mode, on its device).
        input_size: (h, w) network input it was trained at.
        photos: the photos, in batches.
        out: output folder.
        overlays: also write the overlay pictures.
    """
    transform = val_transform(input_size)
    report = PredictReport("parsing")
    for batch in photos:
        image = torch.stack([to_tensor(transform(image=p.image)["image"]) for p in batch])  # (B, 3, h, w)
        logits = module.predict_logits(image.to(module.device))  # (B, K, h', w')
        for photo, label in zip(batch, module.labels_at_sizes(logits, [p.size for p in batch]), strict=True):
            ids = label.to(torch.uint8).cpu().numpy()  # (H0, W0) class ids at the photo's size
            save_label_png(ids, out / f"{photo.stem}.png")
            if overlays:
                save_overlay(overlay_mask(photo.image, ids), out, photo.stem)
        report.images += len(batch)
    report.outputs.append(("label maps", f"{out}/<stem>.png (LIP class ids; kd-suite evaluate --format lip)"))
    if overlays:
        report.outputs.append(("overlays", f"{out / OVERLAY_DIR}/<stem>.jpg"))
    return report
