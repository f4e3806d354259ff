"""``missu train``: train (or fine-tune) MISSU on an MSD dataset; JSON events on stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..network import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train MISSU; one JSON event per line on stdout (see README)")
    p.add_argument("--dataset", type=Path, required=True, help="MSD-format dataset.json")
    p.add_argument("--output", type=Path, required=True, help="run folder (checkpoints, logs, curves, bundle)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="network preset (default: the recipe's, missu)")
    p.add_argument("--config", type=Path, help="recipe YAML overriding the defaults")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("--init", help="fine-tune from this bundle (name or path)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--roi", type=int, nargs=3, metavar=("X", "Y", "Z"))
    p.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="training spacing in mm")
    p.add_argument("--no-distillation", action="store_true",
                   help="ablation: train the backbone alone (no LMSF teacher is built, no distillation term)")
    p.add_argument("--seed", type=int)
    p.add_argument("--fold", type=int, help="k-fold cross-validation: validate on this part (0-based) of --folds")
    p.add_argument("--folds", type=int, help="number of cross-validation parts (with --fold; default: the recipe's, else 5)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=run, json=True)  # stdout is JSON events only, errors included


def run(args: argparse.Namespace) -> int:
    from ..training.recipe import load_recipe
    from ..training.trainer import Trainer

    recipe = load_recipe(
        args.config, preset=args.preset, epochs=args.epochs, batch_size=args.batch_size,
        roi_size=tuple(args.roi) if args.roi else None, spacing=tuple(args.spacing) if args.spacing else None,
        distillation=False if args.no_distillation else None, seed=args.seed,
        fold=args.fold, folds=args.folds,
    )
    Trainer(args.dataset, args.output, recipe, resume=args.resume, init=args.init, device=args.device).run()
    return 0
