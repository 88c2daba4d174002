"""Every YAML recipe loads and validates against the `train` dataclasses; the demo recipe ships in the package."""

import glob
import os

import pytest

from nlprompt_hf.arguments import PACKAGED_RECIPES, load_recipe
from nlprompt_hf.cli import _dataclasses, make_parser
from nlprompt_hf.data import DATASET_CATALOG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "recipes", "**", "*.yaml"), recursive=True)
    if "demo_clip" not in p
)
PAPER_DATASETS = ("caltech101", "dtd", "eurosat", "flowers102", "oxford_pets", "stanford_cars", "ucf101")


def _parse(path, tmp_path):
    parser = make_parser().commands["train"]
    return parser.parse_args_and_config(["--config", path, "--output_dir", str(tmp_path / "out")])


def test_every_paper_recipe_exists():
    names = {os.path.relpath(p, os.path.join(ROOT, "recipes")) for p in RECIPES}
    for dataset in PAPER_DATASETS:
        assert {f"{dataset}/sym_0.5.yaml", f"{dataset}/asym_0.5.yaml"} <= names, dataset
    assert {"food101n/real.yaml", "demo.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "recipes")))
def test_recipe_validates(path, tmp_path):
    with open(path) as f:
        text = f.read()
    assert text.startswith("# "), "a recipe opens with a comment header saying what it reproduces"
    assert "Reproduces" in text.split("\n\n")[0] or "demo" in path
    load_recipe(path, _dataclasses("train"))  # every key is a field
    model, data, noise, run, args = _parse(path, tmp_path)
    assert args.output_dir == str(tmp_path / "out")  # flags override the recipe
    if "demo" in os.path.basename(path):
        return
    # the paper's hyperparameters (SPEC §5)
    assert model.model_name_or_path == "openai/clip-vit-base-patch16"
    assert (args.learning_rate, args.sgd_momentum, args.weight_decay) == (0.002, 0.9, 0.0005)
    assert (args.per_device_train_batch_size, args.num_train_epochs) == (32, 200)
    assert (args.lr_scheduler_type, args.warmup_epochs, args.warmup_lr) == ("cosine", 1, 1e-5)
    assert args.augment and noise.shots == 16 and args.method == "nlprompt"
    assert (args.ot_reg, args.ot_cost) == (0.01, "neg_prob")
    dataset = os.path.basename(os.path.dirname(path))
    if dataset == "food101n":
        assert noise.noise_type == "real" and noise.noise_rate == 0.0
        assert data.test_dataset_name_or_path == "food101"
        assert "PLACEHOLDER" in text
    else:
        assert data.dataset_name_or_path == dataset and dataset in DATASET_CATALOG
        assert DATASET_CATALOG[dataset]["hub_id"] in text  # the header names the Hub dataset id
        kind = "symmetric" if os.path.basename(path).startswith("sym") else "asymmetric"
        assert (noise.noise_type, noise.noise_rate) == (kind, 0.5)


def test_demo_recipe_is_packaged_and_identical():
    packaged = os.path.join(PACKAGED_RECIPES, "demo.yaml")
    with open(packaged) as a, open(os.path.join(ROOT, "recipes", "demo.yaml")) as b:
        assert a.read() == b.read()
    recipe = load_recipe("demo", _dataclasses("train"))
    assert recipe["model_name_or_path"] == "demo" and recipe["dataset_name_or_path"] == "demo"
    assert (recipe["shots"], recipe["noise_type"], recipe["noise_rate"]) == (16, "symmetric", 0.5)
    assert recipe["method"] == "nlprompt" and recipe["baselines"] == ["coop"]


def test_unknown_key_names_the_nearest(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset_name_or_path: eurosat\nnoise_rat: 0.5\n")
    with pytest.raises(ValueError, match=r"Unknown key 'noise_rat'.*Did you mean 'noise_rate'"):
        load_recipe(str(bad), _dataclasses("train"))


def test_recipe_must_be_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        load_recipe(str(bad))


def test_missing_recipe_is_a_clear_error():
    with pytest.raises(ValueError, match="packaged recipe"):
        load_recipe("no-such-recipe")


def test_invalid_value_in_recipe_fails_validation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset_name_or_path: eurosat\nmethod: coop_ce\n")
    with pytest.raises(ValueError, match="method"):
        _parse(str(bad), tmp_path)
