"""MONAI pre-processing as a model card describes it; the same list serves inference and training."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    CropForegroundd,
    GaussianSmooth,
    MapTransform,
    NormalizeIntensityd,
    Orientationd,
    Spacingd,
)

from ..bundle.card import ModelCard
from ..errors import MISSUError
from .geometry import array_xyz, ras_affine, same_grid
from .images import read_channels, read_image


def nonzero(x: torch.Tensor) -> torch.Tensor:
    """Anatomy mask for the foreground crop: any non-zero voxel (skull-stripped or cropped data)."""
    return x != 0


def preprocessing(card: ModelCard, label_key: str | None = None, extra_keys: list[str] = ()) -> list:
    """Dictionary transforms on ``"image"`` (and ``label_key``, and ``extra_keys`` resampled linearly, e.g.
    one-hot soft labels): orientation, foreground crop, spacing, z-score.

    The pre-processed grid's voxel-to-RAS matrix is the output's ``affine``: inference resamples its
    predictions from there back onto the input grid (``inference/engine.py``).
    """
    keys = ["image", *([label_key] if label_key else []), *extra_keys]
    modes = ["bilinear", *(["nearest"] if label_key else []), *(["bilinear"] * len(extra_keys))]
    steps: list = [Orientationd(keys, axcodes=card.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))]
    if card.foreground_crop:
        steps.append(
            CropForegroundd(keys, source_key="image", select_fn=nonzero, margin=card.crop_margin, allow_smaller=True)
        )
    if card.spacing:
        if card.anti_alias:
            steps.append(AntiAliasd("image", card.spacing))
        steps.append(Spacingd(keys, pixdim=card.spacing, mode=modes, dtype=torch.float32))
    if card.normalization != "none":
        steps.append(NormalizeIntensityd("image", nonzero=card.normalization == "zscore-nonzero", channel_wise=True))
    return steps


class AntiAliasd(MapTransform):
    """Gaussian pre-filter before downsampling to ``spacing``: sigma = (factor - 1) / 2 voxels on each axis
    where the voxels grow by ``factor`` (scikit-image's ``resize(anti_aliasing=True)`` rule); axes that keep
    or refine their spacing are left alone."""

    def __init__(self, keys, spacing: tuple[float, float, float]):
        super().__init__(keys)
        self.spacing = np.asarray(spacing, dtype=float)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            current = np.asarray(image.pixdim[:3], dtype=float)
            sigma = np.maximum(0.0, (self.spacing / current - 1) / 2)
            if sigma.any():
                d[key] = GaussianSmooth(sigma=tuple(float(s) for s in sigma))(image)
        return d


class LoadCased(MapTransform):
    """Read ``"image"`` (a path or list of channel paths) and ``"label"`` into MetaTensors with RAS affines,
    with the same checks and channel alignment as inference; the label must lie on the image's grid."""

    def __init__(self, label_key: str | None = "label"):
        super().__init__(["image"])
        self.label_key = label_key

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        paths = d["image"] if isinstance(d["image"], (list, tuple)) else [d["image"]]
        channels = read_channels(paths)
        affine = ras_affine(channels[0])
        d["image"] = MetaTensor(torch.from_numpy(np.stack([array_xyz(c) for c in channels])), affine=affine)
        if self.label_key and d.get(self.label_key):
            label = read_image(d[self.label_key], label=True)
            if not same_grid(label, channels[0]):
                raise MISSUError(f"{d[self.label_key]}: label grid differs from its image {paths[0]}")
            d[self.label_key] = MetaTensor(torch.from_numpy(array_xyz(label).astype(np.int64))[None], affine=affine)
        return d
