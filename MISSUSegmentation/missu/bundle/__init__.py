"""Model bundles: safetensors weights plus a JSON model card; found by name or path."""

from .bundle import Bundle, load_bundle, save_bundle
from .card import Channel, Label, ModelCard
from .registry import bundled_models, resolve_bundle

__all__ = ["Bundle", "Channel", "Label", "ModelCard", "bundled_models", "load_bundle", "resolve_bundle", "save_bundle"]
