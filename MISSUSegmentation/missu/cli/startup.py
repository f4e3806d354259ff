"""Start-up cost of a ``missu`` process: what the command line does not need to import.

``import monai`` imports every MONAI sub-module. A few of them load optional packages at import time that no
``missu segment`` call uses: ``matplotlib.pyplot`` (notebook plots, the learning-rate finder) and
``scipy.signal``, which brings ``scipy.stats`` (a notch-filter transform, ultrasound confidence maps), and
``scipy.sparse`` (ultrasound confidence maps, DiNTS' search): hiding them takes MONAI's import from about 1.6 s to
0.9 s on a 2-core CPU (``benchmarks/results/cpu-avx512.md`` has a whole call's figures). MONAI loads each through its
``optional_import``, made for packages that are absent: hidden while MONAI loads, those few MONAI functions get
stubs that raise if called, and the packages themselves stay importable for anything imported later.

Only for a process that is ``missu`` (the console script, ``python -m missu``, the Slicer panel's subprocess):
never inside Slicer or another program that imports MONAI for its own use.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

UNUSED_AT_SEGMENTATION = ("matplotlib.pyplot", "scipy.signal", "scipy.stats", "scipy.sparse")

own_process = False  # set by missu.cli.program


@contextmanager
def monai_without_unused_imports() -> Iterator[None]:
    """Around the first import of the engine (hence MONAI) in a ``missu`` process: hide the modules above."""
    hidden = [] if not own_process or "monai" in sys.modules else [
        name for name in UNUSED_AT_SEGMENTATION if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # "not installed" to the import system
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
