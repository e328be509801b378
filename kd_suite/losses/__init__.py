"""Task-agnostic distillation terms. Configs name them by class path, e.g. ``class_path: kd_suite.losses.DISTLoss``.

One family per file, each holding its pure tensor functions (``kd_loss``, ``dist_loss`` …: tensors in, scalar out, no
taps, no detaching) next to the modules that call them: ``logit.py`` (KD, DKD), ``channel.py`` (CWD), ``feature.py``
(FitNet, AT, PKD, MGD), ``relation.py`` (DIST, SKD pair-wise) and ``gskd.py`` (GSKD). ``base.py`` holds
:class:`DistillLoss` with its common preamble :meth:`~DistillLoss.pair` and the one resize policy, and the shared
helpers (input checks, label resizing, ``batch.mask`` labels). ``LOSSES`` lists every :class:`DistillLoss` subclass of
this package (a test keeps it complete).
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
