"""End-to-end tests of the `nlprompt-hf` commands: `main([...])` on the tiny CLIP and generated image files."""

import csv
import json
import os
import re
from dataclasses import fields

import numpy as np
import pytest
from datasets import load_from_disk
from PIL import Image

from nlprompt_hf import pipeline
from nlprompt_hf.cli import COMMANDS, _dataclasses, main, make_parser
from tests.tiny_clip import make_image_dataset

NAMES = [
    "blue bar",
    "green circle",
    "red square",
    "yellow dot",
]  # folder names, sorted, underscores -> spaces


def _write_imagefolder(root, n_per_class=8, num_classes=4, seed=0):
    ds = make_image_dataset(n_per_class=n_per_class, num_classes=num_classes, seed=seed)
    for split in ("train", "test"):
        names = ds[split].features["label"].names
        for i, row in enumerate(ds[split]):
            folder = os.path.join(root, split, names[row["label"]].replace(" ", "_"))
            os.makedirs(folder, exist_ok=True)
            row["image"].save(os.path.join(folder, f"{i}.png"))
    return str(root)


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory):
    return _write_imagefolder(tmp_path_factory.mktemp("imagefolder"))


@pytest.fixture(scope="module")
def csv_dataset(tmp_path_factory):
    """The same kind of images as a CSV of relative paths and string labels, without a test split."""
    root = tmp_path_factory.mktemp("csvdata")
    ds = make_image_dataset(n_per_class=6, num_classes=4, seed=3)["train"]
    names = ds.features["label"].names
    os.makedirs(root / "img")
    with open(root / "data.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "category"])
        for i, row in enumerate(ds):
            row["image"].save(root / "img" / f"{i}.png")
            writer.writerow([f"img/{i}.png", names[row["label"]]])
    return str(root / "data.csv")


def _train_argv(clip, data, out, cache, *extra):
    return [
        "train",
        "--model_name_or_path", clip,
        "--dataset_name_or_path", data,
        "--shots", "6",
        "--noise_type", "symmetric",
        "--noise_rate", "0.5",
        "--num_train_epochs", "3",
        "--per_device_train_batch_size", "8",
        "--learning_rate", "0.05",
        "--n_ctx", "4",
        "--eval_strategy", "epoch",
        "--save_strategy", "epoch",
        "--use_cpu",
        "--disable_tqdm", "true",
        "--feature_cache_dir", cache,
        "--output_dir", out,
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_clip_dir, imagefolder, tmp_path_factory):
    """One `train` run (NLPrompt + a CoOp baseline, 50 % symmetric noise) shared by the tests below."""
    root = tmp_path_factory.mktemp("train")
    out, cache = str(root / "run"), str(root / "cache")
    assert main(_train_argv(tiny_clip_dir, imagefolder, out, cache, "--baselines", "coop")) == 0
    return {"out": out, "cache": cache, "root": root}


def test_train_output_directory_contents(trained, tiny_clip_dir):
    out = trained["out"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "prompt_config.json", "training_args.json",
                 "trainer_state.json", "metrics.json", "report.md", "README.md"):  # fmt: skip
        assert os.path.isfile(os.path.join(out, name)), name
    # a finished run keeps no staging folder, marker or checkpoint
    assert not os.path.exists(out + pipeline.INCOMPLETE_SUFFIX)
    assert not os.path.exists(os.path.join(out, pipeline.INCOMPLETE_MARKER))
    assert not [n for n in os.listdir(out) if n.startswith("checkpoint-")]

    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["method"] == "nlprompt"
    assert metrics["class_names"] == NAMES
    for key in ("eval_accuracy", "zero_shot_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert 0.0 <= metrics["baselines"]["coop"]["eval_accuracy"] <= 1.0
    assert set(metrics["per_class_accuracy"]) == set(NAMES)
    assert all(0.0 <= v <= 1.0 for v in metrics["per_class_accuracy"].values())
    # per-class accuracy is consistent with the top-1 accuracy (balanced test split: 4 per class)
    assert np.mean(list(metrics["per_class_accuracy"].values())) == pytest.approx(metrics["eval_accuracy"])
    assert metrics["num_train_samples"] == 24 and metrics["num_test_samples"] == 16
    assert metrics["noise_report"]["realised_rate"] == pytest.approx(0.5)
    history = metrics["purification"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for h in history:
        for key in ("clean_fraction", "noise_precision", "noise_recall"):
            assert 0.0 <= h[key] <= 1.0, key
        assert h["noise_rate_true"] == pytest.approx(0.5)
    assert metrics["final_split"]["recall"] == history[-1]["noise_recall"]
    confusion = np.asarray(metrics["confusion_matrix"])
    assert confusion.shape == (4, 4) and confusion.sum() == 16
    assert np.trace(confusion) / 16 == pytest.approx(metrics["eval_accuracy"])

    with open(os.path.join(out, "trainer_state.json")) as f:
        state = json.load(f)
    assert any("eval_accuracy" in h for h in state["log_history"])
    assert any("clean_fraction" in h for h in state["log_history"])


def test_report_references_valid_pngs(trained):
    out = trained["out"]
    with open(os.path.join(out, "report.md")) as f:
        report = f.read()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {
        "training_curves.png",
        "purification.png",
        "transition_matrices.png",
        "confusion_matrix.png",
    } <= set(images)
    for name in images:
        with Image.open(os.path.join(out, name)) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
    assert "| NLPrompt |" in report and "| CoOp (CE) |" in report and "| zero-shot CLIP |" in report


def test_model_card_names_base_model_and_method(trained, tiny_clip_dir):
    with open(os.path.join(trained["out"], "README.md")) as f:
        card = f.read()
    assert tiny_clip_dir in card
    assert "method:nlprompt" in card and "| method | nlprompt |" in card
    assert "pan2025nlprompt" in card  # citation
    assert "NLPromptModel.from_pretrained" in card  # usage
    assert "top-1 accuracy (test)" in card and "noise rate" in card


def test_evaluate_matches_train_metrics(trained, imagefolder, tmp_path):
    out_file = str(tmp_path / "eval.json")
    argv = ["evaluate", "--adapter_name_or_path", trained["out"], "--dataset_name_or_path", imagefolder,
            "--output_file", out_file, "--feature_cache_dir", trained["cache"]]  # fmt: skip
    assert main(argv) == 0
    with open(out_file) as f:
        result = json.load(f)
    with open(os.path.join(trained["out"], "metrics.json")) as f:
        metrics = json.load(f)
    assert result["num_samples"] == 16
    assert result["accuracy"] == pytest.approx(metrics["eval_accuracy"])
    assert result["per_class_accuracy"] == pytest.approx(metrics["per_class_accuracy"])


def test_evaluate_refuses_other_classes(trained, tmp_path, capsys):
    other = _write_imagefolder(tmp_path / "three", n_per_class=2, num_classes=3)
    argv = ["evaluate", "--adapter_name_or_path", trained["out"], "--dataset_name_or_path", other,
            "--feature_cache_dir", trained["cache"]]  # fmt: skip
    assert main(argv) == 1
    assert "trained for 4 classes" in capsys.readouterr().err


def test_zero_shot(tiny_clip_dir, imagefolder, trained, tmp_path):
    out_file = str(tmp_path / "zs.json")
    argv = ["zero-shot", "--model_name_or_path", tiny_clip_dir, "--dataset_name_or_path", imagefolder,
            "--output_file", out_file, "--feature_cache_dir", trained["cache"]]  # fmt: skip
    assert main(argv) == 0
    with open(out_file) as f:
        result = json.load(f)
    with open(os.path.join(trained["out"], "metrics.json")) as f:
        metrics = json.load(f)
    assert result["template"] == "a photo of a {}."
    assert set(result["per_class_accuracy"]) == set(NAMES)
    assert result["accuracy"] == pytest.approx(metrics["zero_shot_accuracy"])


@pytest.mark.parametrize("ext", ["csv", "json"])
def test_predict_one_row_per_image(trained, imagefolder, tmp_path, ext):
    out_file = str(tmp_path / f"preds.{ext}")
    single = os.path.join(
        imagefolder, "train", "red_square", os.listdir(os.path.join(imagefolder, "train", "red_square"))[0]
    )
    argv = ["predict", "--adapter_name_or_path", trained["out"], "--images", os.path.join(imagefolder, "test"),
            single, "--output_file", out_file, "--top_k", "3"]  # fmt: skip
    assert main(argv) == 0
    if ext == "csv":
        with open(out_file, newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 17
        for row in rows:
            assert row["label"] in NAMES and 0.0 < float(row["probability"]) <= 1.0
            top = row["top_k"].split(";")
            assert len(top) == 3 and top[0].split(":")[0] == row["label"]
    else:
        with open(out_file) as f:
            rows = json.load(f)
        assert len(rows) == 17 and len({r["path"] for r in rows}) == 17
        for row in rows:
            probs = [t["probability"] for t in row["top_k"]]
            assert probs == sorted(probs, reverse=True) and row["probability"] == probs[0]


def test_audit_ranks_injected_noise_first(trained, imagefolder, tmp_path):
    out = str(tmp_path / "audit")
    argv = ["audit", "--adapter_name_or_path", trained["out"], "--dataset_name_or_path", imagefolder,
            "--noise_type", "symmetric", "--noise_rate", "0.25", "--noise_seed", "3", "--output_dir", out,
            "--feature_cache_dir", trained["cache"]]  # fmt: skip
    assert main(argv) == 0
    with open(os.path.join(out, "audit_metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["num_samples"] == 32 and metrics["num_truly_noisy"] == 8
    assert metrics["auroc"] > 0.5

    with open(os.path.join(out, "label_audit.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 32
    issues = [r["label_issue"] == "True" for r in rows]
    assert issues == sorted(issues, reverse=True)  # rejected labels first
    assert sum(issues) == metrics["num_label_issues"]
    flagged = [float(r["label_score"]) for r, i in zip(rows, issues) if i]
    assert flagged == sorted(flagged)
    # truly noisy samples sit higher in the ranking than clean ones on average
    noisy_ranks = [int(r["rank"]) for r in rows if r["given_label"] != r["clean_label"]]
    clean_ranks = [int(r["rank"]) for r in rows if r["given_label"] == r["clean_label"]]
    assert np.mean(noisy_ranks) < np.mean(clean_ranks)

    audited = load_from_disk(os.path.join(out, "audited_dataset"))
    assert {"suggested_label", "label_issue", "label_score", "audit_rank", "image", "label"} <= set(
        audited.column_names
    )
    assert audited["audit_rank"] == list(range(32))
    assert audited.features["suggested_label"].names == NAMES


def test_audit_with_zero_shot_prompts_and_csv(tiny_clip_dir, csv_dataset, tmp_path):
    out = str(tmp_path / "audit")
    argv = ["audit", "--base_model_name_or_path", tiny_clip_dir, "--dataset_name_or_path", csv_dataset,
            "--image_column", "file", "--label_column", "category", "--output_dir", out,
            "--feature_cache_dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(argv) == 0
    with open(os.path.join(out, "audit_metrics.json")) as f:
        metrics = json.load(f)
    assert "zero-shot prompts" in metrics["scored_with"]
    assert metrics["num_samples"] == 19  # 24 rows, a stratified 20 % held out as the test split
    assert "auroc" not in metrics  # labels as given: no truth to compare with
    with open(os.path.join(out, "label_audit.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 19 and all(r["image"].endswith(".png") for r in rows)


def test_train_refuses_non_empty_output_dir(trained, tiny_clip_dir, imagefolder, capsys):
    before = sorted(os.listdir(trained["out"]))
    assert main(_train_argv(tiny_clip_dir, imagefolder, trained["out"], trained["cache"])) == 1
    err = capsys.readouterr().err
    assert "already holds" in err and "--overwrite_output_dir" in err
    assert sorted(os.listdir(trained["out"])) == before


def test_failed_run_leaves_no_complete_looking_dir(tiny_clip_dir, csv_dataset, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    argv = _train_argv(tiny_clip_dir, csv_dataset, out, str(tmp_path / "cache"), "--image_column", "file",
                       "--label_column", "category", "--shots", "4")  # fmt: skip

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("nlprompt_hf.reporting.write_report", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(argv)
    assert not os.path.exists(out)
    staging = out + pipeline.INCOMPLETE_SUFFIX
    assert os.path.isfile(os.path.join(staging, pipeline.INCOMPLETE_MARKER))
    assert not os.path.exists(os.path.join(staging, "report.md"))
    assert [n for n in os.listdir(staging) if n.startswith("checkpoint-")]  # what resuming needs is there

    # the next run neither silently discards nor silently reuses the unfinished one
    monkeypatch.undo()
    assert main(argv) == 1
    assert "--resume_from_checkpoint" in capsys.readouterr().err
    # resuming finishes it (all epochs were done: the Trainer resumes from the last checkpoint)
    assert main(argv + ["--resume_from_checkpoint", "true"]) == 0
    assert os.path.isfile(os.path.join(out, "README.md")) and not os.path.exists(staging)
    with open(os.path.join(out, "metrics.json")) as f:
        assert 0.0 <= json.load(f)["eval_accuracy"] <= 1.0


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for dtype in _dataclasses(command):
        for f in fields(dtype):
            assert f"--{f.name}" in text, f.name
    assert "--config" in text and "(default: " in text


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in COMMANDS:
        assert command in text
    assert set(make_parser().commands) == set(COMMANDS)


def test_unknown_recipe_key_names_the_nearest(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("dataset_name_or_path: x\nlearning_rat: 0.1\n")
    assert main(["train", "--config", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "'learning_rat'" in err and "'learning_rate'" in err


def test_flags_override_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dataset_name_or_path: somewhere\nlearning_rate: 2e-3\nnum_train_epochs: 7\nshots: 4\n")
    parser = make_parser().commands["train"]
    model, data, noise, run, args = parser.parse_args_and_config(
        ["--config", str(recipe), "--num_train_epochs", "3", "--output_dir", str(tmp_path / "o")]
    )
    assert data.dataset_name_or_path == "somewhere" and noise.shots == 4
    assert args.learning_rate == pytest.approx(0.002)  # YAML's `2e-3` string goes through the option's type
    assert args.num_train_epochs == 3


def test_bad_values_are_value_errors(tiny_clip_dir, imagefolder, tmp_path, capsys):
    argv = ["train", "--model_name_or_path", tiny_clip_dir, "--dataset_name_or_path", imagefolder,
            "--noise_rate", "0.5", "--output_dir", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 1  # a rate without a synthetic noise type
    assert "noise_type" in capsys.readouterr().err
    assert (
        main(["predict", "--adapter_name_or_path", "x", "--images", "a.png", "--output_file", "p.txt"]) == 1
    )
    assert ".csv" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the offline demo
def test_no_arguments_runs_the_demo_recipe(tmp_path, monkeypatch, capsys):
    """`nlprompt-hf train` alone parses the packaged demo recipe (the run itself is replaced here)."""
    calls = []
    monkeypatch.setattr(pipeline, "run_train", lambda *parsed: calls.append(parsed))
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 0
    model, data, noise, run, args = calls[0]
    assert (model.model_name_or_path, data.dataset_name_or_path) == ("demo", "demo")
    assert (noise.shots, noise.noise_type, noise.noise_rate) == (16, "symmetric", 0.5)
    assert args.method == "nlprompt" and run.baselines == ["coop"]
    assert args.output_dir == "nlprompt-output"
    assert "offline demo" in capsys.readouterr().out
    # a second run does not overwrite the first one's results
    os.makedirs(tmp_path / "nlprompt-output")
    (tmp_path / "nlprompt-output" / "metrics.json").write_text("{}")
    assert main(["train"]) == 1
    assert "--overwrite_output_dir" in capsys.readouterr().err


def _demo_installed():
    from nlprompt_hf.demo import DEMO_CHECKPOINT

    return os.path.isfile(os.path.join(DEMO_CHECKPOINT, "config.json"))


@pytest.mark.demo
@pytest.mark.skipif(not _demo_installed(), reason="the demo checkpoint is not built yet")
def test_demo_smoke(tmp_path, capsys):
    """The demo recipe end to end on the shipped CLIP, with fewer epochs."""
    out = str(tmp_path / "demo")
    argv = ["train", "--config", "demo", "--num_train_epochs", "3", "--output_dir", out, "--disable_tqdm", "true",
            "--feature_cache_dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for row in ("| zero-shot CLIP |", "| CoOp (CE) |", "| NLPrompt |"):
        assert row in printed
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["num_train_samples"] == 160 and metrics["noise_report"]["realised_rate"] == pytest.approx(
        0.5
    )
    assert 0.0 <= metrics["baselines"]["coop"]["eval_accuracy"] <= 1.0
    assert 0.0 <= metrics["final_split"]["precision"] <= 1.0


# ------------------------------------------------------------------------------------------- Hub uploads (mocked)
def test_train_push_to_hub_uploads_adapter_and_card(tiny_clip_dir, imagefolder, tmp_path, monkeypatch):
    from nlprompt_hf import NLPromptModel

    pushed = {}

    def fake_push(self, repo_id, **kwargs):
        pushed.update(repo_id=repo_id, **kwargs)
        self.save_pretrained(tmp_path / "uploaded", model_card=kwargs["model_card"])

    monkeypatch.setattr(NLPromptModel, "push_to_hub", fake_push)
    argv = _train_argv(tiny_clip_dir, imagefolder, str(tmp_path / "run"), str(tmp_path / "cache"),
                       "--num_train_epochs", "1", "--push_to_hub", "--hub_model_id", "me/tiny-prompts")  # fmt: skip
    assert main(argv) == 0
    assert pushed["repo_id"] == "me/tiny-prompts"
    uploaded = sorted(os.listdir(tmp_path / "uploaded"))
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "prompt_config.json"} <= set(
        uploaded
    )
    card = (tmp_path / "uploaded" / "README.md").read_text()
    assert 'from_pretrained("me/tiny-prompts")' in card and "top-1 accuracy (test)" in card


def test_audit_push_to_hub(trained, imagefolder, tmp_path, monkeypatch, capsys):
    import datasets

    pushed = {}
    monkeypatch.setattr(
        datasets.Dataset,
        "push_to_hub",
        lambda self, repo_id, **kw: pushed.update(repo_id=repo_id, columns=self.column_names),
    )
    base = ["audit", "--adapter_name_or_path", trained["out"], "--dataset_name_or_path", imagefolder,
            "--feature_cache_dir", trained["cache"]]  # fmt: skip
    assert main(base + ["--output_dir", str(tmp_path / "a"), "--push_to_hub"]) == 1
    assert "--hub_dataset_id" in capsys.readouterr().err
    assert (
        main(base + ["--output_dir", str(tmp_path / "b"), "--push_to_hub", "--hub_dataset_id", "me/audited"])
        == 0
    )
    assert pushed["repo_id"] == "me/audited" and "label_issue" in pushed["columns"]


def test_train_on_labels_as_given(tiny_clip_dir, csv_dataset, tmp_path):
    """Real noise (no true labels): no precision / recall anywhere, the report still has every plot it can."""
    out = str(tmp_path / "run")
    argv = _train_argv(tiny_clip_dir, csv_dataset, out, str(tmp_path / "cache"), "--image_column", "file",
                       "--label_column", "category", "--shots", "4", "--noise_type", "real", "--noise_rate", "0",
                       "--num_train_epochs", "2")  # fmt: skip
    assert main(argv) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["noise"] == {"type": "real", "shots": 4}
    assert metrics["noise_report"]["realised_rate"] is None
    assert set(metrics["final_split"]) == {"clean_fraction"}
    assert all("noise_precision" not in h for h in metrics["purification"])
    report = open(os.path.join(out, "report.md")).read()
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        with Image.open(os.path.join(out, name)) as img:
            img.verify()
    assert "transition_matrices.png" in report and "| NLPrompt | " in report


def test_class_names_list_or_json_file(tmp_path):
    from nlprompt_hf.arguments import DataArguments

    assert DataArguments("d", class_names=["cat", "dog"]).load_kwargs()["class_names"] == ["cat", "dog"]
    assert DataArguments("d", class_names=["names.json"]).load_kwargs()["class_names"] == "names.json"
    with pytest.raises(ValueError, match="test_size"):
        DataArguments("d", test_size=1.5)
