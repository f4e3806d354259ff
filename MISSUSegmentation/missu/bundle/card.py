"""The model card: everything a bundle's weights need to be used correctly, as JSON.

The one place for labels (values, names, colors, DICOM/SNOMED terminology), reported regions,
input channels, pre-processing, sliding-window settings and post-processing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import MISSUError
from ..network.presets import MISSUConfig

CARD_VERSION = 1
CARD_FILE, WEIGHTS_FILE = "card.json", "model.safetensors"
MAX_MEMBERS = 64  # networks in one ensemble bundle
SCHEMA_FILE = Path(__file__).with_name("card.schema.json")  # every field's type, range and meaning
# Slicer's terminology contexts that hold every code we use (the General Anatomy list has no left atrium).
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


def name_tokens(text: str) -> set[str]:
    """Lower-case words of a file or volume name (split on ``_ - . space``): what channel names match."""
    return set(text.lower().replace("-", "_").replace(".", "_").replace(" ", "_").split("_"))


@dataclass(frozen=True)
class Label:
    """One output class. ``value`` is written to label maps; the class index is the position in the card."""

    value: int
    name: str
    color: tuple[float, float, float]  # RGB in 0..1
    category: tuple[str, str, str] = ("SCT", "123037004", "Anatomical Structure")  # DICOM coding scheme, code, meaning
    type: tuple[str, str, str] = ("", "", "")
    type_modifier: tuple[str, str, str] | None = None

    def terminology(self) -> dict[str, Any]:
        """The segment's terminology in slicerio's form (Slicer's ``TerminologyEntry`` tag)."""
        entry = {"contextName": TERMINOLOGY_CONTEXT, "category": list(self.category), "type": list(self.type),
                 "anatomicContextName": ANATOMIC_CONTEXT}
        if self.type_modifier:
            entry["typeModifier"] = list(self.type_modifier)
        return entry

    def terminology_entry(self) -> str:
        """Slicer's ``TerminologyEntry`` segment tag (the same string in 5.8 and 5.10):
        ``context~category~type~modifier~anatomicContext~region~regionModifier``, codes as ``scheme^value^meaning``."""
        code = "^".join
        empty = code(("", "", ""))
        return "~".join((TERMINOLOGY_CONTEXT, code(self.category), code(self.type),
                         code(self.type_modifier) if self.type_modifier else empty, ANATOMIC_CONTEXT, empty, empty))


@dataclass(frozen=True)
class Channel:
    """One input channel; ``aliases`` are matched case-insensitively against file, volume and DICOM series
    names; ``modality`` is the DICOM Modality of its series ("" matches any)."""

    name: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    modality: str = ""

    def matches(self, text: str) -> bool:
        """Whether the words of the name or of an alias all occur in ``text`` ("lge-mri" in "LGE MRI axial")."""
        words = name_tokens(text)
        return any(name_tokens(name) <= words for name in (self.name, *self.aliases))


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    description: str
    preset: str
    network: MISSUConfig
    inputs: tuple[Channel, ...]
    labels: tuple[Label, ...]  # class 1..K-1 in order; class 0 is background (value 0)
    spacing: tuple[float, float, float] | None = None  # mm; None keeps the input spacing
    anti_alias: bool = False  # Gaussian pre-filter of the image before it is downsampled to ``spacing``
    orientation: str = "RAS"
    normalization: Literal["zscore-nonzero", "zscore", "none"] = "zscore-nonzero"
    foreground_crop: bool = True  # infer only inside the bounding box of non-zero voxels
    crop_margin: int = 8  # voxels kept around that box
    overlap: float = 0.5
    sw_batch_size: int = 2
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict)  # reported region -> label values
    keep_largest_component: bool = False
    min_component_mm3: float = 0.0  # components of a label smaller than this become background
    small_label_fallback: dict[str, int] | None = None  # {"label": 4, "min_voxels": 500, "to": 1}
    provenance: dict[str, Any] = field(default_factory=dict)  # data, training, metrics, created
    members: int = 1  # networks in the bundle, their class probabilities averaged (an ensemble when > 1)
    weights_sha256: str = ""
    card_version: int = CARD_VERSION

    def __post_init__(self) -> None:
        if len(self.inputs) != self.network.in_channels:
            raise MISSUError(f"card {self.name}: {len(self.inputs)} inputs but the network takes {self.network.in_channels}")
        if len(self.labels) + 1 != self.network.out_channels:
            raise MISSUError(
                f"card {self.name}: {len(self.labels)} labels + background but the network has "
                f"{self.network.out_channels} outputs"
            )
        values = [lab.value for lab in self.labels]
        if 0 in values or len(set(values)) != len(values):
            raise MISSUError(f"card {self.name}: label values must be unique and non-zero, got {values}")
        if (rule := self.small_label_fallback) is not None and (rule["label"] not in values or rule["to"] not in [0, *values]):
            raise MISSUError(f"card {self.name}: small_label_fallback relabels {rule['label']} as {rule['to']}, but its "
                             f"labels are {values} (a recipe written for another label convention?)")
        if not 0 <= self.overlap < 1:
            raise MISSUError(f"card {self.name}: overlap must be in [0, 1), got {self.overlap}")
        if type(self.members) is not int or not 1 <= self.members <= MAX_MEMBERS:
            raise MISSUError(f"card {self.name}: members must be 1 to {MAX_MEMBERS}, got {self.members}")

    @property
    def roi_size(self) -> tuple[int, int, int]:
        return self.network.roi_size

    @property
    def class_values(self) -> list[int]:
        """Label-map value of each class index."""
        return [0, *(lab.value for lab in self.labels)]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["network"] = self.network.to_dict()
        if self.members == 1:
            del data["members"]  # a single network's card stays readable by missu before ensembles
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "card") -> ModelCard:
        validate_card(data, source)
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(data) - known:
            raise MISSUError(f"{source}: unknown card fields {sorted(unknown)}")
        try:
            try:
                data["network"] = MISSUConfig.from_dict(data["network"])
            except MISSUError as exc:
                raise MISSUError(f"{source}: network: {exc}") from None
            data["inputs"] = tuple(Channel(**{**c, "aliases": tuple(c.get("aliases", ()))}) for c in data["inputs"])
            data["labels"] = tuple(_label(lab) for lab in data["labels"])
            data["regions"] = {k: tuple(v) for k, v in data.get("regions", {}).items()}
            if data.get("spacing") is not None:
                data["spacing"] = tuple(float(s) for s in data["spacing"])
            return cls(**data)
        except MISSUError as exc:
            message = str(exc)
            raise MISSUError(message if message.startswith(source) else f"{source}: {message}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MISSUError(f"{source}: malformed model card ({type(exc).__name__}: {exc})") from None

    def with_changes(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)


def validate_card(data: Any, source: str = "card") -> None:
    """Check card data against ``card.schema.json`` (JSON Schema, with the ``jsonschema`` library); the first
    problem is raised naming the file and the field. Where ``jsonschema`` is not installed yet (a fresh Slicer
    before the panel's Install, where a card is only shown, never run), only the dataclass checks apply."""
    try:
        import jsonschema
    except ImportError:
        return
    try:
        data = json.loads(json.dumps(data))  # as read from a file (tuples of in-memory cards become lists)
    except (TypeError, ValueError) as exc:
        raise MISSUError(f"{source}: not JSON data ({exc})") from None
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        meaning = error.schema.get("description") if field and isinstance(error.schema, dict) else None
        raise MISSUError(f"{source}: {field or 'card'}: {error.message}" + (f" ({meaning})" if meaning else ""))


def _label(data: dict[str, Any]) -> Label:
    data = dict(data)
    for key in ("color", "category", "type", "type_modifier"):
        if data.get(key) is not None:
            data[key] = tuple(data[key])
    return Label(**data)


def read_bundle_files(path: str | os.PathLike, weights: bool = True) -> tuple[bytes, bytes | None]:
    """The card's bytes and (if ``weights``) the weights' bytes of a bundle folder or ``.zip``."""
    path = Path(path)
    wanted = (CARD_FILE, WEIGHTS_FILE) if weights else (CARD_FILE,)
    if path.is_dir():
        missing = [name for name in wanted if not (path / name).is_file()]
        if missing:
            raise MISSUError(f"{path}: not a model bundle (missing {', '.join(missing)})")
        return (path / CARD_FILE).read_bytes(), (path / WEIGHTS_FILE).read_bytes() if weights else None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                missing = [name for name in wanted if name not in archive.namelist()]
                if missing:
                    raise MISSUError(f"{path}: not a model bundle archive (missing {', '.join(missing)} at its top "
                                     "level)")
                return archive.read(CARD_FILE), archive.read(WEIGHTS_FILE) if weights else None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as exc:
            raise MISSUError(f"{path}: damaged model bundle archive ({exc})") from None
    raise MISSUError(f"{path}: not a model bundle (a folder or .zip with {CARD_FILE} and {WEIGHTS_FILE})")


def parse_card(card_bytes: bytes, path: str | os.PathLike) -> ModelCard:
    try:
        data = json.loads(card_bytes, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MISSUError(f"{path}: {CARD_FILE} is not valid JSON ({exc})") from None
    except ValueError as exc:
        raise MISSUError(f"{path}: {CARD_FILE}: {exc}") from None
    return ModelCard.from_dict(data, source=str(Path(path) / CARD_FILE))


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_card(path: str | os.PathLike) -> ModelCard:
    """A bundle's model card alone: no weights read, no torch needed (e.g. to describe a model in a panel)."""
    if not Path(path).exists():
        raise MISSUError(f"{path}: no such model bundle")
    return parse_card(read_bundle_files(path, weights=False)[0], path)
