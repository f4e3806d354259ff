"""A fresh Slicer: the module loads and opens its panel with only what Slicer's own Python holds, and asks for
the rest. Run by ``.ci/run`` in a virtual environment holding exactly Slicer's packages (see
``../shared/slicer-python/README.md``), once per release (``MISSU_SLICER_RELEASE``)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from app import Harness, registry_of_the_shipped_model

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
    assert not ui.exportDicomSegButton.enabled and not ui.addReviewedCaseButton.enabled
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


def test_a_slicer_whose_own_packages_are_too_old_is_told_so_not_asked_to_install(harness, monkeypatch):
    from MISSUSegmentationLib import dependencies

    _, widget = harness.open_panel()
    questions, errors = len(harness.dialogs.questions), len(harness.dialogs.errors)
    monkeypatch.setattr(dependencies, "missing_requirements", lambda: ["numpy>=1.24,<3", "torch>=2.2"])
    installed = []
    monkeypatch.setattr(dependencies, "install", lambda plan, **kwargs: installed.append(plan))
    widget.ui.installButton.click()
    assert len(harness.dialogs.questions) == questions and installed == []  # nothing offered that would be refused
    assert "numpy>=1.24,<3" in harness.dialogs.errors[errors]


def test_while_packages_install_nothing_else_starts_and_then_the_panel_is_ready(harness, monkeypatch):
    """Slicer runs the event loop while pip prints: meanwhile no second install, model change or job; after it,
    the missing-packages line goes and Segment is on."""
    from MISSUSegmentationLib import dependencies

    _, widget = harness.open_panel()
    ui, seen = widget.ui, []
    assert "Missing Python packages" in ui.statusLabel.text

    def install(plan, **kwargs):
        seen.append((ui.installButton.enabled, ui.modelSelector.enabled, ui.segmentButton.enabled))
        monkeypatch.setattr(dependencies, "missing_requirements", lambda: [])  # installed

    monkeypatch.setattr(dependencies, "install", install)
    harness.dialogs.answers = [True]
    ui.installButton.click()
    assert seen == [(False, False, False)]
    assert ui.statusLabel.text == "" and not ui.installButton.visible and ui.segmentButton.enabled


def test_the_self_test_skips_where_the_packages_are_missing(harness, caplog):
    import io
    import logging
    import unittest

    harness.open_panel()
    import MISSUSegmentation

    errors = len(harness.dialogs.errors)
    # Reload and Test (Slicer shows whatever runTest raises in an error dialog): says it skipped, fails nothing
    with caplog.at_level(logging.INFO):
        try:
            MISSUSegmentation.MISSUSegmentationTest().runTest()
        except unittest.SkipTest as skip:  # pytest would count it as a skip, not a failure
            pytest.fail(f"Reload and Test raised {skip!r}")
    assert any(r.getMessage().startswith("Test skipped: missing Python packages") for r in caplog.records)  # shown
    assert len(harness.dialogs.errors) == errors
    # Slicer's build machines: slicer.testing.runUnitTest, unittest's loader (test_* methods, not runTest)
    suite = unittest.TestLoader().loadTestsFromTestCase(MISSUSegmentation.MISSUSegmentationTest)
    result = unittest.TextTestRunner(stream=io.StringIO()).run(suite)
    assert result.testsRun >= 1 and len(result.skipped) == result.testsRun and result.wasSuccessful()


def test_a_job_finished_inside_a_dialog_is_not_finished_twice(harness, monkeypatch):
    """A dialog runs the event loop: the timer's poll comes again, inside it, and may finish the next job first."""
    import slicer.util
    from MISSUSegmentationLib.jobs import SegmentationJob, TrainingJob

    _, widget = harness.open_panel()

    class Ended:
        running, fraction, status, segmentation = False, 1.0, "", None

        def __init__(self, dialog: bool) -> None:
            self.dialog, self.finished = dialog, 0

        def poll(self) -> list:
            return []

        def new_curves(self) -> None:
            return None

        def finish(self) -> str:
            self.finished += 1
            if self.dialog:  # e.g. the model list's refresh cannot read a card
                slicer.util.errorDisplay("a message box")
            return "done"

    segmented, trained = Ended(dialog=True), Ended(dialog=False)
    widget._jobs = {SegmentationJob: segmented, TrainingJob: trained}
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda *args, **kwargs: widget._poll())
    widget._poll()
    assert (segmented.finished, trained.finished) == (1, 1) and widget._jobs == {}


def test_a_registry_model_downloads_before_the_packages_are_installed(harness, tmp_path, monkeypatch):
    """Choosing a registry model needs only Slicer's own Python: the download job runs there, the model comes
    into use, and Segment stays off until the packages are installed."""
    registry_of_the_shipped_model(tmp_path, monkeypatch)
    _, widget = harness.open_panel()
    ui, errors = widget.ui, len(harness.dialogs.errors)
    widget._refreshModels()
    harness.dialogs.answers = [True]
    ui.modelSelector.setCurrentText("la-mri-remote")
    harness.wait_until(lambda: not widget._jobs, 120, "the download")
    assert len(harness.dialogs.errors) == errors and harness.exceptions == []
    assert ui.statusLabel.text.startswith("la-mri-remote downloaded") and widget._parameterNode.model == "la-mri-remote"
    assert ui.modelSelector.enabled and not ui.segmentButton.enabled and not ui.trainButton.enabled
