"""MISSU core: network, model bundles, data, inference and training. Never imports Qt or Slicer."""

__version__ = "0.1.0"
