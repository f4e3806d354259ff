"""The shipped training recipes load, and the BraTS recipe gives the card the paper's setting needs."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import MODULE_DIR, la_dataset, shared_data
from missu.bundle.card import ModelCard
from missu.cli import main
from missu.data.datasets import dataset_info
from missu.errors import MISSUError
from missu.training.recipe import Recipe, load_recipe
from missu.training.trainer import _draft_card, _transforms

RECIPES = MODULE_DIR / "Resources" / "Recipes"


@pytest.mark.parametrize("name", ["la-mri", "brats"])
def test_recipes_load(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.epochs >= 1


def test_brats_recipe_and_import_give_the_papers_card(tmp_path):
    folder = shared_data("brats-tcga-4mod")
    assert main(["dataset", "import-brats", str(folder), "--output", str(tmp_path / "dataset.json"),
                 "--map", "3:1"]) == 0
    dataset = tmp_path / "dataset.json"
    card = _draft_card(dataset, dataset_info(dataset), load_recipe(RECIPES / "brats.yaml"), None)
    assert [c.name for c in card.inputs] == ["t1", "t1c", "t2", "flair"]
    assert [(lab.value, lab.name) for lab in card.labels] == [(1, "necrosis"), (2, "edema"), (4, "enhancing tumor")]
    assert card.regions == {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
    assert card.small_label_fallback == {"label": 4, "min_voxels": 500, "to": 1}
    assert card.preset == "missu" and card.network.roi_size == (128, 128, 128) and card.network.distillation
    shipped = ModelCard.from_dict(json.loads((RECIPES / "brats.card.json").read_text()))
    assert shipped.to_dict() == card.with_changes(name="brats", description=shipped.description).to_dict()


def test_the_distillation_setting_follows_the_preset_unless_the_recipe_says(tmp_path):
    dataset = la_dataset(tmp_path, ["la_06SR5RBREL16DQ6M8LWS"])
    info = dataset_info(dataset)
    card = lambda **settings: _draft_card(dataset, info, Recipe(**settings), None)  # noqa: E731
    assert card(preset="missu").network.distillation
    assert not card(preset="transbts").network.distillation, "the baseline preset trains without the teacher"
    assert not card(preset="missu", distillation=False).network.distillation
    assert card(preset="missu-small", network={"dropout": 0.0}).network.dropout == 0.0
    with pytest.raises(MISSUError, match=r"unknown network settings \['layers'\]"):
        card(preset="missu", network={"layers": 3})


def test_soft_labels_are_class_probabilities_everywhere_even_in_padding(tmp_path):
    dataset = la_dataset(tmp_path, ["la_06SR5RBREL16DQ6M8LWS"])
    info = dataset_info(dataset)
    recipe = Recipe(preset="missu-small", spacing=(1.25, 1.25, 1.25), soft_labels=True, anti_alias=True,
                    roi_size=(128, 96, 64), crops_per_volume=2, affine_prob=1.0, rotate_deg=10, scale_range=0.1)
    card = _draft_card(dataset, info, recipe, None)
    train, _ = _transforms(card, info, recipe)
    train.set_random_state(seed=0)
    case = {"image": [str(shared_data("la2018/imagesTr/la_06SR5RBREL16DQ6M8LWS.nii.gz"))],
            "label": str(shared_data("la2018/labelsTr/la_06SR5RBREL16DQ6M8LWS.nii.gz"))}
    for crop in train(case):
        soft, label = crop["soft"].as_tensor(), crop["label"].as_tensor()[0]
        assert soft.shape == (2, 128, 96, 64)  # larger than the case at 1.25 mm: padded
        torch.testing.assert_close(soft.sum(0), torch.ones_like(soft[0]), atol=1e-5, rtol=0)
        assert 0 < ((soft[1] > 0) & (soft[1] < 1)).sum(), "soft targets at the boundary"
        agree = ((soft[1] > 0.5) == (label == 1)).float().mean()
        assert agree > 0.97, f"soft and hard labels disagree on {1 - agree:.1%} of the voxels"


def test_a_setting_newer_than_a_run_reads_as_its_default_on_resume():
    stored = json.loads(json.dumps(Recipe(lr=1e-3).to_dict()))
    for newer in ("folds", "fold"):
        stored.pop(newer)
    assert Recipe(lr=1e-3).changes_from(stored) == {}
    assert Recipe(lr=1e-3, folds=5, fold=1).changes_from(stored) == {"folds": (0, 5), "fold": (0, 1)}
    stored.pop("soft_dice")  # a run from before the setting: it used the classic Dice, not today's default
    assert Recipe(lr=1e-3).changes_from(stored) == {"soft_dice": (False, True)}
    assert Recipe(lr=1e-3, soft_dice=False).changes_from(stored) == {}


@pytest.mark.parametrize("text, message", [
    ("roi_size: 96", "roi_size must be a list of 3 numbers, got 96"),
    ("epochs: 1.5", "epochs must be a whole number, got 1.5"),
    ("lr: fast", "lr must be a number, got 'fast'"),
    ("anti_alias: 1", "anti_alias must be true or false, got 1"),
    ("network: 3", "network must be a mapping, got 3"),
    ("folds: 0\nfold: 2", "fold must be in 0..folds-1"),
])
def test_a_setting_of_the_wrong_type_is_refused_naming_the_file_and_setting(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(MISSUError, match=f"^{path}: {message}"):
        load_recipe(path)


def test_numbers_yaml_reads_as_strings_are_numbers_and_a_fold_alone_means_five(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("lr: 5e-4\nweight_decay: 1e-5\nrotate_deg: 15\nspacing: [1, 1, 1.5]\n")  # YAML 1.1: '5e-4' is a str
    recipe = load_recipe(path)
    assert (recipe.lr, recipe.weight_decay, recipe.rotate_deg, recipe.spacing) == (5e-4, 1e-5, 15.0, (1.0, 1.0, 1.5))
    assert (load_recipe(path, fold=3).folds, load_recipe(path, fold=3).fold) == (5, 3)
    path.write_text("folds: 10\n")
    assert (load_recipe(path, fold=3).folds, load_recipe(path, fold=3).fold) == (10, 3)  # --fold keeps the recipe's folds
