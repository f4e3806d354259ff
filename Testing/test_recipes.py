"""The shipped training recipes load, and the BraTS recipe gives the card the paper's setting needs."""

from __future__ import annotations

import json

import pytest

from conftest import MODULE_DIR, shared_data
from missu.bundle.card import ModelCard
from missu.cli import main
from missu.data.datasets import dataset_info
from missu.training.recipe import load_recipe
from missu.training.trainer import _draft_card

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
