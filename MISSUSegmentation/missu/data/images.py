"""Reading and checking input images (NIfTI, NRRD, MHA, DICOM series) with SimpleITK.

Every refusal is a :class:`MISSUError` whose message starts with the file it is about.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..dicom.series import Series, only_series
from ..errors import MISSUError
from .geometry import overlap_fraction, resample_like, same_grid

log = logging.getLogger(__name__)

MIN_OVERLAP = 0.5  # channels covering less of the first channel than this are refused


def _check_nifti_voxels(path: Path) -> None:
    """SimpleITK's NIfTI reader fills the missing voxels of a file cut short and turns NaN into 0 (NRRD and
    MetaImage readers refuse the first and keep the second). Read the stored voxels with nibabel, which
    verifies the compressed stream and the data size, and refuse both."""
    import nibabel as nib

    try:
        proxy = nib.load(str(path)).dataobj
    except Exception:  # no NIfTI header nibabel can parse: SimpleITK's reader reports the file
        return
    try:
        stored = np.asanyarray(proxy.get_unscaled())
    except Exception as exc:  # nibabel raises EOFError, zlib/gzip and ValueError errors for damaged data
        detail = " ".join(str(exc).split())
        raise MISSUError(f"{path}: the voxel data are damaged or cut short ({type(exc).__name__}: {detail})") from None
    if stored.dtype.kind == "f" and not np.isfinite(stored).all():
        raise MISSUError(f"{path}: holds NaN or infinite values")


def _read(path: Path) -> sitk.Image:
    if not path.exists():
        raise MISSUError(f"{path}: no such file or folder")
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_voxels(path)
    try:
        if path.is_dir():
            return only_series(path).read()
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:  # SimpleITK's error for unreadable files
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = next((line for line in lines if "not read completely" in line or "expected" in line), None)
        if detail:
            raise MISSUError(f"{path}: the voxel data are cut short ({detail})") from None
        if lines and "No such file" in lines[-1]:  # MetaIO's words for data it could not read from a file that exists
            raise MISSUError(f"{path}: cannot read image (the file is damaged or its voxel data are cut short)") from None
        raise MISSUError(f"{path}: cannot read image ({lines[-1] if lines else 'unreadable'})") from None


def check_image(image: sitk.Image, path: Path | str, label: bool = False) -> None:
    """Refuse images no model can use: not 3-D, multi-component, empty, non-finite or constant."""
    if image.GetDimension() != 3:
        raise MISSUError(f"{path}: a {image.GetDimension()}-D image; a 3-D volume is needed")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MISSUError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel; one is needed")
    size = image.GetSize()
    if min(size) < 2:
        raise MISSUError(f"{path}: size {size} is empty or a single slice; a 3-D volume is needed")
    voxels = sitk.GetArrayViewFromImage(image)
    if voxels.dtype.kind == "f" and not np.isfinite(voxels).all():
        raise MISSUError(f"{path}: holds NaN or infinite values")
    if not label and voxels.min() == voxels.max():
        raise MISSUError(f"{path}: every voxel has the value {voxels.min()}; the image is constant")


def read_image(source: str | os.PathLike | Series, label: bool = False) -> sitk.Image:
    """One checked 3-D image (a file, a folder of one DICOM series, or a chosen :class:`Series`); intensities as
    float32, labels as their integer type."""
    if isinstance(source, Series):
        image, path = source.read(), source.folder
    else:
        path = Path(source)
        image = _read(path)
    check_image(image, path, label=label)
    if not label:
        return sitk.Cast(image, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind == "f":  # label maps stored as floats (BraTS 2015): integers or refused
        if not np.array_equal(values, np.round(values)) or values.min() < 0:
            raise MISSUError(f"{path}: a label map with non-integer or negative values")
        return sitk.Cast(image, sitk.sitkUInt16)
    return image


def align_channels(images: Sequence[sitk.Image], paths: Sequence[Path | str | Series]) -> list[sitk.Image]:
    """Put every channel on the first channel's grid; refuse channels that do not cover it."""
    reference, aligned = images[0], [images[0]]
    for image, path in zip(images[1:], paths[1:]):
        if same_grid(reference, image):
            image = sitk.Image(image)
            image.CopyInformation(reference)  # absorb rounding differences in the header
        else:
            covered = overlap_fraction(reference, image)
            if covered < MIN_OVERLAP:
                raise MISSUError(
                    f"{path}: covers {covered:.0%} of the first channel ({paths[0]}) in physical space; "
                    "the channels do not show the same region"
                )
            log.warning("%s: grid differs from %s; resampled onto it", path, paths[0])
            image = resample_like(image, reference)
        aligned.append(image)
    return aligned


def read_channels(sources: Sequence[str | os.PathLike | Series]) -> list[sitk.Image]:
    """The model's input channels, checked and on one grid (the first channel's)."""
    if not sources:
        raise MISSUError("no input image given")
    sources = [s if isinstance(s, Series) else Path(s) for s in sources]
    return align_channels([read_image(s) for s in sources], sources)
