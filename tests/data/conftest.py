"""A tiny synthetic dataset in all five formats, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from kd_suite.data.synth import synthesize

SEED, NUM_TRAIN, NUM_VAL, SIZE = 7, 6, 4, (112, 112)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root holding LIP/, mpii/, crowdpose/, VOCdevkit/ and coco/ (read-only for tests)."""
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, NUM_TRAIN, NUM_VAL, SIZE, seed=SEED, workers=0, progress=False)
    return out
