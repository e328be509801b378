"""Datasets in their real on-disk formats, typed batches, and a synthetic-people generator.

DataModules (use the full path as ``class_path`` in configs): :class:`kd_suite.data.lip.LIPDataModule`,
:class:`kd_suite.data.mpii.MPIIDataModule`, :class:`kd_suite.data.crowdpose.CrowdPoseDataModule`,
:class:`kd_suite.data.voc.VOCDataModule`, :class:`kd_suite.data.coco.COCODetectionDataModule`. Synthetic data:
:func:`kd_suite.data.synth.synthesize`. Submodules are imported on first use, so ``kd_suite.data.batch`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LIPDataModule": "lip",
    "MPIIDataModule": "mpii",
    "CrowdPoseDataModule": "crowdpose",
    "VOCDataModule": "voc",
    "COCODetectionDataModule": "coco",
    "DatasetError": "errors",
    "read_voc_annotation": "voc",
    "synthesize": "synth",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
