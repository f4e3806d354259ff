"""``missu`` command line: one sub-module per sub-command, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import MISSUError
from . import dataset, evaluate, export, info, segment, train

COMMANDS = (segment, evaluate, train, export, dataset, info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="missu", description="MISSU 3D medical image segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MISSUError, OSError) as exc:
        if os.environ.get("MISSU_DEBUG"):
            raise
        print(f"missu {args.command}: error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"event": "error", "message": str(exc)}), flush=True)
        return 1
