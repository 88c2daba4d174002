"""Bad input the other test files do not cover yet: each case of docs/errors.md has a test, here or elsewhere
(the table names it). Every error is a `ValueError` (or a documented subclass) that says what was expected, what
was found and how to fix it."""

import math

import pytest
import torch
from datasets import ClassLabel

from nlprompt_hf import NLPromptConfig, NLPromptModel, NLPromptTrainer
from nlprompt_hf.data.noise import inject_label_noise
from nlprompt_hf.purification import InvalidOTInputError
from tests.tiny_clip import make_image_dataset

NAMES = ["red square", "green circle", "blue bar", "yellow dot"]


def _train_set(n_per_class=2, num_classes=4):
    return make_image_dataset(n_per_class=n_per_class, num_classes=num_classes, seed=0)["train"]


def _trainer(clip_dir, tmp_path, train, names=NAMES, **kwargs):
    args = NLPromptConfig(
        **(
            dict(output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=8, n_ctx=4,
                 use_cpu=True, disable_tqdm=True, save_strategy="no", feature_cache_dir=str(tmp_path / "cache"),
                 seed=0)
            | kwargs
        )
    )
    model = NLPromptModel.from_base(clip_dir, names, **args.prompt_kwargs())
    return NLPromptTrainer(model=model, args=args, train_dataset=train)


# ---------------------------------------------------------------------------------------------- data given to the trainer


def test_trainer_data_without_image_column(tiny_clip_dir, tmp_path):
    train = _train_set().rename_column("image", "picture")
    with pytest.raises(ValueError, match=r"no 'image' column; found \['picture', 'label', 'sample_idx'\].*rename_column"):
        _trainer(tiny_clip_dir, tmp_path, train)


def test_trainer_data_without_label_column(tiny_clip_dir, tmp_path):
    train = _train_set().rename_column("label", "target")
    with pytest.raises(ValueError, match=r"train_dataset has no 'label' column; found \['image', 'target'.*'label'"):
        _trainer(tiny_clip_dir, tmp_path, train)


def test_trainer_class_count_differs_from_model(tiny_clip_dir, tmp_path):
    train = _train_set(num_classes=5)  # 5 classes in the data, 4 class names for the model
    with pytest.raises(ValueError, match=r"train_dataset has 5 classes .* but the model has 4 class names.*get_class_names"):
        _trainer(tiny_clip_dir, tmp_path, train)
    # labels all inside [0, 4) do not hide it
    few = train.filter(lambda r: r["label"] < 4)
    assert isinstance(few.features["label"], ClassLabel)
    with pytest.raises(ValueError, match="5 classes"):
        _trainer(tiny_clip_dir, tmp_path, few)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_precomputed_features(tiny_clip_dir, tmp_path, value):
    train = _train_set()
    feats = torch.randn(len(train), 32)
    feats[5, 3] = value
    args = NLPromptConfig(output_dir=str(tmp_path / "out"), n_ctx=4, use_cpu=True, disable_tqdm=True, seed=0)
    model = NLPromptModel.from_base(tiny_clip_dir, NAMES, **args.prompt_kwargs())
    with pytest.raises(ValueError, match=r"Expected finite image features, but 1 of 8 rows hold NaN/inf \(sample_idx \[5\]\)"):
        NLPromptTrainer(model=model, args=args, train_dataset=train, train_features=feats)


def test_precomputed_features_of_another_size(tiny_clip_dir, tmp_path):
    train = _train_set()
    args = NLPromptConfig(output_dir=str(tmp_path / "out"), n_ctx=4, use_cpu=True, disable_tqdm=True, seed=0)
    model = NLPromptModel.from_base(tiny_clip_dir, NAMES, **args.prompt_kwargs())
    with pytest.raises(ValueError, match=r"Precomputed features have 7 rows but the dataset has 8 samples\. Pass one"):
        NLPromptTrainer(model=model, args=args, train_dataset=train, train_features=torch.randn(7, 32))


def test_nan_prompts_stop_purification_with_a_clear_error(tiny_clip_dir, tmp_path):
    # a diverged context (NaN) reaches PromptOT at the next epoch start: refused, never a silent all-class-0 split
    train = inject_label_noise(_train_set(), rate=0.5, kind="symmetric", seed=0)
    trainer = _trainer(tiny_clip_dir, tmp_path, train)
    with torch.no_grad():
        trainer.model.context_parameter.fill_(math.nan)
    with pytest.raises(InvalidOTInputError, match=r"`text_features` must be finite, found NaN/inf in 4 of 4 rows"):
        trainer.train()
    assert issubclass(InvalidOTInputError, ValueError)


# ---------------------------------------------------------------------------------------------- resuming


def test_resume_without_a_checkpoint(tiny_clip_dir, tmp_path):
    trainer = _trainer(tiny_clip_dir, tmp_path, _train_set())
    with pytest.raises(ValueError, match=r"resume_from_checkpoint=True but .* holds no complete checkpoint.*from scratch"):
        trainer.train(resume_from_checkpoint=True)


def test_resume_from_an_interrupted_checkpoint_write(tiny_clip_dir, tmp_path):
    train = _train_set()
    first = _trainer(tiny_clip_dir, tmp_path, train, save_strategy="steps", save_steps=1)
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-1"
    (checkpoint / "trainer_state.json").write_text('{"log_history": [')  # cut short by a kill
    again = _trainer(tiny_clip_dir, tmp_path, train)
    with pytest.raises(ValueError, match=r"checkpoint-1' is an incomplete checkpoint.*resume_from_checkpoint=True"):
        again.train(resume_from_checkpoint=str(checkpoint))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):  # True skips it, and there is no other
        again.train(resume_from_checkpoint=True)


def test_resume_from_a_folder_that_is_no_checkpoint(tiny_clip_dir, tmp_path):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    trainer = _trainer(tiny_clip_dir, tmp_path, _train_set())
    with pytest.raises(ValueError, match=r"has no adapter_model.safetensors: not a checkpoint of this trainer\. Pass"):
        trainer.train(resume_from_checkpoint=str(folder))


# ---------------------------------------------------------------------------------------------- command-line values


def test_cli_noise_rate_and_method(capsys):
    from nlprompt_hf.arguments import NoiseArguments
    from nlprompt_hf.cli import make_parser

    with pytest.raises(ValueError, match=r"Expected `noise_rate` in \[0, 1\), but got 1\.0"):
        NoiseArguments(noise_type="symmetric", noise_rate=1.0)
    parser = make_parser().commands["train"]
    with pytest.raises(SystemExit):
        parser.parse_args_and_config(["--dataset_name_or_path", "d", "--method", "ce"])
    assert "argument --method: invalid choice: 'ce'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the table itself


def test_every_row_of_the_docs_table_names_existing_tests():
    """docs/errors.md stays honest: every row names at least one test, and every test it names exists."""
    import ast
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent
    rows = [line for line in (root / "docs" / "errors.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| What") and not line.startswith("|---")]
    assert len(rows) >= 40
    defined: dict[str, set[str]] = {}
    for row in rows:
        cell = row.rstrip(" |").rsplit(" | ", 1)[-1]
        refs = re.findall(r"`(?:(test_\w+\.py))?::(\w+)(?:\[[^\]]*\])?`", cell)
        assert refs, f"no test named in: {row}"
        current = None
        for file, test in refs:
            current = file or current  # `::other_test` continues the file named before it
            if current not in defined:
                tree = ast.parse((root / "tests" / current).read_text(encoding="utf-8"))
                defined[current] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert test in defined[current], f"{current}::{test} (named in docs/errors.md) does not exist"
