"""Tables of the self-distillation A/B from the runs of ``run.sh``: per-seed means and the per-case paired
difference (MISSU with its LMSF teacher minus the same recipe without it), mean +- standard error.

    python docs/experiments/distillation/summarize.py [RUNS_DIR]   # default runs/distillation
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

ARMS = ("missu", "ablation")
METRICS = (("dice", 100, "Dice %"), ("jaccard", 100, "Jaccard %"), ("hd95", 1, "95HD (vx)"), ("asd", 1, "ASD (vx)"))


def se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/distillation")
    results: dict[str, dict[int, dict]] = {arm: {} for arm in ARMS}
    for path in sorted(runs.glob("*-seed*.metrics.json")):
        arm, seed = path.name.split(".")[0].rsplit("-seed", 1)
        events = [json.loads(line) for line in (runs / f"{arm}-seed{seed}.events.jsonl").read_text().splitlines()]
        finished = next(e for e in events if e["event"] == "finished")
        results[arm][int(seed)] = {"metrics": json.loads(path.read_text()), "seconds": finished["seconds"]}
    print("| arm | seed | " + " | ".join(label for _, _, label in METRICS) + " | failed | training s |")
    print("|---|---|" + "---|" * (len(METRICS) + 2))
    for arm in ARMS:
        for seed, run in sorted(results[arm].items()):
            mean = run["metrics"]["mean"]["left atrium"]
            cells = [f"{mean[m] * scale:.2f} +- {mean[m + '_se'] * scale:.2f}" for m, scale, _ in METRICS]
            print(f"| {arm} | {seed} | " + " | ".join(cells) + f" | {mean['failed']} | {run['seconds']:.0f} |")
    seeds = sorted(set(results["missu"]) & set(results["ablation"]))
    if not seeds:
        return
    cases = sorted(results["missu"][seeds[0]]["metrics"]["cases"])

    def per_case(arm: str, metric: str) -> np.ndarray:  # cases x seeds
        return np.array([[results[arm][s]["metrics"]["cases"][c]["left atrium"][metric] for s in seeds] for c in cases])

    print(f"\nPaired over {len(cases)} validation cases (each case's value averaged over seeds {seeds}); "
          "difference = missu - ablation:\n")
    print("| metric | missu | ablation | difference | cases where missu is better | Wilcoxon p |")
    print("|---|---|---|---|---|---|")
    for metric, scale, label in METRICS:
        a, b = per_case("missu", metric).mean(1) * scale, per_case("ablation", metric).mean(1) * scale
        d = a - b
        better = int(((d > 0) if metric in ("dice", "jaccard") else (d < 0)).sum())
        p = wilcoxon(a, b).pvalue  # two-sided signed-rank test on the paired cases
        print(f"| {label} | {a.mean():.2f} +- {se(a):.2f} | {b.mean():.2f} +- {se(b):.2f} | "
              f"{d.mean():+.2f} +- {se(d):.2f} | {better} of {len(cases)} | {p:.3f} |")
    seed_diffs = np.array([
        np.mean([results["missu"][s]["metrics"]["cases"][c]["left atrium"]["dice"] for c in cases])
        - np.mean([results["ablation"][s]["metrics"]["cases"][c]["left atrium"]["dice"] for c in cases])
        for s in seeds
    ]) * 100
    print(f"\nPer seed, mean Dice difference (points): {', '.join(f'{d:+.2f}' for d in seed_diffs)}")


if __name__ == "__main__":
    main()
