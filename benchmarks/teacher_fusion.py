"""The order of the LMSF teacher's fusion: each feature projected (1x1x1) then resampled to the half-resolution grid,
or resampled first wherever it is finer (what ``missu/network/lmsf.py`` does; the same result, since resampling
averages). Times a whole training forward + backward of the network (teacher and loss included) with each order,
interleaved, in the layout and precision ``missu train`` takes on this machine.

    python benchmarks/teacher_fusion.py [--preset missu-medium] [--roi 96 80 48] [--repeats 4]

Writes ``benchmarks/results/teacher-fusion-<preset>-<isa>.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from run import cpu_isa, interleaved, isa_tag, machine, ratio, spread

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="missu-medium")
    parser.add_argument("--roi", type=int, nargs=3, default=(96, 80, 48), help="crop size (la-mri.yaml's)")
    parser.add_argument("--batch", type=int, default=2, help="crops a step (la-mri.yaml: 1 volume x 2 crops)")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    import missu.network.lmsf as lmsf
    from missu.devices import amp_dtype, precision_name, training_memory_format
    from missu.network import MISSULoss, build_model, preset_config

    device = torch.device("cpu")
    layout = training_memory_format(device, amp=True)
    dtype = amp_dtype(device)  # bf16 where the CPU computes it, as missu train
    torch.manual_seed(0)
    net = build_model(preset_config(args.preset, in_channels=1, out_channels=2, roi_size=tuple(args.roi))).train()
    net = net.to(memory_format=layout)
    image = torch.randn(args.batch, 1, *args.roi).to(memory_format=layout)
    label = (torch.rand(args.batch, 1, *args.roi) > 0.7).long()
    loss = MISSULoss()
    orders = {
        "project, then resample": lambda proj, x, size: lmsf._resize(proj(x), size),
        "on the coarser grid (lmsf.py)": lmsf._project_onto,
    }
    shipped = lmsf._project_onto

    def step(order: Callable) -> Callable[[], None]:
        def run() -> None:
            lmsf._project_onto = order
            net.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                output = net(image)
            loss(output, label)[0].backward()
        return run

    try:
        times = interleaved({name: step(order) for name, order in orders.items()}, args.repeats, device)
    finally:
        lmsf._project_onto = shipped
    isa = cpu_isa()
    base = statistics.median(times["project, then resample"])
    report = "\n".join([
        f"# LMSF teacher fusion order: {args.preset}, cpu ({isa_tag(isa)})",
        "",
        f"Machine: {machine(device)}.",
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/teacher_fusion.py --preset {args.preset} --roi "
        f"{' '.join(map(str, args.roi))} --batch {args.batch} --repeats {args.repeats}`: one training forward + backward "
        f"of {args.batch} crops ({precision_name(device, True)}, {str(layout).removeprefix('torch.')}), the orders "
        f"interleaved, {args.repeats} rounds after a warm-up; medians (range); ratios against projecting first, in the "
        "same run.",
        "",
        "| fusion order | forward + backward (s) | vs project first |",
        "|---|---|---|",
        *[f"| {n} | {spread(t)} | {ratio(statistics.median(t), base)} |" for n, t in times.items()],
    ]) + "\n"
    (ROOT / "benchmarks" / "results" / f"teacher-fusion-{args.preset}-{isa_tag(isa)}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
