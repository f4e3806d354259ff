"""The module's panel under real Qt with Slicer's real Python layer, once per pinned Slicer release.

Each release runs in its own process (its ``slicer`` package must be on the path before the first
``import slicer``); the scenarios are in ``slicer_app/panel_scenarios.py``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, shared_data

RELEASES = ("5.8.1", "5.10.0")


@pytest.mark.parametrize("release", RELEASES)
def test_panel_scenarios_pass_against_slicer_release(release):
    shared_data("la2018/imagesTr")
    layer = ROOT.parent / "shared" / "slicer-python" / release
    assert layer.is_dir(), f"Slicer's Python layer {release} not found at {layer}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "-rA",
         str(ROOT / "Testing" / "slicer_app" / "panel_scenarios.py")],
        cwd=ROOT, env={**os.environ, "MISSU_SLICER_RELEASE": release, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True, text=True, timeout=1200,
    )
    report = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                       if not line.startswith(("qt.core.qobject", "Designer:", "This plugin")))
    print(f"Slicer {release}:\n{report[-6000:]}")
    assert result.returncode == 0, f"panel scenarios failed against Slicer {release}:\n{report[-6000:]}"
    assert " passed" in report and " skipped" not in report and "xfail" not in report
