"""Fuzz: mutated real inputs and model cards keep the one-line-error contract (issue 12).

Each mutation (seeded, so a failure replays) is segmented by the command line in-process. Either it succeeds
and writes a segmentation slicerio reads, or it exits 1 with exactly one line on stderr that names the
mutated file; never a traceback, and never a temporary file left in the output folder.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from conftest import shared_data
from missu.cli import main

CASE = "la_06SR5RBREL16DQ6M8LWS"
FORMATS = (".nii.gz", ".nii", ".nrrd", ".mha")
ROUNDS = 6  # mutations per kind and format


@pytest.fixture(scope="module")
def real_crop() -> sitk.Image:
    image = sitk.ReadImage(str(shared_data(f"la2018/imagesTr/{CASE}.nii.gz")), sitk.sitkFloat32)
    return image[60:108, 50:90, 30:62]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def _flip_bytes(data: bytes, rng: random.Random) -> bytes:
    array = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        array[rng.randrange(len(array))] ^= 1 << rng.randrange(8)
    return bytes(array)


def _check_contract(argv: list[str], named: str, out_dir, capsys) -> None:
    code = main(argv)  # any exception escaping main fails the test: no traceback reaches the user
    err = capsys.readouterr().err.strip().splitlines()
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".partial-")]
    if code == 0:
        segmentation = slicerio.read_segmentation(argv[argv.index("--output") + 1])
        assert segmentation["voxels"].ndim == 3
        return
    errors = [line for line in err if line.startswith("missu segment: error: ")]
    assert code == 1 and len(errors) == 1 and named in errors[0], err


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("mutate", [_truncate, _flip_bytes], ids=["truncate", "flip"])
def test_damaged_image_files(make_bundle, real_crop, tmp_path, capsys, suffix, mutate):
    bundle = make_bundle(spacing=(1.25, 1.25, 1.25))
    clean = tmp_path / f"clean{suffix}"
    sitk.WriteImage(real_crop, str(clean), useCompression=suffix != ".nii")
    rng = random.Random(f"{suffix}-{mutate.__name__}")
    for round_ in range(ROUNDS):
        path = tmp_path / f"m{round_}{suffix}"
        path.write_bytes(mutate(clean.read_bytes(), rng))
        out = tmp_path / f"out{round_}"
        out.mkdir()
        argv = ["segment", "--model", str(bundle), "--input", str(path), "--output", str(out / "s.seg.nrrd")]
        _check_contract(argv, str(path), out, capsys)


@pytest.mark.parametrize("suffix", FORMATS)
def test_non_finite_values_and_extreme_spacing(make_bundle, real_crop, tmp_path, capsys, suffix):
    bundle = make_bundle(spacing=(1.25, 1.25, 1.25))
    rng = np.random.default_rng(len(suffix))
    cases = []
    for value in (np.nan, np.inf, -np.inf):
        array = sitk.GetArrayFromImage(real_crop)
        array[tuple(rng.integers(0, s) for s in array.shape)] = value
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(real_crop)
        cases.append((f"nonfinite-{value}", image, False))
    for spacing in (1e-5, 1e5):
        image = sitk.Image(real_crop)
        image.SetSpacing([spacing] * 3)
        cases.append((f"spacing-{spacing}", image, False))
    image = sitk.Image(real_crop)
    image.SetSpacing([0.3, 0.3, 4.0])  # unusual but real: must work
    cases.append(("anisotropic", image, True))
    for name, image, must_work in cases:
        path = tmp_path / f"{name}{suffix}"
        sitk.WriteImage(image, str(path), useCompression=suffix != ".nii")
        out = tmp_path / f"out-{name}"
        out.mkdir()
        argv = ["segment", "--model", str(bundle), "--input", str(path), "--output", str(out / "s.seg.nrrd")]
        _check_contract(argv, str(path), out, capsys)
        assert (out / "s.seg.nrrd").exists() == must_work, name


WRONG_VALUES = ["text", -3, 0, 1e9, None, [], {}, [1, "a"], True, 0.5, "XYZ", [[1, 2, 3]]]


def _fields(card: dict, prefix: str = "") -> list[tuple[str, ...]]:
    """Paths to every leaf and container of the card (provenance aside: it is free-form)."""
    paths = []
    for key, value in card.items():
        if key == "provenance":
            continue
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += _fields(value, (*prefix, key))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            paths += _fields(value[0], (*prefix, key, 0))
    return paths


def test_cards_with_random_wrong_values(make_bundle, real_crop, tmp_path, capsys):
    bundle = make_bundle(spacing=(1.25, 1.25, 1.25))
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(real_crop, str(image))
    pristine = json.loads((bundle / "card.json").read_text())
    fields = _fields(pristine)
    rng = random.Random(12)
    for round_ in range(60):
        card = json.loads(json.dumps(pristine))
        *parents, last = rng.choice(fields)
        target = card
        for key in parents:
            target = target[key]
        target[last] = rng.choice(WRONG_VALUES)
        (bundle / "card.json").write_text(json.dumps(card))
        out = tmp_path / f"out{round_}"
        out.mkdir()
        argv = ["segment", "--model", str(bundle), "--input", str(image), "--output", str(out / "s.seg.nrrd")]
        _check_contract(argv, str(bundle / "card.json"), out, capsys)
