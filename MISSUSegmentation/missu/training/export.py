"""A run's best checkpoint (or its last, when it has none) as a model bundle."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..bundle import ModelCard, save_bundle
from ..errors import MISSUError
from ..network import build_model
from .checkpoint import load_checkpoint


def export_run(run_dir: Path, output: Path, half: bool = False, overwrite: bool = True,
               card_changes: dict[str, Any] | None = None) -> Path:
    """Write ``output`` from ``run_dir/checkpoints``: inference weights, and the card with provenance and
    the validation metrics of the exported epoch. ``card_changes`` edit card fields (e.g. name, description)."""
    run_dir = Path(run_dir)
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
    split = run_dir / "split.json"
    if split.is_file():  # the run's held-out fold, the source of truth for `missu evaluate --validation-only`
        provenance["validation_cases"] = json.loads(split.read_text())["validation"]
    provenance.setdefault("training", {}).update(epochs=progress["epoch"], best_epoch=progress["best_epoch"],
                                  seconds=round(progress["seconds"], 1), checkpoint=source.name)
    provenance["metrics"] = {"validation_dice": record.get("val_dice", {})}
    provenance["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    card = card.with_changes(provenance=provenance, **(card_changes or {}))
    model = build_model(card.network)
    model.load_state_dict(state["model"])
    return save_bundle(output, card, model.inference_state_dict(), half=half, overwrite=overwrite)
