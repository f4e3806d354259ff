"""The MISSU training loss: segmentation (soft Dice, + cross-entropy) plus self-distillation.

Defaults (see ``missu_spec.md``, "Our design"):

- ``ce=True``: Dice + cross-entropy (MONAI ``DiceCELoss``); ``False`` gives soft Dice alone (TransBTS).
- ``include_background=False``: Dice over foreground classes only; cross-entropy always sees all classes.
- ``distill_weight`` (lambda) = 1: weight of the distillation term; 0 is the ablation without it.
- ``temperature`` (tau) = 1: softmax temperature; the KL is multiplied by tau^2 (Hinton et al.).
- ``scale_weights`` (w_s) = (1, 1, 1): per skip scale, finest first; each KL is a mean over voxels, so the
  scales count evenly (the official code weighted them 8 : 2 : 0.5 through a normalisation slip).
- ``aux_weight`` = 0.5: weight of the segmentation loss on the LMSF auxiliary heads, the path that
  trains the teacher so it has something worth distilling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from ..errors import MISSUError
from .missu import TrainOutput


def channel_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over voxels of KL(softmax_c(teacher / tau) || softmax_c(student / tau)) * tau^2; teacher detached."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher.detach() / temperature, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(dim=1).mean() * temperature**2


class MISSULoss(nn.Module):
    """One callable for the trainer: ``loss, parts = criterion(model_output, label)``.

    ``label`` holds class indices, shape ``(B, 1, X, Y, Z)``. ``model_output`` is the logits tensor (eval
    mode, or a network without the branch) or a :class:`TrainOutput`.
    """

    def __init__(
        self,
        ce: bool = True,
        include_background: bool = False,
        distill_weight: float = 1.0,
        temperature: float = 1.0,
        scale_weights: Sequence[float] = (1.0, 1.0, 1.0),
        aux_weight: float = 0.5,
    ):
        super().__init__()
        if temperature <= 0:
            raise MISSUError(f"temperature must be positive, got {temperature}")
        if len(scale_weights) != 3:
            raise MISSUError(f"scale_weights needs one weight per skip scale (3), got {len(scale_weights)}")
        common = dict(to_onehot_y=True, softmax=True, include_background=include_background)
        self.segmentation = DiceCELoss(**common) if ce else DiceLoss(**common)
        self.distill_weight = distill_weight
        self.temperature = temperature
        self.scale_weights = tuple(float(w) for w in scale_weights)
        self.aux_weight = aux_weight

    def forward(
        self, output: torch.Tensor | TrainOutput, label: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if isinstance(output, torch.Tensor):
            seg = self.segmentation(output, label)
            return seg, {"seg": seg.item(), "total": seg.item()}
        seg = self.segmentation(output.logits, label)
        aux = torch.stack([self.segmentation(a, label) for a in output.aux_logits]).mean()
        total = seg + self.aux_weight * aux
        parts = {"seg": seg.item(), "aux": aux.item()}
        if self.distill_weight:
            kl = sum(
                w * channel_kl(s, t, self.temperature)
                for w, s, t in zip(self.scale_weights, output.students, output.teachers)
            )
            total = total + self.distill_weight * kl
            parts["distill"] = float(kl.detach())
        parts["total"] = total.item()
        return total, parts
