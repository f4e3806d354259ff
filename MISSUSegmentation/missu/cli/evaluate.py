"""``missu evaluate``: segment the cases of an MSD ``dataset.json`` and score them against their labels; with
several models (the folds of a cross-validation), each case is scored by the model that held it out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import MISSUError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice, Jaccard, 95HD, ASD (medpy definitions) of a model on a labelled dataset")
    p.add_argument("--model", action="append",
                   help="bundle name or path (default la-mri); repeat it with the folds of a cross-validation and "
                        "--validation-only for the out-of-fold evaluation")
    p.add_argument("--dataset", type=Path, required=True, help="MSD-format dataset.json")
    p.add_argument("--key", default="training", help="list in dataset.json to use (default: training)")
    p.add_argument("--validation-only", action="store_true",
                   help="only the validation cases recorded in the model card (the model's own held-out fold)")
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="auto", help="runtime of the network: auto, torch or openvino (see missu segment)")
    p.add_argument("--precision", choices=("auto", "fp32"), default="auto",
                   help="auto: bf16 where the hardware computes it natively (CUDA; CPUs with AMX or AVX-512 BF16); "
                        "fp32: float32 everywhere (see missu segment)")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--json", action="store_true", help="print per-case and mean metrics as JSON")
    p.set_defaults(func=run)


def _fmt(value: float | None, scale: float = 1.0) -> str:
    return "   n/a" if value is None else f"{value * scale:6.2f}"


def _held_out(models: list[str], cards: list) -> dict[str, int]:
    """Case name -> index of the model that held it out, checking that the models are folds of one
    cross-validation: each records its validation cases, no case is held out twice, and the labels agree."""
    owner: dict[str, int] = {}
    for i, (model, card) in enumerate(zip(models, cards)):
        cases = card.provenance.get("validation_cases")
        if not cases:
            advice = "leave it out of the --model list" if len(models) > 1 else "drop --validation-only"
            raise MISSUError(f"model {model}: its card records no validation cases; {advice}")
        if (card.labels, card.regions) != (cards[0].labels, cards[0].regions):
            raise MISSUError(f"model {model}: its labels or regions differ from those of {models[0]}")
        for case in cases:
            if case in owner:
                raise MISSUError(f"models {models[owner[case]]} and {model} both hold out case {case}: "
                                 "not the folds of one cross-validation")
            owner[case] = i
    return owner


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..bundle import read_card
    from ..data.datasets import dataset_info, load_cases, read_case, remap_labels
    from ..evaluation import case_metrics, summarize
    from ..inference import Segmenter
    from .models import fetch

    models = args.model or ["la-mri"]
    if len(models) > 1 and not args.validation_only:
        raise MISSUError("several --model: an out-of-fold evaluation, which needs --validation-only (each case is "
                         "scored by the model that held it out)")
    paths = [fetch(m) for m in models]  # a registry model's download shown on stderr
    if len({p.resolve() for p in paths}) != len(paths):
        raise MISSUError(f"--model: {', '.join(models)}: a model is given more than once")
    cards = [read_card(p) for p in paths]  # checked before any weights load
    owner = _held_out(models, cards) if args.validation_only else {}
    segmenters: dict[int, Segmenter] = {}  # loaded on first use

    def segmenter(index: int) -> Segmenter:
        if index not in segmenters:
            segmenters[index] = Segmenter(paths[index], device=args.device, tta=args.tta, backend=args.backend,
                                          amp=args.precision == "auto")
        return segmenters[index]

    card = cards[0]
    info = dataset_info(args.dataset)
    if sorted(info.labels) != sorted(lab.value for lab in card.labels):
        raise MISSUError(f"{args.dataset}: declares labels {sorted(info.labels)}; model {models[0]} segments "
                         f"{[lab.value for lab in card.labels]}: evaluate a model on data labelled as it segments")
    only = list(owner) if args.validation_only else None
    cases = load_cases(args.dataset, key=args.key, only=only, missing_ok=True)
    label_map = info.label_map
    label_values = list(info.labels) + list(label_map)
    per_case, skipped = {}, {name: "not in the dataset" for name in sorted(set(only or ()) - {c.name for c in cases})}
    for case in tqdm(cases, desc="evaluate", unit="case", disable=None, file=sys.stderr):
        try:
            channels, label = read_case(case, label_values)  # the same checks as training, read once
        except MISSUError as exc:
            skipped[case.name] = str(exc)
            continue
        result = segmenter(owner.get(case.name, 0)).segment(channels, names=list(case.images))
        truth = remap_labels(label, label_map)
        per_case[case.name] = case_metrics(result.labels, truth, card)
    for name, reason in skipped.items():
        print(f"missu evaluate: skipped case {name}: {reason}", file=sys.stderr)
    if not per_case:
        raise MISSUError(f"{args.dataset}: no case could be evaluated ({len(skipped)} skipped)")
    summary = summarize(per_case)
    if args.json:
        used = next(iter(segmenters.values()))
        report = {"model": card.name, "dataset": str(args.dataset), "tta": args.tta, "backend": used.backend,
                  "precision": used.precision, "cases": per_case, "mean": summary, "skipped": skipped}
        if len(models) > 1:
            report["model_of_case"] = {name: models[owner[name]] for name in per_case}
        print(json.dumps(report, indent=2))
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
    if len(models) > 1:
        print(f"out of fold: each case scored by the one of {len(models)} models that held it out", file=sys.stderr)
    print("distances: 95HD (both directions pooled) and ASD (result to reference) in voxels, as the published "
          "LA reference, then in mm", file=sys.stderr)
    return 0
