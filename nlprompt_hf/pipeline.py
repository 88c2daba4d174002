"""The jobs behind the `nlprompt-hf` commands: train, evaluate, zero-shot, predict, audit.

Each `run_*` function takes the parsed argument dataclasses and does one job end to end; `nlprompt_hf.cli` only
parses and calls them, so they are also the programmatic way to run a command:

```python
>>> from nlprompt_hf.arguments import DataArguments, ModelArguments, NoiseArguments, TrainRunArguments
>>> from nlprompt_hf import NLPromptConfig
>>> from nlprompt_hf.pipeline import run_train
>>> metrics = run_train(
...     ModelArguments("demo"), DataArguments("demo"), NoiseArguments(noise_type="symmetric", noise_rate=0.5),
...     TrainRunArguments(), NLPromptConfig(output_dir="out", num_train_epochs=10),
... )  # doctest: +SKIP
```

Output directory of `train` (written in a sibling `<output_dir>.incomplete/` and renamed into place at the very
end, so an interrupted or failed run never leaves a directory that looks finished):

- `adapter_config.json`, `adapter_model.safetensors`, `prompt_config.json`: the learned prompts (PEFT adapter);
- `training_args.json`, `trainer_state.json`: the run's options and the Trainer's log history;
- `metrics.json`: test accuracy (top-1, per class), zero-shot and baseline accuracy, the per-epoch PromptOT
  metrics, the noise report;
- `report.md` + PNG plots; `README.md`: the model card.

The Trainer's `output_dir` is the `.incomplete` folder: its checkpoints live there while the run is going, so an
interrupted run resumes with `--resume_from_checkpoint true` (same `--output_dir`). A finished run drops the
checkpoints unless `--keep_checkpoints`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .arguments import (
    DEMO_NAME,
    AdapterArguments,
    AuditArguments,
    AuditDataArguments,
    AuditModelArguments,
    DataArguments,
    EvaluateArguments,
    ModelArguments,
    NoiseArguments,
    PredictArguments,
    TrainRunArguments,
    ZeroShotArguments,
)
from .config import NLPromptConfig

logger = logging.getLogger(__name__)

__all__ = [
    "EpochSummaryCallback",
    "load_data",
    "prepare_training_set",
    "resolve_model_path",
    "run_audit",
    "run_evaluate",
    "run_predict",
    "run_train",
    "run_zero_shot",
]

INCOMPLETE_SUFFIX = ".incomplete"
INCOMPLETE_MARKER = "RUN_INCOMPLETE"
METRICS_NAME = "metrics.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# --------------------------------------------------------------------------------------------------- helpers
def resolve_model_path(name: str | None) -> str | None:
    """`demo` -> the CLIP shipped in the package (unless a local path of that name exists); anything else as is."""
    if name == DEMO_NAME and not os.path.exists(name):
        from .demo import DEMO_CHECKPOINT

        if not os.path.isfile(os.path.join(DEMO_CHECKPOINT, "config.json")):
            raise ValueError(
                f"The demo CLIP is not installed: {DEMO_CHECKPOINT!r} has no config.json. Reinstall the package, or "
                "build it with `python recipes/demo_clip/pretrain.py --config recipes/demo_clip/config.yaml`."
            )
        return DEMO_CHECKPOINT
    return name


def load_data(data_args: DataArguments):
    """The `DatasetDict` (`train`, `test`; `image`, `label` [+ `clean_label`]) the arguments point to."""
    from .data import load_noisy_dataset

    source = data_args.dataset_name_or_path
    if source == DEMO_NAME and not os.path.exists(source):
        from .demo import load_demo_task

        source = load_demo_task()
    data = load_noisy_dataset(source, **data_args.load_kwargs())
    if data_args.test_dataset_name_or_path is not None:
        from .data import get_class_names

        other = load_noisy_dataset(data_args.test_dataset_name_or_path, test_split=data_args.test_split)
        ours, theirs = get_class_names(data), get_class_names(other)
        if ours != theirs:
            raise ValueError(
                f"Expected the test dataset {data_args.test_dataset_name_or_path!r} to have the training data's "
                f"{len(ours)} classes in the same order, but found {len(theirs)} classes (first differences: "
                f"{[(a, b) for a, b in zip(ours, theirs) if a != b][:3]}). Pass --class_names to align them."
            )
        data["test"] = other["test"]
    if data_args.max_eval_samples is not None and len(data["test"]) > data_args.max_eval_samples:
        data["test"] = data["test"].select(range(data_args.max_eval_samples))
    return data


def prepare_training_set(train, noise_args: NoiseArguments):
    """Few-shot sampling, then (synthetic) label noise: the protocol of NLPrompt (noise after sampling)."""
    from .data import inject_label_noise, sample_fewshot

    if noise_args.shots:
        train = sample_fewshot(train, shots=noise_args.shots, seed=noise_args.fewshot_seed)
    if noise_args.noise_type != "real":
        train = inject_label_noise(
            train, rate=noise_args.noise_rate, kind=noise_args.noise_type, seed=noise_args.noise_seed
        )
    return train


def _device() -> torch.device:
    """Where the inference commands run: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _on(model, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` on the model's device (cached features come back on the CPU)."""
    return tensor.to(model.prompt_input_ids.device)


def _labels(dataset, column: str = "label") -> np.ndarray:
    return np.asarray(dataset.with_format("numpy", columns=[column])[column], dtype=np.int64)


def _features(model, dataset, batch_size: int, cache_dir: str | None, progress: bool = True) -> torch.Tensor:
    from .data import compute_image_features

    return compute_image_features(
        model.clip,
        model.image_processor,
        dataset,
        batch_size=batch_size,
        cache_dir=cache_dir,
        progress=progress,
    )


def _classification_metrics(
    logits: torch.Tensor | np.ndarray, labels: np.ndarray, class_names: Sequence[str]
):
    from .metrics import accuracy, confusion_matrix, per_class_accuracy

    preds = np.asarray(torch.as_tensor(logits).argmax(-1))
    num_classes = len(class_names)
    per_class = per_class_accuracy(preds, labels, num_classes)
    return {
        "accuracy": float(accuracy(preds, labels)),
        "per_class_accuracy": {name: _float_or_none(v) for name, v in zip(class_names, per_class)},
        "num_samples": int(len(labels)),
    }, np.asarray(confusion_matrix(preds, labels, num_classes))


def _float_or_none(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def _write_json(path: str, content: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2, default=_json_default)
        f.write("\n")


def _json_default(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    return str(value)


def _check_output_dir(path: str, overwrite: bool) -> None:
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        found = sorted(os.listdir(path))
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise ValueError(
            f"Expected an empty or new output directory, but {path!r} already holds {len(found)} entries ({shown}). "
            "Pass --overwrite_output_dir to replace it, or choose another --output_dir."
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"Expected --output_dir to be a directory, but {path!r} is a file.")


def _staging_dir(final: str, overwrite: bool, resuming) -> str:
    """Create (or reuse, when resuming) `<final>.incomplete`, where the run writes everything.

    `resuming` is `None` (a new run), `True` (the last checkpoint of the unfinished run) or a checkpoint path. An
    unfinished run with checkpoints is never discarded silently: a new run then needs `overwrite`.
    """
    work = os.path.normpath(final) + INCOMPLETE_SUFFIX
    if resuming is True and not os.path.isdir(work):
        raise ValueError(
            f"--resume_from_checkpoint true continues an unfinished run of {final!r}, but there is none ({work!r} "
            "does not exist). Drop the flag to start a new run, or pass the path of a checkpoint folder."
        )
    if os.path.exists(work):
        if not os.path.isfile(os.path.join(work, INCOMPLETE_MARKER)):
            raise ValueError(
                f"{work!r} exists but was not made by nlprompt-hf (no {INCOMPLETE_MARKER} file); it is the staging "
                "folder of this output directory. Move it away or choose another --output_dir."
            )
        if not resuming:
            checkpoints = sorted(n for n in os.listdir(work) if n.startswith("checkpoint-"))
            if checkpoints and not overwrite:
                raise ValueError(
                    f"An unfinished run of this output directory is in {work!r} (checkpoints: {checkpoints or 'none'}). "
                    "Pass --resume_from_checkpoint true to continue it, or --overwrite_output_dir to start over."
                )
            shutil.rmtree(work)  # nothing worth keeping: no checkpoint, or the user asked to overwrite
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, INCOMPLETE_MARKER), "w", encoding="utf-8") as f:
        f.write(
            "This run has not finished. nlprompt-hf renames this folder to "
            f"{os.path.basename(os.path.normpath(final))!r} when it does; resume with --resume_from_checkpoint true.\n"
        )
    return work


def _publish(work: str, final: str, keep_checkpoints: bool) -> None:
    """Move the finished staging folder into place (the last step of a run)."""
    if not keep_checkpoints:
        for name in os.listdir(work):
            if name.startswith("checkpoint-") and os.path.isdir(os.path.join(work, name)):
                shutil.rmtree(os.path.join(work, name))
    os.remove(os.path.join(work, INCOMPLETE_MARKER))
    old = None
    if os.path.isdir(final):
        old = f"{os.path.normpath(final)}.old-{os.getpid()}"
        os.rename(final, old)
    os.rename(work, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _resume_value(value: str | None):
    if value is None or value == "":
        return None
    if str(value).lower() in ("true", "last", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return None
    return value


class EpochSummaryCallback(TrainerCallback):
    """One line per epoch: training loss, PromptOT clean fraction (with precision / recall of the noisy split when
    the true labels are known) and test accuracy when evaluated at epoch ends."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self._train_logs: dict[str, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and not any(k.startswith("eval_") for k in logs):
            self._train_logs = dict(logs)
            if args.eval_strategy != "epoch":
                self._emit(args, state, {})

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if args.eval_strategy == "epoch":
            self._emit(args, state, metrics or {})

    def _emit(self, args, state, metrics):
        logs, self._train_logs = self._train_logs, {}
        parts = [f"{self.prefix}epoch {round(state.epoch or 0):>3}/{int(args.num_train_epochs)}"]
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if "clean_fraction" in logs:
            text = f"clean fraction {logs['clean_fraction']:.3f}"
            if "noise_precision" in logs:
                text += f" (noisy split P {logs['noise_precision']:.2f} / R {logs['noise_recall']:.2f})"
            parts.append(text)
        if "eval_accuracy" in metrics:
            parts.append(f"test accuracy {100 * metrics['eval_accuracy']:.1f}%")
        if state.is_world_process_zero:
            tqdm.write(" | ".join(parts))


class QuietProgressCallback(ProgressCallback):
    """The Trainer's progress bars without the dict it prints at every log (the epoch summary replaces it)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return


def _quiet_trainer(trainer, summary: bool, prefix: str = "") -> None:
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgressCallback())
    trainer.pop_callback(PrinterCallback)
    if summary:
        trainer.add_callback(EpochSummaryCallback(prefix))


# --------------------------------------------------------------------------------------------------- train
def run_train(
    model_args: ModelArguments,
    data_args: DataArguments,
    noise_args: NoiseArguments,
    run_args: TrainRunArguments,
    training_args: NLPromptConfig,
) -> dict[str, Any]:
    """`nlprompt-hf train`: data -> few-shot -> noise -> model -> Trainer -> test -> output directory (-> Hub).

    Returns:
        `dict`: the content of `metrics.json`.
    """
    from .data import add_sample_index, get_class_names, noise_report
    from .prompt_adapter import NLPromptModel
    from .reporting import summary_table
    from .trainer import NLPromptTrainer

    final_dir = training_args.output_dir
    resume = _resume_value(training_args.resume_from_checkpoint)
    _check_output_dir(final_dir, training_args.overwrite_output_dir)
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError(
            "--push_to_hub needs --hub_model_id (e.g. `me/clip-prompts-eurosat`), the repo to upload to."
        )

    work_dir = _staging_dir(final_dir, training_args.overwrite_output_dir, resuming=resume)
    try:
        data = load_data(data_args)
        class_names = get_class_names(data)
        train = prepare_training_set(data["train"], noise_args)
        noise = noise_report(train)
        train, test = add_sample_index(train), add_sample_index(data["test"])

        base = resolve_model_path(model_args.model_name_or_path)
        model = NLPromptModel.from_base(
            base, class_names, trust_remote_code=model_args.trust_remote_code, **training_args.prompt_kwargs()
        )
        model.to(training_args.device)  # encode the features where the training runs
        progress = not training_args.disable_tqdm
        batch = training_args.feature_batch_size
        test_features = _features(model, test, batch, training_args.feature_cache_dir, progress)
        train_features = (
            _features(model, train, batch, training_args.feature_cache_dir, progress)
            if training_args.use_feature_cache
            else None
        )

        # the Trainer works in the staging folder (checkpoints included) and never talks to the Hub itself
        args = dataclasses.replace(
            training_args, output_dir=work_dir, push_to_hub=False, resume_from_checkpoint=None
        )
        trainer = NLPromptTrainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=test,
            train_features=train_features,
            eval_features=test_features if training_args.use_feature_cache else None,
        )
        _quiet_trainer(trainer, summary=True)
        train_output = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model(work_dir)
        trainer.save_state()

        prediction = trainer.predict(trainer.eval_dataset)
        test_labels = _labels(test)
        results, confusion = _classification_metrics(prediction.predictions, test_labels, class_names)
        zero_shot, _ = _classification_metrics(
            model.zero_shot_logits(_on(model, test_features)), test_labels, class_names
        )

        baselines = {}
        for method in run_args.baselines or ():
            if method == training_args.method:
                continue
            baselines[method] = _train_baseline(
                method,
                base,
                model_args,
                class_names,
                training_args,
                train,
                test,
                train_features,
                test_features,
            )

        history = trainer.purification_history
        final_split = None
        if history:
            last = history[-1]
            final_split = {"clean_fraction": last["clean_fraction"]}
            # precision / recall of the noisy split need true labels, and some truly noisy sample to find
            if last.get("noise_rate_true"):
                final_split.update({k: last[f"noise_{k}"] for k in ("precision", "recall", "f1")})
        noise_settings = _noise_settings(noise_args)
        metrics = {
            "method": training_args.method,
            "base_model": model_args.model_name_or_path,
            "dataset": data_args.dataset_name_or_path,
            "class_names": class_names,
            "noise": noise_settings,
            "num_train_samples": len(train),
            "num_test_samples": len(test),
            "num_train_epochs": training_args.num_train_epochs,
            "eval_accuracy": results["accuracy"],
            "per_class_accuracy": results["per_class_accuracy"],
            "zero_shot_accuracy": zero_shot["accuracy"],
            "zero_shot_per_class_accuracy": zero_shot["per_class_accuracy"],
            "baselines": baselines,
            "final_split": final_split,
            "purification": history,
            "noise_report": noise,
            "confusion_matrix": confusion.tolist(),
            "train_runtime": train_output.metrics.get("train_runtime"),
        }
        _write_json(os.path.join(work_dir, METRICS_NAME), metrics)

        if run_args.report:
            _write_report(work_dir, trainer, train, noise, metrics, class_names, confusion)
        card = _model_card(model, training_args, metrics)
        card.save(os.path.join(work_dir, "README.md"))

        _publish(work_dir, final_dir, run_args.keep_checkpoints)
    except BaseException:
        # keep an unfinished run only when it has a checkpoint to resume from; it never looks finished anyway
        if os.path.isdir(work_dir) and not any(n.startswith("checkpoint-") for n in os.listdir(work_dir)):
            shutil.rmtree(work_dir, ignore_errors=True)
        raise
    if trainer.is_world_process_zero():
        print(f"\nResults on the test split ({len(test)} images):\n{summary_table(metrics)}")
        print(f"\nWrote {final_dir}/ (adapter, metrics.json, report.md, README.md).")
    if training_args.push_to_hub:
        model.push_to_hub(
            training_args.hub_model_id,
            model_card=card,
            private=training_args.hub_private_repo,
            token=training_args.hub_token,
        )
        logger.info("Pushed the adapter to https://huggingface.co/%s", training_args.hub_model_id)
    return metrics


def _noise_settings(noise_args: NoiseArguments) -> dict[str, Any]:
    if noise_args.noise_type == "real":
        return {"type": "real", "shots": noise_args.shots}
    return {
        "type": noise_args.noise_type,
        "rate": noise_args.noise_rate,
        "seed": noise_args.noise_seed,
        "shots": noise_args.shots,
    }


def _write_report(work_dir, trainer, train, noise, metrics, class_names, confusion) -> None:
    """report.md + plots. The estimated transitions take the last PromptOT pseudo-labels as the true labels."""
    from .reporting import write_report

    estimated = None
    if trainer.last_purification is not None:
        from .metrics import transition_matrix

        pseudo = trainer.last_purification.pseudo_labels.cpu().numpy()
        # rows: PromptOT label (the estimate of the true one), columns: given label, as the true matrix
        estimated = np.asarray(transition_matrix(pseudo, _labels(train), len(class_names), normalize=False))
    true = noise.get("transition_matrix")
    write_report(
        work_dir,
        metrics,
        trainer.state.log_history,
        class_names=class_names,
        confusion=confusion,
        estimated_transition=estimated,
        true_transition=None if true is None else np.asarray(true),
    )


_CARD_NAMES = {
    "clean_fraction": "PromptOT clean fraction (last epoch)",
    "precision": "noisy-split precision",
    "recall": "noisy-split recall",
    "f1": "noisy-split F1",
}


def _model_card(model, training_args: NLPromptConfig, metrics: dict[str, Any]):
    from .model_card import build_model_card

    results = {
        "top-1 accuracy (test)": metrics["eval_accuracy"],
        "zero-shot accuracy (test)": metrics["zero_shot_accuracy"],
    }
    for method, result in metrics["baselines"].items():
        results[f"{method} accuracy (test, same noisy data)"] = result["eval_accuracy"]
    results.update({_CARD_NAMES[k]: v for k, v in (metrics["final_split"] or {}).items()})
    return build_model_card(
        model.config,
        method=training_args.method,
        dataset=metrics["dataset"],
        noise=metrics["noise"],
        results=results,
        repo_id=training_args.hub_model_id if training_args.push_to_hub else None,
    )


def _train_baseline(
    method, base, model_args, class_names, training_args, train, test, train_features, test_features
):
    """Train `method` on the same noisy data and return its test accuracy (nothing is saved)."""
    from .prompt_adapter import NLPromptModel
    from .trainer import NLPromptTrainer

    model = NLPromptModel.from_base(
        base, class_names, trust_remote_code=model_args.trust_remote_code, **training_args.prompt_kwargs()
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = dataclasses.replace(
            training_args,
            method=method,
            output_dir=tmp,
            push_to_hub=False,
            resume_from_checkpoint=None,
            save_strategy="no",
            eval_strategy="no",
        )
        trainer = NLPromptTrainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=test,
            train_features=train_features,
            eval_features=test_features if training_args.use_feature_cache else None,
        )
        _quiet_trainer(trainer, summary=False)
        logger.info("Training the %s baseline on the same data", method)
        output = trainer.train()
        prediction = trainer.predict(trainer.eval_dataset)
    preds = np.asarray(torch.as_tensor(prediction.predictions).argmax(-1))
    from .metrics import accuracy

    return {
        "eval_accuracy": float(accuracy(preds, _labels(test))),
        "train_runtime": output.metrics.get("train_runtime"),
    }


# --------------------------------------------------------------------------------------------------- evaluate
def _report_classification(title: str, metrics: dict[str, Any]) -> None:
    print(f"{title}: top-1 accuracy {100 * metrics['accuracy']:.2f}% on {metrics['num_samples']} images")
    for name, acc in metrics["per_class_accuracy"].items():
        print(f"  {name:<30} {'–' if acc is None else f'{100 * acc:.1f}%'}")


def _eval_split(data, split: str):
    return data["test"] if split == "test" else data["train"]


def run_evaluate(
    adapter_args: AdapterArguments, data_args: DataArguments, eval_args: EvaluateArguments
) -> dict:
    """`nlprompt-hf evaluate`: top-1 and per-class accuracy of a saved adapter on a dataset split."""
    from .data import get_class_names
    from .prompt_adapter import NLPromptModel

    model = NLPromptModel.from_pretrained(
        adapter_args.adapter_name_or_path,
        base_model_name_or_path=resolve_model_path(adapter_args.base_model_name_or_path),
        trust_remote_code=adapter_args.trust_remote_code,
    )
    data = load_data(data_args)
    model.check_class_names(get_class_names(data))
    return _score_split(
        model,
        data,
        data_args,
        eval_args,
        lambda feats: model.logits(feats),
        f"{adapter_args.adapter_name_or_path} on {data_args.dataset_name_or_path}",
        {"adapter": adapter_args.adapter_name_or_path},
    )


def _score_split(model, data, data_args, eval_args, logits_of, title: str, identity: dict) -> dict:
    """Shared tail of `evaluate` and `zero-shot`: features of the split, logits, metrics, report, JSON file."""
    split = _eval_split(data, eval_args.eval_split)
    model.to(_device())
    feats = _features(model, split, eval_args.batch_size, eval_args.feature_cache_dir)
    with torch.no_grad():
        logits = logits_of(_on(model, feats))
    metrics, confusion = _classification_metrics(logits, _labels(split), model.class_names)
    metrics.update(
        **identity,
        dataset=data_args.dataset_name_or_path,
        split=eval_args.eval_split,
        confusion_matrix=confusion.tolist(),
    )
    _report_classification(title, metrics)
    if eval_args.output_file:
        _write_json(eval_args.output_file, metrics)
    return metrics


def run_zero_shot(model_args: ModelArguments, data_args: DataArguments, eval_args: ZeroShotArguments) -> dict:
    """`nlprompt-hf zero-shot`: CLIP with the hand-written template, same outputs as `evaluate`."""
    from .data import get_class_names
    from .prompt_adapter import NLPromptModel

    data = load_data(data_args)
    class_names = get_class_names(data)
    model = NLPromptModel.from_base(
        resolve_model_path(model_args.model_name_or_path),
        class_names,
        zero_shot_template=eval_args.zero_shot_template,
        trust_remote_code=model_args.trust_remote_code,
    )
    return _score_split(
        model,
        data,
        data_args,
        eval_args,
        lambda feats: model.zero_shot_logits(feats, eval_args.zero_shot_template),
        f"zero-shot {model_args.model_name_or_path} ({eval_args.zero_shot_template!r})",
        {"model": model_args.model_name_or_path, "template": eval_args.zero_shot_template},
    )


# --------------------------------------------------------------------------------------------------- predict
def _image_files(paths: Sequence[str]) -> list[str]:
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, _, names in os.walk(path):
                found += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                raise ValueError(
                    f"Expected image files ({', '.join(IMAGE_EXTENSIONS)}) in {path!r}, found none."
                )
            files += sorted(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ValueError(f"Expected an image file or a folder of images, but {path!r} does not exist.")
    return files


def run_predict(adapter_args: AdapterArguments, predict_args: PredictArguments) -> list[dict[str, Any]]:
    """`nlprompt-hf predict`: labels and probabilities of image files / folders, one row per image (CSV / JSON)."""
    from PIL import Image

    from .prompt_adapter import NLPromptModel

    model = NLPromptModel.from_pretrained(
        adapter_args.adapter_name_or_path,
        base_model_name_or_path=resolve_model_path(adapter_args.base_model_name_or_path),
        trust_remote_code=adapter_args.trust_remote_code,
    )
    model.to(_device())
    files = _image_files(predict_args.images)
    k = min(predict_args.top_k, model.num_classes)
    rows = []
    for start in tqdm(
        range(0, len(files), predict_args.batch_size), desc="Predicting", disable=len(files) < 256
    ):
        chunk = files[start : start + predict_args.batch_size]
        images = []
        for path in chunk:
            try:
                with Image.open(path) as img:
                    images.append(img.convert("RGB"))
            except OSError as err:
                raise ValueError(
                    f"Could not read the image {path!r} ({err}). Remove it or fix the file."
                ) from err
        probs = model.predict(images).probabilities
        top_p, top_i = probs.topk(k, dim=-1)
        for path, p_row, i_row in zip(chunk, top_p.tolist(), top_i.tolist()):
            rows.append(
                {
                    "path": path,
                    "label": model.class_names[i_row[0]],
                    "probability": p_row[0],
                    "top_k": [
                        {"label": model.class_names[i], "probability": p} for i, p in zip(i_row, p_row)
                    ],
                }
            )
    out = predict_args.output_file
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    ext = os.path.splitext(out)[1].lower()
    if ext == ".csv":
        with open(out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "probability", "top_k"])
            for row in rows:
                top = ";".join(f"{t['label']}:{t['probability']:.4f}" for t in row["top_k"])
                writer.writerow([row["path"], row["label"], f"{row['probability']:.6f}", top])
    elif ext == ".jsonl":
        with open(out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    else:
        _write_json(out, rows)
    print(f"Wrote {len(rows)} predictions to {out}")
    return rows


# --------------------------------------------------------------------------------------------------- audit
def run_audit(
    model_args: AuditModelArguments,
    data_args: DataArguments,
    noise_args: AuditDataArguments,
    audit_args: AuditArguments,
) -> dict[str, Any]:
    """`nlprompt-hf audit`: PromptOT on a labelled split; rank the samples whose given label the plan rejects.

    Writes into `output_dir`: `label_audit.csv` (one row per sample, ranked: rejected labels first, lowest support
    of the given label first), `audited_dataset/` (`save_to_disk`, the split with `suggested_label`, `label_issue`,
    `label_score` and `audit_rank`, in ranked order) and `audit_metrics.json` (counts, and AUROC / precision /
    recall against the true labels when they are known).
    """
    from datasets import ClassLabel, Value

    from .data import get_class_names
    from .prompt_adapter import NLPromptModel
    from .purification import purify

    _check_output_dir(audit_args.output_dir, audit_args.overwrite_output_dir)
    if model_args.adapter_name_or_path is None and model_args.base_model_name_or_path is None:
        raise ValueError(
            "audit needs prompts to score the labels with: pass --adapter_name_or_path (trained prompts) or "
            "--base_model_name_or_path (a CLIP whose zero-shot prompts are used)."
        )
    data = load_data(data_args)
    class_names = get_class_names(data)
    split = data["train"] if audit_args.audit_split == "train" else data["test"]
    split = prepare_training_set(split, noise_args)
    base = resolve_model_path(model_args.base_model_name_or_path)
    if model_args.adapter_name_or_path is not None:
        model = NLPromptModel.from_pretrained(
            model_args.adapter_name_or_path,
            base_model_name_or_path=base,
            trust_remote_code=model_args.trust_remote_code,
        )
        model.check_class_names(class_names)
        model.to(_device())
        with torch.no_grad():
            prototypes = model.text_features()
        scorer = f"learned prompts {model_args.adapter_name_or_path}"
    else:
        kwargs = (
            {}
            if model_args.zero_shot_template is None
            else {"zero_shot_template": model_args.zero_shot_template}
        )
        model = NLPromptModel.from_base(
            base, class_names, trust_remote_code=model_args.trust_remote_code, **kwargs
        )
        model.to(_device())
        prototypes = model.zero_shot_text_features()
        scorer = (
            f"zero-shot prompts {model.config.zero_shot_template!r} of {model_args.base_model_name_or_path}"
        )
    feats = _features(model, split, audit_args.batch_size, audit_args.feature_cache_dir)
    given = _labels(split)
    result = purify(
        _on(model, feats),
        prototypes,
        torch.as_tensor(given, device=prototypes.device),
        cost=audit_args.ot_cost,
        reg=audit_args.ot_reg,
        max_iter=audit_args.ot_max_iter,
        tol=audit_args.ot_tol,
        temperature=audit_args.ot_temperature,
    )
    issue = ~result.clean_mask.cpu().numpy()
    score = result.label_score.cpu().numpy().astype(np.float64)
    suggested = result.pseudo_labels.cpu().numpy().astype(np.int64)
    # rejected labels first, then by how little the plan supports the given label
    order = np.lexsort((score, ~issue))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))

    label_feature = ClassLabel(names=list(class_names))
    audited = (
        split.add_column("row_index", list(range(len(split))), feature=Value("int64"))
        .add_column("suggested_label", suggested.tolist(), feature=label_feature)
        .add_column("label_issue", issue.tolist(), feature=Value("bool"))
        .add_column("label_score", score.tolist(), feature=Value("float64"))
        .add_column("audit_rank", rank.tolist(), feature=Value("int64"))
        .select(order.tolist())
    )

    metrics: dict[str, Any] = {
        "scored_with": scorer,
        "dataset": data_args.dataset_name_or_path,
        "split": audit_args.audit_split,
        "num_samples": int(len(split)),
        "num_label_issues": int(issue.sum()),
        "label_issue_fraction": float(issue.mean()) if len(issue) else 0.0,
        "ot_converged": bool(result.converged),
        "ot_iterations": int(result.n_iter),
        "ot_seconds": float(result.seconds),
    }
    if "clean_label" in split.column_names:
        from .metrics import auroc, noise_detection_metrics

        truly_noisy = _labels(split, "clean_label") != given
        metrics["num_truly_noisy"] = int(truly_noisy.sum())
        if 0 < truly_noisy.sum() < len(truly_noisy):
            metrics["auroc"] = float(auroc(1.0 - score, truly_noisy))
        detection = noise_detection_metrics(issue, truly_noisy)
        metrics.update({k: float(detection[k]) for k in ("precision", "recall", "f1") if k in detection})

    os.makedirs(audit_args.output_dir, exist_ok=True)
    csv_path = os.path.join(audit_args.output_dir, "label_audit.csv")
    paths = _image_paths(split)
    clean = _labels(split, "clean_label") if "clean_label" in split.column_names else None
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        header = [
            "rank",
            "row_index",
            "image",
            "given_label",
            "suggested_label",
            "label_issue",
            "label_score",
        ]
        writer.writerow(header + (["clean_label"] if clean is not None else []))
        for r, i in enumerate(order):
            row = [
                r,
                int(i),
                paths[i],
                class_names[given[i]],
                class_names[suggested[i]],
                bool(issue[i]),
                f"{score[i]:.6f}",
            ]
            writer.writerow(row + ([class_names[clean[i]]] if clean is not None else []))
    audited.save_to_disk(os.path.join(audit_args.output_dir, "audited_dataset"))
    _write_json(os.path.join(audit_args.output_dir, "audit_metrics.json"), metrics)

    print(
        f"Audited {metrics['num_samples']} samples with {scorer}: {metrics['num_label_issues']} labels rejected "
        f"({100 * metrics['label_issue_fraction']:.1f}%)."
    )
    if "auroc" in metrics:
        print(
            f"Against the known true labels: AUROC {metrics['auroc']:.3f}, precision {metrics.get('precision', 0):.3f}, "
            f"recall {metrics.get('recall', 0):.3f}."
        )
    print(f"Wrote {csv_path} and {os.path.join(audit_args.output_dir, 'audited_dataset')}/")
    if audit_args.push_to_hub:
        audited.push_to_hub(audit_args.hub_dataset_id, private=audit_args.hub_private_repo)
        print(f"Pushed the audited dataset to https://huggingface.co/datasets/{audit_args.hub_dataset_id}")
    return metrics


def _image_paths(dataset) -> list[str]:
    """The file path of each image when there is one (empty strings for in-memory images)."""
    from datasets import Image

    if not isinstance(dataset.features.get("image"), Image):
        return [""] * len(dataset)
    cells = dataset.cast_column("image", Image(decode=False))["image"]
    return [(c or {}).get("path") or "" for c in cells]
