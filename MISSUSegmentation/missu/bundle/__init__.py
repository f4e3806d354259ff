"""Model bundles: safetensors weights plus a JSON model card; found by name or path.

Cards and the registry need no torch; weights (``Bundle``, ``load_bundle``, ``save_bundle``) load on first use.
"""

from __future__ import annotations

import importlib

from .card import CARD_FILE, WEIGHTS_FILE, Channel, Label, ModelCard, read_card
from .registry import bundled_models, resolve_bundle

_LAZY = {"Bundle", "build_network", "ensemble_state_dict", "load_bundle", "save_bundle"}

__all__ = ["Bundle", "CARD_FILE", "Channel", "Label", "ModelCard", "WEIGHTS_FILE", "build_network", "bundled_models",
           "ensemble_state_dict", "load_bundle", "read_card", "resolve_bundle", "save_bundle"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(".bundle", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
