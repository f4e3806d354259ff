"""Bad input never yields a result, a traceback or a damaged file (issue 12): one line naming the file and the
problem, a non-zero exit, nothing new left behind and nothing existing changed."""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import shared_data
from missu.bundle import read_card
from missu.bundle.registry import resolve_bundle
from missu.cli import main
from missu.data.atomic import HOST, atomic_path
from missu.data.images import read_image
from missu.errors import MISSUError

FORMATS = [(".nii.gz", True), (".nii", False), (".nrrd", True), (".nrrd", False), (".mha", True), (".mha", False)]


def _volume(nan: bool = False) -> sitk.Image:
    array = np.random.default_rng(0).random((24, 28, 32), dtype=np.float32)
    if nan:
        array[3, 4, 5] = np.nan
    return sitk.GetImageFromArray(array)


def _error_line(capsys, command: str = "segment") -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith(f"missu {command}: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".partial-"))


@pytest.mark.parametrize("suffix, compressed", FORMATS)
def test_an_image_cut_short_is_refused_in_every_format(tmp_path, suffix, compressed):
    path = tmp_path / f"cut{suffix}"
    sitk.WriteImage(_volume(), str(path), useCompression=compressed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(MISSUError, match=rf"^{path}: .*(cut short|damaged)"):
        read_image(path)


@pytest.mark.parametrize("suffix, compressed", FORMATS)
def test_nan_is_refused_in_every_format(tmp_path, suffix, compressed):
    path = tmp_path / f"nan{suffix}"
    sitk.WriteImage(_volume(nan=True), str(path), useCompression=compressed)
    with pytest.raises(MISSUError, match=rf"^{path}: holds NaN or infinite values"):
        read_image(path)


def test_a_truncated_case_fails_in_single_and_batch_mode(make_bundle, tmp_path, capsys):
    bundle = make_bundle()
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("good", "cut"):
        sitk.WriteImage(_volume(), str(cases / f"{name}.nii.gz"), useCompression=True)
    cut = cases / "cut.nii.gz"
    cut.write_bytes(cut.read_bytes()[:-200])
    assert main(["segment", "--model", str(bundle), "--input", str(cut), "--output", str(tmp_path / "o.seg.nrrd")]) == 1
    assert str(cut) in _error_line(capsys) and not (tmp_path / "o.seg.nrrd").exists()
    assert main(["segment", "--model", str(bundle), "--batch", str(cases), "--output", str(tmp_path / "out")]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.seg.nrrd"]
    assert "case cut failed" in capsys.readouterr().err


CARD_MUTATIONS = {
    "spacing": ("abc", "spacing"),
    "labels": ("left atrium", "labels"),
    "orientation": ("XYZ", "orientation"),
    "normalization": ("minmax", "normalization"),
    "keep_largest_component": ("no", "keep_largest_component"),
    "sw_batch_size": (0, "sw_batch_size"),
    "name": (123, "name"),
    "network.roi_size": ("64", "network.roi_size"),
    "network.num_heads": (3, "network"),
    "labels.0.color": ("red", "labels[0].color"),
}


def _mutated_bundle(make_bundle, tmp_path, field: str, value) -> tuple:
    bundle = make_bundle()
    card_path = bundle / "card.json"
    card = json.loads(card_path.read_text())
    *parents, last = field.split(".")
    target = card
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(last) if last.isdigit() else last] = value
    card_path.write_text(json.dumps(card))
    return bundle, card_path


@pytest.mark.parametrize("field", CARD_MUTATIONS)
def test_card_values_of_the_wrong_type_or_meaning_name_the_file_and_field(make_bundle, tmp_path, capsys, field):
    value, named = CARD_MUTATIONS[field]
    bundle, card_path = _mutated_bundle(make_bundle, tmp_path, field, value)
    with pytest.raises(MISSUError, match=rf"^{re.escape(str(card_path))}: {re.escape(named)}"):
        read_card(bundle)
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(_volume(), str(image))
    assert main(["segment", "--model", str(bundle), "--input", str(image), "--output", str(tmp_path / "o.seg.nrrd")]) == 1
    assert str(card_path) in _error_line(capsys)


def test_a_card_that_is_not_a_mapping(make_bundle):
    bundle = make_bundle()
    (bundle / "card.json").write_text("[1, 2]")
    with pytest.raises(MISSUError, match=r"card.json: card: \[1, 2\] is not of type 'object'"):
        read_card(bundle)


def test_every_output_path_is_checked_before_inference(make_bundle, tmp_path, capsys):
    bundle = make_bundle()
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(_volume(), str(image))
    original = image.read_bytes()
    seg = tmp_path / "o.seg.nrrd"
    base = ["segment", "--model", str(bundle), "--input", str(image), "--output", str(seg)]

    assert main([*base, "--label-out", str(image), "--overwrite"]) == 1
    assert "is also an input" in _error_line(capsys) and image.read_bytes() == original
    assert main([*base, "--label-out", str(seg)]) == 1
    assert "is also the segmentation output" in _error_line(capsys)
    assert main([*base, "--label-out", str(tmp_path / "labels.txt")]) == 1
    assert "labels.txt: the labels output must end in .nii.gz or .nii or .nrrd or .mha" in _error_line(capsys)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*base, "--label-out", str(blocker / "labels.nii.gz")]) == 1
    assert "is a file, not a folder" in _error_line(capsys)
    assert main(["segment", "--model", str(bundle), "--input", str(image), "--output", str(tmp_path / "x.nrrd")]) == 1
    assert "must end in .seg.nrrd" in _error_line(capsys)
    assert not seg.exists() and not _leftovers(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions (root may write anywhere)")
def test_a_read_only_folder_is_refused_before_inference(make_bundle, tmp_path, capsys):
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(_volume(), str(image))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["segment", "--model", str(make_bundle()), "--input", str(image),
                 "--output", str(locked / "o.seg.nrrd")]) == 1
    assert "no write permission" in _error_line(capsys)


def test_an_existing_output_needs_the_flag_by_its_command_line_name(make_bundle, tmp_path, capsys):
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(_volume(), str(image))
    seg = tmp_path / "o.seg.nrrd"
    seg.write_text("keep me")
    assert main(["segment", "--model", str(make_bundle()), "--input", str(image), "--output", str(seg)]) == 1
    line = _error_line(capsys)
    assert "pass --overwrite" in line and "overwrite=True" not in line and seg.read_text() == "keep me"


def test_interrupted_writes_leave_no_temporary_file(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt
    assert not target.exists() and not _leftovers(tmp_path)
    # A writer killed outright (SIGKILL) leaves its file; the next write into the folder removes it.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".partial-{HOST}-{dead.pid}-abcd1234-old.nii.gz"
    elsewhere = tmp_path / f".partial-otherhost-{dead.pid}-abcd1234-old.nii.gz"  # a shared folder: not ours
    elsewhere.write_bytes(b"theirs")
    stale.write_bytes(b"half")
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and _leftovers(tmp_path) == [elsewhere.name]


def test_outputs_that_belong_together_are_replaced_together_or_not_at_all(make_bundle, tmp_path, capsys, monkeypatch):
    import missu.data.segfile as segfile

    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(_volume(), str(image))
    seg, labels = tmp_path / "o.seg.nrrd", tmp_path / "o-labels.nii.gz"
    seg.write_bytes(b"the old segmentation")
    labels.write_bytes(b"its old label map")

    def disk_full(image, path, overwrite=False):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(segfile, "write_image", disk_full)  # the label map, written after the segmentation
    argv = ["segment", "--model", str(make_bundle()), "--input", str(image), "--output", str(seg), "--label-out",
            str(labels), "--overwrite"]
    assert main(argv) == 1
    assert "No space left on device" in _error_line(capsys)
    assert seg.read_bytes() == b"the old segmentation" and labels.read_bytes() == b"its old label map"
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    assert main(argv) == 0
    assert seg.read_bytes() != b"the old segmentation" and labels.read_bytes() != b"its old label map"


SLOW_WRITER = """
import sys, time
import slicerio
from missu.cli import main

def slow_write(path, segmentation):  # half a file, then a pause in which the test sends SIGTERM
    open(path, "wb").write(b"NRRD0004 half")
    print("writing", flush=True)
    time.sleep(60)

slicerio.write_segmentation = slow_write
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_writing_removes_the_partial_file(make_bundle, tmp_path):
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(_volume(), str(image))
    out = tmp_path / "out" / "result.seg.nrrd"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, "segment", "--model", str(make_bundle()), "--input", str(image),
         "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout.readline().strip() == "writing"
    assert _leftovers(out.parent), "the write is under way: its temporary file exists"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert "missu segment: cancelled" in process.stderr.read()
    assert not out.exists() and not _leftovers(out.parent)


def test_evaluate_skips_and_lists_bad_cases_like_training(make_bundle, tmp_path, capsys):
    root = shared_data("la2018")
    good = "la_06SR5RBREL16DQ6M8LWS"
    image = sitk.ReadImage(str(root / f"imagesTr/{good}.nii.gz"))
    label = sitk.ReadImage(str(root / f"labelsTr/{good}.nii.gz"))
    small_image = image[40:104, 40:104, 20:60]
    small_label = label[40:104, 40:104, 20:60]
    sitk.WriteImage(small_image, str(tmp_path / "img.nii.gz"))
    sitk.WriteImage(small_label, str(tmp_path / "lab.nii.gz"))
    shifted = sitk.Image(small_label)
    shifted.SetOrigin([o + 5 for o in small_label.GetOrigin()])
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    sitk.WriteImage(small_label[:, :, :30], str(tmp_path / "smaller.nii.gz"))
    undeclared = sitk.Image(small_label)
    undeclared[5, 5, 5] = 7
    sitk.WriteImage(undeclared, str(tmp_path / "undeclared.nii.gz"))
    entries = {"good": "lab.nii.gz", "shifted": "shifted.nii.gz", "smaller": "smaller.nii.gz",
               "undeclared": "undeclared.nii.gz"}
    for name in entries:
        shutil.copy(tmp_path / "img.nii.gz", tmp_path / f"{name}.img.nii.gz")
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({
        "labels": {"0": "background", "1": "left atrium"},
        "training": [*({"image": f"{n}.img.nii.gz", "label": lab} for n, lab in entries.items()),
                     {"image": "missing.img.nii.gz", "label": "missing.nii.gz"}],
    }))
    assert main(["evaluate", "--model", str(make_bundle()), "--dataset", str(dataset), "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert list(report["cases"]) == ["good.img"]
    skipped = report["skipped"]
    assert set(skipped) == {"shifted.img", "smaller.img", "undeclared.img", "missing.img"}
    assert "origin" in skipped["shifted.img"] and "size" in skipped["smaller.img"]
    assert "[7]" in skipped["undeclared.img"] and "no such file" in skipped["missing.img"]
    assert "Traceback" not in out.err


@pytest.mark.parametrize("content, problem", [
    (b'[{"image": "a.nii.gz"}]', "must hold a JSON object (MSD format), not a list"),
    (b'{"labels": {"1": "atrium"}, "training": [', "not valid JSON"),
    (b'{"labels": {"1": "atrium"}, "training": [{"img": "a.nii.gz"}]}', "'training' must list objects with an 'image'"),
    (b'{"labels": ["atrium"], "training": []}', "map integer strings to names or values"),
    (b'{"labels": {"one": "atrium"}, "training": []}', "map integer strings to names or values"),
    (b'\xff\xfe{"labels"', "not valid JSON"),
])
def test_a_malformed_dataset_json_is_named_with_its_problem(make_bundle, tmp_path, capsys, content, problem):
    dataset = tmp_path / "dataset.json"
    dataset.write_bytes(content)
    assert main(["evaluate", "--model", str(make_bundle()), "--dataset", str(dataset)]) == 1
    line = _error_line(capsys, "evaluate")
    assert str(dataset) in line and problem in line, line


@pytest.mark.parametrize("table, problem", [
    (b"case,image\na,a.nii.gz\na,b.nii.gz\n", "line 3: case 'a' is listed twice"),
    (b"case,image\na\n", "line 2: needs a case name and a file for each of image"),
    (b"case,image\n\xff\xfe,a.nii.gz\n", "not a UTF-8 CSV file"),
])
def test_a_malformed_case_list_is_refused_before_any_case_runs(make_bundle, tmp_path, capsys, table, problem):
    csv_path = tmp_path / "cases.csv"
    csv_path.write_bytes(table)
    assert main(["segment", "--model", str(make_bundle()), "--batch", str(csv_path), "--output", str(tmp_path / "out")]) == 1
    line = _error_line(capsys)
    assert str(csv_path) in line and problem in line, line
    assert not (tmp_path / "out").exists()


def test_a_batch_folder_never_reads_outputs_as_cases(make_bundle, tmp_path, capsys):
    bundle, cases = make_bundle(), tmp_path / "cases"
    cases.mkdir()
    sitk.WriteImage(_volume(), str(cases / "a.nii.gz"))
    inside = cases / "segmentations"
    assert main(["segment", "--model", str(bundle), "--batch", str(cases), "--output", str(inside)]) == 1
    assert "lies inside the batch folder" in _error_line(capsys) and not inside.exists()
    assert main(["segment", "--model", str(bundle), "--batch", str(cases), "--output", str(cases)]) == 1
    assert "lies inside the batch folder" in _error_line(capsys)
    out = tmp_path / "out"
    assert main(["segment", "--model", str(bundle), "--batch", str(cases), "--output", str(out)]) == 0
    shutil.copy(out / "a.seg.nrrd", cases / "a.seg.nrrd")  # an earlier result kept beside its image
    assert main(["segment", "--model", str(bundle), "--batch", str(cases), "--output", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.seg.nrrd"]
    assert "1 of 1 case(s) segmented" in capsys.readouterr().err


def test_other_refusals_are_one_line(tmp_path, capsys, monkeypatch):
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(_volume(), str(image))
    assert main(["segment", "--input", str(image), "--output", str(tmp_path / "o.seg.nrrd"), "--device", "banana"]) == 1
    assert "device 'banana': choose auto, cpu, cuda or cuda:N" in _error_line(capsys)

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("MISSU_MODELS", str(models))
    monkeypatch.setenv("MISSU_CACHE", str(tmp_path / "cache"))
    (models / "registry.json").write_text(json.dumps({"models": {"remote": {"url": "https://example.org/x.zip"}}}))
    assert main(["segment", "--model", "remote", "--input", str(image), "--output", str(tmp_path / "o.seg.nrrd")]) == 1
    assert "registry.json: model 'remote' needs a 'url' and a 'sha256'" in _error_line(capsys)


def test_dicomweb_credentials_never_reach_a_message(tmp_path, capsys):
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(_volume(), str(image))
    url = "http://alice:s3cret@127.0.0.1:9/dicom-web"  # nothing listens on port 9
    assert main(["segment", "--dicomweb", url, "--study", "1.2.3"]) == 1
    line = _error_line(capsys)
    assert "http://127.0.0.1:9/dicom-web: searching study 1.2.3 failed" in line and "s3cret" not in line
    assert main(["segment", "--dicomweb", "http://[::1/dicom-web", "--study", "1.2.3"]) == 1
    assert "--dicomweb: not a valid URL" in _error_line(capsys)


def test_a_damaged_cached_download_is_fetched_again(make_bundle, tmp_path, monkeypatch):
    import hashlib

    archive = tmp_path / "remote.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in make_bundle().iterdir():
            z.write(f, f.name)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    models = tmp_path / "models"
    models.mkdir()
    (models / "registry.json").write_text(json.dumps({"models": {"remote": {"url": archive.as_uri(), "sha256": sha}}}))
    monkeypatch.setenv("MISSU_MODELS", str(models))
    monkeypatch.setenv("MISSU_CACHE", str(tmp_path / "cache"))
    cached = resolve_bundle("remote")
    cached.write_bytes(b"damaged")
    again = resolve_bundle("remote")
    assert again == cached and again.read_bytes() == archive.read_bytes()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("missu ")
