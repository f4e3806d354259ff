"""``missu export``: a training run's best checkpoint as a model bundle, or several runs of one recipe (folds,
seeds) as an ensemble bundle (also while the runs go on)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model bundle from a training run's best checkpoint (several runs: "
                                      "an ensemble averaging their class probabilities)")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folder(s) of `missu train`")
    p.add_argument("--output", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--name", help="model name in the card")
    p.add_argument("--version", help="model version in the card (default 1.0)")
    p.add_argument("--description", help="description in the card")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.export import export_run  # torch: loaded when the command runs

    changes = {k: v for k, v in (("name", args.name), ("version", args.version), ("description", args.description)) if v}
    path = export_run(args.run_dirs, args.output, half=args.half, overwrite=args.overwrite, card_changes=changes)
    print(f"{path}: exported from {', '.join(map(str, args.run_dirs))}")
    if len(args.run_dirs) == 1 and not (args.run_dirs[0] / "checkpoints" / "best.pt").is_file():
        print(f"missu export: {args.run_dirs[0]} has not been validated yet (no checkpoints/best.pt): exported its "
              "last checkpoint, with no validation metrics", file=sys.stderr)
    return 0
