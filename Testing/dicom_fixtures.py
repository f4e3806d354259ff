"""DICOM test data made from the real volumes of ``../shared/data``: MR series with one instance per slice and
the geometry tags (position, orientation, spacing) of the volume, written with pydicom into a temporary folder.
Nothing here is committed data; each test builds the small series it needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def oblique(image: sitk.Image, degrees: float = 20.0, spacing: tuple[float, float, float] | None = None) -> sitk.Image:
    """The same voxels on a grid rotated about the patient's left-right axis (and, if given, with another spacing):
    an oblique, anisotropic acquisition of a real volume."""
    result = sitk.Image(image)
    angle = np.radians(degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    result.SetDirection((rotation @ np.array(image.GetDirection()).reshape(3, 3)).flatten().tolist())
    if spacing:
        result.SetSpacing(spacing)
    return result


def _save(ds: Dataset, path: Path) -> None:
    """As a DICOM file with its preamble and meta header (pydicom 3, and the pydicom 2 of Slicer 5.8)."""
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _ds(values) -> list[str]:
    """Decimal strings of at most 16 characters (DICOM's DS), as scanners write them."""
    return [format_number_as_ds(float(v)) for v in values]


def _base(study: Dataset, sop_class: str, modality: str, series_uid: str, number: int, description: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.update(study)
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = modality, series_uid, number, description
    ds.SeriesDate, ds.SeriesTime = "20260101", "120000"
    ds.Manufacturer = "MISSU test fixtures"
    return ds


def study(patient_id: str = "LA0001") -> Dataset:
    """Patient and study attributes shared by every series of one study."""
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = f"Test^{patient_id}", patient_id, "", "O"
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = generate_uid(), "1", ""
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20260101", "120000", ""
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), ""
    return ds


def write_series(image: sitk.Image, folder: Path, study_ds: Dataset, number: int = 1,
                 description: str = "LGE MRI axial", modality: str = "MR") -> tuple[str, list[Path]]:
    """One MR Image Storage instance per slice of ``image`` (integer voxels), in ``folder``; the series UID
    and the files. Slices are written in reverse order, so that readers must sort them by position."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    voxels = sitk.GetArrayFromImage(image)  # [k, row, column]
    if voxels.min() < 0 or voxels.max() > 65535:
        raise ValueError("voxels must fit in uint16")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    paths = []
    for k in reversed(range(voxels.shape[0])):
        ds = _base(study_ds, MR_IMAGE_STORAGE, modality, series_uid, number, description)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.PatientPosition, ds.BodyPartExamined = "HFS", "HEART"
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "3D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 4.0, 2.0, 1
        ds.ImagePositionPatient = _ds(image.TransformIndexToPhysicalPoint((0, 0, k)))
        ds.ImageOrientationPatient = _ds((*direction[:, 0], *direction[:, 1]))
        ds.PixelSpacing = _ds((spacing[1], spacing[0]))  # row spacing, column spacing
        ds.SliceThickness = ds.SpacingBetweenSlices = _ds((spacing[2],))[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = voxels.shape[1], voxels.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = voxels[k].astype("<u2").tobytes()
        path = folder / f"{number:03d}-{k:04d}.dcm"
        _save(ds, path)
        paths.append(path)
    return series_uid, paths


def write_report(folder: Path, study_ds: Dataset, number: int = 99) -> Path:
    """A Basic Text SR in the study: an instance that is not an image (to be ignored by series selection)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = _base(study_ds, BASIC_TEXT_SR, "SR", generate_uid(), number, "Report")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber, ds.CompletionFlag, ds.VerificationFlag = 1, "COMPLETE", "UNVERIFIED"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    path = folder / f"{number:03d}-report.dcm"
    _save(ds, path)
    return path


def la_volume(case: str, label: bool = False, shrink: int = 1) -> sitk.Image:
    """A real LA2018 volume (or its expert label), every ``shrink``-th voxel kept to make a small fixture."""
    from conftest import shared_data

    kind = "labelsTr" if label else "imagesTr"
    image = sitk.ReadImage(str(shared_data("la2018") / kind / f"{case}.nii.gz"))
    return image[::shrink, ::shrink, ::shrink] if shrink > 1 else image


def read_header(path: Path) -> Dataset:
    return pydicom.dcmread(str(path), stop_before_pixels=True)


def iod_errors(path: Path) -> list[str]:
    """The errors David Clunie's IOD validator ``dciodvfy`` (Debian's dicom3tools) finds in a DICOM file."""
    import shutil
    import subprocess

    from conftest import missing_tool

    if shutil.which("dciodvfy") is None:
        missing_tool("dciodvfy (Debian package dicom3tools)")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
