"""From class probabilities on the input grid to a clean label map."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..bundle.card import ModelCard
from ..data.geometry import array_xyz, image_from_xyz


def clean(labels: sitk.Image, card: ModelCard) -> sitk.Image:
    """The card's post-processing: small components removed, largest component kept, small-label fallback."""
    array = array_xyz(labels).copy()
    voxel_mm3 = float(np.prod(labels.GetSpacing()))
    min_voxels = int(np.ceil(card.min_component_mm3 / voxel_mm3)) if card.min_component_mm3 else 0
    if min_voxels or card.keep_largest_component:
        for value in card.class_values[1:]:
            mask = labels == value
            components = sitk.RelabelComponent(sitk.ConnectedComponent(mask), minimumObjectSize=min_voxels)
            kept = array_xyz(components == 1 if card.keep_largest_component else components > 0).astype(bool)
            array[(array == value) & ~kept] = 0
    fallback = card.small_label_fallback
    if fallback and 0 < (array == fallback["label"]).sum() < fallback["min_voxels"]:
        array[array == fallback["label"]] = fallback["to"]
    return image_from_xyz(array, labels)


def segment_volumes(labels: sitk.Image, card: ModelCard) -> dict[str, dict[str, float]]:
    """Voxels and millilitres per label and per reported region."""
    array = array_xyz(labels)
    ml_per_voxel = float(np.prod(labels.GetSpacing())) / 1000.0
    groups = {lab.name: (lab.value,) for lab in card.labels} | dict(card.regions)
    result = {}
    for name, values in groups.items():
        voxels = int(np.isin(array, values).sum())
        result[name] = {"voxels": voxels, "ml": round(voxels * ml_per_voxel, 3)}
    return result
