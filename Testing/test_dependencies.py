"""One list of runtime dependencies: pyproject.toml, and the Slicer installer derived from it."""

from __future__ import annotations

import importlib.metadata
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from conftest import MODULE_DIR, ROOT

sys.path.insert(0, str(MODULE_DIR))
from MISSUSegmentationLib import dependencies  # noqa: E402


def test_slicer_installs_exactly_the_runtime_dependencies():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert dependencies.requirements() == [Requirement(d) for d in declared], "stale: run python .ci/generate.py"


def test_every_runtime_dependency_is_installed_here():
    """CI's fresh environment installs the project without extras: the CLI and engine must find all of them."""
    assert dependencies.missing_requirements() == []


def test_plan_pins_what_is_installed_and_refuses_to_replace_slicers_packages():
    numpy = importlib.metadata.version("numpy")
    plan = dependencies.plan(["torch>=99", "einops>=99", "numpy>=99"])
    assert plan.torch == "torch>=99" and plan.packages == ["einops>=99"] and plan.refused == ["numpy>=99"]
    assert f"numpy=={numpy}" not in plan.constraints  # asked for, so not pinned...
    with pytest.raises(RuntimeError, match="numpy>=99"):  # ...but never installed over Slicer's own
        dependencies.install(plan, pip_install=lambda args: pytest.fail("must not install"))
    assert any(c.lower().startswith("simpleitk==") for c in plan.constraints)


def test_restart_is_needed_only_when_a_replaced_package_is_already_imported():
    assert dependencies.plan(["einops>=99"]).restart_needed == ("einops" in sys.modules)
    import yaml  # noqa: F401

    assert dependencies.plan(["pyyaml>=99"]).restart_needed


def test_torch_goes_through_pytorchutils_with_the_minimum_version(monkeypatch):
    calls = []

    class Logic:
        def installTorch(self, askConfirmation, torchVersionRequirement):  # noqa: N802,N803
            calls.append((askConfirmation, torchVersionRequirement))
            return object()

    monkeypatch.setitem(sys.modules, "PyTorchUtils", type("M", (), {"PyTorchUtilsLogic": Logic}))
    pip = []
    dependencies.install(dependencies.InstallPlan(torch="torch>=2.2", packages=["einops>=0.7,<1"]), pip.append)
    assert calls == [(False, ">=2.2")] and [p[-1] for p in pip] == ["einops>=0.7,<1"]
