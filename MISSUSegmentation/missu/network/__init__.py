"""The MISSU network, its presets and its losses.

``presets`` (the configuration) needs no torch; the network and losses load on first use, so that reading a
model card works where torch is not installed yet (a fresh Slicer).
"""

from __future__ import annotations

import importlib

from .presets import PRESETS, STRIDE, MISSUConfig, preset_config

_LAZY = {"Ensemble": ".ensemble", "MISSU": ".missu", "TrainOutput": ".missu", "build_model": ".missu", "MISSULoss": ".losses",
         "probability_kl": ".losses"}

__all__ = ["Ensemble", "MISSU", "MISSULoss", "probability_kl", "MISSUConfig", "PRESETS", "STRIDE", "TrainOutput", "build_model", "preset_config"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
