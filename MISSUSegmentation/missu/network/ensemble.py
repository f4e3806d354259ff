"""Several networks of one card, averaged: what a bundle with ``members > 1`` builds.

The output is the log of the members' mean class probabilities, so ``softmax`` of it is that mean: the engine's
softmax, flip TTA, sliding window and OpenVINO conversion treat an ensemble as one network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """Members' weights are named ``members.<i>.<name>`` in its state dict (and so in a bundle)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probabilities = torch.stack([torch.log_softmax(m(x).float(), dim=1) for m in self.members])
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))
