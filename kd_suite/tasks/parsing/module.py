"""ParsingDistiller: human-parsing training (CE + deep supervision + any KD terms) and LIP-protocol evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...consistency import check_class_count
from ...data.batch import ParsingBatch, require_targets
from ...data.common import denormalize
from ...data.facts import DatasetFacts
from ...distiller import Distiller
from ...metrics.parsing import ParsingScores
from ...outputs import ParsingOutput
from ...viz import overlay_mask
from .flip import flip_permutation, flip_test_logits


class ParsingDistiller(Distiller):
    """Human parsing with optional distillation; validation follows the official LIP protocol.

    Task loss: ``CE(up(logits), mask) + aux_weight · Σ_i CE(up(aux_logits_i), mask)``, CE ignoring ``ignore_index``
    pixels, logits bilinearly upsampled to the mask size (PSPNet/PP-LiteSeg deep supervision, weight 0.4 as in
    DIST_KD ``train_kd.py``). Distillation terms (DIST, GSKD, CWD, per-pixel KD...) come from ``losses`` by tap.

    Validation/test (the shared protocol of :mod:`kd_suite.evaluation`): logits (optionally flip-tested) are upsampled
    to each image's ``batch.orig_sizes``, argmaxed and compared with ``batch.orig_masks``; the per-image confusion
    matrices are summed over the set, each image once (:class:`~kd_suite.metrics.parsing.ParsingScores`). Logs
    ``val/mIoU``, ``val/pixel_acc``, ``val/mean_acc``, ``val/iou/<class>`` and, once, ``val/teacher_mIoU``.

    Args:
        student: the parser being trained (:class:`~kd_suite.tasks.parsing.ParsingNet`, ...).
        num_classes: parsing classes (20 for LIP); must match the student's logits.
        ignore_index: mask value excluded from the loss and the metrics.
        aux_weight: weight of each auxiliary CE.
        flip_test: evaluate on the average of the image's and its mirror's logits (left/right channels swapped back).
        flip_pairs: class pairs swapped by the flip (LIP: 14↔15, 16↔17, 18↔19); ``None`` takes the DataModule's.
        class_names: names for per-class logs; ``None`` takes the DataModule's (class indices without one).
        **kwargs: :class:`~kd_suite.Distiller` arguments (``teacher``, ``teacher_ckpt``, ``losses``, ``optimizer``,
            ``scheduler``, ``scheduler_interval``, ``teacher_fast_path``, ``log_images``).
    """

    def __init__(
        self,
        student: nn.Module,
        num_classes: int = 20,
        ignore_index: int = 255,
        aux_weight: float = 0.4,
        flip_test: bool = False,
        flip_pairs: tuple[tuple[int, int], ...] | None = None,
        class_names: tuple[str, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(student, **kwargs)
        for who, model in [("student", self.student), *[(f"teacher {i}", t) for i, t in enumerate(self.teachers)]]:
            taps = getattr(model, "tap_info", None)
            if not isinstance(taps, dict) or "logits" not in taps:
                raise TypeError(f"{who} {type(model).__name__} must declare tap_info with a 'logits' entry")
            channels = taps["logits"].channels
            if channels != num_classes:
                raise ValueError(
                    f"{who} {type(model).__name__} predicts {channels} classes but num_classes={num_classes}"
                )
        if flip_pairs is not None:
            flip_permutation(num_classes, flip_pairs)  # validates the pairs now rather than at the first validation
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names lists {len(class_names)} names for num_classes={num_classes}")
        self.num_classes, self.ignore_index, self.aux_weight = num_classes, ignore_index, aux_weight
        self.flip_test = flip_test
        self.flip_pairs = None if flip_pairs is None else tuple(map(tuple, flip_pairs))
        self.class_names = None if class_names is None else tuple(class_names)

    def link_data(self, facts: DatasetFacts) -> None:
        """The data's class count must be the model's; unset class names and flip pairs come from the data."""
        super().link_data(facts)
        check_class_count(
            facts,
            self.num_classes,
            "the parser (model.init_args.num_classes)",
            "model.init_args.num_classes and the student's (and teacher's) num_classes",
        )
        if self.class_names is None:
            self.class_names = facts.class_names
        if self.flip_pairs is None and facts.flip_pairs:
            flip_permutation(self.num_classes, facts.flip_pairs)
            self.flip_pairs = facts.flip_pairs

    # ------------------------------------------------------------------ training
    def task_loss(self, output: ParsingOutput, batch: ParsingBatch) -> dict[str, Tensor]:
        """``{"ce": CE(main)}`` plus ``{"aux": aux_weight · Σ CE(aux_i)}`` when the model returned aux logits."""
        terms = {"ce": self._ce(output.logits, batch.mask)}
        if output.aux_logits and self.aux_weight > 0:
            terms["aux"] = self.aux_weight * sum(self._ce(a, batch.mask) for a in output.aux_logits)
        return terms

    def _ce(self, logits: Tensor, mask: Tensor) -> Tensor:
        logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)  # (B, K, H, W)
        return F.cross_entropy(logits.float(), mask, ignore_index=self.ignore_index)

    # ------------------------------------------------------------------ inference
    def predict_logits(self, image: Tensor, model: nn.Module | None = None) -> Tensor:
        """(B, K, h, w) eval logits of ``model`` (the student by default), flip-tested when ``flip_test``."""
        model = self.student if model is None else model
        if self.flip_test:
            if self.flip_pairs is None:
                raise ValueError(
                    "flip_test needs the left/right class pairs: set model.init_args.flip_pairs, or evaluate with a "
                    "DataModule that publishes them (LIPDataModule does)"
                )
            return flip_test_logits(lambda x: model(x).logits, image, self.flip_pairs)
        return model(image).logits

    def labels_at_original_size(self, logits: Tensor, batch: ParsingBatch) -> list[Tensor]:
        """Per image: logits bilinearly upsampled to ``batch.orig_sizes`` (the input size when it is ``None``),
        argmaxed → (H0, W0) class ids."""
        sizes = batch.orig_sizes.tolist() if batch.orig_sizes is not None else [batch.image.shape[-2:]] * len(logits)
        return self.labels_at_sizes(logits, sizes)

    @staticmethod
    def labels_at_sizes(logits: Tensor, sizes: Sequence[Sequence[int]]) -> list[Tensor]:
        """Per image ``i``: (B, K, h, w) ``logits[i]`` bilinearly upsampled to ``sizes[i]`` (H0, W0) and argmaxed."""
        return [_argmax_at(logits[i : i + 1], tuple(size))[0] for i, size in enumerate(sizes)]  # [(H0, W0)]

    def predict_step(self, batch: ParsingBatch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """``[{"id": batch.ids[i] (``"<batch_idx>_<i>"`` without ids), "label": (H0, W0) uint8 class ids at the
        original size}]`` for each image."""
        labels = self.labels_at_original_size(self.predict_logits(batch.image), batch)
        ids = batch.ids or [f"{batch_idx}_{i}" for i in range(len(labels))]
        return [{"id": str(k), "label": lab.to(torch.uint8).cpu().numpy()} for k, lab in zip(ids, labels, strict=True)]

    # ------------------------------------------------------------------ evaluation (protocol: kd_suite.evaluation)
    def decode(self, model: nn.Module, batch: ParsingBatch, output: ParsingOutput) -> list[Tensor]:
        """Per image (H0, W0) class ids at the original size, from flip-tested logits when ``flip_test``.

        Raises:
            MissingTargetError: the batch lacks ``orig_sizes`` or ``orig_masks``.
        """
        require_targets(batch, ("orig_sizes", "orig_masks"), "ParsingDistiller validation (the LIP protocol)")
        logits = self.predict_logits(batch.image, model) if self.flip_test else output.logits
        return self.labels_at_original_size(logits, batch)

    def build_metric(self) -> ParsingScores:
        names = self.class_names or tuple(map(str, range(self.num_classes)))
        return ParsingScores(self.num_classes, self.ignore_index, names)

    # ------------------------------------------------------------------ pictures
    @torch.no_grad()
    def render(self, batch: ParsingBatch, output: ParsingOutput | None, n: int = 4) -> list[np.ndarray]:
        """The first ``n`` input images with the predicted (or, for ``output=None``, GT) mask overlaid, RGB uint8."""
        n = min(n, batch.image.shape[0])
        masks = batch.mask[:n] if output is None else _argmax_at(output.logits[:n], batch.image.shape[-2:])
        masks = masks.cpu().numpy().astype(np.uint8)
        return [overlay_mask(denormalize(batch.image[i]), masks[i]) for i in range(n)]


def _argmax_at(logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Class ids (B, H, W) of (B, K, h, w) logits bilinearly upsampled to ``size``."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False).argmax(1)
