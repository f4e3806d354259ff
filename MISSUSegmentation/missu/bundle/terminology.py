"""Default colors and DICOM/SNOMED codes for label names met in datasets (used when a training recipe or
dataset gives a name only). Codes are those of Slicer's "DICOM master list" terminology."""

from __future__ import annotations

from .card import Label

ANATOMY = ("SCT", "123037004", "Anatomical Structure")
ALTERED = ("SCT", "49755003", "Morphologically Altered Structure")

KNOWN: dict[str, dict] = {
    "left atrium": {"category": ANATOMY, "type": ("SCT", "82471001", "Left atrium"), "color": (0.80, 0.36, 0.36)},
    "necrosis": {"category": ALTERED, "type": ("SCT", "6574001", "Necrosis"), "color": (0.85, 0.80, 0.20)},
    "edema": {"category": ALTERED, "type": ("SCT", "79654002", "Edema"), "color": (0.30, 0.69, 0.29)},
    # (SNOMED has no "enhancing" qualifier: the segment's name says it)
    "enhancing tumor": {"category": ALTERED, "type": ("SCT", "4147007", "Mass"), "color": (0.89, 0.10, 0.11)},
    "tumor": {"category": ALTERED, "type": ("SCT", "4147007", "Mass"), "color": (0.89, 0.10, 0.11)},
}
ALIASES = {
    "la": "left atrium", "necrotic tumor core": "necrosis", "ncr": "necrosis", "ncr/net": "necrosis",
    "necrotic": "necrosis", "peritumoral edema": "edema", "ed": "edema", "oedema": "edema",
    "et": "enhancing tumor", "enhancing": "enhancing tumor", "enhancing tumour": "enhancing tumor",
}
PALETTE = [(0.12, 0.47, 0.71), (1.0, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.40, 0.74)]


def label_for(value: int, name: str) -> Label:
    """A card label for ``name``, with known codes and colors, or a generic anatomical structure."""
    entry = KNOWN.get(ALIASES.get(name.lower(), name.lower()))
    if entry is None:
        color = PALETTE[(value - 1) % len(PALETTE)]
        return Label(value, name, color, ANATOMY, ("", "", name))
    return Label(value, name, entry["color"], entry["category"], entry["type"], entry.get("type_modifier"))
