"""DICOM series on disk: the image series of a study folder, the series each model input takes, and reading one
series into a volume together with the headers that a DICOM SEG references.

pydicom is imported when a folder is scanned, so that the command line does not pay for it on NIfTI input.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..bundle.card import Channel, ModelCard
from ..errors import MISSUError

log = logging.getLogger(__name__)

# Attributes read from every file when a folder is scanned (the pixel data are not read).
SCAN_TAGS = ["SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber",
             "Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient", "NumberOfFrames"]
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class Series:
    """One image series: its files ordered along the slice normal (the volume's k axis)."""

    uid: str
    modality: str
    description: str
    number: int | None
    files: tuple[Path, ...]
    folder: Path
    problem: str = ""  # why this series is not one volume ("" when it is)
    volume_like: bool = True  # False for what is never a volume: a localizer, a single image, several echoes

    def __str__(self) -> str:
        number = f" {self.number}" if self.number is not None else ""
        return f"series{number} '{self.description}' ({self.modality}, {len(self.files)} files, UID {self.uid})"

    def headers(self) -> list:
        """The files' headers (pydicom datasets without pixel data), in volume order."""
        import pydicom

        return [pydicom.dcmread(str(f), stop_before_pixels=True) for f in self.files]

    def read(self) -> sitk.Image:
        """The volume, in the files' order (LPS geometry from the DICOM positions and orientation)."""
        if self.problem:
            raise MISSUError(f"{self.folder}: {self}: {self.problem}")
        try:
            if len(self.files) == 1:  # one multi-frame (enhanced) instance
                return sitk.ReadImage(str(self.files[0]))
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(f) for f in self.files])
            return reader.Execute()
        except RuntimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise MISSUError(f"{self.folder}: {self}: cannot read ({lines[-1] if lines else 'unreadable'})") from None


def _is_volume_slice(header) -> bool:
    """An instance that can be a slice of a volume: pixel rows and a position and orientation in the patient."""
    return (header.get("SOPClassUID") != SEGMENTATION_STORAGE and "Rows" in header
            and _numbers(header, "ImagePositionPatient", 3) and _numbers(header, "ImageOrientationPatient", 6))


def _numbers(header, keyword: str, count: int) -> bool:
    """Whether ``keyword`` holds ``count`` numbers (an anonymiser may leave it empty)."""
    try:
        return len(np.array(header.get(keyword) or (), dtype=float)) == count
    except (TypeError, ValueError):
        return False


def _series(uid: str, headers: list, folder: Path) -> Series:
    first = headers[0][1]
    number = first.get("SeriesNumber")
    orientation = np.array(first.ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = [float(np.dot(normal, np.array(h.ImagePositionPatient, dtype=float))) for _, h in headers]
    order = np.argsort(positions, kind="stable")
    problem = ""
    if any(not np.allclose(np.array(h.ImageOrientationPatient, dtype=float), orientation, atol=1e-4) for _, h in headers):
        problem = "its images have different orientations"
    elif len(headers) > 1 and len(np.unique(np.round(positions, 3))) < len(headers):
        problem = (f"{len(headers)} images at {len(np.unique(np.round(positions, 3)))} positions "
                   "(several echoes, phases or time points in one series)")
    elif len(headers) == 1 and int(first.get("NumberOfFrames", 1) or 1) < 2:
        problem = "a single 2-D image"
    volume_like = not problem  # what follows makes a damaged volume
    if volume_like and len({(h.Rows, h.Columns) for _, h in headers}) > 1:
        problem = "its images have different sizes"
    elif volume_like and len(headers) > 2 and np.ptp(gaps := np.diff(np.sort(positions))) > max(0.01, 0.05 * np.mean(gaps)):
        problem = (f"its slices are {gaps.min():.2f} to {gaps.max():.2f} mm apart, not evenly spaced (a missing or "
                   "damaged slice?)")
    return Series(uid=uid, modality=str(first.get("Modality", "")), description=str(first.get("SeriesDescription", "")),
                  number=int(number) if number not in (None, "") else None,
                  files=tuple(headers[i][0] for i in order), folder=folder, problem=problem, volume_like=volume_like)


def _group(files: Sequence[Path], folder: Path, instances: Collection[str] | None = None) -> list[Series]:
    """The image series the DICOM ``files`` make (only the instances ``instances``, when given), by series
    number. Files that are not DICOM, and instances that are not slices of a volume (structured reports,
    presentation states, segmentations), are skipped."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    groups: dict[str, list] = defaultdict(list)
    skipped = enhanced = 0
    for path in files:
        try:
            header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=SCAN_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError):
            continue  # not a DICOM file (or a damaged one: reported if its series is read)
        if "SeriesInstanceUID" not in header or (instances is not None and header.get("SOPInstanceUID") not in instances):
            continue
        if not _is_volume_slice(header):
            skipped += 1
            enhanced += header.get("SOPClassUID") != SEGMENTATION_STORAGE and int(header.get("NumberOfFrames") or 1) > 1
            continue
        groups[str(header.SeriesInstanceUID)].append((path, header))
    if skipped:
        log.info("%s: %d DICOM instance(s) that are not image slices ignored (SR, SEG, PR, ...)", folder, skipped)
    if enhanced and not groups:
        raise MISSUError(f"{folder}: holds enhanced (multi-frame) DICOM images only ({enhanced} instance(s)), which "
                         "missu does not read; load the study in Slicer's DICOM module, or convert it to classic "
                         "single-frame DICOM or NRRD")
    series = [_series(uid, headers, folder) for uid, headers in groups.items()]
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.uid))


def scan(folder: str | Path) -> list[Series]:
    """Every image series under ``folder`` (recursively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MISSUError(f"{folder}: no such folder")
    return _group(sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")), folder)


def series_of_instances(files: Sequence[str | Path], instances: Collection[str]) -> Series:
    """The one image series that the SOP instances ``instances`` (such as Slicer's ``DICOM.instanceUIDs`` of a
    volume) make, found among ``files``; all of them must be found."""
    paths = [Path(f) for f in files]
    folder = Path(os.path.commonpath(paths)) if paths else Path(".")
    found = _group(paths, folder, set(instances))
    count = sum(len(s.files) for s in found)
    if len(found) != 1 or count != len(set(instances)):
        raise MISSUError(f"{folder}: {count} of the volume's {len(set(instances))} DICOM instances found, in "
                         f"{len(found)} image series; the source series must be complete")
    return found[0]


def _listing(series: Sequence[Series]) -> str:
    return "; ".join(str(s) for s in series) or "none"


def only_series(folder: str | Path) -> Series:
    """The one image series of a folder (a folder given for a single input, or a training case)."""
    found = scan(folder)
    if not found:
        raise MISSUError(f"{folder}: holds no DICOM image series")
    if len(found) > 1:
        raise MISSUError(f"{folder}: holds {len(found)} DICOM image series ({_listing(found)}); keep one series in "
                         "the folder, or give the folder alone as --input and choose the series with --series UID")
    return found[0]


def _candidates(channel: Channel, found: Sequence[Series], chosen_by_user: bool = False) -> list[Series]:
    """The series that can be ``channel``: of its modality (or, among series the user named, any when none is)
    and, where several are, named like it."""
    of_modality = ([s for s in found if not channel.modality or s.modality == channel.modality]
                   or (list(found) if chosen_by_user else []))
    named = [s for s in of_modality if channel.matches(s.description)]
    return named if named else of_modality


def select_series(card: ModelCard, folder: str | Path, uids: Sequence[str] = ()) -> list[Series]:
    """One series per card input, from a study folder: by modality, then by series description against the
    input's name and aliases; ``uids`` (``--series``) restricts the choice. Refuses a missing input, an
    ambiguous one, and a series that is not one volume."""
    folder = Path(folder)
    found = scan(folder)
    if uids:
        if missing := [u for u in uids if u not in {s.uid for s in found}]:
            raise MISSUError(f"{folder}: no image series with UID {', '.join(missing)} (image series: {_listing(found)})")
        found = [s for s in found if s.uid in uids]
    if not found:
        raise MISSUError(f"{folder}: holds no DICOM image series")
    chosen: list[Series] = []
    for channel in card.inputs:
        what = f"input '{channel.name}'" + (f" ({channel.modality})" if channel.modality else "")
        candidates = [s for s in _candidates(channel, found, bool(uids)) if s not in chosen]
        candidates = [s for s in candidates if s.volume_like] or candidates  # a localizer is no rival of a volume
        if not candidates:
            raise MISSUError(f"{folder}: no series for model {card.name}'s {what}; image series: {_listing(found)}")
        if len(candidates) > 1:
            raise MISSUError(f"{folder}: {len(candidates)} series could be model {card.name}'s {what}: "
                             f"{_listing(candidates)}; choose with --series UID (the study folder given alone as --input)")
        if candidates[0].problem:
            raise MISSUError(f"{folder}: {candidates[0]}: {candidates[0].problem}")
        chosen.append(candidates[0])
    return chosen


def holds_dicom(folder: Path) -> bool:
    """Whether a folder holds at least one DICOM file (checked by the 'DICM' preamble, not the name)."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            try:
                with open(path, "rb") as handle:
                    handle.seek(128)
                    if handle.read(4) == b"DICM":
                        return True
            except OSError:
                continue
    return False
