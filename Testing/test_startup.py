"""Start-up of a ``missu`` process: MONAI's unused optional imports are skipped there, and only there."""

from __future__ import annotations

import subprocess
import sys

import pytest
import slicerio

from conftest import shared_data
from missu.cli import main, startup

pytest.importorskip("matplotlib.pyplot")  # the probe shows it skipped, then importable: it must be installed
pytest.importorskip("scipy.signal")

PROBE = """
import sys
from missu.cli import startup
startup.own_process = {own}
with startup.monai_without_unused_imports():
    import missu.inference.engine
print(sorted(m for m in startup.UNUSED_AT_SEGMENTATION if m in sys.modules))
import importlib
for name in startup.UNUSED_AT_SEGMENTATION:
    importlib.import_module(name)  # still importable for anything after the engine
print("importable")
"""


def probe(own: bool) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE.format(own=own)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split("\n")


def test_a_missu_process_skips_what_segmentation_does_not_use():
    loaded, importable = probe(own=True)[:2]
    assert loaded == "[]"  # MONAI did not load them ...
    assert importable == "importable"  # ... and they load normally afterwards


def test_inside_another_process_monai_is_left_alone():
    # The Slicer module calls missu.cli.main in Slicer's own process: MONAI must load there as it always does.
    loaded = probe(own=False)[0]
    assert loaded == str(sorted(startup.UNUSED_AT_SEGMENTATION))


def test_a_missu_process_writes_the_same_labels(tmp_path):
    # `python -m missu` (the modules hidden while MONAI loads) against main() in this process (MONAI as always)
    case = shared_data("la2018/imagesTr/la_0RZDK210BSMWAA6467LU.nii.gz")
    command = ["segment", "--input", str(case), "--backend", "torch", "--output"]
    result = subprocess.run([sys.executable, "-m", "missu", *command, str(tmp_path / "process.seg.nrrd")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert main([*command, str(tmp_path / "library.seg.nrrd")]) == 0
    process, library = (slicerio.read_segmentation(str(tmp_path / f"{n}.seg.nrrd")) for n in ("process", "library"))
    assert process["voxels"].any() and (process["voxels"] == library["voxels"]).all()
