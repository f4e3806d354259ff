"""``curves.png``: training loss and validation Dice per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..data.atomic import atomic_path  # noqa: E402


def plot_curves(history: list[dict], path: Path) -> None:
    epochs = [r["epoch"] for r in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("loss", "-"), ("loss_seg", "--"), ("loss_aux", ":"), ("loss_distill", "-.")):
        points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
        if points:
            left.plot(*zip(*points), style, label=key.replace("loss_", "") if key != "loss" else "total")
    left.set(xlabel="epoch", ylabel="training loss", title="Loss")
    left.legend()
    validated = [r for r in history if r.get("val_dice")]
    for name in validated[0]["val_dice"] if validated else []:
        right.plot([r["epoch"] for r in validated], [r["val_dice"][name] for r in validated], "o-", label=name)
    right.set(xlabel="epoch", ylabel="Dice", title="Validation Dice", ylim=(0, 1), xlim=(0, max(epochs, default=1) + 1))
    if validated:
        right.legend()
    figure.tight_layout()
    with atomic_path(path, overwrite=True) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
