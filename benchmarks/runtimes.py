"""Which runtime runs a bundle's windows fastest on this CPU, and what it costs in accuracy: the trial behind
the engine's backend choice (``missu/inference/backends.py``).

    pip install -e '.[benchmarks]'   # OpenVINO, ONNX Runtime, NNCF
    python benchmarks/runtimes.py [--model la-mri] [--emulate-isa AVX2|AVX512_CORE] [--brats]

Candidates, each for one window of the bundle's network with its real weights:

- PyTorch float32 (eager; the baseline every ratio is against), bf16 autocast, channels-last, and ``torch.compile``
  (inductor);
- ONNX Runtime float32 (CPU execution provider), from ``torch.onnx.export``;
- OpenVINO float32 (the engine's backend), bf16, and int8 by NNCF post-training quantisation, calibrated on
  windows of the bundle's *training* cases (never its validation cases), with and without NNCF's transformer
  scheme.

Speed: every candidate warmed up, then timed in turn with the order rotating (``run.interleaved``); medians and
ranges. One-off costs (export, conversion, compilation, calibration) are listed apart. Accuracy: the whole
engine (pre-processing, sliding window, post-processing) runs every validation case of the card with each
candidate in place of the network; per-case Dice agreement with PyTorch float32 and the mean Dice against the
expert labels, judged by the guard of ``benchmarks/accuracy.py``. ``--brats`` adds speed rows for the
BraTS-size ``missu`` (4 channels, 128^3 window, random weights; its int8 calibrated on noise, speed only).
Writes ``benchmarks/results/runtimes-<model>-<isa>.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from accuracy import MAX_DICE_CHANGE, MIN_AGREEMENT, dice
from run import EMULATED_ISAS, ROI, build, cpu_isa, interleaved, isa_tag, limit_isa, machine, ratio, spread

from missu.inference.backends import import_openvino

ROOT = Path(__file__).resolve().parents[1]
Run = Callable[[torch.Tensor], torch.Tensor]  # windows (B, C, *roi) -> float32 logits
BASELINE = "PyTorch fp32"


def one_at_a_time(infer: Callable[[np.ndarray], np.ndarray]) -> Run:
    """A runtime taking one window as a numpy array, as a :data:`Run` over a batch."""
    def run(windows: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.from_numpy(np.array(infer(w[None].float().numpy()))) for w in windows])
    return run


def candidates(model: torch.nn.Module, example: torch.Tensor, calibration: list[np.ndarray],
               workdir: Path) -> tuple[dict[str, Run], dict[str, float], dict[str, str]]:
    """Every runtime that could be made for ``model``; the seconds each took to prepare; why others failed."""
    model = model.cpu().eval()
    runs: dict[str, Run] = {}
    prepared: dict[str, float] = {}
    failed: dict[str, str] = {}

    def make(name: str, factory: Callable[[], Run]) -> None:
        print(f"  preparing {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            run = factory()
            with torch.inference_mode():
                run(example)  # compilation happens here for some
        except Exception as error:  # a candidate that cannot be built is a finding, not a crash
            failed[name] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160]}"
            return
        runs[name], prepared[name] = run, time.perf_counter() - start

    def eager() -> Run:
        return lambda windows: model(windows).float()

    def bfloat16() -> Run:
        def run(windows: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(windows).float()
        return run

    def channels_last() -> Run:
        net = build_copy(model).to(memory_format=torch.channels_last_3d)
        return lambda windows: net(windows.contiguous(memory_format=torch.channels_last_3d)).float()

    def compiled() -> Run:
        net = torch.compile(build_copy(model))
        return lambda windows: net(windows).float()

    def onnxruntime() -> Run:
        import onnxruntime as ort

        path = workdir / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return one_at_a_time(lambda w: session.run(None, {name: w})[0])

    def openvino_model():
        ov = import_openvino()

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ov.convert_model(model, example_input=example)

    def openvino(quantise: dict | None = None, precision: str = "f32") -> Callable[[], Run]:
        def factory() -> Run:
            ov = import_openvino()

            converted = openvino_model()
            if quantise is not None:
                import nncf

                converted = nncf.quantize(converted, nncf.Dataset(calibration), subset_size=len(calibration),
                                          **quantise)
            compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                                  "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()
            return one_at_a_time(lambda w: request.infer([w])[0])
        return factory

    import nncf

    make(BASELINE, eager)
    make("PyTorch bf16 autocast", bfloat16)
    make("PyTorch fp32 channels-last", channels_last)
    make("torch.compile (inductor) fp32", compiled)
    make("ONNX Runtime fp32", onnxruntime)
    make("OpenVINO fp32", openvino())
    make("OpenVINO bf16", openvino(precision="bf16"))
    make("OpenVINO int8 (NNCF)", openvino({}))
    make("OpenVINO int8 (NNCF, transformer scheme)", openvino({"model_type": nncf.ModelType.TRANSFORMER}))
    return runs, prepared, failed


def build_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy, so that one candidate's changes (memory format, compilation) touch no other."""
    import copy

    return copy.deepcopy(model)


def windows_of(image: torch.Tensor, roi: tuple[int, ...], count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random ``roi`` windows of a pre-processed (C, ...) image, zero-padded where it is smaller."""
    pad = [(0, 0)] + [(0, max(r - s, 0)) for s, r in zip(image.shape[1:], roi)]
    array = np.pad(image.numpy(), pad)
    out = []
    for _ in range(count):
        start = [rng.integers(0, s - r + 1) for s, r in zip(array.shape[1:], roi)]
        out.append(np.ascontiguousarray(array[(slice(None), *(slice(b, b + r) for b, r in zip(start, roi)))])[None])
    return out


def main() -> int:
    from missu.data.datasets import load_cases
    from missu.inference import Segmenter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="la-mri")
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "la2018" / "dataset.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration-cases", type=int, default=24, help="training cases, two windows each")
    parser.add_argument("--brats", action="store_true", help="speed rows for the BraTS-size missu too")
    parser.add_argument("--emulate-isa", choices=EMULATED_ISAS, help="as in run.py")
    args = parser.parse_args()
    if args.emulate_isa:
        limit_isa(args.emulate_isa)
    torch.manual_seed(0)

    class Trial(Segmenter):
        """The engine with one candidate in place of the network."""
        run: Run

        def _runner(self) -> Run:
            return self.run

    engine = Trial(args.model, device="cpu", backend="torch", amp=False)
    card, roi = engine.card, tuple(engine.card.roi_size)
    fold = set(card.provenance.get("validation_cases", []))
    cases = load_cases(args.dataset)
    validation = [c for c in cases if c.name in fold]
    training = [c for c in cases if c.name not in fold][: args.calibration_cases]
    if not validation or not training:
        sys.exit(f"{args.model}: {args.dataset} holds no validation or no training cases of its card")

    rng = np.random.default_rng(0)
    calibration = []
    for case in training:
        image = engine.preprocess({"image": _as_meta(sitk.ReadImage(str(case.images[0])))})["image"].as_tensor()
        calibration += windows_of(image, roi, 2, rng)
    example = torch.from_numpy(calibration[0])

    workdir = Path(tempfile.mkdtemp(prefix="missu-runtimes-"))
    print(f"{args.model}: candidates", file=sys.stderr, flush=True)
    runs, prepared, failed = candidates(engine.model, example, calibration, workdir)
    with torch.inference_mode():
        speed = interleaved({n: (lambda r=r: r(example)) for n, r in runs.items()}, args.repeats, torch.device("cpu"))

    truth_dice: dict[str, list[float]] = {n: [] for n in runs}
    agreement: dict[str, list[float]] = {n: [] for n in runs if n != BASELINE}
    for case in validation:
        image = sitk.ReadImage(str(case.images[0]))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label))) > 0
        labels = {}
        for name, run in runs.items():
            engine.run = run
            labels[name] = sitk.GetArrayFromImage(engine.segment([image]).labels) > 0
            truth_dice[name].append(dice(labels[name], truth))
        for name in agreement:
            agreement[name].append(dice(labels[name], labels[BASELINE]))
        print(f"  {case.name}: " + ", ".join(f"{n} {truth_dice[n][-1]:.4f}" for n in runs), file=sys.stderr)

    brats: dict[str, list[float]] = {}
    if args.brats:
        print("missu, BraTS size: candidates", file=sys.stderr, flush=True)
        big = build("missu").eval()
        x = torch.randn(1, 4, *ROI)
        noise = [torch.randn(1, 4, *ROI).numpy() for _ in range(8)]
        big_runs, big_prepared, big_failed = candidates(big, x, noise, workdir)
        with torch.inference_mode():
            brats = interleaved({n: (lambda r=r: r(x)) for n, r in big_runs.items()}, max(3, args.repeats // 2),
                                torch.device("cpu"))
        brats_prepared, brats_failed = big_prepared, big_failed

    isa = cpu_isa()
    base = statistics.median(speed[BASELINE])
    reference = statistics.mean(truth_dice[BASELINE])
    command = f"python benchmarks/runtimes.py --model {args.model}{' --brats' if args.brats else ''}" + (
        f" --emulate-isa {args.emulate_isa}" if args.emulate_isa else "")
    lines = [
        f"# Runtimes for {args.model}'s windows: {isa_tag(isa)}",
        "",
        f"Machine: {machine(torch.device('cpu'))}.",
        "Instruction sets: " + ", ".join(f"{k} {'yes' if v is True else 'no' if v is False else v}"
                                         for k, v in isa.items()) + ".",
        f"Measured {time.strftime('%Y-%m-%d')} by `{command}`: one {'x'.join(map(str, roi))} window "
        f"({card.network.in_channels} channel(s)) per call, every candidate warmed up, then {args.repeats} "
        "interleaved repeats (order rotating); medians (range); ratios against PyTorch fp32 in the same run. "
        f"Accuracy: the whole engine on the card's {len(validation)} validation cases with each candidate in place "
        f"of the network; guard: per-case Dice agreement with PyTorch fp32 >= {MIN_AGREEMENT}, mean Dice within "
        f"{MAX_DICE_CHANGE * 100:.1f} points. int8 is calibrated on {len(calibration)} windows of "
        f"{len(training)} training cases.",
        "",
        "| runtime | window (s) | vs PyTorch fp32 | one-off preparation (s) | mean Dice vs expert | change (points) "
        "| agreement: min (mean) | guard |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in runs:
        median = statistics.median(speed[name])
        mean = statistics.mean(truth_dice[name])
        agree = agreement.get(name)
        ok = agree is None or (min(agree) >= MIN_AGREEMENT and abs(mean - reference) <= MAX_DICE_CHANGE)
        lines.append(
            f"| {name} | {spread(speed[name])} | {ratio(median, base)} | {prepared[name]:.1f} | {mean:.4f} | "
            f"{(mean - reference) * 100:+.2f} | "
            + (f"{min(agree):.4f} ({statistics.mean(agree):.4f})" if agree else "-")
            + f" | {'reference' if agree is None else 'pass' if ok else 'FAIL'} |"
        )
    lines += [f"| {name} | failed: {why} | | | | | | |" for name, why in failed.items()]
    if brats:
        big_base = statistics.median(brats[BASELINE])
        lines += [
            "",
            f"BraTS-size `missu` (4 channels, {'x'.join(map(str, ROI))} window, random weights: speed only; int8 "
            "calibrated on noise):",
            "",
            "| runtime | window (s) | vs PyTorch fp32 | one-off preparation (s) |",
            "|---|---|---|---|",
            *[f"| {n} | {spread(t)} | {ratio(statistics.median(t), big_base)} | {brats_prepared[n]:.1f} |"
              for n, t in brats.items()],
            *[f"| {n} | failed: {why} | | |" for n, why in brats_failed.items()],
        ]
    report = "\n".join(lines) + "\n"
    print(report)
    (ROOT / "benchmarks" / "results" / f"runtimes-{args.model}-{isa_tag(isa)}.md").write_text(report)
    return 0


def _as_meta(image: sitk.Image):
    """A one-channel SimpleITK image as the engine's pre-processing takes it."""
    from monai.data import MetaTensor

    from missu.data.geometry import array_xyz, ras_affine

    return MetaTensor(torch.from_numpy(array_xyz(image).astype(np.float32)[None]), affine=ras_affine(image))


if __name__ == "__main__":
    sys.exit(main())
