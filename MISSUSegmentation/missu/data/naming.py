"""Names met in datasets: BraTS modality names and their file-name tokens, BraTS label conventions, and the DICOM
modality a channel name implies. No image libraries: the command line's parser reads it on every call."""

from __future__ import annotations

from ..bundle.card import name_tokens

# Channel name -> file-name tokens, in the order the paper's model takes them.
MODALITIES = {"t1": ("t1",), "t1c": ("t1ce", "t1c", "t1gd", "t1post"), "t2": ("t2",), "flair": ("flair", "fla")}
LABEL_TOKENS = ("seg", "label", "labels", "otmulticlass")
CONVENTIONS = {  # declared label values: BraTS <= 2020 (ET = 4) and BraTS 2021+ (ET = 3)
    "124": {1: "necrosis", 2: "edema", 4: "enhancing tumor"},
    "123": {1: "necrosis", 2: "edema", 3: "enhancing tumor"},
}


def dicom_modality(channel: str) -> str:
    """The DICOM Modality of a dataset's channel name ("LGE-MRI", "t1c": MR; "CT": CT), or "" (any)."""
    words = name_tokens(channel)
    if words & {"mr", "mri", *MODALITIES} or channel.lower() in {a for v in MODALITIES.values() for a in v}:
        return "MR"
    return "CT" if "ct" in words else ""
