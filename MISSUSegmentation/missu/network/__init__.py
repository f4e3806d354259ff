"""The MISSU network, its presets and its losses."""

from .losses import MISSULoss, channel_kl
from .missu import MISSU, TrainOutput, build_model
from .presets import PRESETS, STRIDE, MISSUConfig, preset_config

__all__ = ["MISSU", "MISSULoss", "channel_kl", "MISSUConfig", "PRESETS", "STRIDE", "TrainOutput", "build_model", "preset_config"]
