"""The one place where image geometry is converted: SimpleITK (LPS, arrays z-y-x) <-> MONAI/Slicer (RAS, x-y-z).

Slicer's IJK-to-RAS matrix and MONAI's affine are both :func:`ras_affine` of the SimpleITK image.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_affine(image: sitk.Image) -> np.ndarray:
    """4x4 voxel-index (i, j, k) to RAS-millimetre matrix."""
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


def array_xyz(image: sitk.Image) -> np.ndarray:
    """Voxels indexed ``[i, j, k]`` (SimpleITK's arrays are ``[k, j, i]``)."""
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def image_from_xyz(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """An image on ``reference``'s grid from an ``[i, j, k]`` array."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.CopyInformation(reference)
    return image


def image_from_ras(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """An image from an ``[i, j, k]`` array and its voxel-to-RAS matrix (spacing = column norms)."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    return image


def grid_difference(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-3) -> str | None:
    """How the voxel grid of ``a`` differs from ``b``'s in physical space (size, spacing, direction, origin),
    or None when they agree within ``tolerance`` (mm for origin, relative for spacing)."""
    def fmt(values) -> str:
        return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} instead of {b.GetSize()}"
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=tolerance, atol=0):
        return f"spacing {fmt(a.GetSpacing())} mm instead of {fmt(b.GetSpacing())} mm"
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance):
        return f"direction {fmt(a.GetDirection())} instead of {fmt(b.GetDirection())}"
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance * max(a.GetSpacing())):
        return f"origin {fmt(a.GetOrigin())} mm instead of {fmt(b.GetOrigin())} mm"
    return None


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-3) -> bool:
    """Same voxel grid in physical space, within ``tolerance`` (see :func:`grid_difference`)."""
    return grid_difference(a, b, tolerance) is None


def physical_box(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounding box (LPS mm) of the image's voxel centres."""
    size = np.array(image.GetSize()) - 1
    corners = [
        image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
        for corner in np.array(np.meshgrid(*[[0, s] for s in size])).reshape(3, -1).T
    ]
    corners = np.array(corners)
    return corners.min(axis=0), corners.max(axis=0)


def overlap_fraction(reference: sitk.Image, other: sitk.Image) -> float:
    """Fraction of ``reference``'s bounding box that ``other``'s bounding box covers."""
    (lo_a, hi_a), (lo_b, hi_b) = physical_box(reference), physical_box(other)
    extent = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None)
    own = np.maximum(hi_a - lo_a, 1e-6)
    return float(np.prod(np.minimum(extent, own) / own)) if np.all(extent > 0) else 0.0


def resample_like(image: sitk.Image, reference: sitk.Image, label: bool = False) -> sitk.Image:
    """``image`` resampled onto ``reference``'s grid (linear, or nearest neighbour for labels)."""
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID())
