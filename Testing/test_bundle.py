"""Bundles: safetensors + JSON card, cross-checked; found by name, path or a verified download."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import small_card
from missu.bundle import ensemble_state_dict, load_bundle, read_card, resolve_bundle, save_bundle
from missu.bundle import CARD_FILE, WEIGHTS_FILE
from missu.bundle.card import MAX_MEMBERS, SCHEMA_FILE, ModelCard
from missu.errors import MISSUError
from missu.network import build_model


def test_round_trip_float16_and_eval_output(make_bundle):
    path = make_bundle()
    bundle = load_bundle(path)
    card = small_card()
    assert bundle.card.to_dict() == {**card.to_dict(), "weights_sha256": bundle.card.weights_sha256}
    torch.manual_seed(0)
    reference = build_model(card.network, inference=True).eval()
    half = save_bundle(path.parent / "half", card, reference.state_dict(), half=True)
    assert (half / WEIGHTS_FILE).stat().st_size < 0.6 * (path / WEIGHTS_FILE).stat().st_size
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_bundle(half).build()(x), reference(x), atol=5e-2, rtol=5e-2)
        torch.testing.assert_close(bundle.build()(x), reference(x), atol=0, rtol=0)


def test_branch_weights_are_not_exported():
    card = small_card()
    model = build_model(card.network)  # with the distillation branch
    assert card.network.distillation
    with pytest.raises(MISSUError, match="unexpected"):
        save_bundle("/nonexistent/never-written", card, model.state_dict())


def test_tampered_weights_are_refused(make_bundle):
    path = make_bundle()
    data = bytearray((path / WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0xFF
    (path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(MISSUError, match="does not match the card.*altered"):
        load_bundle(path)


def test_card_that_disagrees_with_weights_is_refused(make_bundle):
    path = make_bundle()
    card = json.loads((path / CARD_FILE).read_text())
    card["network"]["widths"] = [8, 8, 8, 16]  # weights still carry the old widths, hash still matches
    (path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(MISSUError, match="weights do not match the card's network.*other shapes"):
        load_bundle(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.pop("labels"), "card: 'labels' is a required property"),
        (lambda c: c.update(colour="red"), r"card: Additional properties are not allowed \('colour' was unexpected\)"),
        (lambda c: c.update(labels=[]), r"labels: \[\] should be non-empty"),
        (lambda c: c["network"].update(layers=3), r"network: Additional properties .*'layers' was unexpected"),
        (lambda c: c.update(small_label_fallback={"label": 4, "min_voxels": 500, "to": 0}),
         r"small_label_fallback relabels 4 as 0, but its labels are \[1\]"),
        (lambda c: c.update(small_label_fallback={"label": 1, "min_voxels": 500, "to": 2}),
         r"small_label_fallback relabels 1 as 2, but its labels are \[1\]"),
    ],
)
def test_malformed_cards_are_refused(make_bundle, edit, message):
    path = make_bundle()
    card = json.loads((path / CARD_FILE).read_text())
    edit(card)
    (path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(MISSUError, match=message):
        load_bundle(path)


def test_a_bundle_is_replaced_whole_and_only_when_asked(make_bundle, tmp_path):
    import subprocess
    import sys

    from missu.data.atomic import HOST

    path = make_bundle("model")
    bundle = load_bundle(path)
    with pytest.raises(MISSUError, match=r"model: already exists; pass --overwrite to replace it"):
        save_bundle(path, bundle.card, bundle.state_dict)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".partial-{HOST}-{dead.pid}-abcd1234-model"  # an export killed while writing
    killed.mkdir()
    (killed / WEIGHTS_FILE).write_bytes(b"half")
    renamed = bundle.card.with_changes(description="replaced")
    save_bundle(path, renamed, bundle.state_dict, overwrite=True)
    assert load_bundle(path).card.description == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_not_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MISSUError, match="missing card.json, model.safetensors"):
        load_bundle(tmp_path / "empty")
    (tmp_path / "weights.pt").write_bytes(b"\x80\x04pickle")
    with pytest.raises(MISSUError, match="not a model bundle"):
        load_bundle(tmp_path / "weights.pt")


def test_found_by_name_and_as_zip(make_bundle, tmp_path, monkeypatch):
    path = make_bundle("my-model")
    monkeypatch.setenv("MISSU_MODELS", str(tmp_path))
    assert resolve_bundle("my-model") == path
    archive = tmp_path / "my-model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in (CARD_FILE, WEIGHTS_FILE):
            z.write(path / name, name)
    assert load_bundle(archive).card.name == "test"
    with pytest.raises(MISSUError, match="known: .*my-model"):
        resolve_bundle("no-such-model")

    damaged = bytearray(archive.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte in the compressed weights
    (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
    with pytest.raises(MISSUError, match="damaged.zip: damaged model bundle archive"):
        load_bundle(tmp_path / "damaged.zip")


@pytest.mark.parametrize("card_text, message", [
    (b'{"name": "\xff"}', "card.json is not valid JSON"),
    (b'{"spacing": [NaN, 1.0, 1.0]}', "card.json: NaN is not a number JSON allows"),
])
def test_a_card_that_is_not_json_is_one_error(make_bundle, card_text, message):
    path = make_bundle()
    (path / CARD_FILE).write_bytes(card_text)
    with pytest.raises(MISSUError, match=message):
        load_bundle(path)


def test_weights_too_large_for_half_precision_are_refused(tmp_path):
    card = small_card()
    weights = build_model(card.network, inference=True).state_dict()
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = weights[name] + 1e5  # float16 ends at 65504
    with pytest.raises(MISSUError, match=f"weights {name} are not finite in float16"):
        save_bundle(tmp_path / "half", card, weights, half=True)
    assert not (tmp_path / "half").exists()
    save_bundle(tmp_path / "full", card, weights)


def test_registry_download_is_verified(make_bundle, tmp_path, monkeypatch):
    path = make_bundle("source")
    archive = tmp_path / "remote.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in (CARD_FILE, WEIGHTS_FILE):
            z.write(path / name, name)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("MISSU_MODELS", str(models))
    monkeypatch.setenv("MISSU_CACHE", str(tmp_path / "cache"))
    registry = {"models": {"remote-good": {"url": archive.as_uri(), "sha256": digest},
                           "remote-bad": {"url": archive.as_uri(), "sha256": "0" * 64}}}
    (models / "registry.json").write_text(json.dumps(registry))
    cached = resolve_bundle("remote-good")
    assert cached.is_file() and load_bundle(cached).card.name == "test"
    archive.unlink()
    assert resolve_bundle("remote-good") == cached  # served from the cache
    shutil.copy(cached, archive)
    with pytest.raises(MISSUError, match=r"^model remote-bad: download from \S+ has SHA-256 \w+\.\.\., registry says "
                                          r"0+\.\.\.; refused$"):
        resolve_bundle("remote-bad")
    assert not any(p.name.startswith("remote-bad") for p in (tmp_path / "cache" / "models").iterdir())

    # two processes (here threads) fetching the model at once each get the whole, verified file
    import threading
    import urllib.request

    class Slow:  # a download that arrives in small pieces, so that the two overlap; no length said
        headers: dict = {}

        def __init__(self, data: bytes):
            self.data = data

        def read(self, size: int) -> bytes:
            time.sleep(0.01)
            piece, self.data = self.data[:4096], self.data[4096:]
            return piece

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Slow(archive.read_bytes()))
    cached.unlink()
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(load_bundle(resolve_bundle("remote-good")).card.name))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["test", "test"]

    registry["models"]["relative"] = {"url": "remote.zip", "sha256": digest}
    (models / "registry.json").write_text(json.dumps(registry))
    with pytest.raises(MISSUError, match="'relative': 'url' must be an https://, http:// or file:// address"):
        resolve_bundle("remote-good")
    monkeypatch.setenv("MISSU_CACHE", "")  # set but empty: the default, not the current folder
    from missu.bundle.registry import cache_dir
    assert cache_dir() == Path.home() / ".cache" / "missu"


def test_card_checks_its_own_consistency():
    card = small_card()
    label = card.labels[0].__dict__
    with pytest.raises(MISSUError, match=r"labels\[0\]\.value: 0 is less than the minimum of 1"):
        ModelCard.from_dict({**card.to_dict(), "labels": [label | {"value": 0}]})
    with pytest.raises(MISSUError, match="2 labels \\+ background but the network has 2 outputs"):
        ModelCard.from_dict({**card.to_dict(), "labels": [label, label | {"value": 2}]})
    two = card.to_dict()
    two["network"]["out_channels"] = 3
    with pytest.raises(MISSUError, match="label values must be unique"):
        ModelCard.from_dict({**two, "labels": [label, label]})


def test_ensemble_bundle_averages_its_members_probabilities(tmp_path):
    card = small_card()
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        members.append(build_model(card.network, inference=True).eval())
    path = save_bundle(tmp_path / "ensemble", card.with_changes(members=2),
                       ensemble_state_dict([m.state_dict() for m in members]))
    assert json.loads((path / CARD_FILE).read_text())["members"] == 2
    assert "members" not in json.loads((save_bundle(tmp_path / "one", card, members[0].state_dict()) / CARD_FILE).read_text())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        probabilities = [torch.softmax(m(x), dim=1) for m in members]
        assert (probabilities[0] - probabilities[1]).abs().max() > 1e-3, "the members must differ for this test"
        got = torch.softmax(load_bundle(path).build()(x), dim=1)
    torch.testing.assert_close(got, (probabilities[0] + probabilities[1]) / 2, atol=1e-6, rtol=1e-5)
    with pytest.raises(MISSUError, match="weights do not match the card's network: missing"):
        save_bundle(tmp_path / "short", card.with_changes(members=3), ensemble_state_dict([m.state_dict() for m in members]))


@pytest.mark.parametrize("members", [0, 2.5, "2", MAX_MEMBERS + 1])
def test_a_bad_member_count_is_refused_naming_the_card(make_bundle, members):
    path = make_bundle()
    card = json.loads((path / CARD_FILE).read_text())
    (path / CARD_FILE).write_text(json.dumps({**card, "members": members}))
    with pytest.raises(MISSUError, match=f"{path / CARD_FILE}: members"):
        load_bundle(path)
    with pytest.raises(MISSUError, match="members must be 1 to 64"):  # where jsonschema is not installed yet
        small_card(members=members)
    assert json.loads(SCHEMA_FILE.read_text())["properties"]["members"]["maximum"] == MAX_MEMBERS


def test_models_lists_disk_and_registry_and_fetches_ahead(make_bundle, tmp_path, monkeypatch, capsys):
    from missu.cli import main

    archive, source = tmp_path / "remote.zip", make_bundle("source")
    with zipfile.ZipFile(archive, "w") as z:
        for name in (CARD_FILE, WEIGHTS_FILE):
            z.write(source / name, name)
    models = tmp_path / "models"
    shutil.copytree(source, models / "local")
    (models / "damaged").mkdir()
    (models / "damaged" / CARD_FILE).write_text("{not json")
    monkeypatch.setenv("MISSU_MODELS", str(models))
    monkeypatch.setenv("MISSU_CACHE", str(tmp_path / "cache"))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    registry = {"remote": {"url": archive.as_uri(), "sha256": digest, "description": "from the registry"},
                "local": {"url": archive.as_uri(), "sha256": digest}}  # a bundle on disk wins over its entry
    (models / "registry.json").write_text(json.dumps({"models": registry}))

    def listed() -> dict:
        capsys.readouterr()
        assert main(["models", "--json"]) == 0
        return {row["name"]: row for row in json.loads(capsys.readouterr().out)}

    rows = listed()
    assert rows["local"]["source"] == "disk" and rows["local"]["version"] == read_card(source).version
    assert "damaged" in rows and "error" in rows["damaged"]  # named, without hiding the others
    assert rows["remote"] == {"name": "remote", "source": "registry", "url": archive.as_uri(), "downloaded": False,
                              "path": rows["remote"]["path"], "description": "from the registry"}
    assert main(["models", "--fetch", "remote"]) == 0
    rows = listed()
    assert rows["remote"]["downloaded"] and Path(rows["remote"]["path"]).is_file()
    assert rows["remote"]["version"] == read_card(source).version  # now read from the downloaded card
    assert main(["models", "--fetch", "nowhere"]) == 1
    assert "model 'nowhere': in no registry.json" in capsys.readouterr().err
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert "remote" in table and "downloaded" in table and "damaged" in table
    (models / "registry.json").write_text("{damaged")  # named, and the bundles on disk are still listed
    rows = listed()
    assert "local" in rows and "registry.json: not a model registry" in rows["(registry)"]["error"]
