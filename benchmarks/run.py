"""MISSU against its peers on one machine, in one run: size, FLOPs, latency, training throughput, end to end.

    python benchmarks/run.py --device cpu|cuda [--quick]

Prints markdown tables (ratios against TransBTS, and against the reference inference path) and writes them
to ``benchmarks/results/<device>.md`` with the machine description. Weights are random (speed does not
depend on them); the end-to-end case is the real 4-modality BraTS-space volume in ``../shared/data``
(4 x 240 x 240 x 155), read from disk, pre-processed, segmented and post-processed, each path in its own
subprocess so that its peak memory is its own.
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
    "reference": dict(foreground_crop=False, overlap=0.5, amp=False, sw_batch_size=1),
    "optimised": dict(foreground_crop=True, overlap=0.25, amp=True),  # engine picks the window batch
}


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
    """The engine's choice: bf16 on CUDA and on CPUs with AMX, else float32."""
    from missu.devices import autocast

    return autocast(device)


def window_costs(name: str, device: torch.device, repeats: int) -> dict:
    """Parameters, FLOPs and median latency of one 128^3 window at inference."""
    net = build(name).eval()
    # FLOPs on the meta device: on real CPU tensors the fused attention kernel is not counted.
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        build(name).eval().to("meta")(torch.empty(1, 4, *ROI, device="meta"))
    net = net.to(device)
    x = torch.randn(1, 4, *ROI, device=device)
    with torch.inference_mode(), _autocast(device):
        net(x)  # warm-up
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            net(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return {"params_m": sum(p.numel() for p in net.parameters()) / 1e6,
            "gflops": counter.get_total_flops() / 1e9, "latency_s": statistics.median(times)}


def training_throughput(name: str, device: torch.device, crop: int, steps: int) -> float:
    """Samples per second of forward + backward + Adam step (with MISSU's distillation branch and loss)."""
    from missu.network import MISSULoss

    net = build(name, training=True, roi=(crop,) * 3).train().to(device)
    criterion = MISSULoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(1, 4, crop, crop, crop, device=device)
    y = torch.randint(0, 4, (1, 1, crop, crop, crop), device=device)
    times = []
    for step in range(steps + 1):
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad()
        with _autocast(device):
            output = net(x)
        loss, _ = criterion(output.float() if isinstance(output, torch.Tensor) else output, y)
        loss.backward()
        optimizer.step()
        _sync(device)
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


# -- end to end (run in a subprocess each) ------------------------------------------------------------


def _card(name: str):
    from missu.bundle import Channel, ModelCard
    from missu.bundle.terminology import label_for
    from missu.network import PRESETS, preset_config

    config = preset_config(name if name in PRESETS else "transbts", in_channels=4, out_channels=4, roi_size=ROI)
    labels = tuple(label_for(v, n) for v, n in ((1, "necrosis"), (2, "edema"), (4, "enhancing tumor")))
    return ModelCard(name="bench", version="0", description="", preset=name, network=config,
                     inputs=tuple(Channel(c) for c in CHANNELS), labels=labels)


def _segmenter(name: str, device: str, options: dict):
    from missu.bundle import Bundle
    from missu.inference import Segmenter

    torch.manual_seed(0)
    card = _card(name)
    net = build(name)
    state = net.state_dict() if name in ("missu", "missu-small", "transbts") else build("transbts").state_dict()
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


def end_to_end_worker(name: str, path: str, device: str, save: str) -> None:
    """One end-to-end run; prints JSON with seconds and peak memory; saves the label array to compare."""
    from missu.data.geometry import array_xyz

    paths = [str(CASE / f"TCGA-DU-7294_{tag}_bet.nii.gz") for tag in CHANNELS.values()]
    segmenter = _segmenter(name, device, PATHS.get(path, {"amp": True}))
    warm = torch.randn(1, 4, *ROI, device=segmenter.device)
    with torch.inference_mode(), segmenter._autocast():
        segmenter.model(warm)  # one-time kernel/allocator warm-up, not part of the case
    if segmenter.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(segmenter.device)
    start = time.perf_counter()
    labels = official_transbts(segmenter, paths) if path == "official" else array_xyz(segmenter.segment_files(paths).labels)
    _sync(segmenter.device)
    seconds = time.perf_counter() - start
    np.save(save, labels)  # kept for inspection while the run lasts
    peak = (torch.cuda.max_memory_allocated() / 2**20 if segmenter.device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"seconds": seconds, "peak_mb": peak}))


def end_to_end(name: str, path: str, device: str, workdir: Path) -> dict:
    save = workdir / f"{name}-{path}.npy"
    result = subprocess.run([sys.executable, __file__, "--e2e", name, path, "--device", device, "--save", str(save)],
                            capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise RuntimeError(f"{name}/{path} failed:\n{result.stderr[-2000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "labels": save}


# -- report ---------------------------------------------------------------------------------------------


def machine(device: torch.device) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    text = f"{cpu}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads; torch {torch.__version__}"
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)} ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
    return text


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller training crops, fewer e2e rows")
    parser.add_argument("--e2e", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.e2e:
        end_to_end_worker(*args.e2e, args.device, args.save)
        return
    device = torch.device(args.device)
    repeats, crop, steps = (2, 64, 2) if args.quick else (5, 128, 5)
    e2e_models = ("missu", "missu-small") if args.quick and device.type == "cpu" else MODELS
    workdir = ROOT / "benchmarks" / "results" / ".work"
    workdir.mkdir(parents=True, exist_ok=True)

    rows = {}
    for name in MODELS:
        print(f"{name}: window", file=sys.stderr, flush=True)
        rows[name] = window_costs(name, device, repeats)
        print(f"{name}: training", file=sys.stderr, flush=True)
        rows[name]["train_sps"] = training_throughput(name, device, crop, steps)
        if name in e2e_models:
            print(f"{name}: end to end", file=sys.stderr, flush=True)
            rows[name]["e2e"] = end_to_end(name, "optimised", args.device, workdir)

    paths = {path: end_to_end("missu", path, args.device, workdir) for path in ("reference", "official")}
    paths["optimised"] = rows["missu"]["e2e"]

    base = rows["transbts"]
    lines = [
        f"# Benchmark: {args.device}{' (quick)' if args.quick else ''}",
        "",
        f"Machine: {machine(device)}. Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/run.py --device "
        f"{args.device}{' --quick' if args.quick else ''}`; ratios are against TransBTS in the same run.",
        "",
        f"| model | params (M) | GFLOPs / 128^3 window | window latency (s) | vs TransBTS | training samples/s ({crop}^3) | vs TransBTS | end to end, BraTS case (s) | vs TransBTS | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        e2e = r.get("e2e")
        base_e2e = rows["transbts"].get("e2e", rows["missu"].get("e2e"))
        lines.append(
            f"| {name} | {r['params_m']:.2f} | {r['gflops']:.1f} | {r['latency_s']:.3f} | {ratio(r['latency_s'], base['latency_s'])} "
            f"| {r['train_sps']:.3f} | {ratio(r['train_sps'], base['train_sps'])} "
            + (f"| {e2e['seconds']:.2f} | {ratio(e2e['seconds'], base_e2e['seconds'])} | {e2e['peak_mb']:.0f} |" if e2e else "| - | - | - |")
        )
    lines += [
        "",
        "MISSU (`missu` preset) end to end on the same case, three inference paths:",
        "",
        "| path | what | time (s) | vs reference | vs official TransBTS | peak memory (MB) |",
        "|---|---|---|---|---|---|",
    ]
    what = {
        "reference": "fp32, no foreground crop, MONAI sliding window overlap 0.5",
        "official": "official TransBTS: 8 fixed 128^3 crops, no blending, 8-flip TTA (our precision)",
        "optimised": "foreground crop, overlap 0.25, bf16 (CUDA, or CPU with AMX), 1 window per batch on CPU / 2 on CUDA",
    }
    for path, result in paths.items():
        lines.append(
            f"| {path} | {what[path]} | {result['seconds']:.2f} | {ratio(result['seconds'], paths['reference']['seconds'])} "
            f"| {ratio(result['seconds'], paths['official']['seconds'])} | {result['peak_mb']:.0f} |"
        )
    lines += [
        "",
        "Peak memory: resident set size of the whole process on the CPU, `torch.cuda.max_memory_allocated` on CUDA "
        "(windows are stitched on the CPU, so GPU memory holds the model and one batch of windows).",
        "Weights are random here (speed does not depend on them). That the optimised path keeps accuracy is "
        "checked on a real case with the trained la-mri model by Testing/test_fast_path.py.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    out = ROOT / "benchmarks" / "results" / f"{args.device}.md"
    out.write_text(report)
    for f in workdir.iterdir():
        f.unlink()
    workdir.rmdir()


if __name__ == "__main__":
    main()
