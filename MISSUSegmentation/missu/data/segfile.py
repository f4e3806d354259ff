"""Writing results: label maps (NIfTI/NRRD/MHA), Slicer ``.seg.nrrd`` segmentations, float maps. All atomic."""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk
import slicerio

from ..bundle.card import ModelCard
from .atomic import atomic_path
from .geometry import LPS_TO_RAS, array_xyz, ras_affine


def write_image(image: sitk.Image, path: str | os.PathLike, overwrite: bool = False) -> None:
    """Any SimpleITK-writable image, compressed, atomically."""
    with atomic_path(path, overwrite) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=True)


def segments(card: ModelCard) -> list[dict]:
    """slicerio segment descriptions: id, label value, name, color and terminology from the card."""
    return [
        {
            "id": f"Segment_{lab.value}",
            "labelValue": lab.value,
            "layer": 0,
            "name": lab.name,
            "color": list(lab.color),
            "terminology": lab.terminology(),
        }
        for lab in card.labels
    ]


def write_seg_nrrd(labels: sitk.Image, card: ModelCard, path: str | os.PathLike, overwrite: bool = False) -> None:
    """A segmentation that 3D Slicer opens with the card's segment names, colors and terminology."""
    segmentation = {
        "voxels": array_xyz(labels).astype(np.uint8 if max(card.class_values) < 256 else np.uint16),
        "ijkToLPS": LPS_TO_RAS @ ras_affine(labels),
        "segments": segments(card),
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
    }
    with atomic_path(path, overwrite) as temporary:
        slicerio.write_segmentation(str(temporary), segmentation)
