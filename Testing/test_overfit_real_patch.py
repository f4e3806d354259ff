"""Training signal on real data: MISSU with self-distillation overfits one left-atrium patch."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from conftest import shared_data
from missu.network import MISSULoss, build_model, preset_config

CASE = "la_06SR5RBREL16DQ6M8LWS.nii.gz"


def _real_patch(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data(f"la2018/imagesTr/{CASE}")))).astype(np.float32)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data(f"la2018/labelsTr/{CASE}"))))
    centre = np.round(np.argwhere(label > 0).mean(axis=0)).astype(int)
    box = tuple(slice(c - size, c + size, 2) for c in centre)  # a 2x-subsampled box that reaches the wall
    patch, target = image[box], label[box]
    patch = (patch - patch.mean()) / patch.std()
    assert 0.05 < target.mean() < 0.95, "the patch should hold both atrium and background"
    return torch.from_numpy(patch)[None, None], torch.from_numpy(target.astype(np.int64))[None, None]


def test_loss_decreases_when_overfitting_one_real_patch():
    torch.manual_seed(0)
    x, y = _real_patch()
    config = preset_config(
        "missu-small", in_channels=1, out_channels=2, roi_size=(32, 32, 32), widths=(8, 16, 16, 32),
        encoder_blocks=(1, 1, 1, 1), embed_dim=64, num_heads=4, depth=1, mlp_dim=128, dropout=0.0, stem_dropout=0.0,
    )
    model = build_model(config).train()
    criterion = MISSULoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        optimizer.zero_grad()
        loss, parts = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        history.append(parts)
    first, last = history[0], history[-1]
    assert last["total"] < 0.5 * first["total"], (first, last)
    assert last["seg"] < 0.5 * first["seg"]
    assert last["aux"] < first["aux"], "the LMSF teacher must learn through its auxiliary heads"
    model.eval()
    with torch.no_grad():
        dice = 2 * ((model(x).argmax(1) == 1) & (y[:, 0] == 1)).sum() / ((model(x).argmax(1) == 1).sum() + (y == 1).sum())
    assert dice > 0.8, f"Dice after overfitting {dice:.3f}"
