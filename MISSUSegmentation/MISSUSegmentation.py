"""3D Slicer module: segment volumes with MISSU, review, and train or fine-tune models, from one panel.

The module is thin: the Widget binds the panel to a parameter node and to the Logic; the Logic converts
MRML nodes to and from the core package ``missu`` (see ``MISSUSegmentationLib``); the core does the work.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import slicer

try:  # the Slicer application; absent with the slicer-core wheel (headless tests)
    import qt
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode  # noqa: F401 (typed parameters)
    from slicer.i18n import tr as _
    from slicer.parameterNodeWrapper import parameterNodeWrapper
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
    from slicer.util import VTKObservationMixin

    HAVE_APP = True
except ImportError:
    HAVE_APP = False

    # Headless stand-ins (slicer-core): only the Logic is used there, and it needs nothing from its base.
    class ScriptedLoadableModule: ...

    class ScriptedLoadableModuleWidget: ...

    class VTKObservationMixin: ...

    class ScriptedLoadableModuleTest: ...

    class ScriptedLoadableModuleLogic:
        def __init__(self) -> None:
            pass

    def _(text: str) -> str:
        return text


from MISSUSegmentationLib import mrml
from MISSUSegmentationLib.process import JsonProcess, TrainingMonitor, missu_command
from MISSUSegmentationLib.review import add_case

MAX_INPUTS = 4
DEVICES = ("auto", "cpu", "cuda")
PRESETS = ("missu-small", "missu", "transbts")


class MISSUSegmentation(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MISSU Segmentation")
        self.parent.categories = [_("Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["MISSU for 3D Slicer developers"]
        self.parent.helpText = _(
            "Segment volumes with MISSU (self-distilling TransUNet), review the result in Segment Editor, "
            "and train or fine-tune models on your own cases. See the README for the console API."
        )
        self.parent.acknowledgementText = _(
            "MISSU: Wang et al., IEEE TMI 2023 (arXiv 2206.00902). Built on MONAI, PyTorch and SimpleITK."
        )


if HAVE_APP:

    @parameterNodeWrapper
    class MISSUSegmentationParameterNode:
        model: str = "la-mri"
        inputVolume0: vtkMRMLScalarVolumeNode
        inputVolume1: vtkMRMLScalarVolumeNode
        inputVolume2: vtkMRMLScalarVolumeNode
        inputVolume3: vtkMRMLScalarVolumeNode
        outputSegmentation: vtkMRMLSegmentationNode
        device: str = "auto"
        tta: bool = False
        uncertainty: bool = False
        trainingDataset: Path
        trainingOutput: Path
        trainingPreset: str = "missu-small"
        trainingEpochs: int = 100
        fineTune: bool = False
        reviewFolder: Path


class MISSUSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: every action is one Logic call; long work runs in subprocesses polled by a timer."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guard = None
        self._job = None  # (JsonProcess, callback on finish)
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MISSUSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MISSUSegmentationLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(250)
        self._timer.connect("timeout()", self._poll)

        self.ui.deviceSelector.addItems(list(DEVICES))
        self.ui.presetSelector.addItems(list(PRESETS))
        self._refreshModels()
        self.ui.modelSelector.connect("currentTextChanged(QString)", self._onModelChanged)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.trainButton.connect("clicked(bool)", self.onTrain)
        self.ui.stopButton.connect("clicked(bool)", self.onCancel)
        self.ui.addReviewedCaseButton.connect("clicked(bool)", self.onAddReviewedCase)
        self.ui.installButton.connect("clicked(bool)", self.onInstallDependencies)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.initializeParameterNode()
        self._showDependencies()

    def cleanup(self) -> None:
        self.onCancel()
        self.removeObservers()
        if self._guard:
            self._guard.disconnect()

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancel()

    def initializeParameterNode(self) -> None:
        self._parameterNode = MISSUSegmentationParameterNode(self.logic.getParameterNode())
        self._guard = self._parameterNode.connectGui(self.ui)
        self._onModelChanged(self.ui.modelSelector.currentText)

    # -- model and inputs --------------------------------------------------------------------------------

    def _refreshModels(self) -> None:
        self.ui.modelSelector.clear()
        self.ui.modelSelector.addItems(sorted(self.logic.availableModels()))

    def _onModelChanged(self, name: str) -> None:
        if not name:
            return
        with slicer.util.tryWithErrorDisplay(_("Cannot read the model card."), waitCursor=True):
            card = self.logic.modelCard(name)
            metrics = card.provenance.get("metrics", {}).get("validation_dice", {})
            scores = ", ".join(f"{k} Dice {v:.3f}" for k, v in metrics.items())
            self.ui.modelDescription.text = f"{card.description}\n{scores}".strip()
            for index in range(MAX_INPUTS):
                label, selector = getattr(self.ui, f"inputLabel{index}"), getattr(self.ui, f"inputVolume{index}")
                visible = index < len(card.inputs)
                label.visible = selector.visible = visible
                if visible:
                    label.text = f"{card.inputs[index].description or card.inputs[index].name}:"
            for index, node in self.logic.matchInputVolumes(card).items():
                setattr(self._parameterNode, f"inputVolume{index}", node)

    def _inputs(self, count: int) -> list:
        return [getattr(self._parameterNode, f"inputVolume{i}") for i in range(count)]

    # -- segmentation --------------------------------------------------------------------------------------

    def onSegment(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed to start."), waitCursor=True):
            card = self.logic.modelCard(p.model)
            volumes = self._inputs(len(card.inputs))
            output = p.outputSegmentation
            if output is not None and output.GetSegmentation().GetNumberOfSegments() > 0:
                if not slicer.util.confirmYesNoDisplay(
                    _("'{name}' already holds segments (maybe your edits). Replace them?").format(name=output.GetName())
                ):
                    return
            process, finish = self.logic.startSegmentation(
                volumes, p.model, device=p.device, tta=p.tta, uncertainty=p.uncertainty, outputSegmentation=output
            )
            self._start(process, finish, self.ui.progressBar, self.ui.statusLabel)

    def _start(self, process: JsonProcess, job, progressBar, statusLabel) -> None:
        """``job`` folds events (``update``), shows ``fraction`` and ``status``, and ``done`` finishes it."""
        self._job = (process, job, progressBar, statusLabel, time.perf_counter())
        progressBar.value = 0
        statusLabel.text = _("Starting...")
        self.ui.segmentButton.enabled = self.ui.trainButton.enabled = False
        self._timer.start()

    def _poll(self) -> None:
        if self._job is None:
            self._timer.stop()
            return
        process, job, progressBar, statusLabel, started = self._job
        for event in process.poll():
            job.update(event)
            if event["event"] == "validation":
                self._showCurves()
        progressBar.value = int(100 * job.fraction)
        statusLabel.text = job.status
        if process.running:
            return
        process.wait()
        self._timer.stop()
        self._job = None
        self.ui.segmentButton.enabled = self.ui.trainButton.enabled = True
        with slicer.util.tryWithErrorDisplay(_("The job failed."), waitCursor=True):
            statusLabel.text = f"{job.done(process)} ({time.perf_counter() - started:.1f} s)"
            if isinstance(job, _SegmentationJob) and self._parameterNode.outputSegmentation is None:
                self._parameterNode.outputSegmentation = job.segmentation
            self._refreshModels()

    def onCancel(self) -> None:
        if self._job is not None:
            self._job[0].stop()

    # -- training ------------------------------------------------------------------------------------------

    def onTrain(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Training failed to start."), waitCursor=True):
            process, monitor = self.logic.startTraining(
                str(p.trainingDataset), str(p.trainingOutput), preset=p.trainingPreset, epochs=p.trainingEpochs,
                init=p.model if p.fineTune else None, device=p.device,
            )
            self._start(process, monitor, self.ui.trainingProgressBar, self.ui.trainingStatusLabel)

    def _showCurves(self) -> None:
        curves = Path(self._parameterNode.trainingOutput) / "curves.png"
        if curves.is_file():
            self.ui.curvesLabel.setPixmap(qt.QPixmap(str(curves)).scaledToWidth(420))

    # -- review loop and dependencies ----------------------------------------------------------------------

    def onAddReviewedCase(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not add the case."), waitCursor=True):
            card = self.logic.modelCard(p.model)
            case = self.logic.addReviewedCase(self._inputs(len(card.inputs)), p.outputSegmentation, p.reviewFolder, p.model)
            self.ui.reviewStatusLabel.text = _("Added case {case} to {folder}").format(case=case, folder=p.reviewFolder)

    def _showDependencies(self) -> None:
        from MISSUSegmentationLib.dependencies import missing_requirements

        missing = missing_requirements()
        self.ui.installButton.visible = bool(missing)
        self.ui.segmentButton.enabled = self.ui.trainButton.enabled = not missing
        if missing:
            self.ui.statusLabel.text = _("Missing Python packages: {names}").format(names=", ".join(missing))

    def onInstallDependencies(self) -> None:
        from MISSUSegmentationLib.dependencies import install, missing_requirements

        missing = missing_requirements()
        if missing and slicer.util.confirmOkCancelDisplay(
            _("MISSU needs these Python packages; install them now?\n\n{names}").format(names="\n".join(missing))
        ):
            with slicer.util.tryWithErrorDisplay(_("Installation failed."), waitCursor=True):
                install(missing)
        self._showDependencies()


class _SegmentationJob:
    """What to do with a finished segmentation subprocess: load its .seg.nrrd into the scene."""

    def __init__(self, logic, folder, output_path, uncertainty_path, reference, segmentation) -> None:
        self.logic, self.folder, self.output_path, self.uncertainty_path = logic, folder, output_path, uncertainty_path
        self.reference, self.segmentation = reference, segmentation
        self.error, self.fraction, self.status = None, 0.0, "starting"

    def update(self, event: dict) -> None:
        if event["event"] == "progress":
            self.fraction, self.status = event["fraction"], event["message"]
        elif event["event"] == "error":
            self.error = self.status = event["message"]

    def done(self, process: JsonProcess) -> str:
        try:
            if process.process.returncode != 0:
                raise RuntimeError(self.error or f"segmentation stopped (exit code {process.process.returncode})")
            self.segmentation = mrml.read_segmentation_file(
                self.logic.scene, self.output_path, self.reference, self.segmentation
            )
            self.segmentation.CreateClosedSurfaceRepresentation()
            if self.uncertainty_path and os.path.exists(self.uncertainty_path):
                import SimpleITK as sitk  # our own float output: no input checks apply

                mrml.image_to_volume(self.logic.scene, sitk.ReadImage(self.uncertainty_path),
                                     f"{self.reference.GetName()} uncertainty", self.reference)
            volumes = mrml.segment_volumes_ml(self.segmentation)
            return "; ".join(f"{name} {ml:.1f} mL" for name, ml in volumes.items())
        finally:
            self.folder.cleanup()


class MISSUSegmentationLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, callable from the Python console (``scene`` defaults to Slicer's)."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.scene = scene if scene is not None else slicer.mrmlScene
        self._segmenters: dict = {}

    # -- models --------------------------------------------------------------------------------------------

    @staticmethod
    def availableModels() -> list[str]:
        from missu.bundle import bundled_models

        return list(bundled_models())

    @staticmethod
    def modelCard(model: str):
        from missu.bundle import load_bundle, resolve_bundle

        return load_bundle(resolve_bundle(model)).card

    def matchInputVolumes(self, card) -> dict[int, object]:
        """Input index -> the scene's scalar volume whose name matches that channel (e.g. 'flair')."""
        volumes = [self.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                   for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
        matched = {}
        for index, channel in enumerate(card.inputs):
            hits = [v for v in volumes if channel.matches(v.GetName())]
            if hits:
                matched[index] = hits[0]
        if len(card.inputs) == 1 and not matched and volumes:
            matched[0] = volumes[0]
        return matched

    # -- segmentation: in-process (console) and as a subprocess (panel) ------------------------------------

    def segment(self, inputVolumeNodes, model: str = "la-mri", device: str = "auto", tta: bool = False,
                uncertainty: bool = False, outputSegmentation=None, overwrite: bool = False,
                progress=None, cancel=None):
        """Segment the volumes (one per model input, in the card's order); returns the segmentation node.

        ``model`` is a bundle name or path, or a loaded ``missu.inference.Segmenter`` to reuse. An
        ``outputSegmentation`` that already holds segments is only replaced with ``overwrite=True``.
        """
        from missu.errors import MISSUError
        from missu.inference import Segmenter

        volumes = list(inputVolumeNodes) if isinstance(inputVolumeNodes, (list, tuple)) else [inputVolumeNodes]
        if outputSegmentation is not None and outputSegmentation.GetSegmentation().GetNumberOfSegments() and not overwrite:
            raise MISSUError(f"segmentation {outputSegmentation.GetName()} already holds segments; pass overwrite=True")
        if isinstance(model, Segmenter):
            segmenter = model
        else:
            key = (str(model), device, tta)
            if key not in self._segmenters:
                self._segmenters[key] = Segmenter(model, device=device, tta=tta)
            segmenter = self._segmenters[key]
        images = [mrml.volume_to_image(v) for v in volumes]
        result = segmenter.segment(images, names=[v.GetName() for v in volumes], uncertainty=uncertainty,
                                   progress=progress, cancel=cancel)
        segmentation = mrml.labels_to_segmentation(self.scene, result.labels, segmenter.card, volumes[0],
                                                   outputSegmentation)
        if uncertainty:
            mrml.image_to_volume(self.scene, result.uncertainty, f"{volumes[0].GetName()} uncertainty", volumes[0])
        return segmentation

    def segmentFolder(self, inputFolder: str, outputFolder: str, model: str = "la-mri", device: str = "auto",
                      tta: bool = False) -> int:
        """Batch over a folder (or CSV) of cases with the core CLI; returns its exit code (1 if a case failed)."""
        from missu.cli import main

        arguments = ["segment", "--model", model, "--batch", str(inputFolder), "--output", str(outputFolder),
                     "--device", device]
        return main(arguments + (["--tta"] if tta else []))

    def startSegmentation(self, inputVolumeNodes, model: str, device: str = "auto", tta: bool = False,
                          uncertainty: bool = False, outputSegmentation=None):
        """Start ``missu segment`` in a subprocess on the volumes; returns (process, job) for the panel."""
        from missu.data.segfile import write_image

        card = self.modelCard(model)
        folder = tempfile.TemporaryDirectory(prefix="missu-")
        inputs = []
        for channel, volume in zip(card.inputs, inputVolumeNodes):
            path = os.path.join(folder.name, f"{channel.name}.nii.gz")
            write_image(mrml.volume_to_image(volume), path)
            inputs.append(f"{channel.name}={path}")
        output = os.path.join(folder.name, "result.seg.nrrd")
        uncertainty_path = os.path.join(folder.name, "uncertainty.nii.gz") if uncertainty else None
        arguments = ["segment", "--model", model, "--input", *inputs, "--output", output, "--device", device, "--json"]
        arguments += (["--tta"] if tta else []) + (["--uncertainty-out", uncertainty_path] if uncertainty else [])
        process = JsonProcess(missu_command(*arguments), log_path=Path(folder.name) / "segment.log")
        return process, _SegmentationJob(self, folder, output, uncertainty_path, inputVolumeNodes[0], outputSegmentation)

    # -- training and review --------------------------------------------------------------------------------

    def startTraining(self, dataset: str, output: str, preset: str = "missu-small", epochs: int = 100,
                      init: str | None = None, device: str = "auto", resume: bool = False):
        """Start ``missu train`` as a subprocess; returns (process, TrainingMonitor)."""
        arguments = ["train", "--dataset", dataset, "--output", output, "--preset", preset, "--epochs", str(epochs),
                     "--device", device]
        arguments += (["--init", init] if init else []) + (["--resume"] if resume else [])
        Path(output).mkdir(parents=True, exist_ok=True)
        process = JsonProcess(missu_command(*arguments), log_path=Path(output) / "process.log")
        return process, TrainingMonitor()

    def addReviewedCase(self, inputVolumeNodes, segmentationNode, trainingFolder: str, model: str = "la-mri") -> str:
        """Write the volumes and the corrected segmentation as a new case of ``trainingFolder/dataset.json``."""
        card = self.modelCard(model)
        channels = [mrml.volume_to_image(v) for v in inputVolumeNodes]
        labels = mrml.segmentation_to_labels(self.scene, segmentationNode, inputVolumeNodes[0], card)
        return add_case(Path(trainingFolder), inputVolumeNodes[0].GetName(), channels, labels, card)


class MISSUSegmentationTest(ScriptedLoadableModuleTest):
    """Inside Slicer: the whole flow on a synthetic volume with the bundled default model."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_segment_synthetic_volume()

    def test_segment_synthetic_volume(self) -> None:
        import numpy as np

        self.delayDisplay("Segmenting a synthetic volume")
        array = np.random.default_rng(0).normal(100, 10, (48, 64, 64)).astype(np.float32)
        array[16:32, 20:44, 20:44] += 80
        volume = slicer.util.addVolumeFromArray(array, ijkToRAS=np.diag([0.625, 0.625, 0.625, 1.0]), name="image")
        logic = MISSUSegmentationLogic()
        segmentation = logic.segment([volume], model="la-mri", device="cpu")
        names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(names, [lab.name for lab in logic.modelCard("la-mri").labels])
        self.delayDisplay("Test passed")
