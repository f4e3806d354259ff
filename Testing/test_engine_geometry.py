"""The engine returns labels on the input's grid, in the right physical place, whatever the file's geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import ThresholdNet
from missu.data.geometry import array_xyz, image_from_ras, ras_affine
from missu.inference import Segmenter


def _rotation_z(degrees: float) -> tuple[float, ...]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


GEOMETRIES = {
    "lps-identity": dict(spacing=(1.0, 1.0, 1.0)),
    "ras-flipped": dict(direction=(-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0), origin=(40.0, 36.0, -5.0)),
    "anisotropic": dict(spacing=(0.7, 0.9, 2.5), origin=(-12.5, 30.0, 7.0)),
    "oblique": dict(spacing=(0.8, 0.8, 1.5), direction=_rotation_z(30.0), origin=(5.0, -3.0, 2.0)),
    "permuted-axes": dict(direction=(0, 1.0, 0, 0, 0, 1.0, 1.0, 0, 0)),
}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_labels_come_back_in_place_voxel_for_voxel(make_bundle, phantom, geometry, suffix):
    path, cube = phantom(f"case{suffix}", **GEOMETRIES[geometry])
    segmenter = Segmenter(make_bundle(), backend="torch")
    segmenter.model = ThresholdNet()
    result = segmenter.segment_files([path])
    source = sitk.ReadImage(str(path))
    assert result.labels.GetSize() == source.GetSize()
    assert np.allclose(result.labels.GetSpacing(), source.GetSpacing())
    assert np.allclose(result.labels.GetOrigin(), source.GetOrigin())
    assert np.allclose(result.labels.GetDirection(), source.GetDirection())
    assert np.array_equal(array_xyz(result.labels) == 1, cube), "no resampling: the labels must match exactly"


@pytest.mark.parametrize("geometry", ["anisotropic", "oblique"])
def test_resampled_model_grid_maps_back_to_the_same_physical_place(make_bundle, phantom, geometry):
    path, cube = phantom(**GEOMETRIES[geometry])
    segmenter = Segmenter(make_bundle(spacing=(1.5, 1.5, 1.5)), backend="torch")
    segmenter.model = ThresholdNet()
    labels = segmenter.segment_files([path]).labels
    found = array_xyz(labels) == 1
    assert labels.GetSize() == sitk.ReadImage(str(path)).GetSize()
    assert _dice(found, cube) > 0.85
    centre_found = np.argwhere(found).mean(axis=0)
    centre_true = np.argwhere(cube).mean(axis=0)
    assert np.abs(centre_found - centre_true).max() < 1.0, (centre_found, centre_true)


def test_arrays_with_slicer_geometry_match_files(make_bundle, phantom):
    """The Slicer path (arrays + IJK-to-RAS) gives the same labels as the file path."""
    path, _ = phantom(**GEOMETRIES["oblique"])
    segmenter = Segmenter(make_bundle(spacing=(1.5, 1.5, 1.5)), backend="torch")
    segmenter.model = ThresholdNet()
    image = sitk.ReadImage(str(path))
    from_arrays = segmenter.segment_arrays([array_xyz(image)], [ras_affine(image)])
    from_file = segmenter.segment_files([path])
    assert np.array_equal(array_xyz(from_arrays.labels), array_xyz(from_file.labels))
    rebuilt = image_from_ras(array_xyz(image), ras_affine(image))
    assert np.allclose(rebuilt.GetDirection(), image.GetDirection()) and np.allclose(rebuilt.GetOrigin(), image.GetOrigin())


def test_foreground_crop_leaves_background_outside(make_bundle, phantom):
    path, cube = phantom()
    image = sitk.ReadImage(str(path))
    array = array_xyz(image).copy()
    array[:5] = 0  # a zero border outside the anatomy: cropped away before inference
    cropped = sitk.GetImageFromArray(array.transpose(2, 1, 0).copy())
    cropped.CopyInformation(image)
    segmenter = Segmenter(make_bundle(), backend="torch")
    segmenter.model = ThresholdNet()
    labels = array_xyz(segmenter.segment([cropped]).labels)
    assert np.array_equal(labels == 1, cube)


def test_tta_uncertainty_progress_and_cancel(make_bundle, phantom):
    path, cube = phantom()
    segmenter = Segmenter(make_bundle(), tta=True)
    reported = []
    result = segmenter.segment_files([path], uncertainty=True, progress=lambda f, m: reported.append(f))
    assert result.uncertainty.GetSize() == result.labels.GetSize()
    assert array_xyz(result.uncertainty).min() >= 0
    assert reported == sorted(reported) and reported[-1] == 1.0

    from missu.inference import Cancelled

    with pytest.raises(Cancelled):
        segmenter.segment_files([path], cancel=lambda: True)
