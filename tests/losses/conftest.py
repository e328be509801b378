"""Every loss test starts from the same global RNG state, so unseeded draws are reproducible too."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_global_rng() -> None:
    torch.manual_seed(0)
