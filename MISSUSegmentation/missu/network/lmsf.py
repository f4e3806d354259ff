"""Local multi-scale fusion (LMSF): the training-only teacher of MISSU's self-distillation.

The teacher is a refinement head that sees more than the main head does: the encoder skips and decoder
features of all three scales, fused on the half-resolution grid (each projected by a 1x1x1 convolution,
finer ones average-pooled, coarser ones upsampled), looked at by parallel 3x3x3 convolutions of growing dilation
(CE-Net's dense atrous block in 3D, see ``missu_spec.md``), optionally with a pyramid of max-poolings for
coarse context, then brought back to full resolution where the finest skip and decoder feature add local
detail before the class logits. Trained by the segmentation loss, it becomes the teacher the main head is
taught to match (``losses.py``). Its inputs are detached, so the backbone learns from the teacher only
through the distillation term: the ablation without it (no branch at all) isolates exactly that term.

Cost (measured, ``benchmarks``-style timing on one CPU core): the context part runs at half resolution
because 3x3x3 convolutions of 8 channels at full resolution would triple the training step. Resampling (weighted
averages) commutes with the 1x1x1 projections, so each projection runs on the coarser of its two grids:
a missu-medium training forward + backward in 0.87x of the time (benchmarks/teacher_fusion.py, 2 AVX2 cores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers.utils import get_norm_layer
from torch import nn

PYRAMID_POOLS = (2, 3, 5, 6)
NORM = ("INSTANCE", {"affine": True})


def _norm_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(get_norm_layer(NORM, 3, channels), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if x.shape[2:] == size:
        return x
    if x.shape[2] > size[0]:
        return F.adaptive_avg_pool3d(x, size)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def _project_onto(proj: nn.Conv3d, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """``proj`` (1x1x1) of ``x`` on the grid ``size``, computed on the coarser of the two grids."""
    return proj(_resize(x, size)) if x.shape[2] > size[0] else _resize(proj(x), size)


class LMSF(nn.Module):
    """``(skips, decoded)`` (three scales each, finest first) -> teacher logits at the finest grid."""

    def __init__(self, widths: tuple[int, ...], out_channels: int, dilations: tuple[int, ...] = (1, 3, 5),
                 pyramid: bool = False):
        super().__init__()
        fine, width = widths[0], widths[1]
        self.project = nn.ModuleList(nn.Conv3d(w, width, 1, bias=False) for w in (*widths[:3], *widths[:3]))
        self.fuse = _norm_relu(width)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv3d(width, width, 3, padding=d, dilation=d, bias=False), *_norm_relu(width))
            for d in dilations
        )
        self.pool_proj = nn.ModuleList(nn.Conv3d(width, 1, 1) for _ in PYRAMID_POOLS) if pyramid else None
        merged = width * (1 + len(dilations)) + (len(PYRAMID_POOLS) if pyramid else 0)
        self.merge = nn.Sequential(nn.Conv3d(merged, fine, 1, bias=False), *_norm_relu(fine))
        self.detail = nn.Conv3d(2 * fine, fine, 1, bias=False)
        self.out = _norm_relu(fine)
        self.head = nn.Conv3d(fine, out_channels, 1)

    def forward(self, skips: list[torch.Tensor], decoded: list[torch.Tensor]) -> torch.Tensor:
        size = skips[1].shape[2:]
        h = self.fuse(sum(_project_onto(proj, f.detach(), size) for proj, f in zip(self.project, (*skips, *decoded))))
        parts = [h, *(branch(h) for branch in self.branches)]
        if self.pool_proj is not None:
            parts += [
                F.interpolate(proj(F.adaptive_max_pool3d(h, [max(1, s // k) for s in size])), size=size,
                              mode="trilinear", align_corners=False)
                for k, proj in zip(PYRAMID_POOLS, self.pool_proj)
            ]
        h = _resize(self.merge(torch.cat(parts, dim=1)), skips[0].shape[2:])
        h = self.out(h + self.detail(torch.cat([skips[0].detach(), decoded[0].detach()], dim=1)))
        return self.head(h)
