"""The MISSU training loss: segmentation (soft Dice + cross-entropy) plus self-distillation.

Defaults (see ``missu_spec.md``, "Our design", and ``docs/distillation.md`` for the measurements):

- ``ce=True``: Dice + cross-entropy; ``False`` gives soft Dice alone (TransBTS).
- ``soft_dice=True``: MONAI's Dice formulation for soft targets (``DiceLoss(soft_label=True)``, the Dice semimetric
  loss), lowest where the prediction equals the target; the classic formula (``False``, what runs before 2026-12-06
  used) pushes a voxel of target 0.5 to 0.57 with cross-entropy. Both are the same for hard (one-hot) targets.
- ``include_background=False``: Dice over foreground classes only; cross-entropy always sees all classes.
- ``batch_dice=True``: Dice over the whole batch of crops (nnU-Net's choice), so crops without foreground
  do not produce 0/0 terms.
- ``distill_weight`` (lambda) = 1: weight of the distillation term.
- ``temperature`` (tau) = 1: softmax temperature; the KL is multiplied by tau^2 (Hinton et al.).
- ``scale_weights`` (w_s) = (1, 0, 0): the KL between teacher and student class probabilities at full
  resolution, and after 2x and 4x average pooling (region-level agreement); the coarser two are off by default.
- ``aux_weight`` = 1: weight of the segmentation loss that trains the LMSF teacher (its inputs are detached,
  so this term trains the branch only).

Targets are class indices ``(B, 1, X, Y, Z)`` or class probabilities ``(B, K, X, Y, Z)`` (soft labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.networks.utils import one_hot
from torch import nn

from ..errors import MISSUError
from .missu import TrainOutput


def probability_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0, pool: int = 1) -> torch.Tensor:
    """Mean over voxels of KL(p_t || p_s) * tau^2, with ``p = softmax_c(logits / tau)`` average-pooled by ``pool``;
    the teacher is detached. At full resolution the logs come from ``log_softmax`` (a clamp of p would cut the
    gradient where the student is most confidently wrong)."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher.detach() / temperature, dim=1)
    if pool > 1:
        p_s, p_t = (F.avg_pool3d(log.exp(), pool, ceil_mode=True) for log in (log_s, log_t))
        log_s, log_t = torch.log(p_s.clamp_min(1e-8)), torch.log(p_t.clamp_min(1e-8))
    kl = log_t.exp() * (log_t - log_s)
    return kl.sum(dim=1).mean() * temperature**2


class MISSULoss(nn.Module):
    """One callable for the trainer: ``loss, parts = criterion(model_output, target, distill_factor)``.

    ``model_output`` is the logits tensor (eval mode, or a network without the branch) or a
    :class:`TrainOutput`. ``distill_factor`` scales lambda during training (the trainer's warm-up ramp).
    """

    def __init__(
        self,
        ce: bool = True,
        include_background: bool = False,
        batch_dice: bool = True,
        soft_dice: bool = True,
        distill_weight: float = 1.0,
        temperature: float = 1.0,
        scale_weights: Sequence[float] = (1.0, 0.0, 0.0),
        aux_weight: float = 1.0,
    ):
        super().__init__()
        if temperature <= 0:
            raise MISSUError(f"temperature must be positive, got {temperature}")
        if len(scale_weights) != 3:
            raise MISSUError(f"scale_weights needs one weight per scale (full, 1/2, 1/4), got {len(scale_weights)}")
        self.dice = DiceLoss(softmax=True, include_background=include_background, batch=batch_dice, soft_label=soft_dice)
        self.ce = ce
        self.distill_weight = distill_weight
        self.temperature = temperature
        self.scale_weights = tuple(float(w) for w in scale_weights)
        self.aux_weight = aux_weight

    def _seg(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[1] == 1 and logits.shape[1] > 1:
            target = one_hot(target.long(), logits.shape[1])
        target = target.to(logits.dtype)
        dice = self.dice(logits, target)
        return dice + F.cross_entropy(logits, target) if self.ce else dice  # (CE on class probabilities)

    def forward(
        self, output: torch.Tensor | TrainOutput, target: torch.Tensor, distill_factor: float = 1.0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if isinstance(output, torch.Tensor):
            seg = self._seg(output, target)
            return seg, {"seg": seg.item(), "total": seg.item()}
        seg = self._seg(output.logits, target)
        aux = self._seg(output.teacher_logits, target)
        kl = sum(
            w * probability_kl(output.logits, output.teacher_logits, self.temperature, pool=2**s)
            for s, w in enumerate(self.scale_weights) if w
        )
        total = seg + self.aux_weight * aux + distill_factor * self.distill_weight * kl
        parts = {"seg": seg.item(), "aux": aux.item(), "distill": float(torch.as_tensor(kl).detach()), "total": total.item()}
        return total, parts
