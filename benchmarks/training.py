"""How fast a training step runs in float32 and in bf16 autocast, each in PyTorch's default memory layout and in
channels-last, on this machine: the trial behind the trainer's precision and layout (``missu/devices.py``).

    python benchmarks/training.py [--config MISSUSegmentation/Resources/Recipes/la-mri.yaml] [--preset P]
                                  [--steps 8] [--repeats 4] [--emulate-isa AVX2|AVX512_CORE]

The real trainer on the real data (fold 0 of the recipe's cross-validation split): its loader and augmentation,
the network with its LMSF teacher, the loss, optimiser and schedule; only the autocast and the layout of the
network and its crops differ between the candidates. bf16 is timed only where the CPU computes it (elsewhere it is
emulated, many times slower, and never chosen). Each candidate runs ``--steps`` steps in turn with the others,
the order rotating every round (``run.interleaved``), after a warm-up round; each figure is the median seconds per
step over the rounds, with the range. The forward and backward pass alone (one batch, no loader, no optimiser) is
timed the same way, to show how much of a step the arithmetic is (with the distillation term at full weight; the
steps run at the schedule's start, where its weight is still ramping up, which changes no cost: the term is
computed either way).
Writes ``benchmarks/results/training-<recipe>[-<preset>]-<isa>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from run import EMULATED_ISAS, cpu_isa, interleaved, isa_tag, limit_isa, machine, ratio, spread

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bf16 autocast": torch.bfloat16}
LAYOUTS = {"": torch.contiguous_format, ", channels-last": torch.channels_last_3d}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "MISSUSegmentation/Resources/Recipes/la-mri.yaml")
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "la2018" / "dataset.json")
    parser.add_argument("--preset", help="network preset instead of the recipe's")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=8, help="training steps per candidate and round")
    parser.add_argument("--repeats", type=int, default=4, help="rounds")
    parser.add_argument("--emulate-isa", choices=EMULATED_ISAS, help="as in run.py")
    args = parser.parse_args()
    if args.emulate_isa:
        limit_isa(args.emulate_isa)
    with tempfile.TemporaryDirectory(prefix="missu-training-") as run_dir:
        report = measure(args, Path(run_dir))
        for handler in logging.getLogger("missu.train").handlers:
            handler.close()
    print(report)
    return 0


def measure(args: argparse.Namespace, run_dir: Path) -> str:
    """Time the candidates; the report, also written to ``benchmarks/results``."""
    from missu.devices import amp_dtype
    from missu.training.recipe import load_recipe
    from missu.training.trainer import Trainer, _float, _plain

    device = torch.device(args.device)
    recipe = load_recipe(args.config, preset=args.preset, fold=0, folds=5)
    print(f"{args.config.name}: caching the training cases", file=sys.stderr, flush=True)
    trainer = Trainer(args.dataset, run_dir, recipe, device=args.device)
    trainer.net.train()

    def batches() -> Iterator[dict]:
        epoch = 1
        while True:
            yield from trainer._loader(epoch)
            epoch += 1

    stream = batches()
    fixed = next(stream)

    def precision(dtype: torch.dtype | None):
        return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def use(dtype: torch.dtype | None, layout: torch.memory_format) -> None:
        """The only differences between the candidates."""
        trainer._autocast = lambda: precision(dtype)
        trainer.memory_format = layout
        trainer.model.to(memory_format=layout)

    def training_steps(dtype: torch.dtype | None, layout: torch.memory_format) -> Callable[[], None]:
        def run() -> None:
            use(dtype, layout)
            for _ in range(args.steps):
                trainer._step(next(stream))
        return run

    def forward_backward(dtype: torch.dtype | None, layout: torch.memory_format) -> Callable[[], None]:
        image = _plain(fixed["image"]).to(device, memory_format=layout)
        target = _plain(fixed.get("soft", fixed["label"])).to(device)

        def run() -> None:
            use(dtype, layout)
            trainer.optimizer.zero_grad(set_to_none=True)
            with precision(dtype):
                output = trainer.net(image)
            trainer.criterion(_float(output), target, 1.0)[0].backward()
        return run

    bf16 = amp_dtype(device) is not None  # in hardware
    candidates = {name + suffix: (dtype, layout) for name, dtype in PRECISIONS.items() if dtype is None or bf16
                  for suffix, layout in LAYOUTS.items()}
    print("training steps", file=sys.stderr, flush=True)
    steps = interleaved({n: training_steps(*c) for n, c in candidates.items()}, args.repeats, device)
    steps = {n: [t / args.steps for t in times] for n, times in steps.items()}
    print("forward and backward", file=sys.stderr, flush=True)
    passes = interleaved({n: forward_backward(*c) for n, c in candidates.items()}, args.repeats * 2, device)

    isa = cpu_isa() if device.type == "cpu" else {}
    base_step, base_pass = statistics.median(steps["float32"]), statistics.median(passes["float32"])
    crop = "x".join(map(str, trainer.card.roi_size))
    config = args.config.resolve().relative_to(ROOT) if args.config.resolve().is_relative_to(ROOT) else args.config
    lines = [
        f"# Training step precision and layout: {args.config.name}, {recipe.preset}, {device.type}"
        + (f" ({isa_tag(isa)})" if isa else ""),
        "",
        f"Machine: {machine(device)}.",
        *(["Instruction sets: " + ", ".join(f"{k} {'yes' if v is True else 'no' if v is False else v}"
                                            for k, v in isa.items()) + "."] if isa else []),
        f"Measured {time.strftime('%Y-%m-%d')} by `python benchmarks/training.py --config {config}"
        f"{' --preset ' + args.preset if args.preset else ''} --steps {args.steps} --repeats {args.repeats}"
        f"{' --emulate-isa ' + args.emulate_isa if args.emulate_isa else ''}`: the trainer of `{recipe.preset}` "
        f"on fold 0 of the recipe's split, {recipe.batch_size} x {recipe.crops_per_volume} crops of {crop} a step, "
        f"{args.steps} steps per candidate and round, {args.repeats} interleaved rounds after a warm-up; medians "
        "(range) of seconds per step; ratios against float32 in the same run"
        + ("." if bf16 else "; bf16 not timed: this CPU has no bf16 arithmetic (emulated, many times slower)."),
        "",
        "| precision, layout | training step, loader included (s) | vs float32 | forward + backward alone (s) "
        "| vs float32 |",
        "|---|---|---|---|---|",
        *[f"| {n} | {spread(steps[n])} | {ratio(statistics.median(steps[n]), base_step)} | {spread(passes[n])} | "
          f"{ratio(statistics.median(passes[n]), base_pass)} |" for n in candidates],
    ]
    report = "\n".join(lines) + "\n"
    name = "-".join([args.config.stem, *([args.preset] if args.preset else []), isa_tag(isa) if isa else device.type])
    (ROOT / "benchmarks" / "results" / f"training-{name}.md").write_text(report)
    return report


if __name__ == "__main__":
    sys.exit(main())
