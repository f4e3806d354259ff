"""Parameter and FLOP counts of a configuration, measured by torch on the meta device (no memory, no time)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .missu import build_model
from .presets import MISSUConfig

# The official TransBTS backbone at 4x128^3, measured by running its code (missu_spec.md).
REFERENCE = {"what": "official TransBTS backbone at 4x128^3 (missu_spec.md)", "parameters": 32.99e6, "gmac": 325.4}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summarize(config: MISSUConfig) -> dict[str, Any]:
    """Parameters (training, inference) and FLOPs of one ``roi_size`` window at inference."""
    with torch.device("meta"):
        training = build_model(config)
        inference = build_model(config, inference=True).eval()
        window = torch.empty(1, config.in_channels, *config.roi_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        inference(window)
    flops = counter.get_total_flops()
    return {
        "config": config.to_dict(),
        "parameters": {"training": _count(training), "inference": _count(inference)},
        "flops_per_window": flops,
        "gmac_per_window": flops / 2e9,
        "reference": REFERENCE,
    }
