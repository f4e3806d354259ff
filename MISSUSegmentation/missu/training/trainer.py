"""The training loop: MISSU loss with self-distillation, validation, checkpoints, cancel/resume, DDP, export."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from monai.data import CacheDataset, DataLoader
from monai.inferers import sliding_window_inference
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from monai.transforms import (
    AsDiscreted,
    Compose,
    CopyItemsd,
    Lambdad,
    MapLabelValued,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from .. import __version__
from ..bundle import Channel, ModelCard, load_bundle, read_card, resolve_bundle
from ..bundle.terminology import label_for
from ..data.datasets import Case, DatasetInfo, check_case, dataset_info, load_cases
from ..data.naming import MODALITIES, dicom_modality
from ..data.transforms import LoadCased, preprocessing
from ..devices import amp_dtype, autocast, pick_device, precision_name, training_memory_format
from ..errors import MISSUError
from ..network import MISSUConfig, MISSULoss, build_model, preset_config
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .curves import plot_curves
from .events import EventStream
from .export import export_run
from .recipe import LEGACY, Recipe
from .split import SPLIT_FILE, split_cases


@dataclass
class Progress:
    """Everything a checkpoint needs besides the weights and optimiser."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # steps done in the current epoch (mid-epoch checkpoints)
    global_step: int = 0
    best_dice: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    # the current epoch so far (its record averages over all its steps, also across a resume)
    epoch_sums: dict[str, float] = field(default_factory=dict)  # loss parts summed over its steps
    epoch_steps: int = 0
    epoch_seconds: float = 0.0


class Stop:
    """While active, SIGTERM/SIGINT set a flag; the loop checkpoints and leaves at the next step boundary."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> Stop:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.requested = True


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _draft_card(dataset: Path, info: DatasetInfo, recipe: Recipe, init: ModelCard | None) -> ModelCard:
    """The card the exported bundle will carry: network, pre-processing and post-processing from the recipe;
    labels and inputs from the data, or from the ``--init`` bundle (whose names and terminology a user may
    have edited) when it fits the data."""
    labels, channels = info.labels, info.channels
    if init is not None and (
        [lab.value for lab in init.labels] != sorted(labels) or len(init.inputs) != len(channels)
    ):
        raise MISSUError(
            f"--init bundle {init.name} has labels {[lab.value for lab in init.labels]} and "
            f"{len(init.inputs)} input(s); {dataset} has {sorted(labels)} and {len(channels)}"
        )
    settings = {**(recipe.network or {}), "in_channels": len(channels), "out_channels": len(labels) + 1,
                "roi_size": recipe.roi_size, "distillation": recipe.distillation}
    if unknown := set(settings) - {f.name for f in dataclasses.fields(MISSUConfig)}:
        raise MISSUError(f"recipe: unknown network settings {sorted(unknown)}")
    network = preset_config(recipe.preset, **settings)
    if init is not None and len(channels) > 1 and [c.name.lower() for c in init.inputs] != [c.lower() for c in channels]:
        raise MISSUError(
            f"--init bundle {init.name} takes its inputs in the order {[c.name for c in init.inputs]}; {dataset} "
            f"lists {channels}: write the dataset's modalities in the bundle's order"
        )
    single = len(channels) == 1
    inputs = tuple(
        Channel("image" if single else name.lower(), name,
                aliases=tuple(dict.fromkeys((name.lower(), *MODALITIES.get(name.lower(), ())))),
                modality=dicom_modality(name))
        for name in channels
    )
    return ModelCard(
        name=dataset.parent.name,
        version="1.0",
        description=f"MISSU ({recipe.preset}) trained on {dataset.parent.name}",
        preset=recipe.preset,
        network=network,
        inputs=inputs,
        labels=tuple(label_for(v, labels[v]) for v in sorted(labels)),
        regions=info.regions,
        spacing=recipe.spacing,
        anti_alias=recipe.anti_alias,
        normalization=recipe.normalization,
        foreground_crop=recipe.foreground_crop,
        overlap=recipe.overlap,
        keep_largest_component=recipe.keep_largest_component,
        min_component_mm3=recipe.min_component_mm3,
        small_label_fallback=recipe.small_label_fallback,
    ).with_changes(**({"labels": init.labels, "inputs": init.inputs} if init else {}))


def _transforms(card: ModelCard, info: DatasetInfo, recipe: Recipe) -> tuple[Compose, Compose]:
    """Training (load, pre-process, augment) and validation (load, pre-process) pipelines. Labels become class
    indices in ``"label"``; with ``soft_labels``, ``"soft"`` holds the one-hot classes resampled linearly
    (area-weighted targets for the loss; voxels added by padding are background) while ``"label"`` still
    steers the crops."""
    roi = card.roi_size
    to_class = {value: index for index, value in enumerate(card.class_values)}
    raw = {**to_class, **{raw: to_class[value] for raw, value in info.label_map.items()}}
    to_index = [LoadCased(), MapLabelValued("label", orig_labels=list(raw), target_labels=list(raw.values()))]
    keys = ["image", "label"]
    soft = []
    if recipe.soft_labels:
        keys.append("soft")
        soft = [CopyItemsd("label", names="soft"), AsDiscreted("soft", to_onehot=len(card.class_values))]
    modes = ["bilinear", "nearest", "bilinear"][: len(keys)]
    augment = [
        SpatialPadd(keys, spatial_size=roi),
        RandCropByPosNegLabeld(
            keys, "label", roi, pos=recipe.positive_fraction, neg=1 - recipe.positive_fraction,
            num_samples=recipe.crops_per_volume,
        ),
        *(RandFlipd(keys, prob=recipe.flip_prob, spatial_axis=axis) for axis in range(3)),
    ]
    if recipe.affine_prob:
        angle = math.radians(recipe.rotate_deg)
        augment.append(RandAffined(keys, prob=recipe.affine_prob, rotate_range=(angle,) * 3,
                                   scale_range=(recipe.scale_range,) * 3, mode=modes, padding_mode="border"))
    augment += [
        RandScaleIntensityd("image", factors=recipe.intensity_scale, prob=1.0, channel_wise=True),
        RandShiftIntensityd("image", offsets=recipe.intensity_shift, prob=1.0, channel_wise=True),
    ]
    if recipe.noise_prob:
        augment.append(RandGaussianNoised("image", prob=recipe.noise_prob, std=recipe.noise_std))
    if recipe.soft_labels:  # padding fills every class with 0: make such voxels background
        augment.append(Lambdad("soft", _background_fills_the_rest))
    train = to_index + soft + preprocessing(card, label_key="label", extra_keys=keys[2:]) + augment
    return Compose(train), Compose(to_index + preprocessing(card, label_key="label"))


class Trainer:
    def __init__(
        self,
        dataset: Path,
        run_dir: Path,
        recipe: Recipe,
        resume: bool = False,
        init: str | None = None,
        device: str = "auto",
    ):
        self.rank, self.world, local_rank = _distributed()
        self.main = self.rank == 0
        self.run_dir, self.recipe, self.dataset = Path(run_dir), recipe, Path(dataset)
        if self.main:
            if resume and not (self.run_dir / "checkpoints" / "last.pt").is_file():
                raise MISSUError(f"{self.run_dir}: no checkpoints/last.pt to resume from")
            if not resume and any((self.run_dir / "checkpoints" / f"{kind}.pt").is_file() for kind in ("last", "best")):
                raise MISSUError(f"{self.run_dir}: holds an earlier run; pass --resume, or choose another --output")
            if not resume:  # what a start that failed before its first checkpoint left: this start decides anew
                (self.run_dir / SPLIT_FILE).unlink(missing_ok=True)
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if self.world > 1:
            dist.barrier()
        self.events = EventStream(self.run_dir, enabled=self.main)
        self.log = self.events.log
        if device == "auto":
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = pick_device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        # Mixed precision where it pays (CUDA; CPUs with bf16 in hardware); fp16 needs loss scaling, bf16 does not.
        self.amp = recipe.amp and amp_dtype(self.device) is not None
        self.precision = precision_name(self.device, self.amp)
        self.memory_format = training_memory_format(self.device, self.amp)

        init_path = resolve_bundle(init) if init else None
        if init_path and (members := read_card(init_path).members) > 1:
            raise MISSUError(f"--init {init}: an ensemble of {members} networks; fine-tune from one network (a "
                             "bundle exported from one run)")
        init_bundle = load_bundle(init_path) if init_path else None
        self.init = {"bundle": init_bundle.card.name, "version": init_bundle.card.version,
                     "weights_sha256": init_bundle.card.weights_sha256} if init_bundle else None
        self.info = dataset_info(self.dataset)
        self.card = _draft_card(self.dataset, self.info, recipe, init_bundle.card if init_bundle else None)
        label_values = [lab.value for lab in self.card.labels] + list(self.info.label_map)
        usable, self.skipped = [], {}
        for case in load_cases(self.dataset):
            if (reason := check_case(case, label_values)) is None:
                usable.append(case)
            else:
                self.skipped[case.name] = reason
                self.log.warning("skipping case %s: %s", case.name, reason)
        if not usable:
            raise MISSUError(f"{self.dataset}: no usable case ({len(self.skipped)} skipped)")
        if self.main:
            self.train_cases, self.val_cases = split_cases(usable, recipe, self.run_dir)
        if self.world > 1:
            dist.barrier()
        if not self.main:
            self.train_cases, self.val_cases = split_cases(usable, recipe, self.run_dir)

        torch.manual_seed(recipe.seed)
        model = build_model(self.card.network)
        if init_bundle is not None:
            try:
                model.load_weights(init_bundle.state_dict)
            except MISSUError as exc:
                raise MISSUError(f"--init {init}: {exc}") from None
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.net = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.criterion = MISSULoss(
            ce=recipe.ce, include_background=recipe.include_background, batch_dice=recipe.batch_dice,
            soft_dice=recipe.soft_dice,
            distill_weight=recipe.distill_weight, temperature=recipe.temperature, scale_weights=recipe.scale_weights,
            aux_weight=recipe.aux_weight,
        )
        checkpoint = load_checkpoint(self.run_dir / "checkpoints" / "last.pt", resumable=True) if resume else None
        if checkpoint is not None and checkpoint.get("world_size", 1) != self.world:
            raise MISSUError(f"{self.run_dir}: this run started on {checkpoint.get('world_size', 1)} process(es), not "
                             f"{self.world}; resume it with the same number")
        if checkpoint is not None:
            self._check_resumable(checkpoint)

        train_tf, self.val_tf = _transforms(self.card, self.info, recipe)
        self.train_ds = CacheDataset(
            _as_dicts(self.train_cases), train_tf, cache_rate=recipe.cache_rate, num_workers=None, progress=False
        )
        self.val_ds = CacheDataset(
            _as_dicts(self.val_cases[self.rank :: self.world]), self.val_tf, cache_rate=recipe.cache_rate, progress=False
        )
        self.sampler = DistributedSampler(self.train_ds, self.world, self.rank, seed=recipe.seed) if self.world > 1 else None
        self.steps_per_epoch = math.ceil(len(self.train_ds) / self.world / recipe.batch_size)
        self.total_steps = recipe.epochs * self.steps_per_epoch

        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, amsgrad=True
        )
        # Poly decay per step over the whole run, fixed at its start (a resumed run refuses another length).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: max(0.0, 1 - step / self.total_steps) ** recipe.poly_power
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and amp_dtype(self.device) == torch.float16)
        self.progress = Progress()
        self.resumed = resume
        if checkpoint is not None:
            self._restore(checkpoint)

    # -- checkpoints ------------------------------------------------------------------------------------

    def _check_resumable(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to continue a run with another recipe, other labels or inputs, or another ``--init``."""
        last = self.run_dir / "checkpoints" / "last.pt"
        stored = json.loads(checkpoint["recipe"])
        if changes := self.recipe.changes_from(stored):
            listed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changes.items()))
            older = [f"{k}: {json.dumps(LEGACY[k])}" for k in sorted(changes) if k in LEGACY and k not in stored]
            raise MISSUError(
                f"{self.run_dir}: the recipe differs from the one this run started with ({listed}); resume with "
                f"the same settings" + (f" (this run predates them: add {', '.join(older)} to its recipe)" if older
                                        else "") + ", or start a new run from this one's weights with --init"
            )
        card = ModelCard.from_dict(json.loads(checkpoint["card"]), source=str(last))
        now, then = ([lab.value for lab in c.labels] for c in (self.card, card))
        if now != then or len(self.card.inputs) != len(card.inputs):
            raise MISSUError(f"{last}: this run learns labels {then} from {len(card.inputs)} input(s); "
                             f"{self.dataset} has labels {now} and {len(self.card.inputs)}: resume with the run's dataset")
        training = json.loads(checkpoint.get("provenance", "{}")).get("training", {})
        if "init" in training:  # (runs from before it was recorded)
            init = training["init"]
            if init != self.init:
                started = f"--init {init['bundle']} {init['version']}" if init else "no --init"
                raise MISSUError(f"{last}: this run started with {started}; resume it the same way")

    def _state(self, resumable: bool) -> dict[str, Any]:
        """A checkpoint's contents: ``last.pt`` is ``resumable`` (optimiser, scheduler, random state, the
        distillation branch); ``best.pt`` holds only what export reads, the inference weights and the record."""
        record = {
            "progress": {**self.progress.__dict__, "history": json.dumps(self.progress.history)},
            "card": self.card.to_json(),
            "recipe": json.dumps(self.recipe.to_dict()),
            "world_size": self.world,
            "provenance": json.dumps(self._provenance()),
        }
        if not resumable:
            return {"model": self.model.inference_state_dict(), **record}
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state(),
                **record}

    def _provenance(self) -> dict[str, Any]:
        return {
            "data": {"dataset": str(self.dataset), "training_cases": len(self.train_cases),
                     "skipped_cases": sorted(self.skipped)},
            "validation_cases": [c.name for c in self.val_cases],
            "training": {"preset": self.card.preset, "recipe": self.recipe.to_dict(), "device": str(self.device),
                         "world_size": self.world, "precision": self.precision, "memory_format": self._layout(),
                         "machine": platform.platform(),
                         "missu": __version__, "torch": torch.__version__, "init": self.init},
        }

    def _layout(self) -> str:
        return str(self.memory_format).removeprefix("torch.")

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for moments in self.optimizer.state.values():  # in this machine's layout, as the weights (a run may move)
            for key, value in moments.items():
                if torch.is_tensor(value) and value.dim() == 5:
                    moments[key] = value.contiguous(memory_format=self.memory_format)
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty where the run started without fp16 loss scaling (CPU, bf16)
            self.scaler.load_state_dict(state["scaler"])
        progress = dict(state["progress"])
        progress["history"] = json.loads(progress["history"])
        self.progress = Progress(**progress)
        set_rng_state(state["rng"])

    def _save(self, kind: str) -> Path:
        path = self.run_dir / "checkpoints" / f"{kind}.pt"
        if self.main:
            save_checkpoint(path, self._state(resumable=kind == "last"))
            self.events.emit("checkpoint", kind=kind, path=str(path), epoch=self.progress.epoch,
                             step_in_epoch=self.progress.step_in_epoch)
        return path

    # -- loop -------------------------------------------------------------------------------------------

    def _loader(self, epoch: int) -> DataLoader:
        """Data order and augmentation are seeded by (seed, epoch): a resumed epoch replays exactly."""
        seed = self.recipe.seed * 100_003 + epoch
        self.train_ds.transform.set_random_state(seed=seed % 2**32)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            self.train_ds, batch_size=self.recipe.batch_size, shuffle=self.sampler is None, sampler=self.sampler,
            num_workers=self.recipe.num_workers, generator=generator,
        )

    def _distill_factor(self) -> float:
        """Lambda's warm-up ramp: the teacher must learn something before the student is pulled towards it."""
        ramp = self.recipe.distill_warmup * self.total_steps
        return min(1.0, self.progress.global_step / ramp) if ramp > 0 else 1.0

    def _autocast(self):
        return autocast(self.device, enabled=self.amp)

    def _step(self, batch: dict) -> dict[str, float]:
        image = _plain(batch["image"]).to(self.device, memory_format=self.memory_format)
        target = _plain(batch.get("soft", batch["label"])).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with self._autocast():
                output = self.net(image)
            loss, parts = self.criterion(_float(output), target, self._distill_factor())
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
        except torch.OutOfMemoryError:
            raise MISSUError(
                f"out of memory on {self.device} with batch {self.recipe.batch_size}x{self.recipe.crops_per_volume} "
                f"crops of {self.card.roi_size}; try --batch-size 1, fewer crops_per_volume or a smaller --roi"
            ) from None
        if not math.isfinite(parts["total"]):
            raise MISSUError(f"the loss became {parts['total']} at step {self.progress.global_step}; lower the lr")
        return parts

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Mean Dice per label over this rank's validation cases, reduced across ranks."""
        self.model.eval()
        classes = len(self.card.class_values)
        stats = torch.zeros(classes, device=self.device)  # per-label Dice sums, then the case count
        for index in range(len(self.val_ds)):  # (iterating an empty MONAI dataset divides by zero)
            item = self.val_ds[index]
            image = item["image"].as_tensor()[None].to(self.device)
            with self._autocast():
                logits = sliding_window_inference(
                    image, self.card.roi_size, 2, self.model, overlap=self.card.overlap, mode="gaussian"
                )
            prediction = one_hot(logits.float().argmax(1, keepdim=True), classes)
            truth = one_hot(item["label"].as_tensor()[None].to(self.device).long(), classes)
            stats[:-1] += compute_dice(prediction, truth, include_background=False, ignore_empty=False)[0]
            stats[-1] += 1
        if self.world > 1:
            dist.all_reduce(stats)
        count = max(stats[-1].item(), 1)
        self.model.train()
        return {lab.name: stats[i].item() / count for i, lab in enumerate(self.card.labels)}

    def run(self) -> Path | None:
        """Train to ``recipe.epochs``; returns the exported bundle, or None when stopped by a signal."""
        with Stop() as stop:
            return self._run(stop)

    def _run(self, stop: Stop) -> Path | None:
        recipe, p, steps = self.recipe, self.progress, self.steps_per_epoch
        layout = self._layout()
        self.events.emit(
            "start", run_dir=str(self.run_dir), preset=self.card.preset, epochs=recipe.epochs, steps_per_epoch=steps,
            train_cases=len(self.train_cases), val_cases=len(self.val_cases), skipped=self.skipped,
            device=str(self.device), world_size=self.world, precision=self.precision, memory_format=layout,
            resumed=self.resumed, epoch=p.epoch,
        )
        self.log.info("training %s on %d cases (%d for validation), %d skipped, %s x%d, %s, %s",
                      self.card.preset, len(self.train_cases), len(self.val_cases), len(self.skipped), self.device,
                      self.world, self.precision, layout)
        self.model.train()
        while p.epoch < recipe.epochs:
            if p.step_in_epoch == 0:
                p.epoch_sums, p.epoch_steps, p.epoch_seconds = {}, 0, 0.0
            epoch_start, before = time.perf_counter(), p.epoch_seconds  # (before: this epoch's time until a resume)
            for index, batch in enumerate(self._loader(p.epoch)):
                if index < p.step_in_epoch:
                    continue  # replaying a resumed epoch up to where it stopped
                parts = self._step(batch)
                p.step_in_epoch, p.global_step = index + 1, p.global_step + 1
                for key, value in parts.items():
                    p.epoch_sums[key] = p.epoch_sums.get(key, 0.0) + value
                p.epoch_steps += 1
                p.epoch_seconds = before + time.perf_counter() - epoch_start
                if p.global_step % recipe.log_every == 0 or index + 1 == steps:
                    left = (steps - index - 1) + steps * (recipe.epochs - p.epoch - 1)
                    self.events.emit("iteration", epoch=p.epoch + 1, step=index + 1, steps=steps,
                                     global_step=p.global_step, loss=parts["total"], parts=parts,
                                     eta_s=round(p.epoch_seconds / p.epoch_steps * left, 1))
                if stop.requested:
                    return self._cancel(time.perf_counter() - epoch_start)
                if recipe.checkpoint_every and p.global_step % recipe.checkpoint_every == 0:
                    self._save("last")
            p.epoch, p.step_in_epoch = p.epoch + 1, 0
            p.seconds += time.perf_counter() - epoch_start
            means = {k: v / max(p.epoch_steps, 1) for k, v in p.epoch_sums.items()}
            record = {"epoch": p.epoch, "loss": means.pop("total", None), **{f"loss_{k}": v for k, v in means.items()},
                      "lr": self.optimizer.param_groups[0]["lr"],
                      "seconds": round(before + time.perf_counter() - epoch_start, 2)}
            self.events.emit("epoch", epochs=recipe.epochs, **record)
            self.log.info("epoch %d/%d loss %.4f (%.1f s)", p.epoch, recipe.epochs, record["loss"] or 0, record["seconds"])
            best = False
            if p.epoch % recipe.val_interval == 0 or p.epoch == recipe.epochs:
                dice = self.validate()
                record["val_dice"] = dice
                mean = float(np.mean(list(dice.values())))
                best = mean > p.best_dice
                if best:
                    p.best_dice, p.best_epoch = mean, p.epoch
                self.events.emit("validation", epoch=p.epoch, dice=dice, mean_dice=mean, best=best)
                self.log.info("validation Dice %s (mean %.4f%s)", dice, mean, ", best" if best else "")
            p.history.append(record)
            if best:
                self._save("best")
            self._save("last")
            if self.main:
                plot_curves(p.history, self.run_dir / "curves.png")
            if stop.requested:
                return self._cancel(0.0)
        bundle = self.export() if self.main else None
        if self.world > 1:
            dist.barrier()
        self.events.emit("finished", bundle=str(bundle), best_dice=p.best_dice, best_epoch=p.best_epoch,
                         seconds=round(p.seconds, 1))
        return bundle

    def _cancel(self, partial_seconds: float) -> None:
        self.progress.seconds += partial_seconds
        path = self._save("last")
        self.events.emit("cancelled", checkpoint=str(path), epoch=self.progress.epoch,
                         step_in_epoch=self.progress.step_in_epoch)
        self.log.info("stopped; resume with --resume")
        return None

    def export(self) -> Path:
        """The best checkpoint as a model bundle in ``RUN_DIR/bundle``."""
        return export_run(self.run_dir, self.run_dir / "bundle")


def _as_dicts(cases: list[Case]) -> list[dict]:
    return [{"image": list(c.images), "label": c.label} for c in cases]


def _background_fills_the_rest(soft: torch.Tensor) -> torch.Tensor:
    soft[0] = (1 - soft[1:].sum(0)).clamp_min(0)
    return soft


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A batch tensor without MONAI metadata (cheaper, and what the network and loss expect)."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


def _float(output):
    """Loss in float32 whatever the autocast dtype."""
    if isinstance(output, torch.Tensor):
        return output.float()
    return type(output)(*(_float(o) if isinstance(o, torch.Tensor) else [t.float() for t in o] for o in output))
