"""``missu dataset import-brats``: an MSD dataset.json from a BraTS-layout folder (one sub-folder per case)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..bundle.card import name_tokens
from ..data.atomic import atomic_path
from ..errors import MISSUError
from .cases import image_stem, is_image
from .geometry import same_grid
from .naming import CONVENTIONS, LABEL_TOKENS, MODALITIES


@dataclass
class Imported:
    dataset: Path
    cases: int
    skipped: dict[str, str]


def _find(files: list[Path], tokens: tuple[str, ...]) -> list[Path]:
    return [f for f in files if name_tokens(image_stem(f)) & set(tokens)]


def import_brats(
    folders: str | os.PathLike | list,
    output: str | os.PathLike | None = None,
    modalities: tuple[str, ...] = ("t1", "t1c", "t2", "flair"),
    convention: str = "124",
    label_map: dict[int, int] | None = None,
    overwrite: bool = False,
) -> Imported:
    """Write ``dataset.json`` (default: inside the first folder) listing every usable case of the folders;
    skipped ones with reasons."""
    folders = [Path(f) for f in (folders if isinstance(folders, list) else [folders])]
    for folder in folders:
        if not folder.is_dir():
            raise MISSUError(f"{folder}: no such folder")
    folder = folders[0]
    if convention not in CONVENTIONS:
        raise MISSUError(f"label convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    if unknown := set(modalities) - set(MODALITIES):
        raise MISSUError(f"unknown modalities {sorted(unknown)}; known: {', '.join(MODALITIES)}")
    labels = CONVENTIONS[convention]
    label_map = label_map or {}
    allowed = {0, *labels, *label_map}
    output = Path(output) if output else folder / "dataset.json"
    entries, skipped = [], {}
    cases = [c for f in folders for c in [f, *sorted(p for p in f.rglob("*") if p.is_dir())]]
    for case in cases:
        files = [f for f in sorted(case.iterdir()) if is_image(f)]
        if not files:
            continue
        found = {m: _find(files, MODALITIES[m]) for m in modalities}
        label = _find(files, LABEL_TOKENS)
        if problems := [m for m, f in found.items() if len(f) != 1] + (["label"] if len(label) != 1 else []):
            skipped[case.name] = "missing or ambiguous: " + ", ".join(problems)
            continue
        paths = [found[m][0] for m in modalities] + label
        try:
            headers = [_header(p) for p in paths]
        except MISSUError as exc:
            skipped[case.name] = str(exc)
            continue
        if mismatch := [p.name for p, h in zip(paths[1:], headers[1:]) if not same_grid(h, headers[0])]:
            skipped[case.name] = f"geometry differs from {paths[0].name}: {', '.join(mismatch)}"
            continue
        values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label[0])))).astype(int).tolist())
        if undeclared := values - allowed:
            skipped[case.name] = f"{label[0].name}: label values {sorted(undeclared)} not in convention {convention}"
            continue
        rel = lambda p: os.path.relpath(p, output.parent)  # noqa: E731
        entries.append({"image": [rel(p) for p in paths[:-1]], "label": rel(label[0])})
    if not entries:
        reasons = "; ".join(f"{case}: {why}" for case, why in skipped.items())
        where = ", ".join(map(str, folders))
        raise MISSUError(f"{where}: no usable BraTS case ({len(skipped)} skipped{': ' + reasons if reasons else ''})")
    et = max(labels)
    dataset = {
        "name": f"BraTS ({folder.name})",
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": {"0": "background", **{str(k): v for k, v in labels.items()}},
        "regions": {"WT": sorted(labels), "TC": [1, et], "ET": [et]},
        **({"label_map": {str(k): v for k, v in label_map.items()}} if label_map else {}),
        "numTraining": len(entries),
        "training": entries,
    }
    with atomic_path(output, overwrite) as temporary:
        temporary.write_text(json.dumps(dataset, indent=1) + "\n")
    return Imported(output, len(entries), skipped)


def _header(path: Path) -> sitk.ImageFileReader:
    """The file's header (size, spacing, origin, direction) without its voxels; ``same_grid`` accepts it."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise MISSUError(f"{path.name}: unreadable") from None
    if reader.GetDimension() != 3:
        raise MISSUError(f"{path.name}: {reader.GetDimension()}-D, not a volume")
    return reader
