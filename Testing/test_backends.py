"""Network runtimes: the backend choice per machine, the OpenVINO model derived from the bundle's weights and
cached by their SHA-256, and the accuracy guard: on a real validation case, OpenVINO's labels agree with
PyTorch float32's (Dice >= 0.99)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import missing_tool, shared_data, small_card
from missu.bundle import ensemble_state_dict, load_bundle, save_bundle
from missu.errors import MISSUError
from missu.inference import Segmenter, backends
from missu.inference.backends import choose_backend, openvino_available, openvino_model_path
from missu.network import build_model

CASE = "la_0RZDK210BSMWAA6467LU"  # a validation case of the shipped la-mri


@pytest.fixture
def openvino(monkeypatch, tmp_path):
    if not openvino_available():
        missing_tool("OpenVINO (pip install openvino)")
    monkeypatch.setenv("MISSU_CACHE", str(tmp_path / "cache"))


def test_backend_choice_follows_the_machine(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(backends, "openvino_available", lambda: True)
    monkeypatch.setattr(backends, "cpu_has_amx", lambda: False)
    assert choose_backend("auto", cpu) == "openvino"  # AVX-512 (bf16 with BF16, else float32), AVX2
    monkeypatch.setattr(backends, "cpu_has_amx", lambda: True)
    assert choose_backend("auto", cpu) == "torch"  # AMX: PyTorch bf16
    assert choose_backend("auto", torch.device("cuda")) == "torch"
    assert choose_backend("torch", cpu) == "torch"
    with pytest.raises(MISSUError, match="openvino runs on the CPU"):
        choose_backend("openvino", torch.device("cuda"))
    with pytest.raises(MISSUError, match="choose auto, torch, openvino"):
        choose_backend("tensorrt", cpu)
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    assert choose_backend("auto", cpu) == "torch"  # optional: the engine runs without it
    with pytest.raises(MISSUError, match=r"OpenVINO is not installed \(pip install openvino\)"):
        choose_backend("openvino", cpu)


def test_openvino_agrees_with_pytorch_float32_on_a_real_case(openvino):
    image = shared_data("la2018") / "imagesTr" / f"{CASE}.nii.gz"
    reference = Segmenter("la-mri", device="cpu", backend="torch", amp=False)
    fast = Segmenter("la-mri", device="cpu", backend="openvino")
    expected = sitk.GetArrayFromImage(reference.segment_files([image]).labels) > 0
    got = sitk.GetArrayFromImage(fast.segment_files([image]).labels) > 0
    dice = 2 * (expected & got).sum() / (expected.sum() + got.sum())
    assert expected.sum() > 10000 and dice >= 0.99, dice


def test_openvino_model_is_derived_from_the_weights_and_cached(openvino, make_bundle, phantom, monkeypatch):
    path, _ = phantom()
    bundle = make_bundle("a")
    first = Segmenter(bundle, device="cpu", backend="openvino")
    first.segment_files([path])
    converted = openvino_model_path(first.bundle, first.card.roi_size)
    assert converted.exists() and converted.with_suffix(".bin").exists()
    assert first.card.weights_sha256[:32] in converted.name  # named by the weights it came from
    stamp = converted.stat().st_mtime_ns
    again = Segmenter(bundle, device="cpu", backend="openvino")
    again.segment_files([path])
    assert converted.stat().st_mtime_ns == stamp  # reused, not converted again
    assert not list(converted.parent.glob(".converting-*"))  # no half-written conversion left

    torch.manual_seed(1)
    other = make_bundle("b", roi=(32, 32, 16))
    assert openvino_model_path(Segmenter(other, device="cpu", backend="openvino").bundle, (32, 32, 16)) != converted
    with monkeypatch.context() as patch:  # another missu version may compute another network from the same weights
        patch.setattr(backends, "__version__", "0.0.0-other")
        assert openvino_model_path(first.bundle, first.card.roi_size) != converted

    def labels(segmenter: Segmenter) -> np.ndarray:
        return sitk.GetArrayFromImage(segmenter.segment_files([path]).labels)

    reference = labels(Segmenter(bundle, device="cpu", backend="torch", amp=False))
    float32 = labels(Segmenter(bundle, device="cpu", backend="openvino", amp=False))
    assert np.array_equal(float32, reference), "in float32 both runtimes draw the same labels"
    # by default (amp) OpenVINO computes in bf16 where the CPU has it (AMX, AVX-512 BF16), as torch's autocast
    # does: near, not identical
    assert np.mean(labels(first) == reference) > 0.99


@pytest.mark.parametrize(("amx", "avx512_bf16", "limit", "expected"), [
    (False, False, None, None),  # AVX-512 without BF16, AVX2: bf16 would be emulated
    (False, True, None, torch.bfloat16),  # AVX-512 BF16 (AMD Zen 4, Intel Cooper Lake)
    (True, True, None, torch.bfloat16),  # AMX
    (False, True, "AVX2", None),  # benchmarks' --emulate-isa: oneDNN limited below bf16
    (True, True, "avx512_core", None),
    (True, True, "AVX512_CORE_AMX", torch.bfloat16),
    (False, True, "AVX512_CORE_BF16", torch.bfloat16),
    (False, None, None, None),  # a PyTorch without the probe
])
def test_cpu_precision_is_bf16_where_the_cpu_computes_it(monkeypatch, amx, avx512_bf16, limit, expected):
    from missu import devices

    monkeypatch.setattr(devices, "cpu_has_amx", lambda: amx)
    if avx512_bf16 is None:
        monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    else:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if limit:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpu = torch.device("cpu")
    assert devices.amp_dtype(cpu) is expected
    assert devices.precision_name(cpu) == ("bfloat16 autocast" if expected else "float32")
    assert devices.precision_name(cpu, amp=False) == "float32"


@pytest.mark.parametrize(("capability", "bf16", "amp", "expected"), [
    ("AVX2", False, True, torch.channels_last_3d),  # measured: 0.72-0.80x of a float32 step's time
    ("AVX2", True, False, torch.channels_last_3d),  # float32 forced (amp: false) on a CPU that has bf16
    ("AVX2", True, True, torch.contiguous_format),  # bf16: not measured
    ("AVX512", False, True, torch.contiguous_format),  # not measured
    ("DEFAULT", False, True, torch.contiguous_format),
])
def test_training_layout_is_channels_last_only_where_measured_faster(monkeypatch, capability, bf16, amp, expected):
    from missu import devices

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(devices, "cpu_computes_bf16", lambda: bf16)
    assert devices.training_memory_format(torch.device("cpu"), amp) == expected
    assert devices.training_memory_format(torch.device("cuda"), amp) == torch.contiguous_format


@pytest.mark.parametrize("command", [["segment", "--input", "x.nii.gz", "--output", "x.seg.nrrd"],
                                     ["evaluate", "--validation-only", "--dataset", "LA"]])
@pytest.mark.parametrize(("flag", "amp"), [("auto", True), ("fp32", False)])
def test_precision_flag_reaches_the_engine(monkeypatch, command, flag, amp):
    import missu.inference
    from missu.cli import main

    chosen = {}

    class Recording(Segmenter):
        def __init__(self, *args, **kwargs):
            chosen.update(kwargs)
            raise MISSUError("stop before loading")

    monkeypatch.setattr(missu.inference, "Segmenter", Recording)
    command = [str(shared_data("la2018/dataset.json")) if arg == "LA" else arg for arg in command]
    assert main([*command, "--precision", flag]) == 1
    assert chosen["amp"] is amp


def test_openvino_sends_no_usage_telemetry(openvino, make_bundle, phantom, tmp_path):
    """OpenVINO's converter sends usage events and writes a client id under ``~/intel`` unless the user opted out
    or a CI variable is set; `missu segment` on OpenVINO, run as a user runs it, must do neither."""
    path, _ = phantom()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env.update(HOME=str(home), MISSU_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "missu", "segment", "--model", str(make_bundle("a")), "--input", str(path),
               "--output", str(tmp_path / "out.seg.nrrd"), "--backend", "openvino"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.seg.nrrd").is_file() and any((tmp_path / "cache" / "openvino").glob("*.xml"))
    assert not (home / "intel").exists(), sorted(p.name for p in (home / "intel").rglob("*"))
    backends.import_openvino()
    import openvino.tools.ovc.telemetry_utils as usage  # what the converter reports through: OpenVINO's no-op stub

    assert usage.tm.__name__ == "openvino.tools.ovc.telemetry_stub" and "openvino_telemetry" not in sys.modules


def test_an_ensemble_runs_the_same_on_openvino(openvino, tmp_path):
    """An ensemble bundle converts as one network: its windows' class probabilities on OpenVINO match PyTorch's."""
    card = small_card().with_changes(members=3)
    torch.manual_seed(3)
    weights = ensemble_state_dict([build_model(card.network, inference=True).state_dict() for _ in range(3)])
    bundle = load_bundle(save_bundle(tmp_path / "ensemble", card, weights))
    windows = torch.randn(2, 1, *card.roi_size)
    fast = Segmenter(bundle, device="cpu", backend="openvino", amp=False)._runner()
    reference = Segmenter(bundle, device="cpu", backend="torch", amp=False)._runner()
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(fast(windows), 1), torch.softmax(reference(windows), 1),
                                   atol=1e-4, rtol=1e-4)
