"""Which Python packages the core needs, which are missing, and installing them inside Slicer.

torch comes from the PyTorch extension's ``PyTorchUtils`` when it is there (it matches CUDA to the GPU);
Slicer's own SimpleITK, numpy and requests are never touched; the rest install one by one, pinned.
"""

from __future__ import annotations

import importlib.metadata

from packaging.requirements import Requirement

# import name -> pip requirement (floor and ceiling)
REQUIREMENTS = {
    "torch": "torch>=2.2",
    "monai": "monai>=1.4,<1.7",
    "einops": "einops>=0.7,<1",
    "safetensors": "safetensors>=0.4,<1",
    "yaml": "pyyaml>=6,<7",
    "tqdm": "tqdm>=4.60,<5",
    "scipy": "scipy>=1.10,<2",
    "slicerio": "slicerio>=1.1,<2",
    "matplotlib": "matplotlib>=3.7,<4",
}
NEVER_INSTALL = {"simpleitk", "numpy", "requests", "vtk"}


def missing_requirements() -> list[str]:
    """Requirements not installed, or installed at a version outside their range."""
    missing = []
    for requirement in map(Requirement, REQUIREMENTS.values()):
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(str(requirement))
    return missing


def install(requirements: list[str]) -> None:
    """Install inside Slicer (call only after the user confirmed the list)."""
    import slicer

    for text in requirements:
        requirement = Requirement(text)
        if requirement.name.lower() in NEVER_INSTALL:
            continue
        if requirement.name == "torch":
            try:
                import PyTorchUtils  # the PyTorch extension: a torch build matched to the GPU

                PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
                continue
            except ImportError:
                pass
        pip_ensure = getattr(getattr(slicer, "packaging", None), "pip_ensure", None)
        if pip_ensure is not None:
            pip_ensure([text])
        else:
            slicer.util.pip_install(text)
