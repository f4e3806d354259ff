"""What an ensemble bundle costs at inference: ``missu segment``'s engine on one LA case with bundles of 1, 2 and 5
copies of a bundle's network (an ensemble of N cross-validation folds computes exactly this much).

    python benchmarks/ensemble.py [--model la-mri] [--members 1 2 5] [--device cpu|cuda] [--backend auto] [--repeats 3]

The engine (pre-processing, sliding window, post-processing) on the bundle's first validation case, each bundle
warmed up (OpenVINO converts it once), then timed in turn with the order rotating (``run.interleaved``); medians
and ranges, and each as a ratio of the one-network time measured in the same run. Writes
``benchmarks/results/ensemble-<model>-<device>-<backend>.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from run import interleaved, machine, ratio, spread

ROOT = Path(__file__).resolve().parents[1]


def perturbed(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The weights with a tiny seeded change: members as distinct as folds are (identical copies would be merged
    into one by OpenVINO's common-subexpression elimination, and cost nothing)."""
    generator = torch.Generator().manual_seed(seed)
    return {k: v + 1e-4 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
            for k, v in state.items()}


def main() -> int:
    from missu.bundle import Bundle, ensemble_state_dict, load_bundle, resolve_bundle
    from missu.inference import Segmenter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="la-mri")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backend", default="auto", help="auto, torch or openvino (as missu segment)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "la2018")
    args = parser.parse_args()

    single = load_bundle(resolve_bundle(args.model))
    case = single.card.provenance["validation_cases"][0]
    image = args.data / "imagesTr" / f"{case}.nii.gz"
    segmenters = {}
    for n in args.members:
        # weights_sha256 cleared: the OpenVINO cache is keyed by it, and these weights are not the card's
        card = single.card.with_changes(members=n, weights_sha256="")
        weights = single.state_dict if n == 1 else ensemble_state_dict([perturbed(single.state_dict, i) for i in range(n)])
        segmenters[n] = Segmenter(Bundle(card, single.path, weights), device=args.device, backend=args.backend)
    print(f"{args.model}: {case}, {', '.join(map(str, args.members))} member(s)", file=sys.stderr, flush=True)
    with torch.inference_mode():
        times = interleaved({n: (lambda s=s: s.segment_files([image])) for n, s in segmenters.items()},
                            args.repeats, torch.device(args.device))
    base = statistics.median(times[args.members[0]])
    backend = segmenters[args.members[0]].backend
    lines = [f"# Ensemble cost at inference: {args.model}", "",
             f"Machine: {machine(torch.device(args.device))}. Device: {args.device}, backend: {backend}. Case: `{case}` (whole engine, "
             f"{args.repeats} interleaved repeats after a warm-up). Ratios are against {args.members[0]} member(s) "
             "in this run.", "",
             "| members | seconds, median (range) | ratio |", "|---|---|---|"]
    lines += [f"| {n} | {spread(t)} | {ratio(statistics.median(t), base)} |" for n, t in times.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    target = ROOT / "benchmarks" / "results" / f"ensemble-{args.model}-{args.device}-{backend}.md"
    target.write_text(text)
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
