"""Outputs as users open them (slicerio, Slicer's MRML), the batch CLI and `missu evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from conftest import shared_data
from missu.cli import main
from missu.data.geometry import LPS_TO_RAS, array_xyz, ras_affine
from missu.evaluation import binary_metrics, case_metrics, summarize

BRATS_LABELS = ((1, "necrosis"), (2, "edema"), (4, "enhancing tumor"))


def _labels_image(reference: sitk.Image, values=(1, 2, 4)) -> sitk.Image:
    array = np.zeros(reference.GetSize(), np.uint8)
    for n, value in enumerate(values):
        array[2 + 4 * n : 5 + 4 * n, 3:9, 2:6] = value
    image = sitk.GetImageFromArray(array.transpose(2, 1, 0).copy())
    image.CopyInformation(reference)
    return image


def test_seg_nrrd_reads_back_in_slicerio_and_mrml(tmp_path):
    from conftest import small_card
    from missu.data.segfile import write_seg_nrrd

    card = small_card(labels=BRATS_LABELS)
    reference = sitk.Image([20, 16, 12], sitk.sitkFloat32)
    reference.SetSpacing((0.9, 1.1, 2.0))
    reference.SetOrigin((10.0, -20.0, 5.0))
    reference.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    labels = _labels_image(reference)
    path = tmp_path / "brats.seg.nrrd"
    write_seg_nrrd(labels, card, path)

    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == ["necrosis", "edema", "enhancing tumor"]
    assert [s["labelValue"] for s in seg["segments"]] == [1, 2, 4]
    assert seg["segments"][1]["terminology"]["type"] == ["SCT", "79654002", "Edema"]
    assert seg["segments"][2]["terminology"]["type"] == ["SCT", "4147007", "Mass"]
    assert not seg["segments"][2]["terminology"].get("typeModifier"), "SNOMED has no 'enhancing' qualifier"
    np.testing.assert_allclose(seg["ijkToLPS"], LPS_TO_RAS @ ras_affine(reference), atol=1e-6)
    np.testing.assert_array_equal(seg["voxels"], array_xyz(labels))

    from slicer import vtkMRMLScene

    scene = vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["necrosis", "edema", "enhancing tumor"]
    edema = segmentation.GetNthSegment(1)
    assert np.allclose(edema.GetColor(), card.labels[1].color)
    assert "79654002" in edema.GetTerminology()


def test_batch_cli_with_one_broken_case(make_bundle, phantom, tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("a", "b"):
        path, _ = phantom(f"{name}.nii.gz")
        path.rename(cases / path.name)
    (cases / "broken.nii.gz").write_bytes(b"truncated")
    out = tmp_path / "out"
    code = main(["segment", "--model", str(make_bundle()), "--batch", str(cases), "--output", str(out),
                 "--label-out", str(tmp_path / "labels"), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    events = [json.loads(line) for line in captured.out.splitlines()]  # --json: every outcome is an event
    [failure] = [e for e in events if e["event"] == "case_failed"]
    assert failure["case"] == "broken" and "broken.nii.gz" in failure["message"]
    assert events[-1] == {"event": "batch", "cases": 3, "failed": 1, "message": f"2 of 3 case(s) segmented into {out}"}
    assert sorted(p.name for p in out.iterdir()) == ["a.seg.nrrd", "b.seg.nrrd"]
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["a.nii.gz", "b.nii.gz"]
    summaries = [e for e in events if e["event"] == "case"]
    assert [s["case"] for s in summaries] == ["a", "b"] and "ml" in summaries[0]["volumes"]["left atrium"]


def test_an_unexpected_error_in_one_case_does_not_stop_the_batch(make_bundle, phantom, tmp_path, capsys, monkeypatch):
    import missu.cli.segment as segment

    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("a", "b"):
        path, _ = phantom(f"{name}.nii.gz")
        path.rename(cases / path.name)
    real = segment._segment_case

    def failing_on_a(segmenter, case, *args, **kwargs):
        if case == "a":
            raise ValueError("a library's own check")
        return real(segmenter, case, *args, **kwargs)

    monkeypatch.setattr(segment, "_segment_case", failing_on_a)
    out = tmp_path / "out"
    assert main(["segment", "--model", str(make_bundle()), "--batch", str(cases), "--output", str(out)]) == 1
    assert "case a failed: ValueError: a library's own check" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["b.seg.nrrd"]


def test_batch_case_names_and_files_are_never_guessed(make_bundle, phantom, tmp_path, capsys):
    bundle = make_bundle(in_channels=2, labels=((1, "edema"),))  # inputs flair, t1c
    brats = tmp_path / "brats" / "case1"
    brats.mkdir(parents=True)
    for name in ("case1_flair", "case1_t1c", "case1_seg"):  # BraTS keeps the reference label beside the images
        path, _ = phantom(f"{name}.nii.gz")
        path.rename(brats / path.name)
    assert main(["segment", "--model", str(bundle), "--batch", str(brats.parent), "--output", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "case1.seg.nrrd").is_file()

    (brats / "case1_t1c.nii.gz").rename(brats / "case1_t1_gd.nii.gz")  # names that match flair only: not a guess
    assert main(["segment", "--model", str(bundle), "--batch", str(brats.parent), "--output", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert "cannot tell which file is which input" in err and "t1c: none" in err and "NAME=FILE" in err

    single = make_bundle("single")
    twins = tmp_path / "twins"
    (twins / "p01").mkdir(parents=True)
    for path in (twins / "p01.nii.gz", twins / "p01" / "image.nii.gz"):
        phantom(path.name)[0].rename(path)
    assert main(["segment", "--model", str(single), "--batch", str(twins), "--output", str(tmp_path / "q")]) == 1
    assert "p01 and p01.nii.gz are both case 'p01'" in capsys.readouterr().err


def test_csv_batch_matches_channels_by_column(make_bundle, phantom, tmp_path):
    flair, _ = phantom("case1_flair.nii.gz")
    t1c, _ = phantom("case1_t1c.nii.gz")
    table = tmp_path / "cases.csv"
    table.write_text(f"case,t1c,flair\ncase1,{t1c.name},{flair.name}\n")
    bundle = make_bundle(in_channels=2, labels=((1, "edema"),))
    assert main(["segment", "--model", str(bundle), "--batch", str(table), "--output", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "case1.seg.nrrd").is_file()


def test_case_metrics_against_known_overlap():
    from conftest import small_card

    card = small_card(labels=BRATS_LABELS, regions={"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)})
    reference = sitk.Image([20, 16, 12], sitk.sitkUInt8)
    truth = _labels_image(reference)
    shifted = sitk.GetImageFromArray(np.roll(array_xyz(truth), 1, axis=0).transpose(2, 1, 0).copy())
    shifted.CopyInformation(reference)
    same = case_metrics(truth, truth, card)
    assert all(m["dice"] == 1.0 and m["hd95"] == 0.0 for m in same.values())
    moved = case_metrics(shifted, truth, card)
    assert moved["edema"]["dice"] == pytest.approx(2 * 2 / 6)  # 3 voxels wide, shifted by one
    assert moved["edema"]["jaccard"] == pytest.approx(2 / 4)
    swapped_array = array_xyz(truth).copy()
    swapped_array[array_xyz(truth) == 1], swapped_array[array_xyz(truth) == 2] = 2, 1
    swapped = sitk.GetImageFromArray(swapped_array.transpose(2, 1, 0).copy())
    swapped.CopyInformation(reference)
    regions = case_metrics(swapped, truth, card)
    assert regions["necrosis"]["dice"] == 0 and regions["WT"]["dice"] == 1.0  # regions are unions of labels
    assert regions["ET"]["dice"] == 1.0 and 0 < regions["TC"]["dice"] < 1


def _medpy_surface_distances(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """medpy's ``__surface_distances(a, b)``, written out with SciPy: distances from a's border to b's."""
    from scipy import ndimage

    border = lambda m: m ^ ndimage.binary_erosion(m, ndimage.generate_binary_structure(3, 1))  # noqa: E731
    return ndimage.distance_transform_edt(~border(b), sampling=spacing)[border(a)]


def test_surface_metrics_follow_the_published_definitions():
    """95HD pools both directions (not the max of the two directed 95th percentiles); ASD is directed."""
    rng = np.random.default_rng(0)
    from scipy import ndimage

    truth = ndimage.gaussian_filter(rng.random((40, 36, 30)), 3) > 0.5
    pred = ndimage.binary_dilation(truth, iterations=2) & (rng.random(truth.shape) > 0.02)
    pred[:5] = False
    spacing = (0.625, 0.625, 1.25)
    m = binary_metrics(pred, truth, spacing)
    to_truth, to_pred = _medpy_surface_distances(pred, truth, spacing), _medpy_surface_distances(truth, pred, spacing)
    assert m["hd95_mm"] == pytest.approx(np.percentile(np.hstack([to_truth, to_pred]), 95), rel=1e-6)
    assert m["asd_mm"] == pytest.approx(to_truth.mean(), rel=1e-6)
    assert m["asd"] == pytest.approx(_medpy_surface_distances(pred, truth, (1, 1, 1)).mean(), rel=1e-6)
    assert m["asd_mm"] != pytest.approx(to_pred.mean(), rel=1e-3), "the phantom must tell the directions apart"
    assert m["dice"] == pytest.approx(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))


def test_empty_predictions_are_failures_that_count():
    truth = np.zeros((10, 10, 10), bool)
    truth[3:6, 3:6, 3:6] = True
    empty = binary_metrics(np.zeros_like(truth), truth, (1.0, 1.0, 2.0))
    assert empty["failed"] and empty["dice"] == 0 and empty["hd95"] == pytest.approx(np.sqrt(300))
    assert empty["hd95_mm"] == pytest.approx(np.sqrt(100 + 100 + 400))
    both_empty = binary_metrics(np.zeros_like(truth), np.zeros_like(truth), (1.0, 1.0, 1.0))
    assert not both_empty["failed"] and both_empty["dice"] == 1 and both_empty["hd95"] == 0
    perfect = binary_metrics(truth, truth, (1.0, 1.0, 1.0))
    mean = summarize({"a": {"x": perfect}, "b": {"x": empty}})["x"]
    assert mean["dice"] == pytest.approx(0.5) and mean["failed"] == 1 and mean["cases"] == 2
    assert mean["dice_se"] == pytest.approx(0.5)


def test_segment_real_cases_keeps_geometry_and_names(make_bundle, tmp_path):
    """Done-when of the engine: real LA and 4-modality BraTS cases give a .seg.nrrd on the input's grid."""
    la = shared_data("la2018/imagesTr/la_06SR5RBREL16DQ6M8LWS.nii.gz")
    out = tmp_path / "la.seg.nrrd"
    assert main(["segment", "--model", str(make_bundle("la", spacing=(1.25, 1.25, 1.25))), "--input", str(la),
                 "--output", str(out)]) == 0
    seg, source = slicerio.read_segmentation(str(out)), sitk.ReadImage(str(la))
    assert seg["voxels"].shape == source.GetSize() and seg["segments"][0]["name"] == "left atrium"
    np.testing.assert_allclose(seg["ijkToLPS"], LPS_TO_RAS @ ras_affine(source), atol=1e-6)

    folder = shared_data("brats-tcga-4mod/TCGA-DU-7294")
    files = {m: str(folder / f"TCGA-DU-7294_{m}_bet.nii.gz") for m in ("t1", "t1c", "t2", "fla")}
    bundle = make_bundle("brats", in_channels=4, labels=BRATS_LABELS, roi=(64, 64, 64), overlap=0.0)
    out = tmp_path / "brats.seg.nrrd"
    given = [f"flair={files['fla']}", f"t1c={files['t1c']}", f"t1={files['t1']}", f"t2={files['t2']}"]
    assert main(["segment", "--model", str(bundle), "--input", *given, "--output", str(out)]) == 0
    seg = slicerio.read_segmentation(str(out))
    assert seg["voxels"].shape == (240, 240, 155)
    assert [s["name"] for s in seg["segments"]] == ["necrosis", "edema", "enhancing tumor"]


def test_evaluate_prints_the_metrics_table(make_bundle, phantom, tmp_path, capsys):
    image, cube = phantom("img.nii.gz")
    label = sitk.GetImageFromArray(cube.astype(np.uint8).transpose(2, 1, 0).copy())
    label.CopyInformation(sitk.ReadImage(str(image)))
    sitk.WriteImage(label, str(tmp_path / "lab.nii.gz"))
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"labels": {"0": "background", "1": "left atrium"},
                                   "training": [{"image": "img.nii.gz", "label": "lab.nii.gz"}]}))
    assert main(["evaluate", "--model", str(make_bundle()), "--dataset", str(dataset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = {"dice", "jaccard", "hd95", "asd", "hd95_mm", "asd_mm"}
    assert set(report["mean"]["left atrium"]) == {*metrics, *(m + "_se" for m in metrics), "cases", "failed"}
    assert main(["evaluate", "--model", str(make_bundle("b2")), "--dataset", str(dataset)]) == 0
    assert "mean of 1" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(make_bundle("b3")), "--dataset", str(dataset), "--validation-only"]) == 1
    assert "records no validation cases" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(make_bundle("b4")), "--model", str(make_bundle("b5")), "--dataset",
                 str(dataset), "--validation-only"]) == 1
    assert "records no validation cases; leave it out of the --model list" in capsys.readouterr().err
    # a dataset labelled otherwise than the model segments is refused up front, not scored case by case
    dataset.write_text(json.dumps({"labels": {"0": "background", "1": "left atrium", "2": "scar"},
                                   "training": [{"image": "img.nii.gz", "label": "lab.nii.gz"}]}))
    assert main(["evaluate", "--model", str(make_bundle("b6")), "--dataset", str(dataset)]) == 1
    assert f"{dataset}: declares labels [1, 2]; model " in capsys.readouterr().err
