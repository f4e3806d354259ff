"""MONAI pre-processing as a model card describes it; the same list serves inference and training."""

from __future__ import annotations

import torch
from monai.transforms import CropForegroundd, NormalizeIntensityd, Orientationd, Spacingd

from ..bundle.card import ModelCard


def nonzero(x: torch.Tensor) -> torch.Tensor:
    """Anatomy mask for the foreground crop: any non-zero voxel (skull-stripped or cropped data)."""
    return x != 0


def preprocessing(card: ModelCard, label_key: str | None = None) -> list:
    """Dictionary transforms on ``"image"`` (and ``label_key``): orientation, foreground crop, spacing, z-score.

    All spatial steps are invertible, so ``Compose(...).inverse`` maps predictions back voxel for voxel.
    """
    keys = ["image", label_key] if label_key else ["image"]
    modes = ["bilinear", "nearest"] if label_key else ["bilinear"]
    steps: list = [Orientationd(keys, axcodes=card.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))]
    if card.foreground_crop:
        steps.append(
            CropForegroundd(keys, source_key="image", select_fn=nonzero, margin=card.crop_margin, allow_smaller=True)
        )
    if card.spacing:
        steps.append(Spacingd(keys, pixdim=card.spacing, mode=modes))
    if card.normalization != "none":
        steps.append(NormalizeIntensityd("image", nonzero=card.normalization == "zscore-nonzero", channel_wise=True))
    return steps
