"""Detection vertical: YOLOX-style detectors, SimOTA task loss, FSD/FGD distillation and VOC/COCO evaluation.

Configs name the classes by full path, e.g. ``kd_suite.tasks.detection.YOLOX``, ``kd_suite.tasks.detection.FSDLoss``.
"""

from __future__ import annotations

from .fgd import FGDLoss
from .fsd import FSDLoss
from .module import DetectionDistiller
from .yolox import PRESETS, YOLOX

__all__ = ["PRESETS", "YOLOX", "DetectionDistiller", "FGDLoss", "FSDLoss"]
