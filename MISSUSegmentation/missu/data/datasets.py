"""Labelled datasets in the Medical Segmentation Decathlon ``dataset.json`` format (MONAI's datalist loader)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from monai.data import load_decathlon_datalist

from ..errors import MISSUError
from .cases import image_stem
from .geometry import array_xyz, grid_difference
from .images import read_channels, read_image


@dataclass(frozen=True)
class Case:
    name: str
    images: tuple[str, ...]  # one path per channel
    label: str | None


def load_cases(dataset: str | os.PathLike, key: str = "training", only: Sequence[str] | None = None,
               missing_ok: bool = False) -> list[Case]:
    """Cases of ``dataset`` under ``key``; ``only`` keeps those whose name is listed (all of them must be
    there unless ``missing_ok``)."""
    keys = _read_json(dataset).keys()
    if key not in keys:
        raise MISSUError(f"{dataset}: has no '{key}' list (it has {', '.join(sorted(keys))})")
    try:
        items = load_decathlon_datalist(str(dataset), is_segmentation=True, data_list_key=key)
        images = [tuple(i["image"]) if isinstance(i["image"], list) else (i["image"],) for i in items]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MISSUError(f"{dataset}: '{key}' must list objects with an 'image' and a 'label' ({exc!r})") from None
    names = _unique_names([Path(first) for first, *_ in images])
    cases = [Case(n, i, item.get("label")) for n, i, item in zip(names, images, items)]
    if only is not None:
        wanted = set(only)
        cases = [c for c in cases if c.name in wanted]
        if (missing := wanted - {c.name for c in cases}) and not missing_ok:
            raise MISSUError(f"{dataset}: cases {sorted(missing)[:5]} named by the model card are not in '{key}'")
    return cases


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset.json declares besides its cases.

    ``labels``: value -> name (background excluded); ``channels``: modality names in order; ``regions``
    (optional ``"regions"`` key): reported region -> label values; ``label_map`` (optional ``"label_map"``
    key): raw value in the files -> declared value (e.g. BraTS 2015 non-enhancing 3 -> necrosis 1).
    """

    labels: dict[int, str]
    channels: list[str]
    regions: dict[str, tuple[int, ...]]
    label_map: dict[int, int]


def _unique_names(first_images: list[Path]) -> list[str]:
    """Case names: the first image's file stem, or its folder when stems repeat (one folder per case), or
    the stem numbered (``name_2``) for an image listed twice."""
    for name_of in (image_stem, lambda p: p.parent.name):
        names = [name_of(p) for p in first_images]
        if len(set(names)) == len(names):
            return names
    names, seen = [], {}
    for path in first_images:
        stem = image_stem(path)
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def _read_json(dataset: str | os.PathLike) -> dict:
    """The dataset.json as a dict; ``MISSUError`` naming the file otherwise."""
    dataset = Path(dataset)
    if not dataset.is_file():
        raise MISSUError(f"{dataset}: no such dataset file")
    try:
        meta = json.loads(dataset.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MISSUError(f"{dataset}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise MISSUError(f"{dataset}: must hold a JSON object (MSD format), not a {type(meta).__name__}")
    return meta


def dataset_info(dataset: str | os.PathLike) -> DatasetInfo:
    meta = _read_json(dataset)
    try:
        labels = {int(k): str(v) for k, v in meta.get("labels", {}).items() if int(k) != 0}
        modality = meta.get("modality", {"0": "image"})
        info = DatasetInfo(
            labels=labels,
            channels=[str(modality[k]) for k in sorted(modality, key=int)],
            regions={k: tuple(int(v) for v in vs) for k, vs in meta.get("regions", {}).items()},
            label_map={int(k): int(v) for k, v in meta.get("label_map", {}).items()},
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise MISSUError(f"{dataset}: 'labels', 'modality', 'regions' and 'label_map' map integer strings to "
                         f"names or values ({exc})") from None
    if not labels:
        raise MISSUError(f"{dataset}: declares no foreground 'labels'")
    return info


def read_case(case: Case, label_values: Sequence[int]) -> tuple[list[sitk.Image], sitk.Image]:
    """The checked channels and label of ``case``; ``MISSUError`` says why it cannot be used for training or
    evaluation (missing, unreadable, mismatched, undeclared labels).

    ``label_values``: every raw value the label files may hold (declared and remapped ones)."""
    if case.label is None:
        raise MISSUError("no label")
    channels = read_channels(case.images)
    label = read_image(case.label, label=True)
    if difference := grid_difference(label, channels[0]):
        raise MISSUError(f"{case.label}: the label's grid differs from its image {case.images[0]}: {difference}")
    found = set(np.unique(array_xyz(label)).tolist()) - {0}
    if undeclared := found - set(label_values):
        raise MISSUError(f"{case.label}: label values {sorted(undeclared)} are not declared in the dataset")
    return channels, label


def check_case(case: Case, label_values: Sequence[int]) -> str | None:
    """Why ``case`` cannot be used (see :func:`read_case`), or None."""
    try:
        read_case(case, label_values)
    except MISSUError as exc:
        return str(exc)
    return None


def remap_labels(label: sitk.Image, label_map: dict[int, int]) -> sitk.Image:
    """Apply a dataset's ``label_map`` (raw value -> declared value) to a label image."""
    if not label_map:
        return label
    return sitk.ChangeLabel(label, changeMap={float(k): float(v) for k, v in label_map.items()})
