"""3D Slicer module: segment volumes with MISSU, review, and train or fine-tune models, from one panel.

Thin by design: the Widget binds the panel to a parameter node and delegates to the Logic; the Logic, the
jobs (subprocesses with progress and cancel) and the MRML conversions live in ``MISSUSegmentationLib``; the
core package ``missu`` does the work. Loading this file needs only what Slicer's own Python holds.
"""

from __future__ import annotations

import unittest
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MISSUSegmentationLib import dependencies
from MISSUSegmentationLib.jobs import DownloadJob, SegmentationJob, TrainingJob
from MISSUSegmentationLib.logic import MISSUSegmentationLogic

MAX_INPUTS = 4
DEVICES = ("auto", "cpu", "cuda")
PRESETS = ("missu-small", "missu-medium", "missu", "transbts")  # missu.network.PRESETS (a panel test checks)


class MISSUSegmentation(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MISSU Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]  # Slicer's own category
        self.parent.dependencies = []
        self.parent.contributors = ["MISSU for 3D Slicer developers"]
        self.parent.helpText = _(
            "Segment volumes with MISSU (self-distilling TransUNet), review the result in Segment Editor, "
            "and train or fine-tune models on your own cases. See the README for the console API."
        )
        self.parent.acknowledgementText = _(
            "MISSU: Wang et al., IEEE TMI 2023 (arXiv 2206.00902). Built on MONAI, PyTorch and SimpleITK."
        )


@parameterNodeWrapper
class MISSUSegmentationParameterNode:
    model: str = "la-mri"  # the model list changes at run time: the Widget binds it itself
    inputVolume0: vtkMRMLScalarVolumeNode
    inputVolume1: vtkMRMLScalarVolumeNode
    inputVolume2: vtkMRMLScalarVolumeNode
    inputVolume3: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(DEVICES)] = "auto"
    tta: bool = False
    uncertainty: bool = False
    trainingDataset: Path
    trainingOutput: Path
    trainingPreset: Annotated[str, Choice(PRESETS)] = "missu-small"
    trainingEpochs: Annotated[int, WithinRange(1, 10000)] = 100
    fineTune: bool = False
    reviewFolder: Path
    dicomSegFile: Path


class MISSUSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: each button is one Logic call; jobs run in subprocesses polled by a timer."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._jobs: dict = {}  # job class -> the running job: one segmentation or download, and one training
        self._timer = None
        self._choosingModel = False  # a model change is under way (its dialogs run the event loop)
        self._missing: list[str] = []  # Python packages the core needs and this Slicer lacks
        self._pathFields: dict = {}  # parameter name -> its ctkPathLineEdit
        self._installing = False  # packages being installed (the event loop runs meanwhile)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MISSUSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MISSUSegmentationLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._poll)

        self.ui.modelSelector.currentTextChanged.connect(self._onModelChanged)
        self.ui.segmentButton.clicked.connect(self.onSegment)
        self.ui.cancelButton.clicked.connect(lambda: self.onCancel(SegmentationJob, DownloadJob))
        self.ui.trainButton.clicked.connect(self.onTrain)
        self.ui.stopButton.clicked.connect(lambda: self.onCancel(TrainingJob))
        self.ui.addReviewedCaseButton.clicked.connect(self.onAddReviewedCase)
        self.ui.exportDicomSegButton.clicked.connect(self.onExportDicomSeg)
        self.ui.installButton.clicked.connect(self.onInstallDependencies)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self._showDependencies()

    def cleanup(self) -> None:
        for job in self._jobs.values():
            job.abandon()
        self._jobs.clear()
        if self._timer:
            self._timer.stop()
        self.setParameterNode(None)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancel(SegmentationJob)  # its result would land in the closing scene; training goes on
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(MISSUSegmentationParameterNode(self.logic.getParameterNode()))
        self._refreshModels()

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self._onParameterNodeModified)
        self._parameterNode, self._parameterNodeGuiTag, self._pathFields = parameterNode, None, {}
        if parameterNode is not None:
            # connectGui returns the tag from Slicer 5.10 on; 5.8 returns None, so ask for the mapping's tag. Every
            # value of self.ui is a QObject (childWidgetVariables); no isinstance test: PythonQt says False for them.
            bound = {w.property("SlicerParameterName"): w for w in self.ui.__dict__.values()
                     if w.property("SlicerParameterName")}
            self._parameterNodeGuiTag = parameterNode.connectParametersToGui(bound)
            self._pathFields = {name: w for name, w in bound.items() if hasattr(w, "currentPath")}
            self.addObserver(parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self._onParameterNodeModified)

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """A scene imported with the panel open copies its saved parameters into this node, its model too: show
        that model (the model selector is not bound by connectParametersToGui)."""
        node = self._parameterNode
        if node and not self._choosingModel and self.ui.modelSelector.currentText != node.model:
            self._refreshModels()

    # -- model and inputs --------------------------------------------------------------------------------

    def _refreshModels(self) -> None:
        """Re-list the models, keeping the selection (and so the chosen inputs). A model the scene names that is
        not on this computer (or one that went away) is replaced by the first listed one, and the user is told."""
        if self._choosingModel:  # a job ended inside the model change's dialog: that change decides
            return
        selector = self.ui.modelSelector
        wanted = self._parameterNode.model if self._parameterNode else selector.currentText
        models = self.logic.availableModels()
        selector.blockSignals(True)
        selector.clear()
        selector.addItems(models)
        selector.setCurrentText(wanted)
        selector.blockSignals(False)
        self._onModelChanged(selector.currentText)
        used = self._parameterNode.model if self._parameterNode else wanted
        if wanted and wanted not in models and used != wanted:
            # After the event that brought it (a scene import is still running): no modal box inside it.
            qt.QTimer.singleShot(0, lambda: slicer.util.warningDisplay(
                _("Model {wanted} (named by the scene, or in use until now) is not on this computer; the panel uses "
                  "{used} instead. To segment with {wanted}, put its folder in ~/.missu/models (or in a folder "
                  "named by MISSU_MODELS) and choose it in the model list.").format(wanted=wanted, used=used),
                windowTitle=_("Model not found")))

    def _onModelChanged(self, name: str) -> None:
        """Make the chosen model the one in use; if it cannot be (download declined or failed, damaged card),
        choose the model in use before, so the selector never names a model that is not in use."""
        if not name or self._parameterNode is None or self._choosingModel:
            return
        self._choosingModel = True
        try:
            if self._chooseModel(name):
                return
            # The model in use before if it is still here, else the first on this computer that can be used.
            previous, models = self._parameterNode.model, self.logic.availableModels()
            fallbacks = [previous] if previous != name and previous in models else []
            fallbacks += [m for m in models if m not in (name, previous) and not self.logic.pendingDownload(m)]
            for fallback in fallbacks:
                self.ui.modelSelector.blockSignals(True)
                self.ui.modelSelector.setCurrentText(fallback)
                self.ui.modelSelector.blockSignals(False)
                if self._chooseModel(fallback):
                    break
        finally:
            self._choosingModel = False
            if self._parameterNode and self.ui.modelSelector.currentText != self._parameterNode.model:
                self.ui.modelSelector.blockSignals(True)  # a job that ended in a dialog moved it: show the one in use
                self.ui.modelSelector.setCurrentText(self._parameterNode.model)
                self.ui.modelSelector.blockSignals(False)

    def _chooseModel(self, name: str) -> bool:
        """Show ``name`` as the model in use; False if it is not in use now. A registry model not on this computer
        is downloaded first if the user agrees, in the background (progress and Cancel in the Segment section),
        and comes into use when its download has finished."""
        if url := self.logic.pendingDownload(name):
            if not self._segmenting() and slicer.util.confirmOkCancelDisplay(
                _("Model {name} is not on this computer yet. Download it now (its SHA-256 is checked)?\n\n{url}")
                .format(name=name, url=url)
            ):
                try:
                    with slicer.util.tryWithErrorDisplay(_("The download failed to start."), waitCursor=True):
                        self._start(self.logic.startDownload(name))
                except Exception:  # already shown to the user
                    pass
            return False
        try:
            with slicer.util.tryWithErrorDisplay(_("Cannot read the model card."), waitCursor=True):
                self._showModel(name, self.logic.modelCard(name))
        except Exception:  # already shown to the user
            return False
        return True

    def _showModel(self, name: str, card) -> None:
        """Make ``name`` the model in use: its description, metrics and one input selector per channel."""
        metrics = card.provenance.get("metrics", {}).get("validation_dice", {})
        scores = ", ".join(f"{k} Dice {v:.3f}" for k, v in metrics.items())
        ensemble = _("Ensemble of {n} networks (their class probabilities averaged).").format(n=card.members)
        lines = (card.description, ensemble if card.members > 1 else "", scores)
        self.ui.modelDescription.text = "\n".join(line for line in lines if line)
        for index in range(MAX_INPUTS):
            label, selector = getattr(self.ui, f"inputLabel{index}"), getattr(self.ui, f"inputVolume{index}")
            label.visible = selector.visible = index < len(card.inputs)
            if index < len(card.inputs):
                label.text = f"{card.inputs[index].description or card.inputs[index].name}:"
        for index, node in self.logic.matchInputVolumes(card).items():
            if getattr(self._parameterNode, f"inputVolume{index}") is None:  # never replace the user's choice
                setattr(self._parameterNode, f"inputVolume{index}", node)
        self._parameterNode.model = name  # last: only a model shown whole is the one in use

    def _readPathFields(self) -> None:
        """The path fields as shown: CTK passes a typed path on only while it is acceptable (not empty, matching
        the name filter), so a cleared field would otherwise leave its previous path in the parameter node."""
        for name, field in self._pathFields.items():
            setattr(self._parameterNode, name, Path(field.currentPath))

    def _inputs(self, count: int) -> list:
        return [getattr(self._parameterNode, f"inputVolume{i}") for i in range(count)]

    # -- jobs ----------------------------------------------------------------------------------------------

    def onSegment(self) -> None:
        p = self._parameterNode
        output = p.outputSegmentation  # questions before the wait cursor, which would cover them
        replaces = output is not None and output.GetSegmentation().GetNumberOfSegments() > 0
        if replaces and not slicer.util.confirmYesNoDisplay(
            _("'{name}' already holds segments (maybe your edits). Replace them?").format(name=output.GetName())
        ):
            return
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed to start."), waitCursor=True):
            volumes = self._inputs(len(self.logic.modelCard(p.model).inputs))
            job = self.logic.startSegmentation(volumes, p.model, device=p.device, tta=p.tta,
                                              uncertainty=p.uncertainty, outputSegmentation=output)
            self._start(job)

    def onTrain(self) -> None:
        self._readPathFields()
        p = self._parameterNode
        resume = self.logic.holdsRun(p.trainingOutput)
        if resume and not slicer.util.confirmYesNoDisplay(
            _("{folder} holds a run. Continue it from its last checkpoint (with the settings it started "
              "with)?").format(folder=p.trainingOutput)
        ):
            return
        with slicer.util.tryWithErrorDisplay(_("Training failed to start."), waitCursor=True):
            job = self.logic.startTraining(p.trainingDataset, p.trainingOutput, preset=p.trainingPreset,
                                           epochs=p.trainingEpochs, init=p.model if p.fineTune else None,
                                           device=p.device, resume=resume)
            self._start(job)

    def onCancel(self, *kinds) -> None:
        """Stop the running jobs (only those of the classes ``kinds``, if given); training checkpoints first."""
        for jobKind, job in self._jobs.items():
            if not kinds or jobKind in kinds:
                job.cancel()

    def _section(self, kind) -> tuple:
        """(progress bar, status label) of the panel section that runs jobs of class ``kind``: training, or
        segmentation and model downloads."""
        if kind is TrainingJob:
            return self.ui.trainingProgressBar, self.ui.trainingStatusLabel
        return self.ui.progressBar, self.ui.statusLabel

    def _segmenting(self) -> bool:
        """Whether the Segment section runs a job (a segmentation or a model download)."""
        return SegmentationJob in self._jobs or DownloadJob in self._jobs

    def _updateEnabled(self) -> None:
        """Enable what may start now: one job per section (a segmentation or a download, which also holds the
        model selector; a training), nothing that needs the missing packages, and nothing while they install."""
        segmenting = self._segmenting() or self._installing
        ready = not self._missing and not self._installing
        self.ui.installButton.enabled = not self._installing
        self.ui.modelSelector.enabled = not segmenting
        self.ui.segmentButton.enabled = ready and not segmenting
        self.ui.trainButton.enabled = ready and TrainingJob not in self._jobs
        self.ui.addReviewedCaseButton.enabled = self.ui.exportDicomSegButton.enabled = ready

    def _start(self, job) -> None:
        self._jobs[type(job)] = job
        self._updateEnabled()
        progressBar, statusLabel = self._section(type(job))
        progressBar.value = 0
        statusLabel.text = _("Starting...")
        self._timer.start()

    def _poll(self) -> None:
        for kind, job in list(self._jobs.items()):
            if self._jobs.get(kind) is not job:  # finished by a nested call (an error dialog runs the event loop)
                continue
            progressBar, statusLabel = self._section(kind)
            job.poll()
            if curves := job.new_curves():
                self.ui.curvesLabel.setPixmap(qt.QPixmap(curves).scaledToWidth(420))
            progressBar.value = int(100 * job.fraction)
            statusLabel.text = job.status
            if job.running:
                continue
            del self._jobs[kind]
            if not self._jobs:
                self._timer.stop()
            self._updateEnabled()
            try:
                with slicer.util.tryWithErrorDisplay(_("The job failed."), waitCursor=True):
                    statusLabel.text = job.status  # the error, should finish() raise
                    statusLabel.text = job.finish()
                    progressBar.value = int(100 * job.fraction)  # with the events read by finish()
                # Without the wait cursor: a model change may ask a question or show an error of its own
                with slicer.util.tryWithErrorDisplay(_("The panel could not take in the job's result.")):
                    if isinstance(job, DownloadJob) and not job.cancelled:
                        self.ui.modelSelector.setCurrentText(job.model)  # now on this computer: into use
                    if (isinstance(job, SegmentationJob) and job.segmentation is not None and self._parameterNode
                            and self._parameterNode.outputSegmentation is None):
                        self._parameterNode.outputSegmentation = job.segmentation
                    self._refreshModels()
            except Exception:  # already shown to the user; the timer's slot must not raise
                pass

    # -- review loop and dependencies ----------------------------------------------------------------------

    def onAddReviewedCase(self) -> None:
        self._readPathFields()
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not add the case."), waitCursor=True):
            volumes = self._inputs(len(self.logic.modelCard(p.model).inputs))
            case = self.logic.addReviewedCase(volumes, p.outputSegmentation, p.reviewFolder, p.model)
            self.ui.reviewStatusLabel.text = _("Added case {case} to {folder}").format(case=case, folder=p.reviewFolder)

    def onExportDicomSeg(self) -> None:
        self._readPathFields()
        p = self._parameterNode
        path = p.dicomSegFile
        if path is not None and path.is_file() and not slicer.util.confirmYesNoDisplay(
                _("{path} exists. Replace it?").format(path=path)):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not export the DICOM SEG."), waitCursor=True):
            written = self.logic.exportDicomSeg(p.outputSegmentation, p.inputVolume0, path, p.model, overwrite=True)
            self.ui.reviewStatusLabel.text = _("Wrote DICOM SEG {path}").format(path=written)

    def _showDependencies(self) -> None:
        self._missing = missing = dependencies.missing_requirements()
        self.ui.installButton.visible = bool(missing)
        self._updateEnabled()
        self.ui.statusLabel.text = (_("Missing Python packages: {names}").format(names=", ".join(missing))
                                    if missing else "")

    def onInstallDependencies(self) -> None:
        plan = dependencies.plan()
        if plan.refused:  # nothing can be installed: say so instead of asking
            slicer.util.errorDisplay(_("This Slicer's own Python has versions MISSU cannot use: {names}. Use a Slicer "
                                       "release whose Python provides them.").format(names=", ".join(plan.refused)))
            return
        wanted = ([plan.torch] if plan.torch else []) + plan.packages
        if wanted and slicer.util.confirmOkCancelDisplay(
            _("MISSU needs these Python packages; install them now? Packages that Slicer ships are kept "
              "as they are.\n\n{names}").format(names="\n".join(wanted))
        ):
            self._installing = True  # Slicer runs the event loop while pip prints: no second install meanwhile
            self._updateEnabled()
            try:
                with slicer.util.tryWithErrorDisplay(_("Installation failed."), waitCursor=True):  # re-raises
                    dependencies.install(plan)
            finally:
                self._installing = False
                self._showDependencies()
            if plan.restart_needed and slicer.util.confirmYesNoDisplay(
                _("Slicer must restart to use the updated packages. Restart now?")
            ):
                slicer.util.restart()


class MISSUSegmentationTest(ScriptedLoadableModuleTest):
    """Inside Slicer: the whole flow on a synthetic volume with the bundled default model."""

    def setUp(self) -> None:
        # Before every test, however it is run (Reload and Test, or unittest on Slicer's build machines):
        if missing := dependencies.missing_requirements():  # a fresh install, or an extension build machine
            self.skipTest("missing Python packages (install them from the module's panel): " + ", ".join(missing))
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Reload and Test: where the packages are missing, says so and skips rather than reporting a failure."""
        try:
            self.setUp()
        except unittest.SkipTest as skip:
            self.delayDisplay(f"Test skipped: {skip}")  # also logged
            return
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
