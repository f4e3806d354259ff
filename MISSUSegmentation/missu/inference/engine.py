"""The segmentation engine: checked input channels in, a label map on the input's grid out.

    seg = Segmenter("la-mri")                      # a bundle name or path; loaded once
    result = seg.segment_files(["case.nii.gz"])    # or seg.segment([sitk images]) / seg.segment_arrays(...)
    result.labels                                  # SimpleITK image, voxel for voxel on the first input's grid
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.transforms import Compose

from ..bundle import Bundle, ModelCard, load_bundle, resolve_bundle
from ..data.geometry import image_from_ras, ras_affine
from ..data.images import align_channels, check_image, read_channels
from ..data.transforms import preprocessing
from ..devices import autocast, pick_device, precision_name
from ..dicom.series import Series
from ..errors import MISSUError
from .backends import Runner, choose_backend, openvino_runner, torch_runner
from .postprocess import clean, segment_volumes

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]  # fraction done in [0, 1], what is happening


class Cancelled(Exception):
    """Raised between windows when the cancel callback returns True."""


@dataclass
class SegmentationResult:
    labels: sitk.Image  # the card's label values on the first input's grid
    card: ModelCard
    seconds: float
    uncertainty: sitk.Image | None = None  # variance of class probabilities across TTA flips, summed over classes
    volumes: dict[str, dict[str, float]] = field(default_factory=dict)  # per label and region: voxels, mL


def count_windows(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's sliding window visits (it pads images smaller than the window)."""
    size = [max(s, r) for s, r in zip(shape, roi)]
    interval = [r if s == r else max(int(r * (1 - overlap)), 1) for s, r in zip(size, roi)]
    return len(dense_patch_slices(size, roi, interval))


MAX_WORKING_VOXELS = 512**3  # on the model's grid; more is not an image this engine should try to allocate
FLIPS = [axes for n in range(4) for axes in itertools.combinations((2, 3, 4), n)]  # 8 flips, identity first


class Segmenter:
    """A loaded model and its inference settings; call :meth:`segment` for each case."""

    def __init__(
        self,
        model: str | os.PathLike | Bundle,
        device: str = "auto",
        tta: bool = False,
        overlap: float | None = None,
        sw_batch_size: int | None = None,
        foreground_crop: bool | None = None,
        amp: bool = True,
        backend: str = "auto",
    ):
        """``overlap``, ``sw_batch_size`` and ``foreground_crop`` override the card's; ``amp`` allows
        bf16/fp16 autocast (CUDA; CPUs with AMX or AVX-512 BF16); ``amp=False`` computes in float32. ``backend``
        runs the windows with ``torch`` or ``openvino`` (CPU); ``auto`` picks by the machine (:mod:`.backends`)."""
        self.bundle = model if isinstance(model, Bundle) else load_bundle(resolve_bundle(model))
        self.card = self.bundle.card
        if foreground_crop is not None:
            self.card = self.card.with_changes(foreground_crop=foreground_crop)
        self.amp = amp
        self.device = pick_device(device)
        self.precision = precision_name(self.device, amp)  # the same for both backends (.backends)
        self.backend = choose_backend(backend, self.device)
        self.model = self.bundle.build(self.device)
        self._openvino: Runner | None = None  # compiled on first use
        self.tta = tta
        self.overlap = self.card.overlap if overlap is None else overlap
        if not 0 <= self.overlap < 1:
            raise MISSUError(f"overlap must be in [0, 1), got {self.overlap}")
        # Batching windows pays on GPUs; on the CPU one window at a time is faster (benchmarks/results/cpu-amx-old-script.md).
        self.sw_batch_size = sw_batch_size or (self.card.sw_batch_size if self.device.type == "cuda" else 1)
        self.preprocess = Compose(preprocessing(self.card))

    # -- entry points -------------------------------------------------------------------------------------

    def segment_files(self, paths: Sequence[str | os.PathLike | Series], **kwargs) -> SegmentationResult:
        """Segment one case given one file, DICOM folder or chosen DICOM :class:`Series` per channel, in the
        card's input order (:func:`missu.data.cases.resolve_inputs` makes them from a study folder)."""
        self._check_count(len(paths))
        return self.segment(read_channels(paths), names=[str(p) for p in paths], **kwargs)

    def segment_arrays(
        self, arrays: Sequence[np.ndarray], affines: Sequence[np.ndarray], **kwargs
    ) -> SegmentationResult:
        """Segment ``[i, j, k]`` arrays with their voxel-to-RAS matrices (what Slicer's volume nodes hold)."""
        images = [image_from_ras(np.asarray(a, dtype=np.float32), m) for a, m in zip(arrays, affines)]
        return self.segment(images, **kwargs)

    def segment(
        self,
        channels: Sequence[sitk.Image],
        names: Sequence[str] | None = None,
        uncertainty: bool = False,
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> SegmentationResult:
        """Segment one case. ``uncertainty`` implies flip TTA; ``cancel`` is polled between windows."""
        start = time.perf_counter()
        self._check_count(len(channels))
        names = list(names or [f"{c.name} (channel {i + 1})" for i, c in enumerate(self.card.inputs)])
        for image, name in zip(channels, names):
            check_image(image, name)
        channels = align_channels(
            [c if c.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(c, sitk.sitkFloat32) for c in channels], names
        )
        report = progress or (lambda fraction, message: None)
        reference = channels[0]
        self._check_working_grid(reference, names[0])

        report(0.0, "pre-processing")
        stacked = np.stack([sitk.GetArrayViewFromImage(c).transpose(2, 1, 0) for c in channels])  # one copy
        data = self.preprocess({"image": MetaTensor(torch.from_numpy(stacked), affine=ras_affine(reference))})
        del stacked
        probabilities, variance = self._infer(data["image"], uncertainty, report, cancel)

        report(0.95, "post-processing")
        affine = np.asarray(data["image"].affine, dtype=float)
        del data
        labels = clean(labels_on_grid(probabilities, affine, reference, self.card), self.card)
        uncertainty_image = None if variance is None else resample_onto(variance[0], affine, reference)
        report(1.0, "done")
        return SegmentationResult(
            labels=labels,
            card=self.card,
            seconds=time.perf_counter() - start,
            uncertainty=uncertainty_image,
            volumes=segment_volumes(labels, self.card),
        )

    # -- internals ----------------------------------------------------------------------------------------

    def _check_count(self, given: int) -> None:
        wanted = [c.name for c in self.card.inputs]
        if given != len(wanted):
            raise MISSUError(f"model {self.card.name} takes {len(wanted)} input(s) ({', '.join(wanted)}); got {given}")

    def _check_working_grid(self, image: sitk.Image, name: str) -> None:
        """Refuse a header spacing that would make the model's grid absurd (a damaged or mistyped header)."""
        if not self.card.spacing:
            return
        extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
        grid = extent / np.array(self.card.spacing)
        if grid.min() < 1 or grid.prod() > MAX_WORKING_VOXELS:
            raise MISSUError(
                f"{name}: its spacing {tuple(round(s, 6) for s in image.GetSpacing())} mm makes a "
                f"{' x '.join(f'{g:.3g}' for g in grid)} grid at the model's {self.card.spacing} mm; "
                "check the spacing in the file's header"
            )

    def _autocast(self):
        return autocast(self.device, enabled=self.amp)

    def _runner(self) -> Runner:
        """Windows -> float32 logits with this segmenter's backend (``self.model`` as it is now, for torch)."""
        if self.backend == "openvino":
            if self._openvino is None:
                self._openvino = openvino_runner(self.model, self.bundle, self.card.roi_size,
                                                 precision=None if self.amp else "f32")
            return self._openvino
        return torch_runner(self.model, self.device, self.amp)

    @torch.inference_mode()
    def _infer(self, image: torch.Tensor, uncertainty: bool, report: Progress, cancel):
        """Softmax probabilities (K, ...) on the pre-processed grid, averaged over flips when TTA is on."""
        flips = FLIPS if (self.tta or uncertainty) else FLIPS[:1]
        roi = self.card.roi_size
        total = count_windows(image.shape[1:], roi, self.overlap) * len(flips)
        done = 0
        run = self._runner()

        def predictor(windows: torch.Tensor) -> torch.Tensor:
            nonlocal done
            if cancel is not None and cancel():
                raise Cancelled("segmentation cancelled")
            logits = run(windows)
            done += windows.shape[0]
            report(0.05 + 0.85 * done / total, f"window {done}/{total}")
            return torch.softmax(logits, dim=1)

        x = image.as_tensor()[None].to(self.device)
        total_p = total_sq = None
        for axes in flips:
            flipped = torch.flip(x, axes) if axes else x
            p = sliding_window_inference(
                flipped, roi, self.sw_batch_size, predictor, overlap=self.overlap, mode="gaussian", device="cpu"
            )
            p = (torch.flip(p, axes) if axes else p)[0]
            total_p = p if total_p is None else total_p + p
            if uncertainty:
                total_sq = p * p if total_sq is None else total_sq + p * p
        mean = total_p / len(flips)
        variance = None
        if uncertainty:
            variance = (total_sq / len(flips) - mean * mean).clamp_min(0).sum(dim=0, keepdim=True)
        return mean, variance



def resample_onto(values: torch.Tensor, affine: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """One channel ``[i, j, k]`` on the pre-processed grid (voxel-to-RAS ``affine``), linearly resampled onto
    ``reference``'s grid in physical space: orientation, crop and spacing undone in one step, by SimpleITK,
    which computes each output voxel in place (no coordinate grid in memory). Outside the source: 0."""
    source = image_from_ras(values.float().numpy(), affine)
    return sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def labels_on_grid(probabilities: torch.Tensor, affine: np.ndarray, reference: sitk.Image, card: ModelCard) -> sitk.Image:
    """The card's label values on ``reference``'s grid: the argmax of the class probabilities resampled there,
    one class at a time (memory: two float maps on that grid and the labels, whatever the number of classes).
    Voxels the pre-processed grid does not cover (cropped away as empty) are background."""
    best = index = None
    for cls, channel in enumerate(probabilities):
        p = sitk.GetArrayFromImage(resample_onto(channel, affine, reference))  # [k, j, i]
        if best is None:
            best, index = p, np.zeros(p.shape, np.uint8 if len(card.class_values) < 256 else np.uint16)
            continue
        higher = p > best  # ties keep the earlier class, as argmax does
        index[higher] = cls
        np.maximum(best, p, out=best)
        del p, higher
    values = np.asarray(card.class_values, dtype=np.uint16 if max(card.class_values) > 255 else np.uint8)[index]
    labels = sitk.GetImageFromArray(values)
    labels.CopyInformation(reference)
    return labels
