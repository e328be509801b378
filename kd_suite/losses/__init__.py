"""Task-agnostic distillation terms. Configs name them by class path, e.g. ``class_path: kd_suite.losses.DISTLoss``.

``LOSSES`` lists every :class:`DistillLoss` subclass of this package (a test keeps it complete); the pure tensor math
lives in ``functional.py``, ``relational.py`` and ``structural.py``.
"""

from __future__ import annotations

from .base import DistillLoss
from .channel import CWDLoss
from .feature import ATLoss, FitNetLoss, MGDLoss, PKDLoss
from .gskd import GSKDLoss
from .logit import DKDLoss, KDLoss
from .relation import DISTLoss, SKDPairwiseLoss

LOSSES: dict[str, type[DistillLoss]] = {
    cls.__name__: cls
    for cls in (
        KDLoss,
        DKDLoss,
        FitNetLoss,
        ATLoss,
        PKDLoss,
        MGDLoss,
        CWDLoss,
        DISTLoss,
        SKDPairwiseLoss,
        GSKDLoss,
    )
}

__all__ = [
    "LOSSES",
    "ATLoss",
    "CWDLoss",
    "DISTLoss",
    "DKDLoss",
    "DistillLoss",
    "FitNetLoss",
    "GSKDLoss",
    "KDLoss",
    "MGDLoss",
    "PKDLoss",
    "SKDPairwiseLoss",
]
