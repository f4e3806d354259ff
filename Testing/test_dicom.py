"""DICOM in, DICOM SEG out: series made from real LA volumes (one instance per slice), study folders with several
series, DICOM SEG written with highdicom, read back voxel for voxel and checked by the IOD validator dciodvfy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_fixtures import iod_errors, la_volume, oblique, study, write_report, write_series

from conftest import shared_data, small_card
from missu.bundle import read_card, resolve_bundle
from missu.cli import main
from missu.data.geometry import grid_difference
from missu.data.images import read_image
from missu.dicom.seg import read_dicom_seg, write_dicom_seg
from missu.dicom.series import scan, select_series
from missu.errors import MISSUError

CASE = "la_0RZDK210BSMWAA6467LU"  # a validation case of the shipped model
GEOMETRIES = {  # the real volume as acquired (every 2nd voxel: 1.25 mm), and on an oblique, anisotropic grid
    "axial": lambda image: image,
    "oblique-anisotropic": lambda image: oblique(image, 20.0, (1.1, 0.8, 2.5)),
}


@pytest.fixture(scope="module")
def la_card():
    return read_card(resolve_bundle("la-mri"))


def _la(geometry: str, label: bool = False) -> sitk.Image:
    return GEOMETRIES[geometry](la_volume(CASE, label=label, shrink=2))


def _voxels(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_series_read_back_as_the_volume_it_was_made_from(tmp_path, geometry):
    image = _la(geometry)
    write_series(image, tmp_path / "study", study())
    [series] = scan(tmp_path / "study")
    volume = read_image(series)
    assert grid_difference(volume, image) is None
    assert np.array_equal(_voxels(volume), _voxels(image))
    assert [int(pydicom.dcmread(f).InstanceNumber) for f in series.files] == list(range(1, image.GetSize()[2] + 1))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_dicom_seg_round_trip_and_validates(tmp_path, la_card, geometry):
    image, label = _la(geometry), _la(geometry, label=True)
    source_uid, _ = write_series(image, tmp_path / "study", study(), number=7)
    [series] = scan(tmp_path / "study")
    labels = sitk.Cast(label, sitk.sitkUInt8)
    labels.CopyInformation(read_image(series))
    write_dicom_seg(labels, la_card, series, tmp_path / "seg.dcm")

    assert iod_errors(tmp_path / "seg.dcm") == []
    back = read_dicom_seg(tmp_path / "seg.dcm", series, la_card)
    assert np.array_equal(_voxels(back), _voxels(labels)) and _voxels(labels).sum() > 1000
    assert grid_difference(back, labels) is None
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.Modality == "SEG" and seg.SeriesNumber == 1007
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source_uid
    assert seg.FrameOfReferenceUID == pydicom.dcmread(series.files[0]).FrameOfReferenceUID
    [segment] = seg.SegmentSequence
    assert segment.SegmentLabel == "left atrium" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "82471001"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
    assert (segment.SegmentAlgorithmName, seg.ManufacturerModelName) == ("la-mri", "la-mri")
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == la_card.version
    assert seg.DeviceSerialNumber == la_card.weights_sha256


def test_dicom_seg_of_several_labels_with_gaps_and_modifiers(tmp_path):
    """BraTS-style values 1, 2, 4 (segments 1, 2, 3), a label with a name only, and a type modifier."""
    card = small_card(labels=((1, "necrosis"), (2, "edema"), (4, "enhancing tumor"), (5, "my structure"), (6, "kidney")))
    kidney = dataclasses.replace(card.labels[4], type=("SCT", "64033007", "Kidney"), type_modifier=("SCT", "7771000", "Left"))
    card = card.with_changes(labels=(*card.labels[:4], kidney))
    image = _la("oblique-anisotropic")
    write_series(image, tmp_path / "study", study())
    [series] = scan(tmp_path / "study")
    atrium = _voxels(_la("oblique-anisotropic", label=True)) > 0
    values = np.zeros(atrium.shape, np.uint8)
    parts = np.array_split(np.arange(atrium.shape[0]), 5)
    for value, slices in zip((1, 2, 4, 5, 6), parts):
        values[slices] = atrium[slices] * value
    labels = sitk.GetImageFromArray(values)
    labels.CopyInformation(read_image(series))
    write_dicom_seg(labels, card, series, tmp_path / "seg.dcm", reviewed=True)

    assert iod_errors(tmp_path / "seg.dcm") == []
    assert np.array_equal(_voxels(read_dicom_seg(tmp_path / "seg.dcm", series, card)), values)
    segments = pydicom.dcmread(tmp_path / "seg.dcm").SegmentSequence
    assert [int(s.SegmentNumber) for s in segments] == [1, 2, 3, 4, 5]
    assert {s.SegmentAlgorithmType for s in segments} == {"SEMIAUTOMATIC"}
    modifier = segments[4].SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert (modifier.CodeValue, modifier.CodeMeaning) == ("7771000", "Left")
    assert "SegmentedPropertyTypeModifierCodeSequence" not in segments[2].SegmentedPropertyTypeCodeSequence[0]
    assert segments[3].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"
    with pytest.raises(MISSUError, match="label value.*3.*no segment"):
        values[0, 0, 0] = 3
        bad = sitk.GetImageFromArray(values)
        bad.CopyInformation(labels)
        write_dicom_seg(bad, card, series, tmp_path / "bad.dcm")
    assert not (tmp_path / "bad.dcm").exists()


@pytest.fixture(scope="module")
def la_study(tmp_path_factory):
    """A study as a scanner exports it: a localizer, the LGE series, a report and an earlier SEG, one folder."""
    folder = tmp_path_factory.mktemp("study")
    patient = study()
    image = la_volume(CASE, shrink=2)
    write_series(image[:, :, 20:23], folder, patient, number=1, description="Localizer")
    uid, _ = write_series(image, folder, patient, number=3, description="LGE MRI axial 3D")
    write_report(folder, patient)
    [lge] = [s for s in scan(folder) if s.uid == uid]
    labels = sitk.Cast(la_volume(CASE, label=True, shrink=2), sitk.sitkUInt8)
    labels.CopyInformation(read_image(lge))
    write_dicom_seg(labels, read_card(resolve_bundle("la-mri")), lge, folder / "earlier-seg.dcm")
    return folder, uid


def test_study_folder_series_matched_to_the_card(la_study, la_card):
    folder, uid = la_study
    found = scan(folder)
    assert [(s.number, s.modality) for s in found] == [(1, "MR"), (3, "MR")]  # SR and SEG are not image series
    [chosen] = select_series(la_card, folder)
    assert chosen.uid == uid and chosen.description == "LGE MRI axial 3D"


def test_series_choice_refusals(tmp_path, la_card):
    patient, image = study(), la_volume(CASE, shrink=4)
    first, _ = write_series(image, tmp_path / "two", patient, number=1, description="Series A")
    write_series(image, tmp_path / "two", patient, number=2, description="Series B")
    with pytest.raises(MISSUError, match=r"two: 2 series could be model la-mri's input 'image' \(MR\).*--series"):
        select_series(la_card, tmp_path / "two")
    assert select_series(la_card, tmp_path / "two", [first])[0].uid == first
    with pytest.raises(MISSUError, match="no image series with UID 1.2.3"):
        select_series(la_card, tmp_path / "two", ["1.2.3"])

    other, _ = write_series(image, tmp_path / "ct", patient, modality="OT", description="LGE MRI (exported)")
    with pytest.raises(MISSUError, match=r"ct: no series for model la-mri's input 'image' \(MR\); image series: .*OT"):
        select_series(la_card, tmp_path / "ct")
    assert select_series(la_card, tmp_path / "ct", [other])[0].uid == other  # named by the user: taken as it is

    uid, files = write_series(image, tmp_path / "echoes", patient)
    for path in files:  # a second echo: the same positions again, in the same series
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(path.with_name("echo2-" + path.name))
    with pytest.raises(MISSUError, match="at .* positions \\(several echoes"):
        select_series(la_card, tmp_path / "echoes")
    volume, _ = write_series(image, tmp_path / "echoes", patient, number=7)  # beside it, one volume: the choice
    assert [s.uid for s in select_series(la_card, tmp_path / "echoes")] == [volume]

    write_report(tmp_path / "report", patient)
    with pytest.raises(MISSUError, match="report: holds no DICOM image series"):
        select_series(la_card, tmp_path / "report")

    _, files = write_series(image, tmp_path / "gap", patient)
    files[len(files) // 2].unlink()  # a slice lost in transfer: the volume would be stretched over the gap
    with pytest.raises(MISSUError, match=r"slices are [\d.]+ to [\d.]+ mm apart, not evenly spaced"):
        select_series(la_card, tmp_path / "gap")
    write_series(image, tmp_path / "gap", patient, number=8, description="LGE MRI reformat")  # not taken silently
    with pytest.raises(MISSUError, match="gap: 2 series could be"):
        select_series(la_card, tmp_path / "gap")

    uid, files = write_series(image, tmp_path / "blank", patient)
    ds = pydicom.dcmread(files[0])  # an instance of another series whose anonymiser emptied its orientation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID, ds.ImageOrientationPatient = pydicom.uid.generate_uid(), None
    ds.save_as(tmp_path / "blank" / "localizer.dcm")
    assert [s.uid for s in select_series(la_card, tmp_path / "blank")] == [uid]

    import highdicom

    enhanced = highdicom.legacy.LegacyConvertedEnhancedMRImage(
        [pydicom.dcmread(f) for f in files], series_instance_uid=highdicom.UID(), series_number=5,
        sop_instance_uid=highdicom.UID(), instance_number=1)
    (tmp_path / "enhanced").mkdir()
    enhanced.save_as(tmp_path / "enhanced" / "multi-frame.dcm")
    with pytest.raises(MISSUError, match=r"enhanced: holds enhanced \(multi-frame\) DICOM images only"):
        select_series(la_card, tmp_path / "enhanced")


def test_several_inputs_matched_by_series_description(tmp_path):
    card = small_card(in_channels=2)  # inputs flair, t1c
    patient, image = study(), la_volume(CASE, shrink=4)
    t1c, _ = write_series(image, tmp_path, patient, number=5, description="AX T1C post gd")
    flair, _ = write_series(image, tmp_path, patient, number=4, description="AX FLAIR")
    write_series(image, tmp_path, patient, number=6, description="AX T2")
    assert [s.uid for s in select_series(card, tmp_path)] == [flair, t1c]


def test_cli_study_folder_to_validated_seg(tmp_path, la_study, capsys):
    folder, uid = la_study
    seg, labels = tmp_path / "la.dcm", tmp_path / "la.nii.gz"
    assert main(["segment", "--input", str(folder), "--output", str(seg), "--label-out", str(labels)]) == 0
    assert iod_errors(seg) == []
    [source] = [s for s in scan(folder) if s.uid == uid]
    written = _voxels(read_dicom_seg(seg, source, read_card(resolve_bundle("la-mri"))))
    assert np.array_equal(written, _voxels(sitk.ReadImage(str(labels))))
    expert = _voxels(la_volume(CASE, label=True, shrink=2)) > 0
    dice = 2 * (expert & (written > 0)).sum() / (expert.sum() + (written > 0).sum())
    assert dice > 0.8, dice  # the real case, segmented through DICOM, agrees with its expert label

    assert main(["segment", "--input", str(folder), "--output", str(seg)]) == 1  # exists: not replaced silently
    assert "--overwrite" in capsys.readouterr().err


def test_cli_dicom_seg_needs_dicom_input(tmp_path, capsys):
    nifti = shared_data("la2018") / "imagesTr" / f"{CASE}.nii.gz"
    assert main(["segment", "--input", str(nifti), "--output", str(tmp_path / "x.dcm")]) == 1
    assert "x.dcm: a DICOM SEG references a DICOM series; the input" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_batch_of_studies_to_dicom_seg(tmp_path, capsys):
    studies = tmp_path / "studies"
    write_series(la_volume(CASE, shrink=2), studies / "good", study(), number=3, description="LGE MRI")
    write_series(la_volume(CASE, shrink=4), studies / "ct-only", study(), modality="CT", description="CT")
    out = tmp_path / "out"
    assert main(["segment", "--batch", str(studies), "--format", "dcm", "--output", str(out)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["good.dcm"]
    assert iod_errors(out / "good.dcm") == []
    err = capsys.readouterr().err
    assert "case ct-only failed:" in err and "no series for model la-mri's input 'image' (MR)" in err
    assert "1 of 2 case(s) segmented" in err

    # anonymised headers: type-2 attributes deleted (the SEG gets them empty); no frame of reference: refused
    for name, deleted in (("anonymised", ("PatientName", "PatientID", "StudyDate", "StudyID", "AccessionNumber")),
                          ("no-frame", ("FrameOfReferenceUID",))):
        _, files = write_series(la_volume(CASE, shrink=4), tmp_path / name / name, study(), description="LGE MRI")
        for path in files:
            ds = pydicom.dcmread(path)
            for keyword in deleted:
                delattr(ds, keyword)
            ds.save_as(path)
    out = tmp_path / "out2"
    assert main(["segment", "--batch", str(tmp_path / "anonymised"), "--format", "dcm", "--output", str(out)]) == 0
    assert iod_errors(out / "anonymised.dcm") == []
    assert main(["segment", "--batch", str(tmp_path / "no-frame"), "--format", "dcm", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "case no-frame failed:" in err and "has no FrameOfReferenceUID, which a DICOM SEG of it needs" in err
