"""Overlap and surface metrics of a label map against ground truth, per label and region, with the
definitions of the published tables we compare with (medpy's ``dc``, ``jc``, ``hd95``, ``asd``, used by
Yu et al. 2019 for the left atrium):

- Dice and Jaccard of the binary masks;
- 95HD: the 95th percentile of the surface distances of both directions pooled together;
- ASD: the mean distance from the result's surface to the reference's (directed, result -> reference).

Surfaces are the masks minus their 6-connected erosion, distances Euclidean (in voxels and in mm): MONAI's
``get_edge_surface_distance`` computes them. A case whose prediction (or reference) is empty while the other
is not is a failure, not a missing value: Dice and Jaccard 0, distances the image diagonal (the worst
possible), ``failed: true``. Means are over all cases.
"""

from __future__ import annotations

import warnings

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics.utils import get_edge_surface_distance

from .bundle.card import ModelCard
from .data.geometry import array_xyz

METRICS = ("dice", "jaccard", "hd95", "asd", "hd95_mm", "asd_mm")


def binary_metrics(pred: np.ndarray, true: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float | bool]:
    """The metrics of one binary mask pair (same shape), distances in voxels and in mm."""
    p, t = pred.astype(bool), true.astype(bool)
    both, either = np.logical_and(p, t).sum(), np.logical_or(p, t).sum()
    total = p.sum() + t.sum()
    result: dict[str, float | bool] = {
        "dice": 2.0 * both / total if total else 1.0,
        "jaccard": both / either if either else 1.0,
        "failed": bool(p.any() != t.any()),
    }
    for suffix, scale in (("", None), ("_mm", spacing)):
        if not (p.any() and t.any()):
            worst = float(np.linalg.norm(np.multiply(p.shape, scale if scale else 1.0)))
            result["hd95" + suffix] = result["asd" + suffix] = worst if result["failed"] else 0.0
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, (to_truth, to_result), _ = get_edge_surface_distance(
                torch.from_numpy(p), torch.from_numpy(t), spacing=scale, symmetric=True
            )
        result["hd95" + suffix] = float(np.percentile(torch.cat([to_truth, to_result]).numpy(), 95))
        result["asd" + suffix] = float(to_truth.mean())
    return result


def case_metrics(prediction: sitk.Image, truth: sitk.Image, card: ModelCard) -> dict[str, dict[str, float | bool]]:
    """:func:`binary_metrics` per label and per card region."""
    pred, true = array_xyz(prediction), array_xyz(truth)
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {true.shape} differ in size")
    spacing = tuple(truth.GetSpacing())
    groups = {lab.name: (lab.value,) for lab in card.labels} | dict(card.regions)
    return {name: binary_metrics(np.isin(pred, values), np.isin(true, values), spacing) for name, values in groups.items()}


def summarize(per_case: dict[str, dict[str, dict[str, float | bool]]]) -> dict[str, dict[str, float]]:
    """Mean and standard error of each metric over all cases, and the number of failed cases, per label/region."""
    groups = next(iter(per_case.values())).keys() if per_case else []
    summary = {}
    for group in groups:
        cases = [c[group] for c in per_case.values()]
        summary[group] = {"cases": len(cases), "failed": sum(bool(c["failed"]) for c in cases)}
        for metric in METRICS:
            values = np.array([c[metric] for c in cases], dtype=float)
            summary[group][metric] = float(values.mean())
            summary[group][metric + "_se"] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return summary
