"""A run's train/validation split (``split.json``): drawn once, when the run starts, and kept."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..data.atomic import atomic_path
from ..data.datasets import Case
from ..errors import MISSUError
from .recipe import Recipe

SPLIT_FILE = "split.json"


def split_cases(cases: list[Case], recipe: Recipe, run_dir: Path) -> tuple[list[Case], list[Case]]:
    """A seeded train/validation split (or fold ``recipe.fold`` of ``recipe.folds``), stored in the run folder so
    a resumed run keeps it."""
    path = run_dir / SPLIT_FILE
    if path.is_file():
        names = read_split(path)
        by_name = {c.name: c for c in cases}
        missing = [n for n in names["training"] + names["validation"] if n not in by_name]
        if missing:
            raise MISSUError(f"{path}: cases {missing[:3]} of the stored split are no longer usable")
        return [by_name[n] for n in names["training"]], [by_name[n] for n in names["validation"]]
    order = sorted(cases, key=lambda c: c.name)
    random.Random(recipe.split_seed).shuffle(order)
    n = len(order)
    if recipe.folds:  # contiguous parts of the shuffled order: fold 0 of 5 is the val_fraction 0.2 split
        if n < recipe.folds:
            raise MISSUError(f"{n} usable case(s): too few for {recipe.folds}-fold cross-validation")
        first, last = recipe.fold * n // recipe.folds, (recipe.fold + 1) * n // recipe.folds
    else:
        first, last = 0, max(1, round(recipe.val_fraction * n))
    if n - (last - first) < 1:
        raise MISSUError(f"{n} usable case(s): too few to keep a validation fold")
    val = sorted(order[first:last], key=lambda c: c.name)
    train = sorted(order[:first] + order[last:], key=lambda c: c.name)
    with atomic_path(path, overwrite=True) as temporary:
        temporary.write_text(json.dumps({"training": [c.name for c in train], "validation": [c.name for c in val]},
                                        indent=1))
    return train, val


def read_split(path: Path) -> dict[str, list[str]]:
    """A run's ``split.json``: the names of its training and validation cases."""
    try:
        names = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MISSUError(f"{path}: unreadable split ({exc})") from None
    if not (isinstance(names, dict) and all(isinstance(names.get(k), list) for k in ("training", "validation"))):
        raise MISSUError(f"{path}: a split lists case names under \"training\" and \"validation\"")
    return names
