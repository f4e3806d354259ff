"""Training runs as a model bundle: one run's best checkpoint (or its last, when it has none), or several runs
of one recipe (cross-validation folds, seeds) as an ensemble (also while the runs go on)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..bundle import ModelCard, ensemble_state_dict, save_bundle
from ..errors import MISSUError
from ..network import build_model
from ..network.missu import DISTILL_PREFIX
from .checkpoint import load_checkpoint
from .split import SPLIT_FILE, read_split

IDENTITY_FREE = ("provenance", "weights_sha256")  # card fields that differ between runs of one model


class Member(NamedTuple):
    card: ModelCard  # with the run's provenance
    weights: dict[str, torch.Tensor]  # inference weights


def export_run(run_dirs: Path | Sequence[Path], output: Path, half: bool = False, overwrite: bool = True,
               card_changes: dict[str, Any] | None = None) -> Path:
    """Write ``output`` from the runs' ``checkpoints``: one run's network, or an ensemble of several runs whose
    cards agree in everything but provenance. ``card_changes`` edit card fields (e.g. name, description)."""
    run_dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(r) for r in run_dirs]
    if len({r.resolve() for r in run_dirs}) != len(run_dirs):
        raise MISSUError(f"{', '.join(map(str, run_dirs))}: a run is given more than once")
    if len(run_dirs) > 1 and (early := [str(r) for r in run_dirs if not (r / "checkpoints" / "best.pt").is_file()]):
        raise MISSUError(f"{', '.join(early)}: not validated yet (no checkpoints/best.pt); an ensemble takes each "
                         "member's best validated checkpoint")
    members = [_member(r) for r in run_dirs]
    if len(members) == 1:
        card, weights = members[0]
    else:
        first = members[0].card.to_dict()
        for run_dir, member in zip(run_dirs[1:], members[1:]):
            other = member.card.to_dict()
            if differ := sorted(k for k in first.keys() | other.keys()
                                if k not in IDENTITY_FREE and first.get(k) != other.get(k)):
                raise MISSUError(f"{run_dir}: not a run of the same model as {run_dirs[0]} (the cards differ in "
                                 f"{', '.join(differ)}); an ensemble needs runs of one recipe and dataset")
        # the ensemble's own held-out cases: those that no member trained on
        held_out = set.intersection(*(set(m.card.provenance.get("validation_cases", ())) for m in members))
        provenance = {
            "members": [m.card.provenance for m in members],
            "validation_cases": [c for c in members[0].card.provenance.get("validation_cases", ()) if c in held_out],
            "metrics": {},
            "created": members[0].card.provenance["created"],
        }
        card = members[0].card.with_changes(members=len(members), provenance=provenance)
        weights = ensemble_state_dict([m.weights for m in members])
    return save_bundle(output, card.with_changes(**(card_changes or {})), weights, half=half, overwrite=overwrite)


def _member(run_dir: Path) -> Member:
    """One run's exported network: its inference weights, and its card with provenance and the validation
    metrics of the exported epoch."""
    best, last = run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt"
    source = best if best.is_file() else last
    if not source.is_file():
        raise MISSUError(f"{run_dir}: no checkpoint to export")
    state = load_checkpoint(source)
    card = ModelCard.from_dict(json.loads(state["card"]), source=str(source))
    progress = state["progress"]
    history = json.loads(progress["history"])
    # the validation of these weights: the epoch the checkpoint closed (best.pt is written at the best epoch; a
    # last.pt may be later than it), none for a checkpoint taken mid-epoch
    record = {} if progress["step_in_epoch"] else next((r for r in history if r.get("epoch") == progress["epoch"]), {})
    provenance = json.loads(state.get("provenance", "{}"))  # (runs started before provenance was stored)
    split = run_dir / SPLIT_FILE
    if split.is_file():  # the run's held-out fold, the source of truth for `missu evaluate --validation-only`
        provenance["validation_cases"] = read_split(split)["validation"]
    provenance.setdefault("training", {}).update(epochs=progress["epoch"], best_epoch=progress["best_epoch"],
                                  seconds=round(progress["seconds"], 1), checkpoint=source.name)
    provenance["metrics"] = {"validation_dice": record.get("val_dice", {})}
    provenance["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    model = build_model(card.network, inference=True)
    # best.pt holds the inference weights; last.pt (or a best.pt of older runs) the distillation branch's too
    weights = {k: v for k, v in state["model"].items() if not k.startswith(DISTILL_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise MISSUError(f"{source}: the weights do not fit the network of its card ({str(exc).splitlines()[0]})") from None
    return Member(card.with_changes(provenance=provenance), model.inference_state_dict())
