"""Is the fold models' 0.5 cut (argmax) the right one? Out-of-fold Dice at other foreground-probability cuts,
with the volume bias at 0.5, and a cut chosen on the other folds' cases for each fold (nothing tuned on the
cases it is scored on). Original grid, largest component kept, as ``missu evaluate`` scores. From the repository
root, with the fold bundles of an out-of-fold evaluation:

    python docs/training/la-mri-cv/threshold.py docs/training/la-mri-cv/out-of-fold-012.json \
        > docs/training/la-mri-cv/threshold.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from missu.data.geometry import array_xyz, image_from_xyz, ras_affine
from missu.inference import Segmenter
from missu.inference.engine import resample_onto
from missu.inference.postprocess import clean

DATA = Path("../shared/data/la2018")
CUTS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


def foreground(segmenter: Segmenter, image: sitk.Image) -> np.ndarray:
    """The foreground probability on ``image``'s grid, ``[i, j, k]``, as ``Segmenter.segment`` computes it."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    array = torch.from_numpy(array_xyz(image)[None].copy())
    data = segmenter.preprocess({"image": MetaTensor(array, affine=ras_affine(image))})
    probabilities, _ = segmenter._infer(data["image"], False, lambda *a: None, None)
    return array_xyz(resample_onto(probabilities[1], np.asarray(data["image"].affine, float), image))


def case_scores(segmenter: Segmenter, case: str) -> dict:
    image = sitk.ReadImage(str(DATA / "imagesTr" / f"{case}.nii.gz"))
    truth = array_xyz(sitk.ReadImage(str(DATA / "labelsTr" / f"{case}.nii.gz"))) == 1
    p = foreground(segmenter, image)
    dice, voxels = {}, {}
    for cut in CUTS:
        pred = array_xyz(clean(image_from_xyz((p > cut).astype(np.uint8), image), segmenter.card)) == 1
        dice[str(cut)] = float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
        voxels[cut] = pred.sum()
    return {"dice": dice, "volume_ratio": float(voxels[0.5] / truth.sum())}


def main(out_of_fold: str) -> None:
    model_of_case = json.loads(Path(out_of_fold).read_text())["model_of_case"]
    rows: dict[str, dict] = {}
    for bundle in sorted(set(model_of_case.values())):
        segmenter = Segmenter(bundle, device="cpu", backend="openvino", amp=False)
        for case in sorted(c for c, b in model_of_case.items() if b == bundle):
            rows[case] = {"model": bundle, **case_scores(segmenter, case)}
            print(case, f"{rows[case]['dice']['0.5']:.4f}", file=sys.stderr)
    folds = sorted({r["model"] for r in rows.values()})
    mean = {m: {c: float(np.mean([r["dice"][str(c)] for r in rows.values() if r["model"] == m])) for c in CUTS} for m in folds}
    chosen, scored = {}, []
    for m in folds:  # the cut that is best on the other folds' cases, scored on this fold's
        others = [r for r in rows.values() if r["model"] != m]
        chosen[m] = max(CUTS, key=lambda c: np.mean([r["dice"][str(c)] for r in others]))
        scored += [r["dice"][str(chosen[m])] - r["dice"]["0.5"] for r in rows.values() if r["model"] == m]
    gain = np.asarray(scored) * 100
    json.dump({
        "cuts": CUTS, "mean_dice_per_fold": mean,
        "volume_ratio_at_0.5": {m: float(np.mean([r["volume_ratio"] for r in rows.values() if r["model"] == m])) for m in folds},
        "cut_chosen_on_other_folds": chosen,
        "gain_points_mean": float(gain.mean()), "gain_points_se": float(gain.std(ddof=1) / np.sqrt(len(gain))),
        "cases": rows,
    }, sys.stdout, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
