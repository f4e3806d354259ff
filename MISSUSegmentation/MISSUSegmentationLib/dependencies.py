"""The core's Python packages inside Slicer: which are missing, and installing them without harming Slicer.

The list is ``requirements.txt`` beside this file, generated from ``pyproject.toml`` (one list for pip users
and for Slicer). Packages that Slicer ships (numpy, SimpleITK, scipy, ...) are never installed or upgraded:
every pip call is constrained to the versions already in Slicer's Python. torch comes from the PyTorch
extension's ``PyTorchUtils`` when it is there (it matches the CUDA build to the GPU). This module imports
only what Slicer's own Python holds.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS_FILE = Path(__file__).with_name("requirements.txt")
# Distribution name -> import name, where they differ.
IMPORT_NAMES = {"pyyaml": "yaml", "simpleitk": "SimpleITK"}
# Packages Slicer's own Python ships: never installed or upgraded by us.
SLICER_OWNED = {"numpy", "simpleitk", "vtk", "requests", "scipy", "pydicom", "pillow", "packaging"}


def requirements() -> list[Requirement]:
    lines = REQUIREMENTS_FILE.read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def import_name(requirement: Requirement) -> str:
    name = canonicalize_name(requirement.name)
    return IMPORT_NAMES.get(name, name.replace("-", "_"))


def installed_version(requirement: Requirement) -> str | None:
    """The installed version, or None; a package importable without metadata (a Slicer build) counts as any."""
    try:
        return importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return "" if importlib.util.find_spec(import_name(requirement)) is not None else None


def missing_requirements() -> list[str]:
    """Requirements not installed, or installed at a version outside their range."""
    missing = []
    for requirement in requirements():
        version = installed_version(requirement)
        if version is None or (version and not requirement.specifier.contains(version, prereleases=True)):
            missing.append(str(requirement))
    return missing


def installed_constraints() -> list[str]:
    """Every distribution already in this Python, pinned: what pip may not replace."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            pins[canonicalize_name(name)] = f"{name}=={dist.version}"
    return sorted(pins.values())


@dataclass
class InstallPlan:
    """What :func:`install` will do: torch through PyTorchUtils or pip, the rest through pip, each constrained."""

    torch: str | None = None  # the torch requirement, if torch is missing
    packages: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # installed by Slicer at a version we cannot use

    @property
    def restart_needed(self) -> bool:
        """A package being replaced is already imported in this process: Slicer must restart to use the new one."""
        names = [import_name(Requirement(r)) for r in self.packages + ([self.torch] if self.torch else [])]
        return any(name in sys.modules for name in names)


def plan(missing: list[str] | None = None) -> InstallPlan:
    result = InstallPlan()
    missing = missing_requirements() if missing is None else missing
    wanted = {canonicalize_name(Requirement(r).name) for r in missing}
    for pin in installed_constraints():
        name = canonicalize_name(Requirement(pin).name)
        if name not in wanted:
            result.constraints.append(pin)
    for text in missing:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == "torch":
            result.torch = text
        elif canonicalize_name(requirement.name) in SLICER_OWNED:
            result.refused.append(text)  # Slicer's own package: replacing it would break Slicer
        else:
            result.packages.append(text)
    return result


def install(install_plan: InstallPlan, pip_install: Callable[[list[str]], None] | None = None) -> None:
    """Carry out a plan (call only after the user confirmed it). ``pip_install`` takes pip's arguments
    (default: ``slicer.util.pip_install``); torch goes through PyTorchUtils when the extension is there."""
    if install_plan.refused:
        raise RuntimeError("Slicer's own Python has versions MISSU cannot use: " + ", ".join(install_plan.refused)
                           + ". Use a Slicer release whose Python provides them.")
    if pip_install is None:
        import slicer

        pip_install = slicer.util.pip_install
    with tempfile.TemporaryDirectory(prefix="missu-pip-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text("\n".join(install_plan.constraints) + "\n")
        if install_plan.torch:
            if not _install_torch_with_pytorchutils(install_plan.torch):
                pip_install(["-c", str(constraints), install_plan.torch])
        for requirement in install_plan.packages:  # one by one: a failure names its package
            pip_install(["-c", str(constraints), requirement])


def _install_torch_with_pytorchutils(requirement: str) -> bool:
    try:
        import PyTorchUtils
    except ImportError:
        return False
    specifier = str(Requirement(requirement).specifier)
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=specifier)
    if torch is None:
        raise RuntimeError("PyTorch was not installed")
    return True
