"""The module's Logic: everything the panel does, callable from Slicer's Python console.

Imports only what Slicer's own Python holds; the core's heavy parts (torch, MONAI) load inside the methods
that need them, after the user installed them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import slicer

from . import mrml
from .jobs import DownloadJob, SegmentationJob, TrainingJob
from .process import JsonProcess, missu_command

try:
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic
except ImportError:  # the slicer-core wheel alone (no Qt): the Logic needs nothing from its base there

    class ScriptedLoadableModuleLogic:  # type: ignore[no-redef]
        def __init__(self) -> None:
            pass


def chosen_path(value, what: str) -> Path:
    """A path the user chose; an empty field (which Slicer's parameter node stores as '.') is refused."""
    if value is None or str(value).strip() in ("", "."):
        raise ValueError(f"Choose {what} first.")
    return Path(value)


def model_inputs(card, volumes) -> list:
    """One volume per model input, in the card's order, each a different volume (a 4-channel model fed the same
    scan twice would run and draw nonsense)."""
    volumes = list(volumes)
    if len(volumes) != len(card.inputs) or any(v is None for v in volumes):
        raise ValueError(f"Model {card.name} needs {len(card.inputs)} input volume(s): "
                         + ", ".join(c.description or c.name for c in card.inputs))
    for index, volume in enumerate(volumes):
        if (first := volumes.index(volume)) < index:
            raise ValueError(f"Model {card.name}: {volume.GetName()} is chosen both as {card.inputs[first].name} and "
                             f"as {card.inputs[index].name}; choose one volume per input.")
    return volumes


class MISSUSegmentationLogic(ScriptedLoadableModuleLogic):
    """``scene`` defaults to Slicer's."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.scene = scene if scene is not None else slicer.mrmlScene
        self._segmenters: dict = {}

    # -- models --------------------------------------------------------------------------------------------

    @staticmethod
    def availableModels() -> list[str]:
        """Bundles on this computer, then the models of ``registry.json`` files (downloaded when first chosen).
        A damaged registry is logged and left out: it must not hide the bundles."""
        from missu.bundle.registry import bundled_models, remote_models
        from missu.errors import MISSUError

        local = bundled_models()
        try:
            remote = set(remote_models()) - set(local)
        except MISSUError as exc:
            logging.warning("MISSU: registry models left out: %s", exc)
            remote = set()
        return sorted(local) + sorted(remote)

    @staticmethod
    def pendingDownload(model: str) -> str | None:
        """The address a registry model is still to be downloaded from; None when it is on this computer."""
        from missu.bundle.registry import pending_download

        return pending_download(model)

    @staticmethod
    def startDownload(model: str) -> DownloadJob:
        """Start downloading a registry model (``missu models --fetch``) in a subprocess, so Slicer stays
        responsive; the panel polls the returned job, which shows its progress and can be cancelled. Its stderr
        goes to a temporary log, whose end a crash without a message of its own is reported with."""
        folder = tempfile.TemporaryDirectory(prefix="missu-download-")
        try:
            process = JsonProcess(missu_command("models", "--fetch", model, "--json"),
                                  log_path=Path(folder.name) / "download.log", grace_s=10)
        except BaseException:
            folder.cleanup()
            raise
        return DownloadJob(process, model, folder.cleanup)

    @staticmethod
    def modelCard(model: str):
        """The model's card only (no weights, no torch)."""
        from missu.bundle import read_card, resolve_bundle

        return read_card(resolve_bundle(model))

    def matchInputVolumes(self, card) -> dict[int, object]:
        """Input index -> the scene's scalar volume whose name matches that channel (e.g. 'flair')."""
        volumes = [self.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                   for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
        # Exactly scalar volumes, as the panel's selectors show them: not label maps, vector or diffusion volumes.
        volumes = [v for v in volumes if v.GetClassName() == "vtkMRMLScalarVolumeNode"]
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
        volumes = model_inputs(segmenter.card, volumes)
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
                          uncertainty: bool = False, outputSegmentation=None) -> SegmentationJob:
        """Start ``missu segment`` in a subprocess on the volumes; the panel polls the returned job."""
        from missu.data.segfile import write_image

        card = self.modelCard(model)
        inputVolumeNodes = model_inputs(card, inputVolumeNodes)
        folder = tempfile.TemporaryDirectory(prefix="missu-")
        try:
            inputs = []
            for channel, volume in zip(card.inputs, inputVolumeNodes):
                path = os.path.join(folder.name, f"{channel.name}.nrrd")  # exact geometry (NIfTI rounds it)
                write_image(mrml.volume_to_image(volume), path)
                inputs.append(f"{channel.name}={path}")
            output = os.path.join(folder.name, "result.seg.nrrd")
            # The labels on the input volume's own voxel grid: loaded as the console path loads them, so the
            # segmentation sits on the volume's grid under the volume's transform (the .seg.nrrd is in world space).
            label_path = os.path.join(folder.name, "labels.nrrd")
            uncertainty_path = os.path.join(folder.name, "uncertainty.nii.gz") if uncertainty else None
            arguments = ["segment", "--model", model, "--input", *inputs, "--output", output, "--label-out", label_path,
                         "--device", device, "--json"]
            arguments += (["--tta"] if tta else []) + (["--uncertainty-out", uncertainty_path] if uncertainty else [])
            process = JsonProcess(missu_command(*arguments), log_path=Path(folder.name) / "segment.log", grace_s=10)
        except BaseException:
            folder.cleanup()
            raise
        reference = inputVolumeNodes[0]
        before = mrml.edit_stamp(outputSegmentation) if outputSegmentation is not None else None

        def load():
            import SimpleITK as sitk  # our own outputs: no input checks apply

            target, kept = outputSegmentation, None
            if target is not None and target.GetScene() is None:
                target = None  # deleted while the job ran: the result goes to a new node
            elif target is not None and mrml.edit_stamp(target) != before:
                target, kept = None, target.GetName()  # edited while the job ran: keep it, write a new node
            labels = sitk.ReadImage(label_path)
            segmentation = mrml.labels_to_segmentation(self.scene, labels, card, reference, target)
            segmentation.CreateClosedSurfaceRepresentation()
            if uncertainty_path and os.path.exists(uncertainty_path):
                mrml.image_to_volume(self.scene, sitk.ReadImage(uncertainty_path),
                                     f"{reference.GetName()} uncertainty", reference)
            return segmentation, mrml.segment_volumes_ml(segmentation), kept

        return SegmentationJob(process, load, folder.cleanup)

    # -- training and review --------------------------------------------------------------------------------

    @staticmethod
    def holdsRun(output) -> bool:
        """Whether the run folder ``output`` holds a run to continue (``startTraining(..., resume=True)``)."""
        return output is not None and str(output).strip() not in ("", ".") and (
            Path(output) / "checkpoints" / "last.pt").is_file()

    def startTraining(self, dataset, output, preset: str = "missu-small", epochs: int = 100,
                      init: str | None = None, device: str = "auto", resume: bool = False) -> TrainingJob:
        """Start ``missu train`` as a subprocess; the panel polls the returned job (Stop checkpoints)."""
        dataset, output = chosen_path(dataset, "a dataset.json"), chosen_path(output, "a run folder")
        if not dataset.is_file():
            raise ValueError(f"{dataset}: no such dataset file")
        if init and (members := self.modelCard(init).members) > 1:
            raise ValueError(f"Model {init} is an ensemble of {members} networks: fine-tune one network instead.")
        arguments = ["train", "--dataset", dataset, "--output", output, "--preset", preset, "--epochs", str(epochs),
                     "--device", device]
        arguments += (["--init", init] if init else []) + (["--resume"] if resume else [])
        output.mkdir(parents=True, exist_ok=True)
        process = JsonProcess(missu_command(*arguments), log_path=output / "process.log", grace_s=120)
        return TrainingJob(process, str(output))

    def addReviewedCase(self, inputVolumeNodes, segmentationNode, trainingFolder, model: str = "la-mri") -> str:
        """Write the volumes and the corrected segmentation as a new case of ``trainingFolder/dataset.json``."""
        from .review import add_case

        folder = chosen_path(trainingFolder, "a training folder")
        if segmentationNode is None:
            raise ValueError("Choose the reviewed segmentation first.")
        card = self.modelCard(model)
        channels = [mrml.volume_to_image(v) for v in inputVolumeNodes]
        labels = mrml.segmentation_to_labels(self.scene, segmentationNode, inputVolumeNodes[0], card)
        return add_case(folder, inputVolumeNodes[0].GetName(), channels, labels, card)

    def exportDicomSeg(self, segmentationNode, volumeNode, path, model: str = "la-mri", sourceFiles=None,
                       overwrite: bool = False) -> str:
        """Write the reviewed segmentation as a DICOM SEG of the series ``volumeNode`` was loaded from, with the
        core's writer (as ``missu segment --output x.dcm``; segments marked SEMIAUTOMATIC: reviewed by a person).

        The series' files come from Slicer's DICOM database, or from ``sourceFiles`` (a folder or a list of
        files) where there is none. An existing file is only replaced with ``overwrite=True``."""
        from missu.dicom.seg import write_dicom_seg
        from missu.dicom.series import series_of_instances

        path = chosen_path(path, "a DICOM SEG file (.dcm)")
        if segmentationNode is None or volumeNode is None:
            raise ValueError("Choose the source volume and the reviewed segmentation first.")
        instances = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        if not instances:
            raise ValueError(f"{volumeNode.GetName()} was not loaded from DICOM: a DICOM SEG needs its source series.")
        card = self.modelCard(model)
        source = series_of_instances(_dicom_files(instances, sourceFiles), instances)
        labels = mrml.segmentation_to_labels(self.scene, segmentationNode, volumeNode, card)
        write_dicom_seg(labels, card, source, path, overwrite=overwrite, reviewed=True)
        return str(path)


def _dicom_files(instances: list[str], sourceFiles=None) -> list[str]:
    """The files of ``instances``: from ``sourceFiles`` (a folder or a list), or from Slicer's DICOM database."""
    if sourceFiles is not None:
        if isinstance(sourceFiles, (str, os.PathLike)):
            return [str(p) for p in Path(sourceFiles).rglob("*") if p.is_file()]
        return [str(p) for p in sourceFiles]
    database = getattr(slicer, "dicomDatabase", None)
    if database is None:
        raise ValueError("No DICOM database (Slicer's DICOM module): give the source series' folder.")
    return [f for f in (database.fileForInstance(uid) for uid in instances) if f]
