"""Human parsing (LIP): ParsingNet student, PSPParsingNet teacher, ParsingDistiller, flip test, PNG prediction."""

from __future__ import annotations

from .flip import LIP_FLIP_PAIRS, flip_logits, flip_permutation, flip_test_logits
from .lsfa import LSFA
from .module import ParsingDistiller
from .predict import ParsingPredictionWriter, save_label_png, write_predictions
from .sppm import SPPM, PSPModule
from .student import ParsingNet
from .teacher import PSPParsingNet

__all__ = [
    "LIP_FLIP_PAIRS",
    "LSFA",
    "SPPM",
    "PSPModule",
    "PSPParsingNet",
    "ParsingDistiller",
    "ParsingNet",
    "ParsingPredictionWriter",
    "flip_logits",
    "flip_permutation",
    "flip_test_logits",
    "save_label_png",
    "write_predictions",
]
