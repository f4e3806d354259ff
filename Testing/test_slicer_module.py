"""The Slicer layer, headless, on real MRML (slicer-core): Logic, node conversions, review loop, training
launcher, and the consistency of the .ui, CMake and extension files."""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import vtk
import SimpleITK as sitk

from conftest import MODULE_DIR, ROOT, ThresholdNet

pytestmark = pytest.mark.usefixtures("mrml_scene")


def _volume(scene, name, spacing=(0.8, 0.9, 1.5), rotate=30.0, size=(28, 36, 40), box=((6, 16), (8, 20), (10, 22))):
    """A scalar volume node with oblique, anisotropic IJK-to-RAS and a bright box; returns (node, mask[k,j,i])."""
    import slicer.util
    import vtk

    rng = np.random.default_rng(1)
    array = rng.normal(10, 1, size).astype(np.float32)  # [k, j, i]
    mask = np.zeros(size, bool)
    mask[tuple(slice(a, b) for a, b in box)] = True
    array[mask] = 100
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, array)
    c, s = np.cos(np.radians(rotate)), np.sin(np.radians(rotate))
    matrix = np.array([[c, -s, 0, 12.0], [s, c, 0, -7.0], [0, 0, 1, 3.0], [0, 0, 0, 1]])
    matrix[:3, :3] = matrix[:3, :3] * np.array(spacing)
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for col in range(4):
            m.SetElement(r, col, matrix[r, col])
    node.SetIJKToRASMatrix(m)
    return node, mask


def _logic(scene):
    from MISSUSegmentationLib.logic import MISSUSegmentationLogic

    return MISSUSegmentationLogic(scene)


def _threshold_segmenter(bundle):
    from missu.inference import Segmenter

    segmenter = Segmenter(bundle, device="cpu", backend="torch")
    segmenter.model = ThresholdNet()
    return segmenter


def _segments(node):
    seg = node.GetSegmentation()
    return [seg.GetNthSegment(i) for i in range(seg.GetNumberOfSegments())]


def test_segment_aligns_voxel_for_voxel_with_oblique_anisotropic_volume(mrml_scene, make_bundle):
    from MISSUSegmentationLib import mrml

    volume, mask = _volume(mrml_scene, "image")
    logic = _logic(mrml_scene)
    bundle = make_bundle()
    segmentation = logic.segment([volume], model=_threshold_segmenter(bundle))
    segments = _segments(segmentation)
    assert [s.GetName() for s in segments] == ["left atrium"]
    assert np.allclose(segments[0].GetColor(), (0.80, 0.36, 0.36))
    entry = vtk.reference("")
    assert segments[0].GetTag("TerminologyEntry", entry)  # the tag works in 5.8; GetTerminology() only from 5.10
    assert str(entry) == logic.modelCard(str(bundle)).labels[0].terminology_entry()
    labels = mrml.segmentation_to_labels(mrml_scene, segmentation, volume, logic.modelCard(str(bundle)))
    assert np.array_equal(sitk.GetArrayFromImage(labels) == 1, mask)
    assert mrml.segment_volumes_ml(segmentation)["left atrium"] == pytest.approx(
        mask.sum() * 0.8 * 0.9 * 1.5 / 1000, rel=1e-6
    )


def test_existing_segmentation_is_not_replaced_without_overwrite(mrml_scene, make_bundle):
    from missu.errors import MISSUError

    volume, _ = _volume(mrml_scene, "image")
    logic = _logic(mrml_scene)
    segmenter = _threshold_segmenter(make_bundle())
    first = logic.segment([volume], model=segmenter)
    with pytest.raises(MISSUError, match="already holds segments"):
        logic.segment([volume], model=segmenter, outputSegmentation=first)
    mrml_scene.SetUndoOn()  # Slicer's scene undo, where the application enables it
    first.SetUndoEnabled(True)
    first.GetSegmentation().GetNthSegment(0).SetName("reviewed")
    assert logic.segment([volume], model=segmenter, outputSegmentation=first, overwrite=True) is first
    assert [s.GetName() for s in _segments(first)] == ["left atrium"]
    mrml_scene.Undo()
    assert [s.GetName() for s in _segments(first)] == ["reviewed"]


def test_volume_under_linear_transform_is_segmented_in_world_space(mrml_scene, make_bundle):
    import vtk

    from MISSUSegmentationLib import mrml

    volume, mask = _volume(mrml_scene, "image")
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 3, 25.0)
    transform.SetMatrixTransformToParent(m)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    assert mrml.ijk_to_world(volume)[0, 3] == pytest.approx(12.0 + 25.0)
    segmentation = _logic(mrml_scene).segment([volume], model=_threshold_segmenter(make_bundle()))
    assert segmentation.GetTransformNodeID() == transform.GetID()
    labels = mrml.segmentation_to_labels(mrml_scene, segmentation, volume, _card())
    assert np.array_equal(sitk.GetArrayFromImage(labels) == 1, mask)
    # Segment Editor's grid: the volume's own, in the frame both share (the transform is not baked in too)
    import slicer

    geometry = segmentation.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    grid = slicer.vtkOrientedImageData()
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, grid)
    local = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(local)
    assert mrml._matrix(mrml._image_to_world(grid)) == pytest.approx(mrml._matrix(local))


def _card():
    from conftest import small_card

    return small_card()  # the card make_bundle() uses


def test_uncertainty_volume_and_multichannel_matching(mrml_scene, make_bundle):
    bundle = make_bundle(in_channels=2, labels=((1, "edema"),))
    mrml_scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "patient FLAIR labels")  # a label map: not an input
    mrml_scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "FLAIR rgb")  # nor one the selectors cannot show
    t1c, _ = _volume(mrml_scene, "patient T1c")
    flair, _ = _volume(mrml_scene, "patient_FLAIR")
    logic = _logic(mrml_scene)
    card = logic.modelCard(str(bundle))
    matched = logic.matchInputVolumes(card)
    assert matched == {0: flair, 1: t1c}
    segmentation = logic.segment([matched[0], matched[1]], model=str(bundle), device="cpu", uncertainty=True)
    assert [s.GetName() for s in _segments(segmentation)] == ["edema"]
    uncertainty = mrml_scene.GetFirstNodeByName("patient_FLAIR uncertainty")
    assert uncertainty is not None and uncertainty.GetDisplayNode() is not None  # shown with a window/level


def test_seg_nrrd_written_by_mrml_reads_back(mrml_scene, make_bundle, tmp_path):
    import slicerio

    volume, mask = _volume(mrml_scene, "image")
    segmentation = _logic(mrml_scene).segment([volume], model=_threshold_segmenter(make_bundle()))
    storage = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "saved.seg.nrrd"))
    assert storage.WriteData(segmentation)
    seg = slicerio.read_segmentation(str(tmp_path / "saved.seg.nrrd"))
    assert [s["name"] for s in seg["segments"]] == ["left atrium"]
    assert seg["segments"][0]["terminology"]["type"][1] == "82471001"
    assert int(seg["voxels"].astype(bool).sum()) == int(mask.sum())


def _translated(scene, volume, x_mm: float = 25.0):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 3, x_mm)
    transform.SetMatrixTransformToParent(m)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    return transform


def test_subprocess_segmentation_path_used_by_the_panel(mrml_scene, make_bundle):
    """The panel's path (a `missu segment` subprocess) gives the console path's segmentation, voxel for voxel,
    for an oblique volume under a transform (the child sees the volume in world space)."""
    from MISSUSegmentationLib import mrml

    volume, _ = _volume(mrml_scene, "image")
    transform = _translated(mrml_scene, volume)
    logic, bundle = _logic(mrml_scene), str(make_bundle())
    job = logic.startSegmentation([volume], bundle, device="cpu", uncertainty=True)
    assert job.process.wait(timeout=300) == 0
    events = job.poll()
    assert any(e["event"] == "progress" for e in events) and job.fraction == 1.0
    message = job.finish()
    assert "left atrium" in message and "mL" in message
    assert [s.GetName() for s in _segments(job.segmentation)] == ["left atrium"]
    assert job.segmentation.GetTransformNodeID() == transform.GetID()
    assert mrml_scene.GetFirstNodeByName("image uncertainty") is not None
    card = logic.modelCard(bundle)
    panel = sitk.GetArrayFromImage(mrml.segmentation_to_labels(mrml_scene, job.segmentation, volume, card))
    console = logic.segment([volume], model=bundle, device="cpu", uncertainty=True)
    expected = sitk.GetArrayFromImage(mrml.segmentation_to_labels(mrml_scene, console, volume, card))
    assert 0 < (expected == 1).sum() < expected.size  # the random network draws something, not everything
    assert np.array_equal(panel, expected)


def test_panel_job_keeps_segments_drawn_into_an_empty_output_while_it_ran(mrml_scene, make_bundle):
    volume, _ = _volume(mrml_scene, "image")
    output = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my edits")
    job = _logic(mrml_scene).startSegmentation([volume], str(make_bundle()), device="cpu", outputSegmentation=output)
    output.GetSegmentation().AddEmptySegment("drawn", "drawn")  # the user paints while the job runs
    assert job.process.wait(timeout=300) == 0
    message = job.finish()
    assert "my edits was edited during the run and is kept" in message
    assert [s.GetName() for s in _segments(output)] == ["drawn"]
    assert job.segmentation is not output and [s.GetName() for s in _segments(job.segmentation)] == ["left atrium"]


def test_panel_job_never_replaces_a_segmentation_edited_or_deleted_while_it_ran(mrml_scene, make_bundle):
    """The user agreed to replace a previous result, then went on correcting it in Segment Editor while the job
    ran: those corrections are kept and the result goes to a new node. Untouched, the output is replaced; deleted
    during the run, the result still lands in the scene."""
    import slicer
    from MISSUSegmentationLib.mrml import segment_volumes_ml
    from vtk.util.numpy_support import vtk_to_numpy

    volume, _ = _volume(mrml_scene, "image")
    logic, bundle = _logic(mrml_scene), str(make_bundle())

    def run(output, while_running=lambda: None):
        job = logic.startSegmentation([volume], bundle, device="cpu", outputSegmentation=output)
        while_running()
        assert job.process.wait(timeout=300) == 0
        return job.finish(), job.segmentation

    _, output = run(None)
    message, result = run(output)  # untouched: replaced in place
    assert result is output and "kept" not in message

    def erase():  # as Segment Editor's Erase writes a segment back
        seg = output.GetSegmentation()
        segment_id = seg.GetNthSegmentID(0)
        erased = slicer.vtkOrientedImageData()
        erased.DeepCopy(seg.GetSegment(segment_id).GetRepresentation(seg.GetSourceRepresentationName()))
        vtk_to_numpy(erased.GetPointData().GetScalars())[:] = 0
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            erased, output, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)

    message, result = run(output, erase)
    assert f"{output.GetName()} was edited during the run and is kept" in message and result is not output
    assert segment_volumes_ml(output) == {"left atrium": 0.0} and segment_volumes_ml(result)["left atrium"] > 0

    message, result = run(output, lambda: mrml_scene.RemoveNode(output))
    assert result is not output and result.GetScene() is mrml_scene and "kept" not in message


def test_an_abandoned_segmentation_stops_and_leaves_no_copy_of_the_volumes(mrml_scene, make_bundle):
    """Module unloaded or Slicer quitting while a segmentation runs: the child goes and so do its temporary
    files, which hold a copy of the patient's volumes."""
    from pathlib import Path

    volume, _ = _volume(mrml_scene, "image")
    job = _logic(mrml_scene).startSegmentation([volume], str(make_bundle()), device="cpu")
    folder = Path(job.process.log_path).parent
    assert any(folder.glob("*.nrrd"))
    job.abandon(wait_s=5)
    assert not job.running and not folder.exists()


def test_registry_download_job_shows_progress_and_a_cancel_leaves_nothing(mrml_scene, tmp_path, monkeypatch):
    """The panel's download of a registry model (a `missu models --fetch` subprocess, so Slicer stays responsive):
    progress in bytes as the server sends; a cancel mid-way leaves no file in the cache and the model still to
    download; a whole download is verified and its card then reads without a network."""
    import hashlib
    import http.server
    import threading
    import time
    import zipfile

    archive = tmp_path / "remote.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:  # the shipped model: several 1 MiB chunks
        for file in (MODULE_DIR / "Resources" / "Models" / "la-mri").iterdir():
            z.write(file, file.name)
    payload = archive.read_bytes()
    stall, release = threading.Event(), threading.Event()  # stall: the server stops half-way, as a slow network

    class Server(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            half = len(payload) // 2
            self.wfile.write(payload[:half])
            self.wfile.flush()
            if stall.is_set():  # until the test ends; the client has gone by then
                release.wait(120)
                return
            self.wfile.write(payload[half:])

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    models, cache = tmp_path / "models", tmp_path / "cache"
    models.mkdir()
    url = f"http://127.0.0.1:{server.server_address[1]}/remote.zip"
    entry = {"url": url, "sha256": hashlib.sha256(payload).hexdigest()}
    (models / "registry.json").write_text(json.dumps({"models": {"remote": entry}}))
    monkeypatch.setenv("MISSU_MODELS", str(models))
    monkeypatch.setenv("MISSU_CACHE", str(cache))
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    logic = _logic(mrml_scene)
    try:
        assert logic.pendingDownload("remote") == url
        stall.set()
        job = logic.startDownload("remote")
        deadline = time.monotonic() + 120
        while not 0 < job.fraction < 1 and job.running and time.monotonic() < deadline:
            job.poll()
            time.sleep(0.05)
        assert 0 < job.fraction < 1 and job.status.startswith("downloading remote:") and " MB" in job.status
        job.cancel()
        assert job.process.wait(timeout=60) == 130
        assert job.finish() == "Download cancelled; the model in use is unchanged."
        assert not any(path.is_file() for path in cache.rglob("*"))  # no partial file left behind
        assert logic.pendingDownload("remote") == url

        stall.clear()
        job = logic.startDownload("remote")
        assert job.process.wait(timeout=120) == 0
        assert job.finish().startswith("remote downloaded") and job.fraction == 1.0
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert logic.pendingDownload("remote") is None
    assert logic.modelCard("remote").name == "la-mri"  # from the cache: the server is gone
    next(cache.rglob("remote-*.zip")).write_bytes(payload[:100])
    assert logic.pendingDownload("remote") == url  # damaged in the cache: downloaded again, in a job, not in Slicer


def test_a_download_that_crashes_shows_its_stderr_and_leaves_no_log(mrml_scene, monkeypatch):
    """A download child that dies without a JSON error (an import error, a crash): the panel's error ends with
    what it wrote to stderr, and the temporary log goes with the job."""
    from pathlib import Path

    import MISSUSegmentationLib.logic as logic_module
    from MISSUSegmentationLib.jobs import JobFailed

    script = "import sys\nprint('ImportError: no module named certifi', file=sys.stderr)\nsys.exit(3)\n"
    monkeypatch.setattr(logic_module, "missu_command",
                        lambda *arguments: [sys.executable, "-c", script, "--stdin-control", *arguments])
    job = _logic(mrml_scene).startDownload("remote")
    log = Path(job.process.log_path)
    assert job.process.wait(timeout=60) == 3
    with pytest.raises(JobFailed, match=r"(?s)missu models stopped \(exit code 3\):\n.*ImportError: no module named certifi"):
        job.finish()
    assert not log.parent.exists()


def test_panel_paths_refuse_missing_inputs_before_starting_anything(mrml_scene, make_bundle, tmp_path):
    logic, one_input = _logic(mrml_scene), str(make_bundle())
    with pytest.raises(ValueError, match="needs 1 input volume"):
        logic.startSegmentation([None], one_input)
    volume, _ = _volume(mrml_scene, "flair scan")
    two_inputs = str(make_bundle("two", in_channels=2, labels=((1, "edema"),)))  # flair, t1c
    for start in (logic.startSegmentation, logic.segment):  # one scan given for both: refused, not run
        with pytest.raises(ValueError, match="flair scan is chosen both as flair and as t1c"):
            start([volume, volume], two_inputs)
    with pytest.raises(ValueError, match="needs 1 input volume"):  # more volumes than the model has inputs
        logic.startSegmentation([volume, volume], one_input)
    with pytest.raises(ValueError, match="Choose a run folder first"):
        logic.startTraining(tmp_path / "dataset.json", "")
    with pytest.raises(ValueError, match="no such dataset file"):
        logic.startTraining(tmp_path / "dataset.json", tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "two"]  # nothing written


def test_console_batch_over_a_folder(mrml_scene, make_bundle, phantom, tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("a", "b"):
        path, _ = phantom(f"{name}.nii.gz")
        path.rename(cases / path.name)
    assert _logic(mrml_scene).segmentFolder(str(cases), str(tmp_path / "out"), model=str(make_bundle()),
                                            device="cpu") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.seg.nrrd", "b.seg.nrrd"]


def test_review_loop_writes_a_valid_training_case(mrml_scene, make_bundle, tmp_path):
    from missu.data.datasets import check_case, load_cases

    bundle = make_bundle()
    volume, mask = _volume(mrml_scene, "patient 1")
    logic = _logic(mrml_scene)
    segmentation = logic.segment([volume], model=_threshold_segmenter(bundle))
    folder = tmp_path / "reviewed"
    assert logic.addReviewedCase([volume], segmentation, str(folder), model=str(bundle)) == "patient_1"
    assert logic.addReviewedCase([volume], segmentation, str(folder), model=str(bundle)) == "patient_1_2"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"0": "background", "1": "left atrium"} and dataset["numTraining"] == 2
    cases = load_cases(folder / "dataset.json")
    assert [check_case(c, [1]) for c in cases] == [None, None]
    label = sitk.ReadImage(cases[0].label)
    assert np.array_equal(sitk.GetArrayFromImage(label) == 1, mask)


def test_reviewed_segmentation_exported_as_dicom_seg(mrml_scene, tmp_path):
    """A real LA volume loaded from a DICOM series (its instance UIDs in ``DICOM.instanceUIDs``, as Slicer's DICOM
    module sets them) and its segmentation: the DICOM SEG is valid and holds exactly the segmentation's voxels."""
    import pydicom
    import slicer
    from dicom_fixtures import iod_errors, la_volume, study, write_series

    from missu.data.images import read_image
    from missu.dicom.seg import read_dicom_seg
    from missu.dicom.series import scan
    from missu.errors import MISSUError
    from MISSUSegmentationLib import mrml

    case = "la_0RZDK210BSMWAA6467LU"
    write_series(la_volume(case, shrink=2), tmp_path / "dicom", study())
    [series] = scan(tmp_path / "dicom")
    sitk.WriteImage(read_image(series), str(tmp_path / "loaded.nrrd"))
    volume = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "3: LGE MRI")
    storage = mrml_scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "loaded.nrrd"))
    assert storage.ReadData(volume)
    logic = _logic(mrml_scene)
    card = logic.modelCard("la-mri")
    expert = sitk.Cast(la_volume(case, label=True, shrink=2), sitk.sitkUInt8)
    segmentation = mrml.labels_to_segmentation(mrml_scene, expert, card, volume, None)
    target = tmp_path / "reviewed.dcm"

    with pytest.raises(ValueError, match="was not loaded from DICOM"):
        logic.exportDicomSeg(segmentation, volume, target, sourceFiles=tmp_path / "dicom")
    volume.SetAttribute("DICOM.instanceUIDs", " ".join(str(pydicom.dcmread(f).SOPInstanceUID) for f in series.files))
    assert getattr(slicer, "dicomDatabase", None) is None  # slicer-core: no DICOM database
    with pytest.raises(ValueError, match="No DICOM database"):
        logic.exportDicomSeg(segmentation, volume, target)
    with pytest.raises(MISSUError, match="43 of the volume's 44 DICOM instances found"):
        logic.exportDicomSeg(segmentation, volume, target, sourceFiles=series.files[1:])
    assert not target.exists()

    assert logic.exportDicomSeg(segmentation, volume, target, sourceFiles=tmp_path / "dicom") == str(target)
    assert iod_errors(target) == []
    written = sitk.GetArrayFromImage(read_dicom_seg(target, series, card))
    assert np.array_equal(written, sitk.GetArrayFromImage(mrml.segmentation_to_labels(mrml_scene, segmentation, volume, card)))
    assert np.array_equal(written, sitk.GetArrayFromImage(expert))
    with pytest.raises(MISSUError, match="overwrite"):
        logic.exportDicomSeg(segmentation, volume, target, sourceFiles=tmp_path / "dicom")


def test_training_job_folds_a_recorded_stream(tmp_path):
    import os

    from MISSUSegmentationLib.jobs import TrainingJob
    from MISSUSegmentationLib.logic import MISSUSegmentationLogic
    from MISSUSegmentationLib.process import JsonProcess

    recorded = ROOT / "Testing" / "data" / "train_events.jsonl"
    process = JsonProcess([sys.executable, "-c", f"print(open({str(recorded)!r}).read()); print('stray text')"])
    job = TrainingJob(process, str(tmp_path))
    assert process.wait(timeout=60) == 0
    events = job.poll()
    assert events[-1] == {"event": "log", "message": "stray text"}
    assert job.fraction == 1.0 and job.bundle == "/tmp/rec/bundle"
    assert [e for e, _ in job.losses] == [1, 2] and len(job.dice) == 2
    assert re.fullmatch(r"finished: best validation Dice 0\.041 \(epoch 1\); model in /tmp/rec/bundle \(\d+\.\d s\)",
                        job.finish())
    # the panel shows the curves each time the trainer redraws them (after a validation's checkpoints)
    assert job.new_curves() is None
    (tmp_path / "curves.png").write_bytes(b"first")
    assert job.new_curves() == str(tmp_path / "curves.png") and job.new_curves() is None
    os.utime(tmp_path / "curves.png", ns=(0, 10**9))
    assert job.new_curves() == str(tmp_path / "curves.png")
    assert not MISSUSegmentationLogic.holdsRun(tmp_path) and not MISSUSegmentationLogic.holdsRun("")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert MISSUSegmentationLogic.holdsRun(tmp_path)


# -- static consistency of the module's files ---------------------------------------------------------


def _ui():
    return ET.parse(MODULE_DIR / "Resources" / "UI" / "MISSUSegmentation.ui").getroot()


def test_ui_file_has_every_widget_the_code_uses():
    names = {w.get("name") for w in _ui().iter("widget")}
    source = (MODULE_DIR / "MISSUSegmentation.py").read_text()
    used = set(re.findall(r"self\.ui\.(\w+)", source)) - {"__dict__"}
    used |= {f"{prefix}{i}" for prefix in ("inputLabel", "inputVolume") for i in range(4)}  # looked up by name
    assert used - names == set()


def test_ui_parameter_bindings_match_the_parameter_node():
    tree = ast.parse((MODULE_DIR / "MISSUSegmentation.py").read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "MISSUSegmentationParameterNode")
    fields = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    bound = {w.find("./property[@name='SlicerParameterName']/string").text
             for w in _ui().iter("widget") if w.find("./property[@name='SlicerParameterName']") is not None}
    assert bound == fields - {"model"}  # the model list changes at run time: the Widget binds it itself


def test_slicer_layer_never_asks_isinstance_of_a_qt_class():
    """Under PythonQt (Slicer), ``isinstance(combo_box, qt.QObject)`` is False: every wrapped class derives only from
    PythonQtInstanceWrapper (MeVisLab/pythonqt#358; Slicer's parameterNodeWrapper says the same). The panel tests run
    on PySide6, where it is True, so they cannot see such a test fail: it must not be written."""
    for path in [MODULE_DIR / "MISSUSegmentation.py", *(MODULE_DIR / "MISSUSegmentationLib").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
                names = {n.value.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)
                         and isinstance(n.value, ast.Name)}
                assert not names & {"qt", "ctk", "slicer"}, f"{path.name}:{node.lineno}: {ast.unparse(node)}"


def test_cmake_lists_every_module_file():
    """Slicer installs only listed files: the list must hold every file git knows under the module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / ".ci" / "generate.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    scripts, resources = generator.module_files()
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"^\s+([\w/.-]+\.\w+)\s*$", cmake, re.M))
    assert listed == set(scripts) | set(resources), "stale: run python .ci/generate.py"
    assert cmake == generator.render_cmake(), "stale: run python .ci/generate.py"
    assert "MISSUSegmentation.py" in scripts and "Resources/UI/MISSUSegmentation.ui" in resources
    assert "MISSUSegmentationLib/requirements.txt" in resources  # read by the installer inside Slicer
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake  # the self-test as a ctest


def test_extension_description_files_agree():
    s4ext = dict(line.split(" ", 1) for line in (ROOT / "MISSU.s4ext").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
    for key in ("scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors",
                "category", "iconurl", "status", "description", "screenshoturls", "enabled", "tier"):
        assert key in s4ext, key
    index = json.loads((ROOT / "MISSU.json").read_text())
    assert index["scm_url"] == s4ext["scmurl"].strip() and index["category"] == s4ext["category"].strip()
    top = (ROOT / "CMakeLists.txt").read_text()
    assert "add_subdirectory(MISSUSegmentation)" in top and 'EXTENSION_DEPENDS "PyTorch"' in top
    assert "cmake_minimum_required(VERSION 3.20.6...3.22.6 FATAL_ERROR)" in top  # Slicer 5.10's template
    assert s4ext["depends"].strip() == "PyTorch"
