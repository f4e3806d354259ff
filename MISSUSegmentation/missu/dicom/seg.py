"""DICOM Segmentation objects (SEG) with highdicom: one binary segment per label, on the frames of the source
series they reference, with the labels' SNOMED codes and the model as the segmenting algorithm."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..bundle.card import Label, ModelCard
from ..data.atomic import atomic_path
from ..data.geometry import grid_difference
from ..errors import MISSUError
from .series import Series

TISSUE = ("SCT", "85756007", "Tissue")  # the segment type of a label known by its name only
SERIES_NUMBER_OFFSET = 1000  # the SEG's series number: its source series' number + this
# What a SEG copies from its source: attributes it cannot do without, and those that may be empty (DICOM type 2),
# which anonymisers often delete: the SEG gets them empty.
SOURCE_REQUIRED = ("StudyInstanceUID", "FrameOfReferenceUID", "PixelSpacing")
SOURCE_MAY_BE_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "AccessionNumber", "StudyID", "ReferringPhysicianName", "SliceThickness")


def _highdicom():
    """highdicom, usable on NumPy 2: inside Slicer (pydicom 2.4) the newest release that installs is 0.22, which
    names NumPy 1's ``np.float_``; that alias is added back for it."""
    import highdicom

    if not hasattr(np, "float_") and tuple(int(v) for v in highdicom.__version__.split(".")[:2]) < (0, 23):
        np.float_ = np.float64
    return highdicom


def _code(triple: Sequence[str]):
    from highdicom.sr import CodedConcept

    scheme, value, meaning = triple
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def cielab(rgb: Sequence[float]) -> list[int]:
    """A 0..1 sRGB colour as DICOM's CIELab triplet (L*, a*, b* scaled to 0..65535), with Pillow's colour
    management (highdicom's own conversion is not in the releases that Slicer 5.8's pydicom 2 allows)."""
    from PIL import Image, ImageCms

    transform = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    pixel = Image.new("RGB", (1, 1), tuple(round(255 * c) for c in rgb))
    return [round(v / 255 * 65535) for v in ImageCms.applyTransform(pixel, transform).getpixel((0, 0))]


def segment_descriptions(labels: Sequence[Label], card: ModelCard, reviewed: bool = False) -> list:
    """highdicom segment descriptions, numbered 1..N in ``labels``' order."""
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=card.name, version=card.version, source="MISSU", family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for number, label in enumerate(labels, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label.name,
            segmented_property_category=_code(label.category),
            segmented_property_type=_code(label.type if label.type[1] else TISSUE),
            algorithm_type="SEMIAUTOMATIC" if reviewed else "AUTOMATIC",
            algorithm_identification=algorithm,
        )
        description.RecommendedDisplayCIELabValue = cielab(label.color)
        if label.type_modifier:
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                _code(label.type_modifier)]
        descriptions.append(description)
    return descriptions


def check_seg_source(source: Series, header=None) -> None:
    """Refuse (before any inference) a series that a DICOM SEG cannot reference; ``header``: its first file's, when
    already read."""
    if header is None:
        import pydicom

        header = pydicom.dcmread(str(source.files[0]), stop_before_pixels=True)
    if missing := [keyword for keyword in SOURCE_REQUIRED if not header.get(keyword)]:
        raise MISSUError(f"{source.folder}: {source} has no {', '.join(missing)}, which a DICOM SEG of it needs; "
                         "write a .seg.nrrd instead")


def write_dicom_seg(labels: sitk.Image, card: ModelCard, source: Series, path: str | os.PathLike,
                    overwrite: bool = False, reviewed: bool = False) -> None:
    """A DICOM SEG of ``labels`` (the card's label values on ``source``'s grid, the volume :meth:`Series.read`
    gives), one segment per card label; ``reviewed`` marks it edited by a person (algorithm type SEMIAUTOMATIC).
    Written atomically."""
    hd = _highdicom()

    segments = card.labels
    if difference := grid_difference(labels, source.read()):  # a SEG has no geometry but its source's frames
        raise MISSUError(f"{path}: the label map is not on the grid of {source}: {difference}")
    headers = source.headers()
    check_seg_source(source, headers[0])
    for header in headers:
        for keyword in SOURCE_MAY_BE_EMPTY:
            if keyword not in header:
                setattr(header, keyword, None)
    values = sitk.GetArrayFromImage(labels)  # [frame, row, column]: frames in the series' volume order
    lookup = np.zeros(int(values.max()) + 1, dtype=np.uint16)
    for number, label in enumerate(segments, start=1):
        if label.value < lookup.size:
            lookup[label.value] = number
    if unknown := sorted(set(np.unique(values).tolist()) - {0, *(lab.value for lab in segments)}):
        raise MISSUError(f"{path}: label value(s) {unknown} have no segment")
    try:
        seg = _segmentation(hd, headers, lookup[values], segments, card, source, reviewed)
    except (ValueError, AttributeError, TypeError) as exc:  # highdicom's checks of the source headers
        raise MISSUError(f"{path}: cannot make a DICOM SEG of {source} ({type(exc).__name__}: {exc})") from None
    with atomic_path(path, overwrite) as temporary:
        seg.save_as(str(temporary))


def _segmentation(hd, headers: list, pixels: np.ndarray, segments: Sequence[Label], card: ModelCard, source: Series,
                  reviewed: bool):
    return hd.seg.Segmentation(
        source_images=headers,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(segments, card, reviewed),
        series_instance_uid=hd.UID(),
        series_number=(source.number or 0) + SERIES_NUMBER_OFFSET,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="MISSU",
        manufacturer_model_name=card.name,
        software_versions=f"missu {__version__}",
        device_serial_number=card.weights_sha256[:64] or "none",
        series_description=f"MISSU {card.name} {card.version}" + (" (reviewed)" if reviewed else ""),
        content_label="MISSU",
        content_description=f"{card.name} {card.version}",
        omit_empty_frames=True,
    )


def read_dicom_seg(path: str | os.PathLike, source: Series, card: ModelCard | None = None) -> sitk.Image:
    """A DICOM SEG of ``source`` as a label map on its grid: each segment's label value in ``card`` (matched by
    segment label), or its segment number. Overlapping segments are refused."""
    hd = _highdicom()

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # pydicom and highdicom raise many types for a file that is not a SEG
        raise MISSUError(f"{path}: not a readable DICOM SEG ({type(exc).__name__}: {exc})") from None
    uids = [str(h.SOPInstanceUID) for h in source.headers()]
    numbers = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True, relabel=False)
    values = {lab.name: lab.value for lab in (card.labels if card else ())}
    lookup = np.zeros(max((int(s.SegmentNumber) for s in seg.SegmentSequence), default=0) + 1, dtype=np.uint16)
    for segment in seg.SegmentSequence:
        lookup[int(segment.SegmentNumber)] = values.get(str(segment.SegmentLabel), int(segment.SegmentNumber))
    reference = source.read()
    image = sitk.GetImageFromArray(lookup[numbers])
    if image.GetSize() != reference.GetSize():
        raise MISSUError(f"{path}: size {image.GetSize()} does not match {source}'s {reference.GetSize()}")
    image.CopyInformation(reference)
    return image

