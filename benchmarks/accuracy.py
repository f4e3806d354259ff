"""The accuracy guard of the fast paths, on the full validation fold of a bundle.

    python benchmarks/accuracy.py [--model la-mri] [--dataset ../shared/data/la2018/dataset.json]

For every validation case in the model card, the labels of each kept backend (OpenVINO where installed, and
the engine's default path) are compared with PyTorch float32 on the reference path (no foreground crop,
overlap 0.5): Dice agreement per case must be >= 0.99, and the fold's mean Dice against the expert labels must
stay within 0.2 points. Prints a markdown table and writes ``benchmarks/results/accuracy-<model>.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from run import cpu_isa, isa_tag, machine

ROOT = Path(__file__).resolve().parents[1]
MIN_AGREEMENT, MAX_DICE_CHANGE = 0.99, 0.002


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def main() -> int:
    from missu.data.datasets import load_cases
    from missu.devices import precision_name
    from missu.inference import Segmenter
    from missu.inference.backends import openvino_available

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="la-mri")
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "la2018" / "dataset.json")
    args = parser.parse_args()

    paths = {
        "reference (torch fp32)": Segmenter(args.model, device="cpu", backend="torch", amp=False,
                                            foreground_crop=False, overlap=0.5, sw_batch_size=1),
        "default (torch)": Segmenter(args.model, device="cpu", backend="torch"),
    }
    if openvino_available():
        paths["default (openvino)"] = Segmenter(args.model, device="cpu", backend="openvino")
    card = paths["default (torch)"].card
    fold = set(card.provenance.get("validation_cases", []))
    cases = [c for c in load_cases(args.dataset) if c.name in fold]
    if not cases:
        sys.exit(f"{args.model}: its card lists no validation cases found in {args.dataset}")

    truth_dice: dict[str, list[float]] = {name: [] for name in paths}
    agreement: dict[str, list[float]] = {name: [] for name in paths if not name.startswith("reference")}
    seconds: dict[str, float] = dict.fromkeys(paths, 0.0)
    for case in cases:
        image = sitk.ReadImage(str(case.images[0]))
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label))) > 0
        labels = {}
        for name, segmenter in paths.items():
            start = time.perf_counter()
            labels[name] = sitk.GetArrayFromImage(segmenter.segment([image]).labels) > 0
            seconds[name] += time.perf_counter() - start
            truth_dice[name].append(dice(labels[name], truth))
        for name in agreement:
            agreement[name].append(dice(labels[name], labels["reference (torch fp32)"]))
        print(f"{case.name}: " + ", ".join(f"{n} {truth_dice[n][-1]:.4f}" for n in paths), file=sys.stderr)

    reference = statistics.mean(truth_dice["reference (torch fp32)"])
    lines = [
        f"# Accuracy of the inference paths: {args.model}, its {len(cases)} validation cases",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/accuracy.py --model {args.model}`. Guard: Dice "
        f"agreement with the reference >= {MIN_AGREEMENT} on every case, mean Dice within {MAX_DICE_CHANGE * 100:.1f} "
        "points of the reference's.",
        "",
        f"Machine: {machine(torch.device('cpu'))}; CPU instruction sets: {isa_tag(cpu_isa())}; the default paths "
        f"compute in {precision_name(torch.device('cpu'))}.",
        "",
        "| path | mean Dice vs expert | change (points) | agreement with reference: min (mean) | seconds (all cases) | guard |",
        "|---|---|---|---|---|---|",
    ]
    failed = False
    for name in paths:
        mean = statistics.mean(truth_dice[name])
        agree = agreement.get(name)
        ok = agree is None or (min(agree) >= MIN_AGREEMENT and abs(mean - reference) <= MAX_DICE_CHANGE)
        failed |= not ok
        lines.append(
            f"| {name} | {mean:.4f} | {(mean - reference) * 100:+.2f} | "
            + (f"{min(agree):.4f} ({statistics.mean(agree):.4f})" if agree else "-")
            + f" | {seconds[name]:.1f} | {'-' if agree is None else 'pass' if ok else 'FAIL'} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    (ROOT / "benchmarks" / "results" / f"accuracy-{args.model}.md").write_text(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
