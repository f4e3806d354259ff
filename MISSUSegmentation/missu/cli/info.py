"""``missu info``: parameters and FLOPs of a preset."""

from __future__ import annotations

import argparse
import json

from ..network import PRESETS, preset_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters and FLOPs of a network preset")
    p.add_argument("--preset", default="missu", choices=sorted(PRESETS))
    p.add_argument("--in-channels", type=int, help="input channels (preset default: 4)")
    p.add_argument("--classes", type=int, help="output classes including background (preset default: 4)")
    p.add_argument("--roi", type=int, nargs=3, metavar=("X", "Y", "Z"), help="window size, multiples of 8")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..network.summary import summarize  # torch: loaded when the command runs

    config = preset_config(
        args.preset, in_channels=args.in_channels, out_channels=args.classes, roi_size=tuple(args.roi) if args.roi else None
    )
    summary = {"preset": args.preset, **summarize(config)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    params, ref = summary["parameters"], summary["reference"]
    roi = "x".join(map(str, config.roi_size))
    print(f"preset {args.preset}: {config.in_channels} channel(s) in, {config.out_channels} classes out, window {roi}")
    print(f"{'':34}{'this network':>14}{'reference':>12}")
    print(f"{'parameters, inference (M)':34}{params['inference'] / 1e6:14.2f}{ref['parameters'] / 1e6:12.2f}")
    print(f"{'parameters, training (M)':34}{params['training'] / 1e6:14.2f}{'':>12}")
    print(f"{'GMAC per window, inference':34}{summary['gmac_per_window']:14.1f}{ref['gmac']:12.1f}")
    print(f"reference: {ref['what']}")
    return 0
