"""Conversions between MRML nodes and the core's images (SimpleITK), voxel for voxel.

Slicer's IJK-to-RAS matrix equals ``missu.data.geometry.ras_affine`` of the same image; arrays from
``slicer.util.arrayFromVolume`` are ``[k, j, i]``, the order SimpleITK uses.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import slicer.util
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from missu.bundle.card import ModelCard
from missu.data.geometry import image_from_ras
from missu.errors import MISSUError

TERMINOLOGY_TAG = "TerminologyEntry"


def _matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_world(volume) -> np.ndarray:
    """IJK-to-RAS in world coordinates (through a linear parent transform); non-linear ones are refused."""
    local = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(local)
    transform = volume.GetParentTransformNode()
    if transform is None:
        return _matrix(local)
    if not transform.IsTransformToWorldLinear():
        raise MISSUError(f"volume {volume.GetName()}: under a non-linear transform; harden it first")
    to_world = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(to_world)
    return _matrix(to_world) @ _matrix(local)


def volume_to_image(volume) -> sitk.Image:
    """A scalar volume node as a float32 SimpleITK image in world (RAS) space."""
    if volume is None or volume.GetImageData() is None:
        raise MISSUError("an input volume is missing or holds no image data")
    array = slicer.util.arrayFromVolume(volume)  # [k, j, i]
    return image_from_ras(np.asarray(array, dtype=np.float32).transpose(2, 1, 0), ijk_to_world(volume))


def labels_to_segmentation(scene, labels: sitk.Image, card: ModelCard, reference, segmentation=None):
    """Put a label image (on ``reference``'s grid) into a segmentation node: one segment per card label,
    with its name, color and terminology. Existing segments of ``segmentation`` are replaced."""
    array = sitk.GetArrayFromImage(labels)  # [k, j, i], the reference volume's voxels
    if array.shape != slicer.util.arrayFromVolume(reference).shape:
        raise MISSUError(f"labels {array.shape} do not lie on {reference.GetName()}'s grid")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__missu_labels")
    try:
        labelmap.CopyOrientation(reference)
        labelmap.SetAndObserveTransformNodeID(reference.GetTransformNodeID())  # same local grid, same frame
        slicer.util.updateVolumeFromArray(labelmap, array.astype(np.uint16 if array.max() > 255 else np.uint8))
        if segmentation is None:
            segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{reference.GetName()} {card.name}")
            segmentation.CreateDefaultDisplayNodes()
        elif segmentation.GetSegmentation().GetNumberOfSegments():
            scene.SaveStateForUndo()  # the segments replaced below may be a reviewer's work
        # The transform first: the geometry is the volume's relative to the segmentation's own frame (set after
        # it, the volume's transform would be baked into the editing grid and then applied a second time).
        segmentation.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        segmentation.GetSegmentation().RemoveAllSegments()
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation, ""):
            raise MISSUError("Slicer could not import the label map into the segmentation")
        by_value = {lab.value: lab for lab in card.labels}
        found = set()
        seg = segmentation.GetSegmentation()
        for index in range(seg.GetNumberOfSegments()):
            segment = seg.GetNthSegment(index)
            label = by_value[segment.GetLabelValue()]
            found.add(label.value)
            segment.SetName(label.name)
            segment.SetColor(*label.color)
            segment.SetTag(TERMINOLOGY_TAG, label.terminology_entry())
        for label in card.labels:  # labels the model did not find still appear, empty, for the reviewer
            if label.value not in found:
                segment_id = seg.AddEmptySegment(f"Segment_{label.value}", label.name, label.color)
                seg.GetSegment(segment_id).SetTag(TERMINOLOGY_TAG, label.terminology_entry())
                seg.GetSegment(segment_id).SetLabelValue(label.value)
        return segmentation
    finally:
        scene.RemoveNode(labelmap)


def edit_stamp(segmentation) -> tuple:
    """What changes when anyone edits ``segmentation``'s segments (adds, removes, paints, erases): each segment's
    ID with the modification time of its source representation (Segment Editor modifies that in place)."""
    seg = segmentation.GetSegmentation()
    source = seg.GetSourceRepresentationName()
    stamp = []
    for index in range(seg.GetNumberOfSegments()):
        data = seg.GetNthSegment(index).GetRepresentation(source)
        stamp.append((seg.GetNthSegmentID(index), data.GetMTime() if data is not None else 0))
    return tuple(stamp)


def segmentation_to_labels(scene, segmentation, reference, card: ModelCard) -> sitk.Image:
    """The (reviewed) segmentation as a label image on ``reference``'s grid, segments matched to the card's
    labels by name; segments the card does not know are refused."""
    by_name = {lab.name.lower(): lab.value for lab in card.labels}
    seg = segmentation.GetSegmentation()
    result = np.zeros(slicer.util.arrayFromVolume(reference).shape, np.uint16)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__missu_export")
    labelmap.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
    try:
        for index in range(seg.GetNumberOfSegments()):
            segment_id, segment = seg.GetNthSegmentID(index), seg.GetNthSegment(index)
            value = by_name.get(segment.GetName().lower())
            if value is None:
                raise MISSUError(f"segment {segment.GetName()!r} is not a label of model {card.name} "
                                 f"({', '.join(lab.name for lab in card.labels)})")
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation, ids, labelmap, reference)
            result[slicer.util.arrayFromVolume(labelmap) > 0] = value
    finally:
        scene.RemoveNode(labelmap)
    image = sitk.GetImageFromArray(result.astype(np.uint8) if result.max() < 256 else result)
    template = volume_to_image(reference)
    image.CopyInformation(template)
    return image


def image_to_volume(scene, image: sitk.Image, name: str, reference):
    """A float image on ``reference``'s grid as a new scalar volume node (e.g. the uncertainty map)."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    volume.CopyOrientation(reference)
    slicer.util.updateVolumeFromArray(volume, sitk.GetArrayFromImage(image).astype(np.float32))
    volume.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
    volume.CreateDefaultDisplayNodes()  # as slicer.util.addVolumeFromArray: shown with a window/level at once
    return volume


def segment_volumes_ml(segmentation) -> dict[str, float]:
    """Volume of each segment in mL, from its binary labelmap (for the panel's table)."""
    seg = segmentation.GetSegmentation()
    result = {}
    for index in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(index)
        labelmap = segment.GetRepresentation("Binary labelmap")
        if labelmap is None or labelmap.GetPointData().GetScalars() is None:
            result[segment.GetName()] = 0.0
            continue
        voxels = vtk_to_numpy(labelmap.GetPointData().GetScalars())
        spacing = np.linalg.norm(_matrix(_image_to_world(labelmap))[:3, :3], axis=0)
        result[segment.GetName()] = float((voxels == segment.GetLabelValue()).sum() * np.prod(spacing) / 1000.0)
    return result


def _image_to_world(oriented) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    oriented.GetImageToWorldMatrix(matrix)
    return matrix
