"""The optimised inference path keeps accuracy: on a real case with the trained la-mri model it gives the
same segmentation as the reference path (fp32, no foreground crop, overlap 0.5, one window per batch).

Stated tolerance: the two label maps agree with Dice >= 0.99, and their Dice against the expert label differ
by at most 0.005.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from conftest import shared_data
from missu.data.geometry import array_xyz
from missu.inference import Segmenter

CASE = "la_06SR5RBREL16DQ6M8LWS"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_optimised_path_matches_reference_on_a_real_case():
    image = sitk.ReadImage(str(shared_data(f"la2018/imagesTr/{CASE}.nii.gz")))
    truth = array_xyz(sitk.ReadImage(str(shared_data(f"la2018/labelsTr/{CASE}.nii.gz")))) == 1
    # A wider field of view with empty (zero) border, as scanners write it, so the foreground crop has work to do.
    padded = sitk.ConstantPad(image, [24, 24, 8], [24, 24, 8], 0.0)
    reference = Segmenter("la-mri", device="cpu", foreground_crop=False, overlap=0.5, sw_batch_size=1, amp=False)
    optimised = Segmenter("la-mri", device="cpu", foreground_crop=True, overlap=0.25, sw_batch_size=4)
    a = array_xyz(reference.segment([padded]).labels)[24:-24, 24:-24, 8:-8] == 1
    b = array_xyz(optimised.segment([padded]).labels)[24:-24, 24:-24, 8:-8] == 1
    assert _dice(a, b) >= 0.99
    assert abs(_dice(a, truth) - _dice(b, truth)) <= 0.005
    assert _dice(b, truth) > 0.8, "the shipped model should segment this atrium"
