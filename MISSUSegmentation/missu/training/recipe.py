"""The training recipe: TransBTS/MISSU defaults (``missu_spec.md``), overridable from YAML and the command line."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import MISSUError


@dataclass(frozen=True)
class Recipe:
    preset: str = "missu"
    network: dict[str, Any] | None = None  # overrides of the preset's settings, e.g. {dropout: 0.0}
    epochs: int = 100
    batch_size: int = 1  # volumes per step (each gives ``crops_per_volume`` crops)
    crops_per_volume: int = 2
    roi_size: tuple[int, int, int] | None = None  # None: the preset's
    spacing: tuple[float, float, float] | None = None  # mm; None keeps the data's
    normalization: str = "zscore-nonzero"
    anti_alias: bool = False  # Gaussian pre-filter before downsampling (written into the card)
    soft_labels: bool = False  # resample one-hot labels linearly: anti-aliased soft targets
    foreground_crop: bool = True
    positive_fraction: float = 0.5  # share of crops centred on foreground
    # Optimiser and schedule (TransBTS): Adam(amsgrad), lr 2e-4, weight decay 1e-5, poly power 0.9, stepped
    # per iteration over epochs x steps per epoch (the whole schedule is fixed when the run starts).
    lr: float = 2e-4
    weight_decay: float = 1e-5
    poly_power: float = 0.9
    # Augmentation (TransBTS): flips on each axis, intensity scale U(0.9, 1.1) and shift U(-0.1, 0.1).
    flip_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    # Spatial and noise augmentation (nnU-Net-like; off in TransBTS): rotation up to +-rotate_deg about each
    # axis and scaling of each axis by 1 +- scale_range, together with probability affine_prob; Gaussian noise.
    rotate_deg: float = 0.0
    scale_range: float = 0.0
    affine_prob: float = 0.0
    noise_std: float = 0.0
    noise_prob: float = 0.0
    # Loss (see network/losses.py for the meaning of each).
    ce: bool = True
    include_background: bool = False
    batch_dice: bool = True
    soft_dice: bool = True  # Dice for soft targets (with soft_labels); see network/losses.py
    distillation: bool | None = None  # None: the preset's; False builds no LMSF branch at all (the ablation)
    distill_weight: float = 1.0
    distill_warmup: float = 0.1  # share of the steps over which lambda ramps up from 0
    temperature: float = 1.0
    scale_weights: tuple[float, float, float] = (1.0, 0.0, 0.0)
    aux_weight: float = 1.0
    # Post-processing written into the exported card (see bundle/card.py).
    keep_largest_component: bool = False
    min_component_mm3: float = 0.0
    small_label_fallback: dict[str, int] | None = None
    # Validation and bookkeeping.
    val_fraction: float = 0.2
    val_interval: int = 1
    overlap: float = 0.5
    log_every: int = 10  # steps between "iteration" events
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: at epoch ends only)
    seed: int = 0  # weights, data order, augmentation
    split_seed: int = 0  # the train/validation split (kept fixed across seeds for comparisons)
    folds: int = 0  # k-fold cross-validation: validate on part `fold` of `folds` (0: one split by val_fraction)
    fold: int = 0
    cache_rate: float = 1.0
    num_workers: int = 0
    amp: bool = True  # bf16/fp16 autocast on CUDA, bf16 on CPUs with AMX or AVX-512 BF16

    def __post_init__(self) -> None:
        for name in ("roi_size", "spacing", "scale_weights"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.epochs < 1 or self.batch_size < 1 or self.crops_per_volume < 1:
            raise MISSUError("epochs, batch_size and crops_per_volume must be >= 1")
        if not 0 < self.val_fraction < 1:
            raise MISSUError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.folds == 1 or self.folds < 0 or not 0 <= self.fold < max(self.folds, 1):
            raise MISSUError(f"fold must be in 0..folds-1 with folds >= 2 (or folds 0, no cross-validation); "
                             f"got fold {self.fold} of {self.folds}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changes_from(self, stored: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Settings that differ from a run's stored recipe, bookkeeping aside: ``{name: (stored, now)}``."""
        now = json.loads(json.dumps(self.to_dict()))  # tuples as lists, like the stored JSON
        defaults = json.loads(json.dumps(Recipe().to_dict()))  # a setting newer than the run reads as its default,
        stored = {**defaults, **LEGACY, **stored}  # or as what the run did where that is not the default
        return {k: (stored[k], v) for k, v in now.items() if k not in BOOKKEEPING and stored[k] != v}


# Settings that do not change what a run learns; a resumed run may change them. (Not num_workers: MONAI
# seeds augmentation per worker.)
BOOKKEEPING = {"log_every", "checkpoint_every", "cache_rate", "val_interval"}
# What runs from before a setting existed did, where that differs from the setting's default.
LEGACY = {"soft_dice": False}


def load_recipe(path: Path | None = None, **overrides: Any) -> Recipe:
    """Defaults, then the YAML file, then command-line overrides (``None`` means not given)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MISSUError(f"{path}: cannot read the recipe ({exc})") from None
        if not isinstance(values, dict):
            raise MISSUError(f"{path}: a recipe is a mapping of settings")
    values.update({k: v for k, v in overrides.items() if v is not None})
    where = path or "recipe"
    annotations = {f.name: f.type for f in dataclasses.fields(Recipe)}
    if unknown := set(values) - set(annotations):
        raise MISSUError(f"{where}: unknown settings {sorted(unknown)}")
    values = {name: _checked(where, name, value, annotations[name]) for name, value in values.items()}
    if overrides.get("fold") is not None and "folds" not in values:
        values["folds"] = 5  # --fold without a number of parts: 5-fold cross-validation
    try:
        return Recipe(**values)
    except MISSUError as exc:
        raise MISSUError(f"{where}: {exc}") from None


def _checked(where: Path | str, name: str, value: Any, annotation: str) -> Any:
    """``value`` as setting ``name``'s type (its annotation, e.g. ``"tuple[int, int, int] | None"``), or an error
    naming the file and the setting. YAML 1.1 reads ``5e-4`` (no decimal point) as a string: numeric strings are
    taken as the numbers they spell. (Annotations are read as text: Slicer 5.8's Python 3.9 cannot evaluate ``|``.)"""
    kind, _, rest = annotation.partition(" | ")
    if value is None and rest == "None":
        return None
    if kind.startswith("tuple["):
        items = kind[len("tuple["):-1].split(", ")
        if isinstance(value, (list, tuple)) and len(value) == len(items):
            return tuple(_checked(where, name, v, item) for v, item in zip(value, items))
        raise MISSUError(f"{where}: {name} must be a list of {len(items)} numbers, got {value!r}")
    if kind in ("int", "float"):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if kind == "float":
                return float(value)
            if float(value).is_integer():
                return int(value)
    elif isinstance(value, {"bool": bool, "str": str}.get(kind, dict)):  # (the rest are dict[...])
        return value
    expected = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a string"}.get(kind, "a mapping")
    raise MISSUError(f"{where}: {name} must be {expected}, got {value!r}")
