"""Shared test setup: CPU-only, few threads, offline W&B, and the path of the real sample files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
# run folders of tests that do not choose one go to a temporary folder, never into the checkout's runs/
os.environ.setdefault("KD_SUITE_RUNS", tempfile.mkdtemp(prefix="kd-suite-test-runs-"))
torch.set_num_threads(1)  # tiny models: threading overhead outweighs gains, and pytest-xdist uses the cores

REPO = Path(__file__).resolve().parents[1]
REAL_FIXTURES = REPO.parent / "shared" / "fixtures" / "real"


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """Folder of real dataset samples; tests that need it are skipped with the reason if it is absent."""
    if not REAL_FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {REAL_FIXTURES}")
    return REAL_FIXTURES
