"""How much Dice does the 1.25 mm grid itself cost? A perfect network at spacing ``s`` would output the training
targets: the expert's labels carried onto the pre-processed grid as training carries them (one-hot, resampled
linearly: ``soft_labels``), or as hard labels (nearest neighbour). Both are brought back onto the original
0.625 mm grid as inference brings its probabilities (linear resampling, 0.5 cut, largest component kept) and
scored against the expert's labels there. No network is involved: this is the ceiling the grid puts on any
model trained on it. From the repository root, with any la-mri bundle for the pre-processing settings:

    python docs/training/la-mri-cv/ceiling.py MISSUSegmentation/Resources/Models/la-mri \
        > docs/training/la-mri-cv/ceiling.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from missu.bundle import read_card
from missu.data.geometry import array_xyz, image_from_xyz, ras_affine
from missu.data.transforms import preprocessing
from missu.inference.engine import resample_onto
from missu.inference.postprocess import clean

DATA = Path("../shared/data/la2018")
SPACINGS = (1.25, 1.0, 0.875)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def case_ceiling(card, image: sitk.Image, truth: np.ndarray) -> dict[str, float]:
    """Dice of the soft and the hard targets on ``card``'s grid, brought back onto ``image``'s grid."""
    affine = ras_affine(image)
    one_hot = torch.from_numpy(np.stack([~truth, truth]).astype(np.float32))
    data = Compose(preprocessing(card, label_key="label", extra_keys=["soft"]))({
        "image": MetaTensor(torch.from_numpy(array_xyz(sitk.Cast(image, sitk.sitkFloat32))[None].copy()), affine=affine),
        "label": MetaTensor(torch.from_numpy(truth[None].astype(np.float32)), affine=affine),
        "soft": MetaTensor(one_hot, affine=affine),
    })
    grid = np.asarray(data["image"].affine, float)
    scores = {}
    for name, target in (("soft", data["soft"][1]), ("hard", data["label"][0])):
        p = array_xyz(resample_onto(torch.as_tensor(target), grid, image))
        pred = array_xyz(clean(image_from_xyz((p > 0.5).astype(np.uint8), image), card)) == 1
        scores[name] = dice(pred, truth)
    return scores


def main(bundle: str) -> None:
    card = read_card(Path(bundle))
    cases = [Path(c["label"]).name.removesuffix(".nii.gz")
             for c in json.loads((DATA / "dataset.json").read_text())["training"]]
    rows: dict[str, dict] = {}
    for case in cases:
        image = sitk.ReadImage(str(DATA / "imagesTr" / f"{case}.nii.gz"))
        truth = array_xyz(sitk.ReadImage(str(DATA / "labelsTr" / f"{case}.nii.gz"))) == 1
        rows[case] = {str(s): case_ceiling(card.with_changes(spacing=(s,) * 3), image, truth) for s in SPACINGS}
        print(case, json.dumps(rows[case]), file=sys.stderr)
    summary = {}
    for s in map(str, SPACINGS):
        summary[s] = {}
        for kind in ("soft", "hard"):
            values = np.array([r[s][kind] for r in rows.values()])
            summary[s][kind] = {"mean": float(values.mean()), "se": float(values.std(ddof=1) / np.sqrt(len(values))),
                                "min": float(values.min())}
    print(json.dumps({"cases": len(rows), "card_spacing_replaced_by": list(SPACINGS), "summary": summary,
                      "per_case": rows}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
