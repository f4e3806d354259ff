"""``missu dataset import-brats``: write an MSD dataset.json for a BraTS-layout folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.naming import CONVENTIONS, MODALITIES
from ..errors import MISSUError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="dataset tools")
    actions = p.add_subparsers(dest="action", required=True)
    brats = actions.add_parser("import-brats", help="dataset.json from per-case folders of BraTS files")
    brats.add_argument("folders", type=Path, nargs="+", metavar="FOLDER", help="one or more BraTS-layout folders")
    brats.add_argument("--output", type=Path, help="dataset.json to write (default: dataset.json in the first FOLDER)")
    brats.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=list(MODALITIES),
                       help="channels to use, in this order (default: t1 t1c t2 flair)")
    brats.add_argument("--labels", default="124", choices=sorted(CONVENTIONS),
                       help="label convention of the files: 124 (ET=4, BraTS<=2020) or 123 (ET=3, BraTS 2021+)")
    brats.add_argument("--map", nargs="*", default=[], metavar="RAW:VALUE",
                       help="extra raw label values to remap, e.g. 3:1 (BraTS 2015 non-enhancing -> necrosis)")
    brats.add_argument("--overwrite", action="store_true")
    brats.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.brats import import_brats  # SimpleITK: loaded when the command runs

    try:
        label_map = {int(a): int(b) for a, b in (item.split(":") for item in args.map)}
    except ValueError:
        raise MISSUError(f"--map takes RAW:VALUE pairs of integers, got {args.map}") from None
    result = import_brats(args.folders, args.output, tuple(args.modalities), args.labels, label_map, args.overwrite)
    for case, reason in result.skipped.items():
        print(f"skipped {case}: {reason}", file=sys.stderr)
    print(f"{result.dataset}: {result.cases} case(s), {len(result.skipped)} skipped")
    return 0
