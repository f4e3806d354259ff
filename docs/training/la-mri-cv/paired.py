"""Per-case paired comparison of two ``missu evaluate --json`` reports on the same cases (e.g. the fold-0 pair
ensemble against each of its members, or a run against its ablation): each metric's mean +- standard error for
A and B, the mean of the per-case differences A - B +- its standard error, how many cases A wins, and the
two-sided Wilcoxon signed-rank p.

    python docs/training/la-mri-cv/paired.py A.json B.json [--label "left atrium"]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

METRICS = (("dice", 100, "Dice %", True), ("jaccard", 100, "Jaccard %", True), ("hd95", 1, "95HD (vx)", False),
           ("asd", 1, "ASD (vx)", False))


def se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--label", default="left atrium")
    args = parser.parse_args()
    a, b = (json.loads(path.read_text())["cases"] for path in (args.a, args.b))
    cases = sorted(set(a) & set(b))
    if len(cases) < 2:
        raise SystemExit(f"{args.a} and {args.b} share {len(cases)} case(s): nothing to pair")
    print(f"A = {args.a}\nB = {args.b}\n{len(cases)} cases scored by both (A only: {len(set(a) - set(b))}, "
          f"B only: {len(set(b) - set(a))})\n")
    print("| metric | A | B | A - B | cases where A is better | Wilcoxon p |")
    print("|---|---|---|---|---|---|")
    for metric, scale, label, higher_is_better in METRICS:
        x = np.array([a[c][args.label][metric] for c in cases]) * scale
        y = np.array([b[c][args.label][metric] for c in cases]) * scale
        d = x - y
        better = int(((d > 0) if higher_is_better else (d < 0)).sum())
        p = wilcoxon(x, y).pvalue if np.any(d) else 1.0
        print(f"| {label} | {x.mean():.2f} +- {se(x):.2f} | {y.mean():.2f} +- {se(y):.2f} | "
              f"{d.mean():+.2f} +- {se(d):.2f} | {better} of {len(cases)} | {p:.3f} |")


if __name__ == "__main__":
    main()
