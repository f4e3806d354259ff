"""Which files make a case: channel matching by name, batch folders and CSV case lists."""

from __future__ import annotations

import csv
from pathlib import Path

from ..bundle.card import ModelCard, name_tokens
from ..dicom.series import Series, holds_dicom, only_series, select_series
from ..errors import MISSUError
from .naming import LABEL_TOKENS

INPUT_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")  # readable, header+data pairs included


def image_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(INPUT_IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_image(path: Path) -> bool:
    """An input image file: not hidden, and not a segmentation (``.seg.nrrd``, e.g. an earlier run's output)."""
    name = path.name.lower()
    return (path.is_file() and name.endswith(INPUT_IMAGE_SUFFIXES) and not name.endswith(".seg.nrrd")
            and not name.startswith("."))


def match_channels(card: ModelCard, given: list[str]) -> list[Path]:
    """Order the given files as the card's inputs.

    Accepts ``name=path`` pairs, or plain paths matched by channel name/alias in the file name, or, when no file
    name names any channel, plain paths in the card's order. Names that match some channels but do not decide
    are refused: a guess would give a channel another's image.
    """
    names = [c.name for c in card.inputs]
    if len(given) != len(names):
        raise MISSUError(f"model {card.name} takes {len(names)} input(s) ({', '.join(names)}); got {len(given)}")
    if all("=" in g for g in given):
        pairs = dict(g.split("=", 1) for g in given)
        if unknown := set(pairs) - set(names):
            raise MISSUError(f"unknown input name(s) {sorted(unknown)}; model {card.name} takes {', '.join(names)}")
        return [Path(pairs[n]) for n in names]
    paths = [Path(g) for g in given]
    if len(paths) == 1:
        return paths
    matched = [[p for p in paths if channel.matches(image_stem(p))] for channel in card.inputs]
    if all(len(m) == 1 for m in matched) and len({m[0] for m in matched}) == len(paths):
        return [m[0] for m in matched]
    if not any(matched):
        return paths
    found = "; ".join(f"{c.name}: {', '.join(p.name for p in m) or 'none'}" for c, m in zip(card.inputs, matched))
    raise MISSUError(f"cannot tell which file is which input of model {card.name} from their names ({found}); "
                     f"give them as NAME=FILE ({', '.join(f'{n}=...' for n in names)}) or rename the files")


def resolve_inputs(card: ModelCard, given: list[str], series: list[str] | None = None) -> list[Path | Series]:
    """The card's inputs, in its order, from ``--input``: files, folders of one DICOM series each, or one DICOM
    study folder whose series are chosen for the inputs (:func:`select_series`; ``series`` restricts the choice
    to those series UIDs)."""
    if len(given) == 1 and "=" not in given[0] and Path(given[0]).is_dir():
        return list(select_series(card, given[0], series or ()))
    if series:
        raise MISSUError("--series chooses series in one DICOM study folder: give that folder as the only --input")
    return [only_series(p) if p.is_dir() else p for p in match_channels(card, given)]


def cases_from_folder(folder: Path, card: ModelCard) -> dict[str, list[Path]]:
    """One case per image file (single-input models) or per sub-folder: its image files (matched to channels),
    or, when it holds none, the DICOM study it holds."""
    cases: dict[str, list[Path]] = {}
    source: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            files = [p for p in sorted(entry.iterdir()) if is_image(p)]
            images = [p for p in files if not name_tokens(image_stem(p)) & set(LABEL_TOKENS)]
            if len(files) != len(card.inputs) and len(images) == len(card.inputs):
                files = images  # a reference label beside the images (BraTS *_seg, a labelled dataset's case)
            if not files and holds_dicom(entry):
                files = [entry]
            name = entry.name
        elif is_image(entry) and len(card.inputs) == 1:
            name, files = image_stem(entry), [entry]
        else:
            continue
        if name in cases:
            raise MISSUError(f"{folder}: {source[name].name} and {entry.name} are both case {name!r} (their outputs "
                             "would collide); rename one")
        cases[name], source[name] = [str(p) for p in files], entry  # matched (or refused) when the case runs
    if not cases:
        raise MISSUError(f"{folder}: no cases found (image files, or one sub-folder of images or DICOM per case)")
    return cases


def cases_from_csv(table: Path, card: ModelCard) -> dict[str, list[str]]:
    """A CSV with a ``case`` column and one column per input name; relative paths are from the CSV's folder."""
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise MISSUError(f"{table}: not a UTF-8 CSV file ({exc})") from None
    names = [c.name for c in card.inputs]
    if not rows or "case" not in rows[0] or any(n not in rows[0] for n in names):
        raise MISSUError(f"{table}: needs a header with 'case' and one column per input ({', '.join(names)})")
    cases: dict[str, list[str]] = {}
    for line, row in enumerate(rows, start=2):
        if any(not row[key] for key in ("case", *names)):  # a short row reads as None, an empty cell as ""
            raise MISSUError(f"{table}, line {line}: needs a case name and a file for each of {', '.join(names)}")
        if row["case"] in cases:
            raise MISSUError(f"{table}, line {line}: case {row['case']!r} is listed twice (its outputs would collide)")
        cases[row["case"]] = [f"{n}={table.parent / row[n]}" for n in names]
    return cases
