"""Shared fixtures: where the team's real data lives, and small network configurations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MISSU_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_data(relative: str) -> Path:
    """A path under ``../shared/data``; skips the test when the team's data is not beside the checkout."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    return path


@pytest.fixture
def tiny_config():
    """A MISSU small enough to train a few steps on the CPU in seconds."""
    from missu.network import preset_config

    return preset_config(
        "missu-small", in_channels=2, out_channels=3, roi_size=(16, 16, 16), widths=(4, 8, 8, 16),
        encoder_blocks=(1, 1, 1, 1), embed_dim=32, num_heads=2, depth=1, mlp_dim=64,
    )
