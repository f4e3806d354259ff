"""Bad inputs are refused with one clear line naming the file; outputs are atomic and never clobbered."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from missu.cli import main
from missu.data.atomic import atomic_path
from missu.errors import MISSUError
from missu.inference import Segmenter


def _write(array_ijk: np.ndarray, path, **geometry):
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.T))
    for key, value in geometry.items():
        getattr(image, f"Set{key}")(value)
    sitk.WriteImage(image, str(path))
    return path


def _bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.normal(size=(16, 16, 16)).astype(np.float32)
    nan = good.copy()
    nan[3, 3, 3] = np.nan
    flat = sitk.GetImageFromArray(rng.normal(size=(16, 16)).astype(np.float32))
    sitk.WriteImage(flat, str(tmp_path / "slice2d.nii.gz"))
    vector = sitk.Compose([sitk.GetImageFromArray(good)] * 3)
    sitk.WriteImage(vector, str(tmp_path / "rgb.nrrd"))
    (tmp_path / "garbage.nii.gz").write_bytes(b"not an image at all")
    return {
        "missing": (tmp_path / "absent.nii.gz", "no such file"),
        "unreadable": (tmp_path / "garbage.nii.gz", "cannot read image"),
        "2d": (tmp_path / "slice2d.nii.gz", "2-D image"),
        "vector": (tmp_path / "rgb.nrrd", "3 components"),
        "nan": (_write(nan, tmp_path / "nan.mha"), "NaN"),
        "constant": (_write(np.full((16, 16, 16), 7, np.float32), tmp_path / "constant.nii.gz"), "constant"),
        "single-slice": (_write(good[:, :, :1], tmp_path / "oneslice.nrrd"), "single slice"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "unreadable", "2d", "vector", "nan", "constant", "single-slice"]
)
def test_bad_input_gives_one_line_naming_the_file_and_leaves_nothing(make_bundle, tmp_path, capsys, case):
    path, problem = _bad_inputs(tmp_path)[case]
    output = tmp_path / "out" / "result.seg.nrrd"
    code = main(["segment", "--model", str(make_bundle()), "--input", str(path), "--output", str(output)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and str(path) in err[0] and problem in err[0], err
    assert not output.parent.exists() or not any(output.parent.iterdir())


def test_channels_that_do_not_overlap_are_refused(make_bundle, phantom):
    first, _ = phantom("flair.nii.gz")
    second, _ = phantom("t1c.nii.gz", origin=(500.0, 0.0, 0.0))
    segmenter = Segmenter(make_bundle(in_channels=2, labels=((1, "edema"),)))
    with pytest.raises(MISSUError, match="t1c.nii.gz: covers 0% of the first channel"):
        segmenter.segment_files([first, second])


def test_channels_on_slightly_different_grids_are_resampled(make_bundle, phantom):
    first, _ = phantom("flair.nii.gz")
    second, _ = phantom("t1c.nii.gz", spacing=(1.1, 1.0, 1.0), origin=(0.5, 0.0, 0.0))
    result = Segmenter(make_bundle(in_channels=2, labels=((1, "edema"),))).segment_files([first, second])
    assert result.labels.GetSize() == sitk.ReadImage(str(first)).GetSize()


def test_wrong_number_of_inputs(make_bundle, phantom):
    path, _ = phantom()
    with pytest.raises(MISSUError, match=r"takes 2 input\(s\) \(flair, t1c\); got 1"):
        Segmenter(make_bundle(in_channels=2, labels=((1, "edema"),))).segment_files([path])


def test_existing_output_is_not_overwritten(make_bundle, phantom, tmp_path, capsys):
    path, _ = phantom()
    output = tmp_path / "result.seg.nrrd"
    output.write_bytes(b"the user's edited segmentation")
    code = main(["segment", "--model", str(make_bundle()), "--input", str(path), "--output", str(output)])
    assert code == 1 and "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"the user's edited segmentation"
    assert main(["segment", "--model", str(make_bundle("b2")), "--input", str(path), "--output", str(output),
                 "--overwrite"]) == 0
    assert output.read_bytes() != b"the user's edited segmentation"


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.seg.nrrd"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half written")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(make_bundle, phantom, tmp_path, monkeypatch):
    import slicerio

    path, _ = phantom()
    output = tmp_path / "result.seg.nrrd"
    output.write_bytes(b"previous")

    def broken(file, segmentation, **kwargs):
        open(file, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(slicerio, "write_segmentation", broken)
    code = main(["segment", "--model", str(make_bundle()), "--input", str(path), "--output", str(output), "--overwrite"])
    assert code == 1
    assert output.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bundle", "phantom.nii.gz", "result.seg.nrrd"])


def test_device_choice_is_explicit():
    import torch

    from missu.devices import amp_dtype, pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(MISSUError, match="no CUDA GPU"):
            pick_device("cuda")
    assert amp_dtype(torch.device("cpu")) in (None, torch.bfloat16)


def test_dicom_series_folder_is_read_with_its_geometry(make_bundle, phantom, tmp_path):
    path, cube = phantom(spacing=(0.8, 0.8, 2.0), origin=(-20.0, 10.0, 5.0))
    image = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkInt16)
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        origin = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0020|0032", "\\".join(map(str, origin))), ("0020|0013", str(k + 1)),
                           ("0020|000e", "1.2.826.0.1.3680043.2.1125.1"), ("0018|0050", "2.0"),
                           ("0020|0037", "1\\0\\0\\0\\1\\0")):
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(slice_)
    result = Segmenter(make_bundle()).segment_files([folder])
    assert result.labels.GetSize() == image.GetSize()
    assert np.allclose(result.labels.GetOrigin(), image.GetOrigin(), atol=1e-3)
    assert np.allclose(result.labels.GetSpacing(), image.GetSpacing(), atol=1e-3)


def test_channels_are_matched_by_file_name(make_bundle, phantom):
    from missu.bundle import load_bundle
    from missu.data.cases import match_channels

    card = load_bundle(make_bundle(in_channels=2, labels=((1, "edema"),))).card
    t1c, _ = phantom("case_T1c.nii.gz")
    flair, _ = phantom("case_flair.nii.gz")
    assert match_channels(card, [str(t1c), str(flair)]) == [flair, t1c]
    assert match_channels(card, [f"t1c={t1c}", f"flair={flair}"]) == [flair, t1c]
    with pytest.raises(MISSUError, match="unknown input name"):
        match_channels(card, [f"t2={t1c}", f"flair={flair}"])


def test_label_maps_stored_as_floats_become_integers(tmp_path):
    from missu.data.images import read_image

    labels = np.zeros((8, 8, 8), np.float32)
    labels[2:4, 2:4, 2:4] = 4.0
    image = read_image(_write(labels, tmp_path / "float_labels.nii.gz"), label=True)
    assert image.GetPixelID() == sitk.sitkUInt16 and sitk.GetArrayFromImage(image).max() == 4
    labels[0, 0, 0] = 0.5
    with pytest.raises(MISSUError, match="non-integer"):
        read_image(_write(labels, tmp_path / "blurred.nii.gz"), label=True)
