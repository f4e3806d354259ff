"""Where the shipped la-mri loses Dice: its 16 validation cases against 16 of its training cases (every fourth of
the sorted training fold), with the predicted/true volume ratio and false positive/negative voxels as fractions
of the true volume, on the original grid. From the repository root:

    python docs/training/la-mri/fit_gap.py [BUNDLE] > docs/training/la-mri/fit-gap.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from missu.data.geometry import array_xyz
from missu.inference import Segmenter

DATA = Path("../shared/data/la2018")


def case_row(segmenter: Segmenter, case: str) -> dict[str, float]:
    truth = array_xyz(sitk.ReadImage(str(DATA / "labelsTr" / f"{case}.nii.gz"))) == 1
    pred = array_xyz(segmenter.segment([sitk.ReadImage(str(DATA / "imagesTr" / f"{case}.nii.gz"))]).labels) == 1
    true_voxels = float(truth.sum())
    return {
        "dice": float(2 * (pred & truth).sum() / (pred.sum() + truth.sum())),
        "volume_ratio": float(pred.sum() / true_voxels),
        "false_positive": float((pred & ~truth).sum() / true_voxels),
        "false_negative": float((~pred & truth).sum() / true_voxels),
    }


def main(bundle: str = "la-mri") -> None:
    segmenter = Segmenter(bundle, device="cpu", backend="torch", amp=False)
    split = segmenter.card.provenance["validation_cases"]
    split_file = json.loads(Path(__file__).with_name("split.json").read_text())
    groups = {"validation": split, "training": sorted(split_file["training"])[::4][:16]}
    report: dict[str, dict] = {}
    for group, cases in groups.items():
        rows = {case: case_row(segmenter, case) for case in cases}
        values = {k: np.array([r[k] for r in rows.values()]) for k in next(iter(rows.values()))}
        report[group] = {
            "mean": {k: float(v.mean()) for k, v in values.items()},
            "dice_se": float(values["dice"].std(ddof=1) / np.sqrt(len(cases))),
            "cases": rows,
        }
        m = report[group]["mean"]
        print(f"{group}: {len(cases)} cases, Dice {100 * m['dice']:.2f} +- {100 * report[group]['dice_se']:.2f} %, "
              f"volume ratio {m['volume_ratio']:.3f}, FP {m['false_positive']:.3f}, FN {m['false_negative']:.3f}",
              file=sys.stderr)
    print(json.dumps({"bundle": bundle, **report}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
