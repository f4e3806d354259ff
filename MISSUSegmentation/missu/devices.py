"""Compute devices and their mixed precision, in one place for inference and training."""

from __future__ import annotations

import contextlib
import re

import torch

from .errors import MISSUError


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present; asking for CUDA without it is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise MISSUError(f"device {device!r}: choose auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MISSUError(f"device {device!r}: no CUDA GPU is available to this PyTorch ({torch.__version__})")
    chosen = torch.device(device)
    if chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise MISSUError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return chosen


def cpu_has_amx() -> bool:
    """Intel AMX tiles: bf16 convolutions run about twice as fast as float32 there (benchmarks/results)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype worth using on ``device``: bf16 (fp16 on CUDA without bf16), or None for float32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_amx():
        return torch.bfloat16
    return None


def precision_name(device: torch.device, amp: bool = True) -> str:
    """The arithmetic that ``amp`` gives on ``device``, for logs and reports: ``float32`` or ``bfloat16 autocast``."""
    dtype = amp_dtype(device) if amp else None
    return f"{str(dtype).removeprefix('torch.')} autocast" if dtype else "float32"


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision where it pays (see :func:`amp_dtype`), else a no-op context."""
    dtype = amp_dtype(device) if enabled else None
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
