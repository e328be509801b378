"""Top-down pose estimation: heatmap teacher, CAU regression student, pose distillation terms, PoseDistiller."""

from __future__ import annotations

from .cau import CAU, StemNet
from .distilpose import AttentionLoss, CoordDistillLoss, ScoreDistillLoss, SimulatedHeatmapLoss
from .dskd import DenseGuidedHeatmapLoss, SpatialClassificationLoss, binarize
from .heatmap_net import HeatmapNet
from .losses import FPDLoss, OKDHPLoss, joints_mse
from .module import PoseDistiller
from .student import RegressionPoseNet

__all__ = [
    "CAU",
    "AttentionLoss",
    "CoordDistillLoss",
    "DenseGuidedHeatmapLoss",
    "FPDLoss",
    "HeatmapNet",
    "OKDHPLoss",
    "PoseDistiller",
    "RegressionPoseNet",
    "ScoreDistillLoss",
    "SimulatedHeatmapLoss",
    "SpatialClassificationLoss",
    "StemNet",
    "binarize",
    "joints_mse",
]
