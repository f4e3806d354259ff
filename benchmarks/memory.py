"""Peak memory of ``missu segment`` on a large volume (a 512 x 512 x 400 float32 CT-sized scan), end to end.

    python benchmarks/memory.py [--size 512 512 400] [--spacing 0.7 0.7 1.0] [--model la-mri]

The volume is synthetic (a bright ellipsoid in smooth noise; memory does not depend on the content), written
uncompressed, then segmented by the command line in a subprocess so that its peak RSS is its own. Prints a
markdown table: the input's size in memory, the process's peak RSS, and their ratio.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def volume(size: tuple[int, int, int], spacing: tuple[float, float, float]) -> sitk.Image:
    rng = np.random.default_rng(0)
    k, j, i = np.ogrid[: size[2], : size[1], : size[0]]
    centre = [s / 2 for s in size]
    inside = ((i - centre[0]) / (size[0] / 5)) ** 2 + ((j - centre[1]) / (size[1] / 6)) ** 2 + (
        (k - centre[2]) / (size[2] / 6)) ** 2 < 1
    array = rng.normal(100, 20, (size[2], size[1], size[0])).astype(np.float32)
    array[inside] += 200
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 400))
    parser.add_argument("--spacing", type=float, nargs=3, default=(0.7, 0.7, 1.0))
    parser.add_argument("--model", default="la-mri")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "large.nii"
        image = volume(tuple(args.size), tuple(args.spacing))
        input_gb = image.GetNumberOfPixels() * 4 / 1e9
        sitk.WriteImage(image, str(path))
        del image
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "missu", "segment", "--model", args.model, "--input", str(path),
                        "--output", str(Path(folder) / "large.seg.nrrd"), "--device", args.device], check=True)
        seconds = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9  # kB on Linux
    print(f"\n{platform.processor() or platform.machine()}, {args.device}, model {args.model}\n")
    print("| input | voxels | input in memory | peak RSS | peak / input | seconds |")
    print("|---|---|---|---|---|---|")
    print(f"| {' x '.join(map(str, args.size))} float32 at {' x '.join(map(str, args.spacing))} mm "
          f"| {np.prod(args.size) / 1e6:.0f} M | {input_gb:.2f} GB | {peak_gb:.2f} GB | {peak_gb / input_gb:.1f}x "
          f"| {seconds:.0f} |")


if __name__ == "__main__":
    main()
