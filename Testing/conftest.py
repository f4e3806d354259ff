"""Shared fixtures: where the team's real data lives, and small network configurations."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "MISSUSegmentation"  # the Slicer module and its Qt-free helpers
SHARED_DATA = Path(os.environ.get("MISSU_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_data(relative: str) -> Path:
    """A path under ``../shared/data``; skips the test when the team's data is not beside the checkout."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    return path


def missing_tool(what: str) -> None:
    """Skip a test whose outside tool (a Debian program, an optional package) is not installed; fail instead
    where ``MISSU_REQUIRE_TOOLS`` is set, as CI sets it, so that CI never passes by skipping."""
    if os.environ.get("MISSU_REQUIRE_TOOLS"):
        pytest.fail(f"{what} is not installed (MISSU_REQUIRE_TOOLS is set)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture
def tiny_config():
    """A MISSU small enough to train a few steps on the CPU in seconds."""
    from missu.network import preset_config

    return preset_config(
        "missu-small", in_channels=2, out_channels=3, roi_size=(16, 16, 16), widths=(4, 8, 8, 16),
        encoder_blocks=(1, 1, 1, 1), embed_dim=32, num_heads=2, depth=1, mlp_dim=64,
    )


def la_dataset(folder: Path, cases: Sequence[str]) -> Path:
    """A ``dataset.json`` in ``folder`` listing ``cases`` of ``../shared/data/la2018`` by absolute path."""
    root = shared_data("la2018")
    dataset = folder / "dataset.json"
    dataset.write_text(json.dumps({
        "labels": {"0": "background", "1": "left atrium"}, "modality": {"0": "LGE-MRI"},
        "training": [{"image": str(root / f"imagesTr/{c}.nii.gz"), "label": str(root / f"labelsTr/{c}.nii.gz")}
                     for c in cases],
    }))
    return dataset


def small_card(in_channels: int = 1, labels=((1, "left atrium"),), spacing=None, roi=(32, 32, 32), **changes):
    """A model card for a small random network (tests of the engine, not of accuracy)."""
    from missu.bundle import Channel, ModelCard
    from missu.bundle.terminology import label_for
    from missu.network import preset_config

    names = ["image"] if in_channels == 1 else ["flair", "t1c", "t1", "t2"][:in_channels]
    config = preset_config(
        "missu-small", in_channels=in_channels, out_channels=len(labels) + 1, roi_size=roi,
        widths=(4, 8, 8, 16), encoder_blocks=(1, 1, 1, 1), embed_dim=32, num_heads=2, depth=1, mlp_dim=64,
    )
    return ModelCard(
        name="test", version="0", description="test model", preset="missu-small", network=config,
        inputs=tuple(Channel(n, aliases=(n,)) for n in names), labels=tuple(label_for(v, n) for v, n in labels),
        spacing=spacing, **changes,
    )


@pytest.fixture
def make_bundle(tmp_path):
    """``make_bundle(**card_options) -> Path`` of a saved bundle with random weights."""
    import torch

    from missu.bundle import save_bundle
    from missu.network import build_model

    def make(name: str = "bundle", **options):
        card = small_card(**options)
        torch.manual_seed(0)
        return save_bundle(tmp_path / name, card, build_model(card.network, inference=True).state_dict())

    return make


@pytest.fixture
def phantom(tmp_path):
    """``phantom(name, spacing, direction, origin, size) -> (path, cube mask [i,j,k])``: a bright cube."""
    import numpy as np
    import SimpleITK as sitk

    def make(name="phantom.nii.gz", spacing=(1.0, 1.0, 1.0), direction=None, origin=(0.0, 0.0, 0.0),
             size=(40, 36, 28), box=((10, 22), (8, 20), (6, 16)), value=100.0):
        rng = np.random.default_rng(0)
        array = rng.normal(10.0, 1.0, size).astype(np.float32)  # [i, j, k]
        mask = np.zeros(size, bool)
        mask[tuple(slice(a, b) for a, b in box)] = True
        array[mask] = value
        image = sitk.GetImageFromArray(array.transpose(2, 1, 0).copy())
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        if direction is not None:
            image.SetDirection(direction)
        path = tmp_path / name
        sitk.WriteImage(image, str(path))
        return path, mask

    return make


class ThresholdNet(torch.nn.Module):
    """Stands in for a trained network in geometry tests: class 1 wherever the (z-scored) input exceeds 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.ones_like(x[:, :1]), x[:, :1]], dim=1) * 10


@pytest.fixture
def mrml_scene():
    """A real MRML scene (slicer-core wheel) with the segmentations logic, as Slicer sets it up."""
    import sys

    slicer = pytest.importorskip("slicer")
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations.SetMRMLScene(scene)
    segmentations.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic("Segmentations", segmentations)
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = scene
    yield scene
    slicer.mrmlScene = previous
