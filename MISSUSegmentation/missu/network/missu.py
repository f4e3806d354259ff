"""The MISSU network: TransBTS-style 3D CNN encoder, Transformer bottleneck, skip-connected decoder,
and the training-only LMSF self-distillation branch.

In ``eval()`` mode, or when built with ``distillation=False`` (then the branch does not exist), ``forward``
returns logits from the main path alone; the branch's weights are left out of
:meth:`MISSU.inference_state_dict`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from monai.networks.blocks import TransformerBlock
from monai.networks.blocks.segresnet_block import ResBlock
from monai.networks.layers.utils import get_norm_layer
from torch import nn

from ..errors import MISSUError
from .lmsf import LMSF
from .presets import STRIDE, MISSUConfig

DISTILL_PREFIX = "distill."


def _group_norm(channels: int) -> tuple:
    return ("GROUP", {"num_groups": min(8, channels)})


# Instance norm instead of TransBTS's batch norm after the encoder: 3D training runs with batches of
# one or two crops, where batch statistics are noise (nnU-Net's choice for the same reason).
DECODER_NORM = ("INSTANCE", {"affine": True})


class TrainOutput(NamedTuple):
    """What the network returns in training mode when it carries the distillation branch."""

    logits: torch.Tensor  # the main head: the student
    teacher_logits: torch.Tensor  # the LMSF teacher, same shape; its inputs are detached from the backbone


class UpStage(nn.Module):
    """x2 upsampling, concatenation with the skip feature, 1x1x1 fusion and a residual block."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.reduce = nn.Conv3d(in_channels, out_channels, 1)
        self.up = nn.ConvTranspose3d(out_channels, out_channels, 2, stride=2)
        self.fuse = nn.Conv3d(2 * out_channels, out_channels, 1)
        self.block = ResBlock(3, out_channels, norm=DECODER_NORM)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(self.reduce(x))
        return self.block(self.fuse(torch.cat([x, skip], dim=1)))


def _conv_norm_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, 3, padding=1), get_norm_layer(DECODER_NORM, 3, cout), nn.ReLU(inplace=True)]


def _self_attention_block(c: MISSUConfig) -> TransformerBlock:
    """MONAI's pre-LN Transformer layer (qkv without bias, fused attention), with two fixes:

    - its cross-attention (MONAI 1.5 builds it even when unused) and norm are never used here: parameters
      without gradients break DDP, and the weights must be the same on every supported MONAI;
    - its fused path hands ``dropout_p`` to SDPA in eval mode too (MONAI 1.6), which would make predictions
      random: attention-probability dropout is off; output and MLP dropout still follow ``train()``/``eval()``.
    """
    block = TransformerBlock(c.embed_dim, c.mlp_dim, c.num_heads, c.dropout, qkv_bias=False, use_flash_attention=True)
    block.norm_cross_attn = block.cross_attn = nn.Identity()
    block.attn.dropout_rate = 0.0
    return block


class MISSU(nn.Module):
    """Self-distilling TransUNet for 3D volumes; input ``(B, C, X, Y, Z)`` with X, Y, Z multiples of 8."""

    def __init__(self, config: MISSUConfig):
        super().__init__()
        self.config = c = config
        w = c.widths
        self.stem = nn.Sequential(nn.Conv3d(c.in_channels, w[0], 3, padding=1), nn.Dropout3d(c.stem_dropout))
        self.encoder = nn.ModuleList()
        for level, (width, blocks) in enumerate(zip(w, c.encoder_blocks)):
            down = [nn.Conv3d(w[level - 1], width, 3, stride=2, padding=1)] if level else []
            res = [ResBlock(3, width, norm=_group_norm(width)) for _ in range(blocks)]
            self.encoder.append(nn.Sequential(*down, *res))

        self.to_tokens = nn.Sequential(
            get_norm_layer(_group_norm(w[3]), 3, w[3]), nn.ReLU(inplace=True), nn.Conv3d(w[3], c.embed_dim, 3, padding=1)
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, c.embed_dim, *c.token_grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.pos_dropout = nn.Dropout(c.dropout)
        self.transformer = nn.Sequential(*(_self_attention_block(c) for _ in range(c.depth)))
        self.token_norm = nn.LayerNorm(c.embed_dim)
        self.from_tokens = nn.Sequential(
            *_conv_norm_relu(c.embed_dim, w[3]), *_conv_norm_relu(w[3], w[3]), ResBlock(3, w[3], norm=DECODER_NORM)
        )
        self.decoder = nn.ModuleList(UpStage(w[level + 1], w[level]) for level in (2, 1, 0))
        self.head = nn.Conv3d(w[0], c.out_channels, 1)

        # The training-only teacher; not built at all without distillation (the true ablation).
        self.distill = LMSF(w, c.out_channels, c.lmsf_dilations, c.lmsf_pyramid) if c.distillation else None

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` with a clear message when ``x`` cannot go through the network."""
        if x.ndim != 5:
            raise MISSUError(f"MISSU expects a 5-D tensor (batch, channel, x, y, z); got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_channels:
            raise MISSUError(f"this network takes {self.config.in_channels} input channel(s); got {x.shape[1]}")
        spatial = tuple(x.shape[2:])
        if any(s % STRIDE or s == 0 for s in spatial):
            raise MISSUError(
                f"spatial size {spatial} is not a multiple of the network stride {STRIDE} on every axis; "
                f"pad or crop to e.g. {tuple(max(STRIDE, -(-s // STRIDE) * STRIDE) for s in spatial)}"
            )

    def _position(self, grid: tuple[int, ...]) -> torch.Tensor:
        """Learned position embedding, trilinearly resampled when the token grid differs from the ROI's."""
        pos = self.pos_embed.contiguous()  # the layout of the default one, as for the tokens (see forward)
        if tuple(pos.shape[2:]) != grid:
            pos = F.interpolate(pos, size=grid, mode="trilinear", align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor | TrainOutput:
        self.check_input(x)
        h = self.stem(x)
        skips = []
        for level, stage in enumerate(self.encoder):
            h = stage(h)
            if level < 3:
                skips.append(h)

        # Tokens in one layout whatever the network's (channels-last while training on some CPUs): dropout draws its
        # mask in memory order, so the same seed drops the same tokens in either.
        h = self.to_tokens(h).contiguous()
        batch, dim, *grid = h.shape
        tokens = self.pos_dropout(h.flatten(2).transpose(1, 2) + self._position(tuple(grid)))
        tokens = self.token_norm(self.transformer(tokens))
        h = self.from_tokens(tokens.transpose(1, 2).reshape(batch, dim, *grid))

        decoded = []
        for up, skip in zip(self.decoder, reversed(skips)):
            h = up(h, skip)
            decoded.insert(0, h)  # finest scale first, like ``skips``
        logits = self.head(h)
        if self.distill is None or not self.training:
            return logits

        return TrainOutput(logits, self.distill(skips, decoded))

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load main-path weights (a bundle's, or a run's) into this network, whose ROI may differ: the
        position embedding is resampled to this network's token grid; the distillation branch, if built,
        keeps its fresh initialisation."""
        state = dict(state)
        pos = state.get("pos_embed")
        if pos is not None and pos.shape != self.pos_embed.shape:
            state["pos_embed"] = F.interpolate(pos.float(), size=self.config.token_grid, mode="trilinear",
                                               align_corners=False).to(pos.dtype)
        state = {k: v for k, v in state.items() if not k.startswith(DISTILL_PREFIX)}
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise MISSUError(f"the weights do not fit this network: {str(exc).splitlines()[-1].strip()}") from None
        missing = [k for k in missing if not k.startswith(DISTILL_PREFIX)]
        if missing or unexpected:
            raise MISSUError(f"the weights do not fit this network (missing {missing[:3]}, unexpected {unexpected[:3]})")

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of the main path only: what a model bundle stores."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(DISTILL_PREFIX)}


def build_model(config: MISSUConfig, inference: bool = False) -> MISSU:
    """The network for ``config``; ``inference=True`` builds it without the distillation branch."""
    if inference and config.distillation:
        config = replace(config, distillation=False)
    return MISSU(config)
