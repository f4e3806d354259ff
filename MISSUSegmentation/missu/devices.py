"""Compute devices and their mixed precision, in one place for inference and training."""

from __future__ import annotations

import contextlib
import os
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
    """Intel AMX tiles: the engine runs PyTorch in bf16 there (measured; OpenVINO was not tried on AMX)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


# oneDNN instruction-set limits (ONEDNN_MAX_CPU_ISA, formerly DNNL_MAX_CPU_ISA; benchmarks/run.py sets it to act as
# an older CPU) that leave no bf16 arithmetic: bf16 is then emulated, several times slower than float32.
# (AVX2_VNNI_2 converts bf16 but has no bf16 dot products.)
_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def cpu_computes_bf16() -> bool:
    """bf16 in hardware: AMX, or AVX-512 BF16 (AMD Zen 4 and later, Intel Xeons from Cooper Lake and Sapphire
    Rapids on). There bf16 takes a window in 0.42-0.49x and a training step in 0.58x of float32's time, with the same
    masks (benchmarks/results/runtimes-la-mri-avx512_bf16.md, training-la-mri-avx512_bf16.md); without it, it takes
    1.6-3x as long as float32."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    if limit.upper() in _ISAS_WITHOUT_BF16:
        return False
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return cpu_has_amx() or bool(probe and probe())


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype worth using on ``device``: bf16 (fp16 on CUDA without bf16), or None for float32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_computes_bf16():
        return torch.bfloat16
    return None


def precision_name(device: torch.device, amp: bool = True) -> str:
    """The arithmetic that ``amp`` gives on ``device``, for logs and reports: ``float32`` or ``bfloat16 autocast``."""
    dtype = amp_dtype(device) if amp else None
    return f"{str(dtype).removeprefix('torch.')} autocast" if dtype else "float32"


def training_memory_format(device: torch.device, amp: bool = True) -> torch.memory_format:
    """The layout of the network and its crops while training: channels-last where it was measured faster (a
    float32 step on a CPU whose best vector instructions are AVX2 took 0.72-0.80x of the default layout's time,
    benchmarks/results/training-la-mri*-avx2.md), PyTorch's default elsewhere (not measured for training with
    AVX-512, bf16 or CUDA; for inference on AVX-512, channels-last gained nothing)."""
    avx2 = torch.backends.cpu.get_cpu_capability() == "AVX2"  # honours ATEN_CPU_CAPABILITY, as an older CPU
    if device.type == "cpu" and avx2 and precision_name(device, amp) == "float32":
        return torch.channels_last_3d
    return torch.contiguous_format


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision where it pays (see :func:`amp_dtype`), else a no-op context."""
    dtype = amp_dtype(device) if enabled else None
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
