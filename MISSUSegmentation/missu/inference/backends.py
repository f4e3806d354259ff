"""Runtimes for the network's sliding windows: PyTorch (always there) and OpenVINO (``pip install openvino``, or
the package's ``openvino`` extra).

The choice follows the measurements in ``benchmarks/results/``: on CPUs with AMX, PyTorch in bf16; on other CPUs,
OpenVINO where it is installed, in bf16 where the CPU computes it (AVX-512 BF16) and float32 elsewhere (AVX-512,
AVX2), else PyTorch in the same precision; on CUDA, PyTorch. Tried and not kept (``benchmarks/runtimes.py``): ONNX
Runtime and ``torch.compile`` (slower than OpenVINO), and OpenVINO int8 by NNCF (faster; la-mri 1.0's labels failed
the accuracy guard, 2.0's pass it natively, but quantising needs calibration windows of the model's training cases,
which a bundle does not carry). The OpenVINO model is converted from the bundle's own weights on first use and
cached by their SHA-256, never shipped in place of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch

from .. import __version__
from ..bundle import Bundle
from ..devices import amp_dtype, autocast, cpu_has_amx
from ..errors import MISSUError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino")
Runner = Callable[[torch.Tensor], torch.Tensor]  # windows (B, C, *roi) -> logits (B, K, *roi), float32


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def import_openvino() -> ModuleType:
    """``openvino``, imported without its usage telemetry. ``import openvino`` loads its converter, which sends
    usage events to Google Analytics (unless the user opted out) and writes a client id under ``~/intel``; with
    the ``openvino_telemetry`` package hidden while it loads, the converter binds OpenVINO's own no-op stub."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    absent = object()
    previous = sys.modules.get("openvino_telemetry", absent)
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # makes its import raise ImportError
    try:
        import openvino
    finally:
        if previous is absent:
            del sys.modules["openvino_telemetry"]
        else:
            sys.modules["openvino_telemetry"] = previous  # type: ignore[assignment]
    return openvino


def choose_backend(requested: str, device: torch.device) -> str:
    """The backend for ``requested`` ("auto" picks by the device, see the module's docstring)."""
    if requested not in BACKENDS:
        raise MISSUError(f"backend {requested!r}: choose {', '.join(BACKENDS)}")
    if requested == "openvino":
        if device.type != "cpu":
            raise MISSUError(f"backend openvino runs on the CPU, not on {device}")
        if not openvino_available():
            raise MISSUError("backend openvino: OpenVINO is not installed (pip install openvino)")
        return "openvino"
    if requested == "auto" and device.type == "cpu" and not cpu_has_amx() and openvino_available():
        return "openvino"
    return "torch"


def torch_runner(model: torch.nn.Module, device: torch.device, amp: bool) -> Runner:
    def run(windows: torch.Tensor) -> torch.Tensor:
        with autocast(device, enabled=amp):
            return model(windows).float()
    return run


def weights_key(bundle: Bundle) -> str:
    """The bundle's weights SHA-256 (the card's, or computed for an unsaved bundle)."""
    if bundle.card.weights_sha256:
        return bundle.card.weights_sha256
    digest = hashlib.sha256()
    for name, tensor in sorted(bundle.state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def openvino_model_path(bundle: Bundle, roi: Sequence[int]) -> Path:
    """Where the converted model of these weights, network and window size is cached; the network's code is
    that of this missu version (an upgrade converts again)."""
    from ..bundle.registry import cache_dir

    network = bundle.card.network.to_dict()
    code = hashlib.sha256(json.dumps([network, __version__], sort_keys=True, default=str).encode()).hexdigest()[:8]
    size = f"{network['in_channels']}x{'x'.join(map(str, roi))}"
    return cache_dir() / "openvino" / f"{weights_key(bundle)[:32]}-{code}-{size}.xml"


def convert_to_openvino(model: torch.nn.Module, bundle: Bundle, roi: Sequence[int]) -> Path:
    """The OpenVINO IR of ``model`` for one window, converted from its PyTorch weights once and cached (written
    to a temporary folder and renamed, so that a killed conversion leaves no half model behind)."""
    ov = import_openvino()

    target = openvino_model_path(bundle, roi)
    if target.exists() and target.with_suffix(".bin").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, bundle.card.network.in_channels, *roi)
    log.info("converting %s to OpenVINO (once; cached in %s)", bundle.card.name, target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".converting-") as scratch:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the shape checks are constant for one window
            warnings.simplefilter("ignore", DeprecationWarning)  # OpenVINO's tracer calls torch.jit.trace
            converted = ov.convert_model(model.cpu().eval(), example_input=example)
        partial = Path(scratch) / target.name
        ov.save_model(converted, str(partial), compress_to_fp16=False)
        shutil.move(str(partial.with_suffix(".bin")), target.with_suffix(".bin"))
        os.replace(partial, target)  # the .xml last: its presence means the pair is complete
    return target


def openvino_runner(model: torch.nn.Module, bundle: Bundle, roi: Sequence[int], precision: str | None = None) -> Runner:
    """Windows through OpenVINO's CPU plugin, one at a time; ``precision`` f32 or bf16 (default: bf16 where the
    CPU computes it, see :func:`..devices.cpu_computes_bf16`; elsewhere bf16 is emulated and many times slower)."""
    ov = import_openvino()

    precision = precision or ("bf16" if amp_dtype(torch.device("cpu")) == torch.bfloat16 else "f32")
    path = convert_to_openvino(model, bundle, roi)
    core = ov.Core()
    core.set_property({"CACHE_DIR": str(path.parent / "compiled")})  # compiled kernels reused by the next process
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                    "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(windows: torch.Tensor) -> torch.Tensor:
        outputs = [torch.from_numpy(request.infer([w[None].numpy()])[0].copy()) for w in windows.float().cpu()]
        return torch.cat(outputs)
    return run
