"""Overlap and surface metrics of a label map against ground truth (MONAI metrics), per label and region."""

from __future__ import annotations

import math
import warnings

import numpy as np
import SimpleITK as sitk
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
)

from .bundle.card import ModelCard
from .data.geometry import array_xyz

METRICS = ("dice", "jaccard", "hd95", "asd", "hd95_mm", "asd_mm")


def _scalar(value: torch.Tensor) -> float | None:
    number = float(value.reshape(-1)[0])
    return None if math.isnan(number) or math.isinf(number) else number


def case_metrics(prediction: sitk.Image, truth: sitk.Image, card: ModelCard) -> dict[str, dict[str, float | None]]:
    """Dice, Jaccard, HD95 and ASD (symmetric) per label and per card region; distances in voxels and mm."""
    pred, true = array_xyz(prediction), array_xyz(truth)
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {true.shape} differ in size")
    spacing = list(truth.GetSpacing())
    groups = {lab.name: (lab.value,) for lab in card.labels} | dict(card.regions)
    result = {}
    for name, values in groups.items():
        p = torch.from_numpy(np.isin(pred, values))[None, None].float()
        t = torch.from_numpy(np.isin(true, values))[None, None].float()
        with warnings.catch_warnings():  # MONAI warns on empty masks; the metric is then reported as missing
            warnings.simplefilter("ignore")
            result[name] = {
                "dice": _scalar(compute_dice(p, t, include_background=True, ignore_empty=False)),
                "jaccard": _scalar(compute_iou(p, t, include_background=True, ignore_empty=False)),
                "hd95": _scalar(compute_hausdorff_distance(p, t, include_background=True, percentile=95)),
                "asd": _scalar(compute_average_surface_distance(p, t, include_background=True, symmetric=True)),
                "hd95_mm": _scalar(
                    compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=spacing)
                ),
                "asd_mm": _scalar(
                    compute_average_surface_distance(p, t, include_background=True, symmetric=True, spacing=spacing)
                ),
            }
    return result


def summarize(per_case: dict[str, dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    """Mean of each metric over cases (missing values left out), per label/region."""
    groups = next(iter(per_case.values())).keys() if per_case else []
    summary = {}
    for group in groups:
        summary[group] = {}
        for metric in METRICS:
            values = [c[group][metric] for c in per_case.values() if c[group][metric] is not None]
            summary[group][metric] = float(np.mean(values)) if values else None
    return summary
