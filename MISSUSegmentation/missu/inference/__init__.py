"""Segmentation engine: pre-processing, sliding-window inference, post-processing, outputs."""

from .engine import Cancelled, SegmentationResult, Segmenter

__all__ = ["Cancelled", "SegmentationResult", "Segmenter"]
