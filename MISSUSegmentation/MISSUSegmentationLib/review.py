"""The review loop: a corrected case goes into a training folder (NIfTI + MSD dataset.json) for fine-tuning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import SimpleITK as sitk

from missu.bundle.card import ModelCard
from missu.data.atomic import atomic_path
from missu.data.segfile import write_image


def dataset_skeleton(card: ModelCard) -> dict:
    """An empty MSD dataset.json with the card's channels, labels and regions."""
    return {
        "name": f"reviewed cases for {card.name}",
        "modality": {str(i): c.name for i, c in enumerate(card.inputs)},
        "labels": {"0": "background", **{str(lab.value): lab.name for lab in card.labels}},
        **({"regions": {k: list(v) for k, v in card.regions.items()}} if card.regions else {}),
        "training": [],
    }


def _case_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "case"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def add_case(folder: Path, name: str, channels: list[sitk.Image], labels: sitk.Image, card: ModelCard) -> str:
    """Write ``channels`` and ``labels`` as a new case of ``folder/dataset.json``; returns the case name."""
    folder = Path(folder)
    dataset_path = folder / "dataset.json"
    dataset = json.loads(dataset_path.read_text()) if dataset_path.is_file() else dataset_skeleton(card)
    taken = {Path(entry["label"]).name.split(".")[0] for entry in dataset["training"]}
    case = _case_name(name, taken)
    images = []
    for channel, image in zip(card.inputs, channels):
        relative = f"imagesTr/{case}_{channel.name}.nii.gz"
        write_image(image, folder / relative)
        images.append(relative)
    write_image(labels, folder / f"labelsTr/{case}.nii.gz")
    dataset["training"].append({"image": images if len(images) > 1 else images[0], "label": f"labelsTr/{case}.nii.gz"})
    dataset["numTraining"] = len(dataset["training"])
    with atomic_path(dataset_path, overwrite=True) as temporary:
        temporary.write_text(json.dumps(dataset, indent=1) + "\n")
    return case
