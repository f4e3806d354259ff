"""The module's panel driven as a user would, under real Qt with Slicer's real Python layer of one release
(``MISSU_SLICER_RELEASE``) and real MRML. Run by ``Testing/test_slicer_panel.py`` in a process per release
(the release's ``slicer`` package must be on the path before the first ``import slicer``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import vtk

from app import ROOT, Harness, registry_of_the_shipped_model

RELEASE = os.environ["MISSU_SLICER_RELEASE"]
LA = ROOT.parent / "shared" / "data" / "la2018"
CASES = ["la_06SR5RBREL16DQ6M8LWS", "la_0RZDK210BSMWAA6467LU", "la_1D7CUD1955YZPGK8XHJX"]


@pytest.fixture(scope="module")
def harness():
    return Harness(RELEASE)


@pytest.fixture(scope="module")
def panel(harness):
    module, widget = harness.open_panel()
    harness.process_events(0.1)
    assert harness.dialogs.warnings == [] and harness.dialogs.errors == []  # the fixture below clears them
    yield widget
    harness.slicer.app.moduleManager().unload("MISSUSegmentation")  # Slicer calls cleanup() this way


@pytest.fixture(autouse=True)
def no_surprises(harness):
    harness.dialogs.errors.clear()
    harness.dialogs.warnings.clear()
    harness.exceptions.clear()
    yield
    assert harness.exceptions == [], "a slot raised"
    assert harness.dialogs.warnings == [], "an unexpected warning"


def items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.model().rowCount())]


def load_volume(harness, case: str, path: Path | None = None):
    slicer = harness.slicer
    volume = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", case)
    storage = harness.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path or LA / "imagesTr" / f"{case}.nii.gz"))
    assert storage.ReadData(volume)
    volume.SetAndObserveStorageNodeID(storage.GetID())
    assert isinstance(volume, slicer.vtkMRMLScalarVolumeNode)
    return volume


def wait_for_job(harness, widget, timeout=600) -> None:
    harness.wait_until(lambda: not widget._jobs, timeout, "the jobs to finish")


def running(widget, kind: str):
    """The widget's running job of class ``kind`` ('SegmentationJob', 'DownloadJob', 'TrainingJob'), or None."""
    return next((job for cls, job in widget._jobs.items() if cls.__name__ == kind), None)


def test_release_is_the_one_asked_for(harness):
    import sys

    for name in ("slicer.parameterNodeWrapper.guiConnectors", "slicer.ScriptedLoadableModule", "slicer.i18n"):
        assert f"slicer-python/{RELEASE}/" in Path(sys.modules[name].__file__).as_posix(), name


def test_panel_opens_with_models_choices_and_ranges(harness, panel):
    ui = panel.ui
    assert items(ui.modelSelector) == ["la-mri"] and ui.modelSelector.currentText == "la-mri"
    assert items(ui.deviceSelector) == ["auto", "cpu", "cuda"]  # from the parameter's Choice
    from missu.network import PRESETS

    assert items(ui.presetSelector) == ["missu-small", "missu-medium", "missu", "transbts"]
    # the module keeps its own copy of the names (it loads without missu): the same names
    assert sorted(items(ui.presetSelector)) == sorted(PRESETS)
    assert (ui.epochsSpinBox.minimum, ui.epochsSpinBox.maximum, ui.epochsSpinBox.value) == (1, 10000, 100)
    assert "Left atrium" in ui.modelDescription.text
    assert ui.inputLabel0.text == "LGE-MRI:" or ui.inputLabel0.text.endswith(":")
    assert ui.inputVolume0.visible and not ui.inputVolume1.visible  # one input for la-mri
    assert not ui.installButton.visible and ui.segmentButton.enabled  # every package is installed here


def test_segment_a_real_volume_through_the_subprocess(harness, panel, tmp_path):
    volume = load_volume(harness, CASES[0])
    harness.process_events(0.1)
    ui = panel.ui
    assert ui.inputVolume0.currentNode() is volume  # the only volume: chosen for the user
    ui.deviceSelector.currentText = "cpu"
    ui.segmentButton.click()
    assert running(panel, "SegmentationJob") is not None and not ui.segmentButton.enabled
    wait_for_job(harness, panel)
    assert harness.dialogs.errors == []
    segmentation = panel._parameterNode.outputSegmentation
    assert segmentation is not None and ui.outputSegmentationSelector.currentNode() is segmentation
    seg = segmentation.GetSegmentation()
    assert [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())] == ["left atrium"]
    entry = vtk.reference("")
    assert seg.GetNthSegment(0).GetTag("TerminologyEntry", entry)  # GetTerminology() exists only from 5.10
    assert str(entry).startswith("Segmentation category and type - DICOM master list~") and "82471001" in str(entry)
    assert "left atrium" in ui.statusLabel.text and "mL" in ui.statusLabel.text
    assert ui.progressBar.value == 100 and ui.segmentButton.enabled
    ml = float(ui.statusLabel.text.split("left atrium ")[1].split(" mL")[0])
    assert 20 < ml < 200  # a left atrium, not noise


def test_model_list_refresh_keeps_the_users_choices(harness, panel):
    other = load_volume(harness, CASES[1])
    panel.ui.inputVolume0.setCurrentNode(other)  # the user picks another input
    assert panel._parameterNode.inputVolume0 is other
    panel._refreshModels()  # what every finished job does
    assert panel._parameterNode.inputVolume0 is other and panel.ui.modelSelector.currentText == "la-mri"


def test_a_registry_model_is_listed_and_downloaded_only_once_the_user_agrees(harness, panel, tmp_path, monkeypatch):
    archive, models = registry_of_the_shipped_model(tmp_path, monkeypatch)
    ui, questions = panel.ui, harness.dialogs.questions
    panel._refreshModels()
    assert items(ui.modelSelector) == ["la-mri", "la-mri-remote"]

    asked = len(questions)
    harness.dialogs.answers = [False]  # the user declines: back to the model in use, nothing fetched
    ui.modelSelector.setCurrentText("la-mri-remote")
    assert len(questions) == asked + 1  # asked once
    assert "la-mri-remote is not on this computer yet" in questions[-1] and archive.as_uri() in questions[-1]
    assert ui.modelSelector.currentText == "la-mri" and panel._parameterNode.model == "la-mri"
    assert not (tmp_path / "cache").exists()

    asked = len(questions)
    harness.dialogs.answers = [True]
    confirm = harness.slicer.util.confirmOkCancelDisplay

    def a_job_ends_while_asking(text, *args, **kwargs):  # the dialog's event loop: the panel's poll finishes a job
        panel._refreshModels()
        return confirm(text, *args, **kwargs)

    monkeypatch.setattr(harness.slicer.util, "confirmOkCancelDisplay", a_job_ends_while_asking)
    ui.modelSelector.setCurrentText("la-mri-remote")
    monkeypatch.setattr(harness.slicer.util, "confirmOkCancelDisplay", confirm)
    assert len(questions) == asked + 1 and running(panel, "DownloadJob") is not None  # in the background
    assert panel._parameterNode.model == "la-mri" and ui.modelSelector.currentText == "la-mri"  # until it is here
    assert not ui.modelSelector.enabled and not ui.segmentButton.enabled
    wait_for_job(harness, panel, timeout=120)
    assert ui.statusLabel.text.startswith("la-mri-remote downloaded") and ui.progressBar.value == 100
    assert panel._parameterNode.model == "la-mri-remote" and ui.modelSelector.currentText == "la-mri-remote"
    assert ui.modelSelector.enabled and ui.segmentButton.enabled
    assert "Left atrium" in ui.modelDescription.text and len(list((tmp_path / "cache" / "models").iterdir())) == 1
    ui.modelSelector.setCurrentText("la-mri")
    ui.modelSelector.setCurrentText("la-mri-remote")  # on this computer now: no question
    assert len(questions) == asked + 1 and panel._parameterNode.model == "la-mri-remote"

    (tmp_path / "cache" / "models").rename(tmp_path / "gone")  # the cache cleared under a scene that names it:
    asked = len(questions)
    harness.dialogs.answers = [False]
    panel._refreshModels()  # asked once; declined: a model on this computer is taken
    assert len(questions) == asked + 1 and ui.modelSelector.currentText == "la-mri"
    assert panel._parameterNode.model == "la-mri" and "Left atrium" in ui.modelDescription.text

    # a download that fails: said, and not in use
    archive.unlink()
    harness.dialogs.answers = [True]
    ui.modelSelector.setCurrentText("la-mri-remote")
    wait_for_job(harness, panel, timeout=120)
    assert "cannot download" in harness.dialogs.errors[-1] and panel._parameterNode.model == "la-mri"
    assert ui.modelSelector.currentText == "la-mri" and ui.modelSelector.enabled

    (models / "registry.json").write_text("{damaged")  # a damaged registry hides no bundle
    panel._refreshModels()
    assert items(ui.modelSelector) == ["la-mri"] and ui.modelSelector.currentText == "la-mri"


def test_render_the_panel(harness, panel):
    """After a segmentation: the picture in Resources/Screenshots (build/panel-<release>.png)."""
    target = ROOT / "build" / f"panel-{RELEASE}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    assert panel.parent.grab().save(str(target)) and target.stat().st_size > 10_000


def test_replacing_a_segmentation_asks_and_cancel_stops_the_job(harness, panel):
    ui = panel.ui
    existing = panel._parameterNode.outputSegmentation
    names_before = existing.GetSegmentation().GetNumberOfSegments()
    harness.dialogs.answers = [True]
    ui.segmentButton.click()
    assert "already holds segments" in harness.dialogs.questions[-1]
    harness.process_events(1.0)
    ui.cancelButton.click()
    wait_for_job(harness, panel, timeout=60)
    assert ui.statusLabel.text == "Cancelled." and harness.dialogs.errors == []  # a cancel is not a failure
    assert existing.GetSegmentation().GetNumberOfSegments() == names_before


def test_train_refuses_unset_paths_and_writes_nothing(harness, panel, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Slicer's working directory: an unset path field reads '.'
    panel.ui.trainButton.click()
    assert harness.dialogs.errors and "Choose a dataset.json first." in harness.dialogs.errors[-1]
    harness.exceptions.clear()  # tryWithErrorDisplay shows the error and re-raises it into the slot
    assert list(tmp_path.iterdir()) == [] and not panel._jobs


def test_train_on_three_cases_and_stop(harness, panel, tmp_path):
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({
        "labels": {"0": "background", "1": "left atrium"}, "modality": {"0": "MRI"},
        "training": [{"image": str(LA / "imagesTr" / f"{c}.nii.gz"), "label": str(LA / "labelsTr" / f"{c}.nii.gz")}
                     for c in CASES],
    }))
    ui = panel.ui
    ui.datasetPathLineEdit.currentPath = str(dataset)
    ui.trainingOutputLineEdit.currentPath = str(tmp_path / "run")
    ui.epochsSpinBox.value = 2
    ui.trainButton.click()
    harness.wait_until(lambda: not panel._jobs or running(panel, "TrainingJob").status.startswith("epoch"), 300,
                       "the first training step")
    ui.cancelButton.click()  # the Segment section's Cancel: not this job's
    assert running(panel, "TrainingJob") is not None and not running(panel, "TrainingJob").cancelled
    assert ui.segmentButton.enabled and not ui.trainButton.enabled  # one can segment while a model trains
    ui.stopButton.click()
    wait_for_job(harness, panel, timeout=300)
    assert harness.dialogs.errors == []
    assert ui.trainingStatusLabel.text.startswith("stopped at epoch 1")
    assert (tmp_path / "run" / "train.log").is_file() and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    harness.dialogs.answers = [False]
    ui.trainButton.click()  # the folder holds a run: continue it, or start nothing
    assert "holds a run. Continue it" in harness.dialogs.questions[-1] and not panel._jobs
    harness.dialogs.answers = [True]
    ui.trainButton.click()
    assert "--resume" in running(panel, "TrainingJob").process.command
    harness.wait_until(lambda: not panel._jobs or running(panel, "TrainingJob").status.startswith("training on"), 300,
                       "training to resume")
    ui.stopButton.click()
    wait_for_job(harness, panel, timeout=300)
    assert harness.dialogs.errors == [] and ui.trainingStatusLabel.text.startswith("stopped at epoch")


def test_an_ensemble_says_so_and_is_not_fine_tuned(harness, panel, tmp_path, monkeypatch):
    import torch

    from missu.bundle import ensemble_state_dict, load_bundle, resolve_bundle, save_bundle
    from missu.network import build_model

    single = load_bundle(resolve_bundle("la-mri"))
    member = build_model(single.card.network, inference=True).state_dict()
    torch.manual_seed(0)
    save_bundle(tmp_path / "models" / "la-mri-ensemble", single.card.with_changes(members=2),
                ensemble_state_dict([single.state_dict, member]))
    monkeypatch.setenv("MISSU_MODELS", str(tmp_path / "models"))
    (tmp_path / "dataset.json").write_text("{}")
    ui = panel.ui
    try:
        panel._refreshModels()
        ui.modelSelector.setCurrentText("la-mri-ensemble")
        assert "Ensemble of 2 networks" in ui.modelDescription.text
        ui.datasetPathLineEdit.currentPath = str(tmp_path / "dataset.json")
        ui.trainingOutputLineEdit.currentPath = str(tmp_path / "run")
        ui.fineTuneCheckBox.checked = True
        ui.trainButton.click()
        assert harness.dialogs.errors and "is an ensemble of 2 networks" in harness.dialogs.errors[-1]
        harness.exceptions.clear()  # tryWithErrorDisplay shows the error and re-raises it into the slot
        assert not panel._jobs and not (tmp_path / "run").exists()
    finally:
        ui.fineTuneCheckBox.checked = False
        monkeypatch.delenv("MISSU_MODELS")
        panel._refreshModels()
        harness.process_events(0.1)
    assert ui.modelSelector.currentText == "la-mri" and "Ensemble" not in ui.modelDescription.text
    assert len(harness.dialogs.warnings) == 1 and "la-mri-ensemble" in harness.dialogs.warnings.pop()


def test_add_reviewed_case(harness, panel, tmp_path):
    panel.ui.reviewFolderLineEdit.currentPath = str(tmp_path / "reviewed")
    panel._parameterNode.inputVolume0 = harness.scene.GetFirstNodeByName(CASES[0])
    panel.ui.addReviewedCaseButton.click()
    dataset = json.loads((tmp_path / "reviewed" / "dataset.json").read_text())
    assert dataset["numTraining"] == 1 and "Added case" in panel.ui.reviewStatusLabel.text


class DicomDatabase:
    """Stand-in for ``slicer.dicomDatabase`` (ctkDICOMDatabase): where each imported instance's file is."""

    def __init__(self, files) -> None:
        import pydicom

        self.files = {str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID): str(f) for f in files}

    def fileForInstance(self, uid: str) -> str:
        return self.files.get(uid, "")


def test_export_dicom_seg_of_a_volume_loaded_from_dicom(harness, panel, tmp_path):
    """A volume as Slicer's DICOM module leaves it (its instances' UIDs in the ``DICOM.instanceUIDs`` attribute,
    its files in the DICOM database), and the segmentation made and reviewed above: exported as a DICOM SEG."""
    import sys

    import pydicom
    import SimpleITK as sitk

    sys.path.insert(0, str(ROOT / "Testing"))
    from dicom_fixtures import iod_errors, study, write_series

    from missu.data.images import read_image
    from missu.dicom.series import scan

    acquired = sitk.ReadImage(str(LA / "imagesTr" / f"{CASES[0]}.nii.gz"))[::2, ::2, ::2]
    _, files = write_series(acquired, tmp_path / "dicom", study())
    [series] = scan(tmp_path / "dicom")
    sitk.WriteImage(read_image(series), str(tmp_path / "loaded.nrrd"))
    volume = load_volume(harness, "3: LGE MRI axial", tmp_path / "loaded.nrrd")
    volume.SetAttribute("DICOM.instanceUIDs", " ".join(str(pydicom.dcmread(f).SOPInstanceUID) for f in series.files))
    harness.slicer.dicomDatabase = DicomDatabase(files)
    panel._parameterNode.inputVolume0 = volume
    target = tmp_path / "reviewed.dcm"
    panel.ui.dicomSegFileLineEdit.currentPath = str(target)
    panel.ui.exportDicomSegButton.click()
    assert harness.dialogs.errors == [] and panel.ui.reviewStatusLabel.text == f"Wrote DICOM SEG {target}"
    assert iod_errors(target) == []
    seg = pydicom.dcmread(target)
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"  # reviewed by a person
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.uid

    written = target.read_bytes()
    harness.dialogs.answers = [False]  # asked before replacing: "No" leaves the file as it was
    panel.ui.exportDicomSegButton.click()
    assert "exists. Replace it?" in harness.dialogs.questions[-1] and target.read_bytes() == written

    panel.ui.dicomSegFileLineEdit.currentPath = ""  # cleared: CTK does not pass an empty path on; the panel reads it
    panel.ui.exportDicomSegButton.click()
    assert harness.dialogs.errors and "Choose a DICOM SEG file (.dcm) first." in harness.dialogs.errors[-1]
    harness.exceptions.clear()  # tryWithErrorDisplay shows the error and re-raises it into the slot
    assert target.read_bytes() == written
    del harness.slicer.dicomDatabase


def test_a_scene_imported_with_the_panel_open_brings_its_model(harness, panel, tmp_path, monkeypatch):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(ROOT / "MISSUSegmentation" / "Resources" / "Models" / "la-mri", models / "la-mri-b")
    monkeypatch.setenv("MISSU_MODELS", str(models))
    ui, scene = panel.ui, harness.scene
    try:
        panel._refreshModels()
        ui.modelSelector.setCurrentText("la-mri-b")
        assert panel._parameterNode.model == "la-mri-b"
        scene.SetURL(str(tmp_path / "saved.mrml"))
        assert scene.Commit()  # File > Save: the parameter node records la-mri-b
        ui.modelSelector.setCurrentText("la-mri")
        assert panel._parameterNode.model == "la-mri"
        scene.SetURL(str(tmp_path / "saved.mrml"))
        assert scene.Import()  # File > Add Data of the saved scene: its parameters replace this node's
        harness.process_events(0.1)
        assert panel._parameterNode.model == "la-mri-b" and ui.modelSelector.currentText == "la-mri-b"
        assert "Left atrium" in ui.modelDescription.text
    finally:
        monkeypatch.delenv("MISSU_MODELS")
        panel._refreshModels()
        harness.process_events(0.1)
    assert ui.modelSelector.currentText == "la-mri" and panel._parameterNode.model == "la-mri"
    assert len(harness.dialogs.warnings) == 1 and "la-mri-b" in harness.dialogs.warnings.pop()  # it went away


def test_a_scene_whose_model_is_not_here_says_so(harness, panel, tmp_path, monkeypatch):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(ROOT / "MISSUSegmentation" / "Resources" / "Models" / "la-mri", models / "la-mri-b")
    monkeypatch.setenv("MISSU_MODELS", str(models))
    ui, scene, warnings = panel.ui, harness.scene, harness.dialogs.warnings
    panel._refreshModels()
    ui.modelSelector.setCurrentText("la-mri-b")
    scene.SetURL(str(tmp_path / "saved.mrml"))
    assert scene.Commit()  # saved on a computer that has la-mri-b
    ui.modelSelector.setCurrentText("la-mri")
    monkeypatch.delenv("MISSU_MODELS")  # opened on one that has not
    panel._refreshModels()
    harness.process_events(0.1)
    assert warnings == []
    scene.SetURL(str(tmp_path / "saved.mrml"))
    assert scene.Import()
    harness.process_events(0.1)
    assert ui.modelSelector.currentText == "la-mri" and panel._parameterNode.model == "la-mri"
    assert len(warnings) == 1 and "la-mri-b" in warnings[0] and "uses la-mri instead" in warnings[0]
    panel._refreshModels()
    harness.process_events(0.1)
    assert len(warnings) == 1  # told once: the scene now names the model in use
    warnings.clear()


def test_a_model_that_went_away_falls_back_past_a_damaged_one(harness, panel, tmp_path, monkeypatch):
    import shutil

    models = tmp_path / "models"
    for name in ("aaa-damaged", "la-mri-b"):
        shutil.copytree(ROOT / "MISSUSegmentation" / "Resources" / "Models" / "la-mri", models / name)
    (models / "aaa-damaged" / "card.json").write_text("{not json")  # listed first
    monkeypatch.setenv("MISSU_MODELS", str(models))
    ui, dialogs = panel.ui, harness.dialogs
    panel._refreshModels()
    ui.modelSelector.setCurrentText("la-mri-b")
    assert panel._parameterNode.model == "la-mri-b" and dialogs.errors == []
    shutil.rmtree(models / "la-mri-b")  # deleted while in use
    panel._refreshModels()
    harness.process_events(0.1)
    assert ui.modelSelector.currentText == "la-mri" and panel._parameterNode.model == "la-mri"
    assert len(dialogs.errors) == 1 and "Cannot read the model card" in dialogs.errors[0]
    assert len(dialogs.warnings) == 1 and "la-mri-b" in dialogs.warnings[0] and "uses la-mri" in dialogs.warnings[0]
    dialogs.warnings.clear()
    monkeypatch.delenv("MISSU_MODELS")
    panel._refreshModels()


def test_scene_close_then_cleanup(harness, panel):
    harness.scene.Clear(0)  # File > Close scene: StartClose/EndClose
    harness.process_events(0.1)
    assert panel._parameterNode is not None and panel._parameterNode.model == "la-mri"  # a new one, reconnected
    panel._parameterNode.inputVolume0 = load_volume(harness, CASES[0])
    panel.ui.segmentButton.click()  # still running when Slicer quits
    job = running(panel, "SegmentationJob")
    folder = Path(job.process.log_path).parent
    assert any(folder.glob("*.nrrd"))  # a copy of the patient's volume, for the child
    harness.slicer.app.moduleManager().unload("MISSUSegmentation")
    assert panel._parameterNode is None and not panel._jobs
    assert not job.running and not folder.exists()  # stopped, and no copy left behind
