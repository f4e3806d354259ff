"""missu train: real-data smoke run, the JSON event stream, cancel/kill and resume, bad cases, torchrun DDP."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import la_dataset, shared_data
from missu.bundle import load_bundle, read_card, resolve_bundle
from missu.cli import main
from missu.data.datasets import load_cases
from missu.devices import amp_dtype, precision_name
from missu.errors import MISSUError
from missu.training.checkpoint import load_checkpoint, save_checkpoint
from missu.training.recipe import Recipe
from missu.training.split import split_cases

RECIPE = """\
preset: missu-small
epochs: 2
batch_size: 1
crops_per_volume: 1
roi_size: [32, 32, 24]
spacing: [2.5, 2.5, 2.5]
val_fraction: 0.34
log_every: 1
seed: 7
"""
LA_CASES = ["la_06SR5RBREL16DQ6M8LWS", "la_0RZDK210BSMWAA6467LU", "la_1D7CUD1955YZPGK8XHJX"]


@pytest.fixture
def tiny_la(tmp_path) -> tuple[Path, Path]:
    """A three-case LA dataset (paths into ../shared/data) and a CPU-sized recipe."""
    dataset = la_dataset(tmp_path, LA_CASES)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    return dataset, recipe


def _train(dataset, recipe, run_dir, *extra, stop_when=None, sig=signal.SIGTERM, env_extra=None):
    """Run ``missu train`` as the Slicer panel does (a subprocess); returns (return code, events)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    command = [sys.executable, "-m", "missu", "train", "--dataset", str(dataset), "--config", str(recipe),
               "--output", str(run_dir), *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events, sent = [], False
    for line in process.stdout:
        events.append(json.loads(line))  # every stdout line is one JSON object
        if stop_when and not sent and stop_when(events[-1]):
            process.send_signal(sig)
            sent = True
    process.wait(timeout=600)
    stderr = process.stderr.read()
    assert (run_dir / "train.log").is_file() or process.returncode, stderr
    return process.returncode, events, stderr


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_smoke_run_on_real_data_and_event_stream(tiny_la, tmp_path):
    dataset, recipe = tiny_la
    run_dir = tmp_path / "run"
    code, events, stderr = _train(dataset, recipe, run_dir, "--epochs", "1")
    assert code == 0, stderr
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finished"
    assert {"iteration", "epoch", "validation", "checkpoint"} <= set(kinds)
    start = events[0]
    assert start["train_cases"] == 2 and start["val_cases"] == 1 and start["epochs"] == 1
    amp = amp_dtype(torch.device("cpu"))  # the machine's arithmetic is on record: runs span machines
    assert start["precision"] == ("bfloat16 autocast" if amp == torch.bfloat16 else "float32")
    assert precision_name(torch.device("cpu"), amp=False) == "float32"
    iteration = next(e for e in events if e["event"] == "iteration")
    assert {"loss", "eta_s", "step", "steps", "parts"} <= set(iteration) and "distill" in iteration["parts"]
    validation = next(e for e in events if e["event"] == "validation")
    assert 0 <= validation["dice"]["left atrium"] <= 1
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert "epoch 1/1" in (run_dir / "train.log").read_text()

    best, last = (load_checkpoint(run_dir / "checkpoints" / f"{kind}.pt") for kind in ("best", "last"))
    assert "optimizer" in last and any(k.startswith("distill.") for k in last["model"])
    assert "optimizer" not in best and not any(k.startswith("distill.") for k in best["model"]), "export reads no more"
    bundle = load_bundle(events[-1]["bundle"])
    assert not any(k.startswith("distill.") for k in bundle.state_dict)
    assert bundle.card.labels[0].type[1] == "82471001"  # left atrium terminology
    assert bundle.card.provenance["validation_cases"] and bundle.card.provenance["metrics"]["validation_dice"]
    half = tmp_path / "half-bundle"
    assert main(["export", str(run_dir), "--output", str(half), "--half", "--name", "la-test", "--version", "2.1"]) == 0
    exported = load_bundle(half)
    validation = json.loads((run_dir / "split.json").read_text())["validation"]
    assert exported.card.name == "la-test" and exported.card.version == "2.1"
    assert exported.card.provenance["validation_cases"] == validation
    assert (half / "model.safetensors").stat().st_size < 0.6 * (Path(events[-1]["bundle"]) / "model.safetensors").stat().st_size
    out = tmp_path / "case.seg.nrrd"
    image = shared_data(f"la2018/imagesTr/{LA_CASES[0]}.nii.gz")
    assert main(["segment", "--model", events[-1]["bundle"], "--input", str(image), "--output", str(out)]) == 0


    # without best.pt, the card carries the validation of the weights exported (last.pt's epoch), not the run's best
    (run_dir / "checkpoints" / "best.pt").unlink()
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    later = {"epoch": 2, "val_dice": {"left atrium": 0.123}}
    state["progress"].update(epoch=2, best_epoch=1, history=json.dumps([*json.loads(state["progress"]["history"]), later]))
    save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
    assert main(["export", str(run_dir), "--output", str(tmp_path / "last")]) == 0
    assert load_bundle(tmp_path / "last").card.provenance["metrics"]["validation_dice"] == later["val_dice"]
    state["progress"]["step_in_epoch"] = 3  # mid-epoch: no validation belongs to these weights
    save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
    assert main(["export", str(run_dir), "--output", str(tmp_path / "mid")]) == 0
    assert load_bundle(tmp_path / "mid").card.provenance["metrics"]["validation_dice"] == {}


def test_cancel_then_resume_equals_uninterrupted(tiny_la, tmp_path):
    dataset, recipe = tiny_la
    code, _, stderr = _train(dataset, recipe, tmp_path / "straight")
    assert code == 0, stderr

    stopped = tmp_path / "stopped"
    code, events, stderr = _train(dataset, recipe, stopped,
                                  stop_when=lambda e: e["event"] == "iteration" and e["global_step"] == 1)
    assert code == 0, stderr
    assert events[-1]["event"] == "cancelled" and events[-1]["step_in_epoch"] >= 1
    assert not (stopped / "bundle").exists()

    code, events, stderr = _train(dataset, recipe, stopped, "--resume")
    assert code == 0, stderr
    assert events[0]["resumed"] and events[-1]["event"] == "finished"
    straight, resumed = _weights(tmp_path / "straight"), _weights(stopped)
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6, msg=name)
    # the interrupted epoch's record (curves, epoch event) averages the loss over all its steps, not those after resume
    history = [json.loads(load_checkpoint(r / "checkpoints" / "last.pt")["progress"]["history"])
               for r in (tmp_path / "straight", stopped)]
    assert [h["loss"] for h in history[1]] == pytest.approx([h["loss"] for h in history[0]], rel=1e-4)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="ATen's x86 capabilities")
def test_channels_last_changes_no_result_and_resumes_a_run_of_the_default_layout(tiny_la, tmp_path):
    """Training takes channels-last where it is faster (float32 on AVX2): the losses and the validation are those of
    PyTorch's default layout, and a run checkpointed in one layout goes on in the other (runs move between machines).
    The environment makes any x86 CPU act as one of each kind (float32 in both: oneDNN limited to AVX2)."""
    default = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "default"}
    avx2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    dataset, recipe = tiny_la
    # two crops a step: batches big enough for oneDNN's channels-last kernels; the preset's dropout (0.1) stays on
    recipe.write_text(RECIPE.replace("crops_per_volume: 1", "crops_per_volume: 2"))
    code, straight, stderr = _train(dataset, recipe, tmp_path / "straight", env_extra=default)
    assert code == 0, stderr
    moved = tmp_path / "moved"
    code, first, stderr = _train(dataset, recipe, moved, env_extra=default,
                                 stop_when=lambda e: e["event"] == "iteration" and e["global_step"] == 2)
    assert code == 0 and first[-1]["event"] == "cancelled", stderr
    code, rest, stderr = _train(dataset, recipe, moved, "--resume", env_extra=avx2)
    assert code == 0 and rest[-1]["event"] == "finished", stderr
    assert [e["memory_format"] for e in (straight[0], first[0], rest[0])] == [
        "contiguous_format", "contiguous_format", "channels_last_3d"]

    def record(events):
        return {(e["event"], e.get("global_step", e.get("epoch"))): e.get("loss", e.get("mean_dice"))
                for e in events if e["event"] in ("iteration", "validation")}
    expected, got = record(straight), {**record(first), **record(rest)}
    assert got.keys() == expected.keys() and any(key[0] == "validation" and key[1] == 2 for key in got)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-3, abs=1e-4), key
    conv = "encoder.1.0.weight"  # (the stem's, with one input channel, is in both layouts at once)
    assert _weights(moved)[conv].is_contiguous(memory_format=torch.channels_last_3d)
    assert not _weights(moved)[conv].is_contiguous() and _weights(tmp_path / "straight")[conv].is_contiguous()
    moments = load_checkpoint(moved / "checkpoints" / "last.pt")["optimizer"]["state"].values()
    assert all(m.is_contiguous(memory_format=torch.channels_last_3d) for s in moments for m in s.values() if m.dim() == 5)


def test_resume_refuses_a_changed_recipe_and_init_crosses_roi_sizes(tiny_la, tmp_path, capsys):
    dataset, recipe = tiny_la
    first = tmp_path / "first"
    args = ["train", "--dataset", str(dataset), "--config", str(recipe), "--device", "cpu"]
    assert main([*args, "--output", str(first), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--output", str(first), "--resume", "--epochs", "2"]) != 0
    assert "recipe differs from the one this run started with (epochs: 1 -> 2)" in capsys.readouterr().err
    last = first / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    older = {k: v for k, v in json.loads(state["recipe"]).items() if k != "soft_dice"}  # a run from before the setting
    save_checkpoint(last, {**state, "recipe": json.dumps(older)})
    assert main([*args, "--output", str(first), "--resume", "--epochs", "1"]) != 0
    assert "soft_dice: False -> True); resume with the same settings (this run predates them: add soft_dice: false " \
        "to its recipe)" in capsys.readouterr().err
    save_checkpoint(last, state)
    assert main([*args, "--output", str(first), "--resume", "--epochs", "1", "--init", str(first / "bundle")]) != 0
    assert f"{last}: this run started with no --init; resume it the same way" in capsys.readouterr().err
    other = json.loads(dataset.read_text())
    other["labels"]["2"] = "scar"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main([*args[:2], str(tmp_path / "other.json"), *args[3:], "--output", str(first), "--resume",
                 "--epochs", "1"]) != 0
    assert f"{last}: this run learns labels [1] from 1 input(s); {tmp_path / 'other.json'} has labels [1, 2]" in \
        capsys.readouterr().err

    # Fine-tune from the first run's bundle with another ROI and the full augmentation/soft-label recipe.
    richer = tmp_path / "richer.yaml"
    richer.write_text(RECIPE + "soft_labels: true\nanti_alias: true\naffine_prob: 1.0\nrotate_deg: 15\n"
                      "scale_range: 0.1\nnoise_prob: 1.0\nnoise_std: 0.1\nnetwork: {dropout: 0.0, stem_dropout: 0.0}\n")
    second = tmp_path / "second"
    capsys.readouterr()
    assert main(["train", "--dataset", str(dataset), "--config", str(richer), "--device", "cpu", "--epochs", "1",
                 "--output", str(second), "--init", str(first / "bundle"), "--roi", "40", "32", "24"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "finished"
    card = load_bundle(second / "bundle").card
    assert card.network.roi_size == (40, 32, 24) and card.anti_alias and card.network.dropout == 0.0
    assert card.provenance["training"]["init"]["weights_sha256"] == load_bundle(first / "bundle").card.weights_sha256


def test_no_distillation_trains_the_backbone_alone(tiny_la, tmp_path, capsys):
    dataset, recipe = tiny_la
    assert main(["train", "--dataset", str(dataset), "--config", str(recipe), "--device", "cpu", "--epochs", "1",
                 "--output", str(tmp_path / "run"), "--no-distillation"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(set(e["parts"]) == {"seg", "total"} for e in events if e["event"] == "iteration")
    assert not any(k.startswith("distill.") for k in _weights(tmp_path / "run"))
    assert not load_bundle(tmp_path / "run" / "bundle").card.network.distillation


def test_kill_9_loses_at_most_the_work_since_the_last_checkpoint(tiny_la, tmp_path):
    dataset, recipe = tiny_la
    run_dir = tmp_path / "run"
    code, events, _ = _train(dataset, recipe, run_dir, sig=signal.SIGKILL,
                             stop_when=lambda e: e["event"] == "iteration" and e["epoch"] == 2)
    assert code == -signal.SIGKILL
    assert not list((run_dir / "checkpoints").glob(".partial-*"))
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["progress"]["epoch"] == 1
    code, events, stderr = _train(dataset, recipe, run_dir, "--resume")
    assert code == 0, stderr
    assert events[0]["epoch"] == 1 and events[-1]["event"] == "finished"
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2]


def test_bad_cases_are_listed_and_skipped(tiny_la, tmp_path):
    dataset, recipe = tiny_la
    data = json.loads(dataset.read_text())
    root = shared_data("la2018")
    (tmp_path / "corrupt.nii.gz").write_bytes(b"not a volume")
    data["training"] += [
        {"image": str(tmp_path / "absent.nii.gz"), "label": str(root / f"labelsTr/{LA_CASES[0]}.nii.gz")},
        {"image": str(tmp_path / "corrupt.nii.gz"), "label": str(root / f"labelsTr/{LA_CASES[0]}.nii.gz")},
        {"image": str(root / f"imagesTr/{LA_CASES[0]}.nii.gz"), "label": str(root / f"labelsTr/{LA_CASES[1]}.nii.gz")},
    ]
    dataset.write_text(json.dumps(data))
    code, events, stderr = _train(dataset, recipe, tmp_path / "run", "--epochs", "1")
    assert code == 0, stderr
    skipped = events[0]["skipped"]
    assert len(skipped) == 3, skipped
    assert "no such file" in skipped["absent"] and "cannot read image" in skipped["corrupt"]
    assert "grid differs from its image" in skipped[f"{LA_CASES[0]}_2"]  # the same image listed twice: numbered name
    assert "size (199, 143, 88) instead of (183, 140, 88)" in skipped[f"{LA_CASES[0]}_2"]
    assert "skipping case absent" in stderr


def test_errors_are_events_with_a_message(tiny_la, tmp_path):
    dataset, recipe = tiny_la
    code, events, _ = _train(dataset, recipe, tmp_path / "run", "--resume")
    assert code == 1
    assert events == [{"event": "error", "message": f"{tmp_path / 'run'}: no checkpoints/last.pt to resume from"}]


def test_a_start_that_failed_before_its_first_checkpoint_does_not_block_the_next(tiny_la, tmp_path, capsys):
    dataset, recipe = tiny_la
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "absent.json"), "--config", str(recipe), "--output", str(run)]) == 1
    assert (run / "checkpoints").is_dir()
    (run / "split.json").write_text('{"training": ["gone"], "validation": ["gone too"]}')  # as a failed start leaves
    code, events, stderr = _train(dataset, recipe, run, "--epochs", "1")
    assert code == 0, stderr
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["training"] + split["validation"]) == LA_CASES
    code, events, _ = _train(dataset, recipe, run, "--epochs", "1")
    assert code == 1 and "holds an earlier run" in events[-1]["message"]
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    shutil.copy(last, tmp_path / "last.pt")
    shutil.copy(best, last)  # a best.pt copied over last.pt: weights, no optimiser
    code, events, _ = _train(dataset, recipe, run, "--epochs", "1", "--resume")
    assert code == 1 and "last.pt: not a resumable checkpoint of missu train (no optimizer, rng, scaler" in \
        events[-1]["message"]
    shutil.copy(tmp_path / "last.pt", last)
    torch.save({"state_dict": {}}, best)  # another program's checkpoint
    capsys.readouterr()
    assert main(["export", str(run), "--output", str(tmp_path / "b")]) == 1
    assert "best.pt: not a checkpoint of missu train (no card, model, progress, recipe)" in capsys.readouterr().err
    (run / "split.json").write_text('{"training": ["a"')  # damaged by hand
    code, events, _ = _train(dataset, recipe, run, "--epochs", "1", "--resume")
    assert code == 1 and events[-1]["message"].startswith(f"{run / 'split.json'}: unreadable split")


def test_a_checkpoint_write_killed_before_its_rename_does_not_make_a_run(tiny_la, tmp_path):
    dataset, recipe = tiny_la
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / ".partial-host-123-last.pt").write_bytes(b"half a checkpoint")  # as a kill -9 leaves
    code, events, stderr = _train(dataset, recipe, run, "--epochs", "1")
    assert code == 0, stderr


def test_import_brats_both_conventions_and_skips(tmp_path, capsys):
    folder = shared_data("brats2015-deepmedic/train")
    assert main(["dataset", "import-brats", str(folder), "--output", str(tmp_path / "d.json"),
                 "--modalities", "flair", "t1c", "--map", "3:1"]) == 0
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["modality"] == {"0": "flair", "1": "t1c"} and data["label_map"] == {"3": 1}
    assert data["regions"] == {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]} and len(data["training"]) == 2
    from missu.data.datasets import load_cases

    # every case's file is Flair_subtrMeanDivStd.nii.gz: cases are named by their folder instead
    assert [c.name for c in load_cases(tmp_path / "d.json")] == ["brats_2013_pat0005_1", "brats_2013_pat0006_1"]
    tiny = shared_data("brats19-tiny")
    assert main(["dataset", "import-brats", str(tiny), "--output", str(tmp_path / "t.json")]) == 1
    assert "label values [3] not in convention 124" in capsys.readouterr().err
    assert main(["dataset", "import-brats", str(tiny), "--output", str(tmp_path / "t.json"), "--labels", "123"]) == 1
    assert "label values [4] not in convention 123" in capsys.readouterr().err  # its blurred labels hold 3 and 4
    assert main(["dataset", "import-brats", str(tiny), "--output", str(tmp_path / "t.json"), "--map", "3:1"]) == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["labels"]["4"] == "enhancing tumor" and data["regions"]["ET"] == [4]
    assert len(data["training"][0]["image"]) == 4 and data["training"][0]["image"][1].endswith("t1post.nii.gz")


def test_torchrun_two_gloo_processes(tiny_la, tmp_path):
    dataset, recipe = tiny_la
    run_dir = tmp_path / "ddp"
    torchrun = shutil.which("torchrun") or pytest.skip("torchrun not on PATH")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "missu", "train", "--dataset", str(dataset),
         "--config", str(recipe), "--output", str(run_dir), "--epochs", "1", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events].count("start") == 1, "only rank 0 reports"
    assert events[0]["world_size"] == 2
    # two training cases over two ranks: one step each per epoch
    assert events[0]["steps_per_epoch"] == 1
    assert events[-1]["event"] == "finished" and load_bundle(events[-1]["bundle"])


def test_k_fold_splits_partition_the_cases_and_fold_0_is_the_shipped_split(tmp_path):
    cases = load_cases(shared_data("la2018/dataset.json"))
    validation = []
    for fold in range(5):
        run_dir = tmp_path / f"fold{fold}"
        run_dir.mkdir()
        train, val = split_cases(cases, Recipe(folds=5, fold=fold), run_dir)
        assert {c.name for c in train}.isdisjoint(c.name for c in val) and len(train) + len(val) == len(cases)
        validation.append([c.name for c in val])
    assert sorted(sum(validation, [])) == sorted(c.name for c in cases), "every case is validated exactly once"
    assert validation[0] == read_card(resolve_bundle("la-mri")).provenance["validation_cases"]
    with pytest.raises(MISSUError, match="fold must be in"):
        Recipe(folds=5, fold=5)
    (tmp_path / "few").mkdir()
    with pytest.raises(MISSUError, match="3 usable case\\(s\\): too few for 5-fold cross-validation"):
        split_cases(cases[:3], Recipe(folds=5, fold=0), tmp_path / "few")
    assert not (tmp_path / "few" / "split.json").exists(), "no split is written for a refused run"


def test_folds_export_as_an_ensemble_and_evaluate_out_of_fold(tiny_la, tmp_path, capsys):
    dataset, recipe = tiny_la
    runs, bundles = [tmp_path / "fold0", tmp_path / "fold1"], [tmp_path / "b0", tmp_path / "b1"]
    for fold, (run_dir, bundle) in enumerate(zip(runs, bundles)):
        code, _, stderr = _train(dataset, recipe, run_dir, "--epochs", "1", "--fold", str(fold), "--folds", "3")
        assert code == 0, stderr
        assert main(["export", str(run_dir), "--output", str(bundle)]) == 0
    held_out = [read_card(b).provenance["validation_cases"] for b in bundles]
    assert len(held_out[0]) == len(held_out[1]) == 1 and held_out[0] != held_out[1]

    # out of fold: each case scored by the fold that held it out, exactly as that fold alone scores it
    capsys.readouterr()
    assert main(["evaluate", "--model", str(bundles[0]), "--model", str(bundles[1]), "--dataset", str(dataset),
                 "--validation-only", "--json"]) == 0
    pooled = json.loads(capsys.readouterr().out)
    assert pooled["model_of_case"] == {held_out[0][0]: str(bundles[0]), held_out[1][0]: str(bundles[1])}
    assert pooled["tta"] is False, "the report says how the cases were segmented"
    assert pooled["precision"] == precision_name(torch.device("cpu")) and pooled["backend"] in ("torch", "openvino")
    for bundle in bundles:
        assert main(["evaluate", "--model", str(bundle), "--dataset", str(dataset), "--validation-only", "--json"]) == 0
        alone = json.loads(capsys.readouterr().out)["cases"]
        assert {name: pooled["cases"][name] for name in alone} == alone
    assert pooled["mean"]["left atrium"]["cases"] == 2
    shutil.copytree(bundles[0], tmp_path / "b0-copy")
    for models, flags, message in (((bundles[0], bundles[0]), ["--validation-only"], "given more than once"),
                                   ((bundles[0], tmp_path / "b0-copy"), ["--validation-only"], "both hold out case"),
                                   ((bundles[0], bundles[1]), [], "needs --validation-only")):
        arguments = [a for m in models for a in ("--model", str(m))]
        assert main(["evaluate", *arguments, "--dataset", str(dataset), *flags]) == 1
        assert message in capsys.readouterr().err

    # the two folds as one ensemble bundle, which segments as any bundle does
    ensemble = tmp_path / "ensemble"
    assert main(["export", str(runs[0]), str(runs[1]), "--output", str(ensemble), "--name", "la-cv"]) == 0
    card = read_card(ensemble)
    assert card.members == 2 and card.name == "la-cv"
    assert card.provenance["validation_cases"] == [], "every case trained one of the members"
    assert [m["validation_cases"] for m in card.provenance["members"]] == held_out
    shutil.copytree(runs[0], tmp_path / "fold0-again")  # e.g. a second seed of one fold: its case stays held out
    assert main(["export", str(runs[0]), str(tmp_path / "fold0-again"), "--output", str(tmp_path / "seeds")]) == 0
    assert read_card(tmp_path / "seeds").provenance["validation_cases"] == held_out[0]
    shutil.copytree(runs[0], tmp_path / "early")
    (tmp_path / "early" / "checkpoints" / "best.pt").unlink()  # a run not validated yet: its weights are unproven
    assert main(["export", str(runs[1]), str(tmp_path / "early"), "--output", str(tmp_path / "too-early")]) == 1
    assert f"{tmp_path / 'early'}: not validated yet (no checkpoints/best.pt)" in capsys.readouterr().err
    image = shared_data(f"la2018/imagesTr/{LA_CASES[0]}.nii.gz")
    assert main(["segment", "--model", str(ensemble), "--input", str(image), "--output", str(tmp_path / "e.seg.nrrd")]) == 0
    code, _, stderr = _train(dataset, recipe, tmp_path / "init", "--epochs", "1", "--init", str(ensemble))
    assert code == 1 and "an ensemble of 2 networks" in stderr

    # refused, writing nothing: the same run twice, or runs whose cards differ
    assert main(["export", str(runs[0]), str(runs[0]), "--output", str(tmp_path / "twice")]) == 1
    assert "given more than once" in capsys.readouterr().err
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(runs[1] / "checkpoints" / name)
        state["card"] = json.dumps({**json.loads(state["card"]), "overlap": 0.25})
        save_checkpoint(runs[1] / "checkpoints" / name, state)
    assert main(["export", str(runs[0]), str(runs[1]), "--output", str(tmp_path / "mixed")]) == 1
    assert "the cards differ in overlap" in capsys.readouterr().err
    assert not (tmp_path / "twice").exists() and not (tmp_path / "mixed").exists()
