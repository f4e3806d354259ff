"""Labelled datasets in the Medical Segmentation Decathlon ``dataset.json`` format (MONAI's datalist loader)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from monai.data import load_decathlon_datalist

from ..errors import MISSUError
from .cases import _stem


@dataclass(frozen=True)
class Case:
    name: str
    images: tuple[str, ...]  # one path per channel
    label: str | None


def load_cases(dataset: str | os.PathLike, key: str = "training", only: Sequence[str] | None = None) -> list[Case]:
    """Cases of ``dataset`` under ``key``; ``only`` keeps those whose name is listed."""
    dataset = Path(dataset)
    if not dataset.is_file():
        raise MISSUError(f"{dataset}: no such dataset file")
    try:
        keys = json.loads(dataset.read_text()).keys()
    except json.JSONDecodeError as exc:
        raise MISSUError(f"{dataset}: not valid JSON ({exc})") from None
    if key not in keys:
        raise MISSUError(f"{dataset}: has no '{key}' list (it has {', '.join(sorted(keys))})")
    cases = []
    for item in load_decathlon_datalist(str(dataset), is_segmentation=True, data_list_key=key):
        images = item["image"] if isinstance(item["image"], list) else [item["image"]]
        cases.append(Case(_stem(Path(images[0])), tuple(images), item.get("label")))
    if only is not None:
        wanted = set(only)
        cases = [c for c in cases if c.name in wanted]
        if missing := wanted - {c.name for c in cases}:
            raise MISSUError(f"{dataset}: cases {sorted(missing)[:5]} named by the model card are not in '{key}'")
    return cases
