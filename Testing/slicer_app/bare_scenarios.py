"""A fresh Slicer: the module loads and opens its panel with only what Slicer's own Python holds, and asks for
the rest. Run by ``.ci/run`` in a virtual environment holding exactly Slicer's packages (see
``../shared/slicer-python/README.md``), once per release (``MISSU_SLICER_RELEASE``)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from app import Harness

RELEASE = os.environ["MISSU_SLICER_RELEASE"]
CORE_PACKAGES = ("torch", "monai", "nibabel", "einops", "safetensors", "pyyaml", "tqdm", "matplotlib", "slicerio",
                 "jsonschema", "highdicom")


@pytest.fixture(scope="module")
def harness():
    return Harness(RELEASE)


def test_this_environment_is_a_bare_slicer():
    for name in ("torch", "monai", "nibabel", "safetensors", "yaml", "slicerio", "jsonschema", "highdicom"):
        assert importlib.util.find_spec(name) is None, f"{name} is installed: not a bare Slicer"


def test_module_loads_and_panel_asks_for_the_missing_packages(harness):
    module, widget = harness.open_panel()
    ui = widget.ui
    assert ui.installButton.visible and not ui.segmentButton.enabled and not ui.trainButton.enabled
    assert not ui.exportDicomSegButton.enabled
    for name in CORE_PACKAGES:
        assert name in ui.statusLabel.text, name
    assert "Left atrium" in ui.modelDescription.text  # the model card reads without torch
    assert harness.dialogs.errors == [] and harness.exceptions == []


def test_install_plan_never_replaces_what_slicer_ships():
    from MISSUSegmentationLib import dependencies

    plan = dependencies.plan()
    assert plan.torch is not None and plan.torch.startswith("torch>=")
    assert {p.split(">")[0].split("<")[0].lower() for p in plan.packages} == set(CORE_PACKAGES) - {"torch"}
    pinned = {c.split("==")[0].lower() for c in plan.constraints}
    assert {"numpy", "scipy", "simpleitk", "vtk", "requests", "pydicom", "pillow", "packaging"} <= pinned
    assert plan.refused == [] and not plan.restart_needed
    calls = []
    dependencies.install(plan, pip_install=calls.append)
    assert [call[-1] for call in calls] == [plan.torch, *plan.packages]  # one by one, torch first
    assert all(call[0] == "-c" for call in calls)  # every call constrained to Slicer's versions
