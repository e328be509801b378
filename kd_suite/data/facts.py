"""What a model must agree with about its data, published by every DataModule as ``datamodule.facts``.

The Distiller links them once the DataModule is set up (:meth:`kd_suite.Distiller.link_data`, called from its
``setup``): options a config leaves unset (flip pairs, class names, the skeleton to draw, the GT file of an AP metric)
are taken from the facts, and a model that disagrees with them (class or joint counts, names, pairs) stops the run
with a :class:`~kd_suite.consistency.ConsistencyError` before the first batch. Nothing is inferred from a count: a
20-class model is not assumed to be a LIP parser, nor a 16-joint one an MPII pose model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class DatasetFacts:
    """The dataset facts a task module reads.

    Attributes:
        task: ``"parsing"``, ``"pose"`` or ``"detection"``.
        class_names: parsing/detection classes, or pose joint names, in index order.
        flip_pairs: left/right index pairs a horizontal flip swaps (parsing classes, pose joints); empty if none.
        skeleton: pose only: the :mod:`kd_suite.viz` skeleton of the joints (``"mpii"``, ``"crowdpose"``, ``"coco"``).
        val_ann_file: the validation GT file of the official protocol (MPII ``gt_valid.mat``, a COCO-style json),
            ``None`` when the split has none.
        heatmap_stride: pose only: input pixels per GT-heatmap pixel.
    """

    task: Literal["parsing", "pose", "detection"]
    class_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    skeleton: str | None = None
    val_ann_file: Path | None = None
    heatmap_stride: int | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (parsing, detection) or joints (pose)."""
        return len(self.class_names)
