"""``missu evaluate``: segment the cases of an MSD ``dataset.json`` and score them against their labels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import MISSUError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice, Jaccard, 95HD, ASD (medpy definitions) of a model on a labelled dataset")
    p.add_argument("--model", default="la-mri", help="bundle name or path")
    p.add_argument("--dataset", type=Path, required=True, help="MSD-format dataset.json")
    p.add_argument("--key", default="training", help="list in dataset.json to use (default: training)")
    p.add_argument("--validation-only", action="store_true",
                   help="only the validation cases recorded in the model card (the model's own held-out fold)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto", help="runtime of the network: auto, torch or openvino (see missu segment)")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--json", action="store_true", help="print per-case and mean metrics as JSON")
    p.set_defaults(func=run)


def _fmt(value: float | None, scale: float = 1.0) -> str:
    return "   n/a" if value is None else f"{value * scale:6.2f}"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.datasets import dataset_info, load_cases, read_case, remap_labels
    from ..evaluation import case_metrics, summarize
    from ..inference import Segmenter

    segmenter = Segmenter(args.model, device=args.device, tta=args.tta, backend=args.backend)
    card = segmenter.card
    only = card.provenance.get("validation_cases") if args.validation_only else None
    if args.validation_only and not only:
        raise MISSUError(f"model {card.name}: its card records no validation cases; drop --validation-only")
    cases = load_cases(args.dataset, key=args.key, only=only, missing_ok=True)
    label_map = dataset_info(args.dataset).label_map
    label_values = [lab.value for lab in card.labels] + list(label_map)
    per_case, skipped = {}, {name: "not in the dataset" for name in sorted(set(only or ()) - {c.name for c in cases})}
    for case in tqdm(cases, desc="evaluate", unit="case", disable=None, file=sys.stderr):
        try:
            channels, label = read_case(case, label_values)  # the same checks as training, read once
        except MISSUError as exc:
            skipped[case.name] = str(exc)
            continue
        result = segmenter.segment(channels, names=list(case.images))
        truth = remap_labels(label, label_map)
        per_case[case.name] = case_metrics(result.labels, truth, card)
    for name, reason in skipped.items():
        print(f"missu evaluate: skipped case {name}: {reason}", file=sys.stderr)
    if not per_case:
        raise MISSUError(f"{args.dataset}: no case could be evaluated ({len(skipped)} skipped)")
    summary = summarize(per_case)
    if args.json:
        print(json.dumps({"model": card.name, "dataset": str(args.dataset), "cases": per_case, "mean": summary,
                          "skipped": skipped}, indent=2))
        return 0
    header = f"{'case':28} {'segment':16} {'Dice%':>6} {'Jacc%':>6} {'HD95':>6} {'ASD':>6} {'HD95mm':>6} {'ASDmm':>6}"
    print(header)
    rows = [*per_case.items(), (f"mean of {len(per_case)}", summary)]
    for name, groups in rows:
        for group, m in groups.items():
            print(f"{name[:28]:28} {group[:16]:16} {_fmt(m['dice'], 100)} {_fmt(m['jaccard'], 100)} "
                  f"{_fmt(m['hd95'])} {_fmt(m['asd'])} {_fmt(m['hd95_mm'])} {_fmt(m['asd_mm'])}")
    for group, m in summary.items():
        print(f"{group}: Dice {100 * m['dice']:.2f} +- {100 * m['dice_se']:.2f} % (mean +- standard error), "
              f"{m['failed']} of {m['cases']} case(s) failed (empty prediction or reference)")
    print("distances: 95HD (both directions pooled) and ASD (result to reference) in voxels, as the published "
          "LA reference, then in mm", file=sys.stderr)
    return 0
