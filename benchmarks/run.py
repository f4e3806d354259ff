"""MISSU against its peers on one machine, in one run: size, FLOPs, latency, training steps, end to end.

    python benchmarks/run.py --device cpu|cuda [--quick]
    python benchmarks/run.py --device cpu --quick --emulate-isa AVX2   # as on an AVX2-only CPU (laptops)

Honest by construction: every model is warmed up before it is timed, repeats are interleaved across models
(the order rotating each round), and each figure is the median with its range. The CPU's instruction sets
(AVX2, AVX-512, VNNI, AMX) and any ISA limit are recorded with the results, written to
``benchmarks/results/<device>-<isa>.md``. Weights are random (speed does not depend on them); the end-to-end
case is the real 4-modality BraTS-space volume in ``../shared/data`` (4 x 240 x 240 x 155), each path in its
own process so that its peak memory is its own; the command-line rows time ``missu segment`` on a real LA case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT.parent / "shared" / "data" / "brats-tcga-4mod" / "TCGA-DU-7294"
CHANNELS = {"flair": "fla", "t1c": "t1c", "t1": "t1", "t2": "t2"}  # card input -> file tag
MODELS = ("missu", "missu-small", "transbts", "segresnet", "unetr", "swinunetr")
ROI = (128, 128, 128)
PATHS = {  # end-to-end inference paths for one model
    "reference": dict(foreground_crop=False, overlap=0.5, amp=False, sw_batch_size=1, backend="torch"),
    "optimised (torch)": dict(foreground_crop=True, overlap=0.25, amp=True, backend="torch"),
    "optimised (openvino)": dict(foreground_crop=True, overlap=0.25, amp=True, backend="openvino"),
}
LA_CASE = ROOT.parent / "shared" / "data" / "la2018" / "imagesTr" / "la_0RZDK210BSMWAA6467LU.nii.gz"


def build(name: str, training: bool = False, roi: tuple[int, int, int] = ROI) -> torch.nn.Module:
    from monai.networks.nets import UNETR, SegResNet, SwinUNETR

    from missu.network import PRESETS, build_model, preset_config

    if name in PRESETS:
        return build_model(preset_config(name, in_channels=4, out_channels=4, roi_size=roi), inference=not training)
    if name == "segresnet":
        return SegResNet(spatial_dims=3, in_channels=4, out_channels=4, init_filters=16)
    if name == "unetr":
        return UNETR(in_channels=4, out_channels=4, img_size=roi, feature_size=16)
    if name == "swinunetr":
        return SwinUNETR(in_channels=4, out_channels=4, feature_size=48, spatial_dims=3)
    raise ValueError(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(device: torch.device):
    """The engine's choice: bf16 on CUDA and on CPUs that compute it (AMX, AVX-512 BF16), else float32."""
    from missu.devices import autocast

    return autocast(device)


def interleaved(calls: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call, ``repeats`` times: every call warmed up once first, then the calls taken in turn
    (the order rotating every round), so that no entry pays for the warm-up or for a drift of the machine."""
    for call in calls.values():
        call()
        _sync(device)
    names, times = list(calls), {name: [] for name in calls}
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            _sync(device)
            start = time.perf_counter()
            calls[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def window_calls(names: Sequence[str], device: torch.device) -> tuple[dict[str, Callable], dict[str, dict]]:
    """One 128^3 window at inference per model (the engine's precision; OpenVINO rows where installed), and
    each model's parameters and FLOPs."""
    from missu.inference.backends import openvino_available

    x = torch.randn(1, 4, *ROI, device=device)
    calls, sizes = {}, {}
    for name in names:
        net = build(name).eval().to(device)
        # FLOPs on the meta device: on real CPU tensors the fused attention kernel is not counted.
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            build(name).eval().to("meta")(torch.empty(1, 4, *ROI, device="meta"))
        sizes[name] = {"params_m": sum(p.numel() for p in net.parameters()) / 1e6,
                       "gflops": counter.get_total_flops() / 1e9}
        calls[name] = lambda net=net: _forward(net, x, device)
    if device.type == "cpu" and openvino_available():
        for name in [n for n in ("missu", "missu-small") if n in names]:
            run = _segmenter(name, "cpu", {"amp": True}, backend="openvino")._runner()
            calls[f"{name} (openvino)"] = lambda run=run: run(x)
            sizes[f"{name} (openvino)"] = sizes[name]
    return calls, sizes


def _forward(net: torch.nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(), _autocast(device):
        return net(x)


def training_calls(names: Sequence[str], device: torch.device, crop: int) -> dict[str, Callable]:
    """One forward + backward + Adam step per model (with MISSU's distillation branch and loss)."""
    from missu.network import MISSULoss

    criterion = MISSULoss()
    x = torch.randn(1, 4, crop, crop, crop, device=device)
    y = torch.randint(0, 4, (1, 1, crop, crop, crop), device=device)

    def step(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        with _autocast(device):
            output = net(x)
        loss, _ = criterion(output.float() if isinstance(output, torch.Tensor) else output, y)
        loss.backward()
        optimizer.step()

    calls = {}
    for name in names:
        net = build(name, training=True, roi=(crop,) * 3).train().to(device)
        calls[name] = lambda net=net, opt=torch.optim.Adam(net.parameters(), lr=1e-4): step(net, opt)
    return calls


# -- end to end (run in a subprocess each) ------------------------------------------------------------


def _card(name: str):
    from missu.bundle import Channel, ModelCard
    from missu.bundle.terminology import label_for
    from missu.network import PRESETS, preset_config

    config = preset_config(name if name in PRESETS else "transbts", in_channels=4, out_channels=4, roi_size=ROI)
    labels = tuple(label_for(v, n) for v, n in ((1, "necrosis"), (2, "edema"), (4, "enhancing tumor")))
    return ModelCard(name="bench", version="0", description="", preset=name, network=config,
                     inputs=tuple(Channel(c) for c in CHANNELS), labels=labels)


def _segmenter(name: str, device: str, options: dict, backend: str | None = None):
    from missu.bundle import Bundle
    from missu.inference import Segmenter

    torch.manual_seed(0)
    card = _card(name)
    net = build(name)
    state = net.state_dict() if name in ("missu", "missu-small", "transbts") else build("transbts").state_dict()
    options = {**options, **({"backend": backend} if backend else {})}
    segmenter = Segmenter(Bundle(card, Path("random"), state), device=device, **options)
    if name not in ("missu", "missu-small", "transbts"):
        torch.manual_seed(0)
        segmenter.model = net.eval().to(segmenter.device)
    return segmenter


def official_transbts(segmenter, paths: list[str]) -> np.ndarray:
    """The official TransBTS way: z-score in the brain mask, depth padded to 160, 8 fixed 128^3 crops
    stitched without blending, 8-flip TTA, argmax (see missu_spec.md; its stitching bug not copied)."""
    from missu.data.geometry import array_xyz
    from missu.data.images import read_channels

    volume = np.stack([array_xyz(c) for c in read_channels(paths)]).astype(np.float32)
    mask = (volume != 0).any(axis=0)
    for channel in volume:
        values = channel[mask]
        channel[mask] = (values - values.mean()) / (values.std() + 1e-8)
    x = torch.from_numpy(np.pad(volume, ((0, 0), (0, 0), (0, 0), (0, 160 - volume.shape[-1]))))[None]
    x = x.to(segmenter.device)
    out = torch.zeros(1, 4, 240, 240, 160, device=segmenter.device)
    with torch.inference_mode(), segmenter._autocast():
        for i in (0, 112):
            for j in (0, 112):
                for k in (0, 32):
                    crop = x[..., i : i + 128, j : j + 128, k : k + 128]
                    probabilities = 0
                    for axes in [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]:
                        flipped = torch.flip(crop, axes) if axes else crop
                        logits = segmenter.model(flipped).float()
                        probabilities = probabilities + torch.softmax(torch.flip(logits, axes) if axes else logits, 1)
                    out[..., i : i + 128, j : j + 128, k : k + 128] = probabilities / 8
    labels = out.argmax(1)[0, ..., :155].cpu().numpy()
    return np.array([0, 1, 2, 4], np.uint8)[labels]


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``ru_maxrss`` survives ``exec``: a child started by a big
    parent would report the parent's peak, so the kernel's high-water mark of this image (VmHWM) is read."""
    if os.path.exists("/proc/self/status"):
        line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def end_to_end_worker(name: str, path: str, device: str, save: str) -> None:
    """One end-to-end run; prints JSON with seconds and peak memory; saves the label array to compare."""
    from missu.data.geometry import array_xyz

    paths = [str(CASE / f"TCGA-DU-7294_{tag}_bet.nii.gz") for tag in CHANNELS.values()]
    segmenter = _segmenter(name, device, PATHS.get(path, {"amp": True, "backend": "torch"}))
    warm = torch.randn(1, 4, *ROI, device=segmenter.device)
    with torch.inference_mode():
        segmenter._runner()(warm)  # one-time conversion, compilation and allocator warm-up, not part of the case
    if segmenter.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(segmenter.device)
    start = time.perf_counter()
    labels = official_transbts(segmenter, paths) if path == "official" else array_xyz(segmenter.segment_files(paths).labels)
    _sync(segmenter.device)
    seconds = time.perf_counter() - start
    np.save(save, labels)  # kept for inspection while the run lasts
    peak = torch.cuda.max_memory_allocated() / 2**20 if segmenter.device.type == "cuda" else peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak}))


def end_to_end(name: str, path: str, device: str, workdir: Path) -> dict:
    save = workdir / f"{name}-{path}.npy"
    result = subprocess.run([sys.executable, __file__, "--e2e", name, path, "--device", device, "--save", str(save)],
                            capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise RuntimeError(f"{name}/{path} failed:\n{result.stderr[-2000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "labels": save}


def la_command_line(backends: Sequence[str], repeats: int) -> dict[str, dict]:
    """``missu segment`` on a real LA case from the shell, per backend: wall seconds (start-up, reading, model
    load, inference, writing) and the engine's own seconds; one warm-up call each, then taken in turn."""
    import re
    import tempfile

    def call(backend: str) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "missu", "segment", "--input", str(LA_CASE), "--output",
                                     f"{folder}/la.seg.nrrd", "--device", "cpu", "--backend", backend],
                                    capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - start
        if result.returncode:
            raise RuntimeError(result.stderr[-2000:])
        return wall, float(re.search(r"; ([0-9.]+) s$", result.stdout.strip()).group(1))

    for backend in backends:
        call(backend)
    runs = {backend: [] for backend in backends}
    for round_ in range(repeats):
        for backend in backends[round_ % len(backends):] + backends[: round_ % len(backends)]:
            runs[backend].append(call(backend))
    return {b: {"wall": [w for w, _ in r], "engine": [e for _, e in r]} for b, r in runs.items()}


# -- report ---------------------------------------------------------------------------------------------


def cpu_isa() -> dict[str, bool | str]:
    """The CPU's vector and matrix instruction sets, and what oneDNN and ATen were allowed to use."""
    flags: set[str] = set()
    if os.path.exists("/proc/cpuinfo"):
        line = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
        flags = set(line.split(":", 1)[-1].split())
    return {
        "AVX2": "avx2" in flags, "AVX-512": "avx512f" in flags,
        "VNNI": bool({"avx512_vnni", "avx_vnni"} & flags), "AVX-512 BF16": "avx512_bf16" in flags,
        "AMX": bool({"amx_bf16", "amx_tile"} & flags),
        "torch CPU capability": torch.backends.cpu.get_cpu_capability(),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "(not set)"),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", "(not set)"),
        "OV_CPU_MAX_ISA": os.environ.get("OV_CPU_MAX_ISA", "(not set)"),
    }


EMULATED_ISAS = ("AVX2", "AVX512_CORE")


def limit_isa(isa: str) -> None:
    """Limit oneDNN (PyTorch's and OpenVINO's), ATen and OpenVINO's own kernels to ``isa``, as on a CPU that has
    no more. They read the limit once when they load: the process starts again with it set (children inherit it)."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA") != isa:
        aten = {"AVX2": "avx2", "AVX512_CORE": "avx512"}[isa]
        os.environ.update(ONEDNN_MAX_CPU_ISA=isa, ATEN_CPU_CAPABILITY=aten, OV_CPU_MAX_ISA=isa)
        os.execv(sys.executable, [sys.executable, *sys.argv])


def isa_tag(isa: dict) -> str:
    """A short name for the results file: the ISA the run was limited to, or the CPU's best."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        return os.environ["ONEDNN_MAX_CPU_ISA"].lower() + "-emulated"
    if isa["AMX"]:
        return "amx"
    if isa["AVX-512"]:
        return "avx512_bf16" if isa["AVX-512 BF16"] else "avx512"
    return "avx2" if isa["AVX2"] else "baseline"


def machine(device: torch.device) -> str:
    from missu.inference.backends import import_openvino, openvino_available

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    text = f"{cpu}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads; torch {torch.__version__}"
    if openvino_available():
        text += f"; OpenVINO {import_openvino().__version__.split('-')[0]}"
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)} ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
    return text


def spread(values: Sequence[float]) -> str:
    """Median, and the range when there are several values."""
    median = statistics.median(values)
    return f"{median:.3g} ({min(values):.3g}-{max(values):.3g})" if len(values) > 1 else f"{median:.3g}"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller training crops, fewer e2e rows")
    parser.add_argument("--emulate-isa", choices=EMULATED_ISAS,
                        help="limit oneDNN (PyTorch's and OpenVINO's), ATen and OpenVINO's own kernels to this ISA, "
                             "as on a CPU that has no more (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY, OV_CPU_MAX_ISA)")
    parser.add_argument("--e2e", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulate_isa:
        limit_isa(args.emulate_isa)
    if args.e2e:
        end_to_end_worker(*args.e2e, args.device, args.save)
        return
    from missu.inference.backends import openvino_available

    device = torch.device(args.device)
    repeats, crop, e2e_repeats = (3, 64, 1) if args.quick else (5, 128, 3)
    workdir = ROOT / "benchmarks" / "results" / ".work"
    workdir.mkdir(parents=True, exist_ok=True)
    isa = cpu_isa() if device.type == "cpu" else {}

    print("windows", file=sys.stderr, flush=True)
    calls, sizes = window_calls(MODELS, device)
    windows = interleaved(calls, repeats, device)
    del calls
    print("training steps", file=sys.stderr, flush=True)
    training = interleaved(training_calls(MODELS, device, crop), repeats, device)

    runs = [("missu", "reference"), ("missu", "optimised (torch)"), ("missu-small", "optimised (torch)")]
    if device.type == "cpu" and openvino_available():
        runs += [("missu", "optimised (openvino)"), ("missu-small", "optimised (openvino)")]
    if not args.quick:
        runs.append(("missu", "official"))
    e2e: dict[tuple[str, str], list[dict]] = {run: [] for run in runs}
    for round_ in range(e2e_repeats):  # each in its own process (its own peak memory), the order rotating
        for name, path in runs[round_ % len(runs):] + runs[: round_ % len(runs)]:
            print(f"{name} {path}: end to end", file=sys.stderr, flush=True)
            e2e[(name, path)].append(end_to_end(name, path, args.device, workdir))
    la = (la_command_line(["torch", "openvino"] if openvino_available() else ["torch"], repeats)
          if device.type == "cpu" else {})

    def median(values) -> float:
        return statistics.median(values)

    mode = f"--device {args.device}{' --quick' if args.quick else ''}"
    isa_line = ", ".join(f"{k} {'yes' if v is True else 'no' if v is False else v}" for k, v in isa.items())
    lines = [
        f"# Benchmark: {args.device}{' (quick)' if args.quick else ''}{' - ' + isa_tag(isa) if isa else ''}",
        "",
        f"Machine: {machine(device)}.",
        *([f"Instruction sets: {isa_line}."] if isa else []),
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/run.py {mode}"
        f"{' --emulate-isa ' + os.environ['ONEDNN_MAX_CPU_ISA'] if os.environ.get('ONEDNN_MAX_CPU_ISA') else ''}`. Every model is warmed up before timing and the repeats are "
        f"interleaved across models (order rotating); figures are medians (range) of {repeats} repeats; ratios "
        "are against TransBTS (PyTorch) in the same run.",
        "",
        f"| model | params (M) | GFLOPs / 128^3 window | window latency (s) | vs TransBTS | training step ({crop}^3, s) | vs TransBTS |",
        "|---|---|---|---|---|---|---|",
    ]
    base_window, base_step = median(windows["transbts"]), median(training["transbts"])
    for name, times in windows.items():
        step = training.get(name)
        lines.append(
            f"| {name} | {sizes[name]['params_m']:.2f} | {sizes[name]['gflops']:.1f} | {spread(times)} "
            f"| {ratio(median(times), base_window)} | {spread(step) if step else '-'} "
            f"| {ratio(median(step), base_step) if step else '-'} |"
        )
    reference = median([r["seconds"] for r in e2e[("missu", "reference")]])
    what = {
        "reference": "PyTorch fp32, no foreground crop, MONAI sliding window overlap 0.5",
        "official": "official TransBTS: 8 fixed 128^3 crops, no blending, 8-flip TTA",
        "optimised (torch)": "foreground crop, overlap 0.25, PyTorch (bf16 where the CPU computes it)",
        "optimised (openvino)": "foreground crop, overlap 0.25, OpenVINO (bf16 where the CPU computes it, else fp32)",
    }
    lines += [
        "",
        f"End to end on the BraTS case (4 x 240 x 240 x 155, random weights), each run in its own process after a "
        f"warm-up window; {e2e_repeats} run(s) each:",
        "",
        "| model | path | what | time (s) | vs missu reference | peak memory (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for (name, path), results in e2e.items():
        seconds = [r["seconds"] for r in results]
        lines.append(f"| {name} | {path} | {what[path]} | {spread(seconds)} | {ratio(median(seconds), reference)} "
                     f"| {max(r['peak_mb'] for r in results):.0f} |")
    if la:
        base = median(la["torch"]["wall"])
        lines += [
            "",
            f"`missu segment` on a real LA case (la-mri, {LA_CASE.name}) from the shell, wall time including "
            f"start-up, reading, model load and writing; after one warm-up call each (which converts the OpenVINO "
            f"model once), {repeats} calls each, interleaved:",
            "",
            "| backend | wall (s) | vs torch | engine only (s) | start-up and I/O (s) |",
            "|---|---|---|---|---|",
        ]
        for backend, r in la.items():
            fixed = [w - e for w, e in zip(r["wall"], r["engine"])]
            lines.append(f"| {backend} | {spread(r['wall'])} | {ratio(median(r['wall']), base)} "
                         f"| {spread(r['engine'])} | {spread(fixed)} |")
    lines += [
        "",
        "Peak memory: resident set size of the whole process on the CPU, `torch.cuda.max_memory_allocated` on CUDA.",
        "Weights are random in the BraTS rows (speed does not depend on them). Accuracy of the fast paths: "
        "Testing/test_fast_path.py and Testing/test_backends.py (real LA cases, against PyTorch float32).",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    name = f"{args.device}-{isa_tag(isa)}" if isa else args.device
    (ROOT / "benchmarks" / "results" / f"{name}.md").write_text(report)
    for f in workdir.iterdir():
        f.unlink()
    workdir.rmdir()


if __name__ == "__main__":
    main()
