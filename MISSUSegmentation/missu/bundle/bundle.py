"""Bundle files: ``card.json`` + ``model.safetensors``, as a folder or a ``.zip`` holding both.

Loading never runs code from the files: the card is JSON, the weights are safetensors, and both are
checked against each other (SHA-256 recorded in the card; tensor names and shapes against the network).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..data.atomic import atomic_folder
from ..errors import MISSUError
from ..network import Ensemble, build_model
from .card import CARD_FILE, WEIGHTS_FILE, ModelCard, parse_card, read_bundle_files


@dataclass
class Bundle:
    card: ModelCard
    path: Path
    state_dict: dict[str, torch.Tensor]

    def build(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The inference network (no distillation branch) with the bundle's weights, in eval mode."""
        model = build_network(self.card)
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval().to(device)


def build_network(card: ModelCard) -> torch.nn.Module:
    """The card's inference network: one MISSU, or an :class:`Ensemble` of ``card.members`` of them."""
    if card.members == 1:
        return build_model(card.network, inference=True)
    return Ensemble([build_model(card.network, inference=True) for _ in range(card.members)])


def ensemble_state_dict(members: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The members' inference weights as one state dict of an :class:`Ensemble` (``members.<i>.<name>``)."""
    return {f"members.{i}.{name}": tensor for i, state in enumerate(members) for name, tensor in state.items()}


def _check_weights(card: ModelCard, state: dict[str, torch.Tensor], path: Path) -> None:
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_network(card).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = []
    if missing := sorted(set(expected) - set(got)):
        problems.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
    if unexpected := sorted(set(got) - set(expected)):
        problems.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    if wrong := [k for k in set(got) & set(expected) if got[k] != expected[k]]:
        k = sorted(wrong)[0]
        problems.append(f"{len(wrong)} with other shapes (e.g. {k}: {got[k]} vs {expected[k]})")
    if problems:
        raise MISSUError(f"{path}: weights do not match the card's network: " + "; ".join(problems))


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and cross-check a bundle; weights come back as float32 on the CPU."""
    path = Path(path)
    if not path.exists():
        raise MISSUError(f"{path}: no such model bundle")
    card_bytes, weights = read_bundle_files(path)
    card = parse_card(card_bytes, path)
    digest = hashlib.sha256(weights).hexdigest()
    if card.weights_sha256 != digest:
        raise MISSUError(
            f"{path}: {WEIGHTS_FILE} does not match the card (SHA-256 {digest[:12]}..., card says "
            f"{card.weights_sha256[:12] or 'nothing'}...); the bundle was altered or is incomplete"
        )
    try:
        state = load_safetensors(weights)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise MISSUError(f"{path}: {WEIGHTS_FILE} is not a valid safetensors file ({exc})") from None
    _check_weights(card, state, path)
    return Bundle(card, path, {k: v.float() if v.is_floating_point() else v for k, v in state.items()})


def save_bundle(
    directory: str | os.PathLike,
    card: ModelCard,
    state_dict: dict[str, torch.Tensor],
    half: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a bundle folder atomically; ``half`` stores floating-point weights as float16."""
    directory = Path(directory)
    dtype = torch.float16 if half else torch.float32
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state_dict.items()
    }
    if overflow := [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
        raise MISSUError(f"{directory}: weights {', '.join(overflow[:3])} are not finite"
                         + (" in float16 (too large for half precision): export without --half" if half else ""))
    weights = save_safetensors(tensors, metadata={"format": "pt", "card": card.name})
    card = card.with_changes(weights_sha256=hashlib.sha256(weights).hexdigest())
    _check_weights(card, tensors, directory)
    with atomic_folder(directory, overwrite) as temporary:
        (temporary / WEIGHTS_FILE).write_bytes(weights)
        (temporary / CARD_FILE).write_text(card.to_json() + "\n")
    return directory
