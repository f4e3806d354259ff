"""Training checkpoints: written atomically, read back with ``weights_only=True`` (no pickle code)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.atomic import atomic_path
from ..errors import MISSUError


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():  # (a run may resume on a machine with fewer or more GPUs)
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path, overwrite=True) as temporary:
        torch.save(state, temporary)


# What every checkpoint holds (``best.pt``), and what a resumable one (``last.pt``) holds besides.
RECORD_KEYS = {"model", "progress", "card", "recipe"}
RESUME_KEYS = {"optimizer", "scheduler", "scaler", "rng"}


def load_checkpoint(path: Path, resumable: bool = False) -> dict[str, Any]:
    """A checkpoint of ``missu train`` (``resumable``: one it can continue from), or an error naming the file."""
    if not path.is_file():
        raise MISSUError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise MISSUError(f"{path}: unreadable checkpoint ({exc})") from None
    needed = RECORD_KEYS | (RESUME_KEYS if resumable else set())
    if missing := sorted(needed - set(state if isinstance(state, dict) else ())):
        raise MISSUError(f"{path}: not a {'resumable ' if resumable else ''}checkpoint of missu train (no "
                         f"{', '.join(missing)})")
    return state
