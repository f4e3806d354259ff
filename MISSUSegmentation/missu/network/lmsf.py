"""Local multi-scale fusion (LMSF): the training-only teacher of MISSU's self-distillation.

A 3D take on CE-Net's context blocks (see ``missu_spec.md``): a cascade of 3x3x3 convolutions with
growing dilation, each cascade depth mixed by a 1x1x1 convolution and summed onto the input
(dense atrous convolution), optionally followed by a pyramid of max-poolings that adds coarse context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.utils import get_norm_layer
from torch import nn

PYRAMID_POOLS = (2, 3, 5, 6)


class LMSF(nn.Module):
    """``channels -> channels`` refinement of one skip feature."""

    def __init__(self, channels: int, norm: tuple, dilations: tuple[int, ...] = (1, 3, 5), pyramid: bool = False):
        super().__init__()
        self.cascade = nn.ModuleList(
            nn.Sequential(
                nn.Conv3d(channels, channels, 3, padding=d, dilation=d, bias=False),
                get_norm_layer(norm, spatial_dims=3, channels=channels),
                nn.ReLU(inplace=True),
            )
            for d in dilations
        )
        self.mix = nn.ModuleList(nn.Conv3d(channels, channels, 1) for _ in dilations)
        if pyramid:
            self.pool_proj = nn.ModuleList(nn.Conv3d(channels, 1, 1) for _ in PYRAMID_POOLS)
            self.pool_fuse = nn.Conv3d(channels + len(PYRAMID_POOLS), channels, 1)
        else:
            self.pool_proj = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = x, x
        for conv, mix in zip(self.cascade, self.mix):
            h = conv(h)
            out = out + F.relu(mix(h))
        if self.pool_proj is None:
            return out
        size = out.shape[2:]
        context = [
            F.interpolate(
                proj(F.adaptive_max_pool3d(out, [max(1, s // k) for s in size])), size=size, mode="trilinear"
            )
            for k, proj in zip(PYRAMID_POOLS, self.pool_proj)
        ]
        return self.pool_fuse(torch.cat([out, *context], dim=1))
