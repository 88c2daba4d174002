"""`NLPromptTrainer`: the transformers `Trainer` with PromptOT purification and the CE/MAE split loss."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import defaultdict

import numpy as np
import torch
from datasets import ClassLabel
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import losses
from .config import NLPromptConfig
from .data._common import label_array
from .data.batches import SAMPLE_INDEX, FeatureLookup, PixelTransform, training_view
from .data.noise import add_sample_index
from .metrics import accuracy, noise_detection_metrics
from .prompt_adapter import NLPromptModel
from .prompt_adapter.model import ADAPTER_WEIGHTS, _disallow_pickle
from .purification import purify

logger = logging.getLogger(__name__)

PURIFICATION_STATE = "purification_state.safetensors"
PURIFICATION_LOGS = "purification_logs.json"
TRAINING_ARGS_JSON = "training_args.json"


class _PurifyAtEpochBegin(TrainerCallback):
    """Runs PromptOT at the start of every epoch, epoch 0 included."""

    def __init__(self, trainer: NLPromptTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._restore_unlogged_loss()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.start_epoch(int(math.floor(state.epoch + 1e-6)) if state.epoch else 0)


def compute_accuracy(eval_pred) -> dict[str, float]:
    """Offline `compute_metrics`: top-1 accuracy of the eval logits (no metric download)."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    return {"accuracy": accuracy(np.argmax(logits, axis=-1), labels)}


class NLPromptTrainer(Trainer):
    r"""
    Trains the context of an [`NLPromptModel`] with NLPrompt (https://arxiv.org/abs/2412.01256).

    At the start of every epoch a `no_grad`, `shuffle=False` pass collects the image features of the whole training
    set (gathered from every process), PromptOT computes one global split with the *current* prompts as
    prototypes, and the result is kept as a boolean mask indexed by the `sample_idx` column. `compute_loss` then
    applies cross-entropy to the clean samples of a batch and MAE to the rest (`method="nlprompt"`), or one loss
    to all samples (`coop`, `promptmae`, `gce`). Nothing is copied from or deleted in the dataset.

    The datasets need an `image` column and a `label` column (the *given*, possibly noisy, label). A
    `clean_label` column, when present, is read only for the noisy-detection metrics, never by the loss.
    `sample_idx` is added when missing.

    Args:
        model ([`NLPromptModel`]): the prompt learner (frozen CLIP + context).
        args ([`NLPromptConfig`]): all options.
        train_dataset, eval_dataset (`datasets.Dataset`): image + label (+ clean_label).
        train_features, eval_features (`torch.Tensor`, *optional*):
            Precomputed image features (N, D) in `sample_idx` order; computed (and cached on disk) when omitted.

    Example:

    ```python
    >>> trainer = NLPromptTrainer(model=model, args=NLPromptConfig(output_dir="out"), train_dataset=train)
    >>> trainer.train()
    >>> trainer.purification_history[-1]["clean_fraction"]
    ```
    """

    def __init__(
        self,
        model: NLPromptModel,
        args: NLPromptConfig,
        train_dataset=None,
        eval_dataset=None,
        *,
        train_features: torch.Tensor | None = None,
        eval_features: torch.Tensor | None = None,
        compute_metrics=None,
        callbacks=None,
        **kwargs,
    ):
        if not isinstance(args, NLPromptConfig):
            raise ValueError(f"`args` must be an NLPromptConfig, got {type(args).__name__}.")
        if not isinstance(model, NLPromptModel):
            raise ValueError(f"`model` must be an NLPromptModel, got {type(model).__name__}.")
        self.purification_history: list[dict] = []
        self.mask_history: list[torch.Tensor] = []
        self.clean_mask: torch.Tensor | None = None
        self.last_purification = None
        self._metric_buffer: dict[str, list[float]] = defaultdict(list)
        self._pending_logs: dict[str, float] = {}
        self._resumed_purification: dict | None = None
        self._resumed_loss: tuple[float, int | None] | None = None

        self._raw_train = add_sample_index(train_dataset) if train_dataset is not None else None
        raw_eval = add_sample_index(eval_dataset) if eval_dataset is not None else None
        if self._raw_train is not None:
            _check_labels(self._raw_train, model.num_classes, "train_dataset")
        if raw_eval is not None:
            _check_labels(raw_eval, model.num_classes, "eval_dataset")
        # The true labels are read once, for metrics only; the training view below never exposes them.
        self._truly_noisy = None
        if self._raw_train is not None and "clean_label" in self._raw_train.column_names:
            order = np.argsort(label_array(self._raw_train, SAMPLE_INDEX))
            clean = label_array(self._raw_train, "clean_label")[order]
            self._truly_noisy = torch.as_tensor(clean != label_array(self._raw_train, "label")[order])

        self._pixel_transform = None
        self._purify_transform = None
        if args.use_feature_cache:
            train_features = self._features(model, args, self._raw_train, train_features)
            eval_features = self._features(model, args, raw_eval, eval_features)
            train_view = training_view(self._raw_train, FeatureLookup(train_features)) if self._raw_train else None
            eval_view = training_view(raw_eval, FeatureLookup(eval_features)) if raw_eval is not None else None
            self._purify_view = train_view
        else:
            self._pixel_transform = PixelTransform(model.image_processor, augment=args.augment, seed=args.seed)
            train_view = training_view(self._raw_train, self._pixel_transform) if self._raw_train else None
            eval_view = (
                training_view(raw_eval, PixelTransform(model.image_processor)) if raw_eval is not None else None
            )
            if args.ot_features == "augmented":
                self._purify_view = train_view  # the same augmented view the step sees
            else:
                self._purify_transform = PixelTransform(model.image_processor)
                self._purify_view = training_view(self._raw_train, self._purify_transform) if self._raw_train else None

        super().__init__(
            model=model,
            args=args,
            train_dataset=train_view,
            eval_dataset=eval_view,
            compute_metrics=compute_metrics if compute_metrics is not None else compute_accuracy,
            callbacks=callbacks,
            **kwargs,
        )
        self.model_accepts_loss_kwargs = False  # the loss is a per-batch mean, not a token sum
        self.add_callback(_PurifyAtEpochBegin(self))

    # ------------------------------------------------------------------ data
    @staticmethod
    def _features(model, args, dataset, given):
        if dataset is None:
            return None
        if given is not None:
            if given.shape[0] != len(dataset):
                raise ValueError(
                    f"Precomputed features have {given.shape[0]} rows but the dataset has {len(dataset)} samples. "
                    "Pass one feature row per sample, in `sample_idx` order, or omit them to have them computed."
                )
            feats = given
        else:
            from .data.features import compute_image_features

            if "image" not in dataset.column_names:
                raise ValueError(
                    f"The dataset has no 'image' column; found {dataset.column_names}. Rename the image column with "
                    "`dataset.rename_column(<name>, 'image')`, or load the data with "
                    "`nlprompt_hf.data.load_noisy_dataset(..., image_column=<name>)`."
                )
            feats = compute_image_features(
                model.clip,
                model.image_processor,
                dataset.sort(SAMPLE_INDEX) if not _is_sorted(dataset) else dataset,
                batch_size=args.feature_batch_size,
                cache_dir=args.feature_cache_dir,
                progress=not args.disable_tqdm,
            )
            feats = feats[0] if isinstance(feats, tuple) else feats
        bad = ~torch.isfinite(feats).reshape(feats.shape[0], -1).all(dim=1)
        if bool(bad.any()):
            rows = bad.nonzero().flatten()[:5].tolist()
            raise ValueError(
                f"Expected finite image features, but {int(bad.sum())} of {feats.shape[0]} rows hold NaN/inf "
                f"(sample_idx {rows}). Recompute them (an fp16 overflow or a corrupt image?) or drop those samples."
            )
        return feats

    # ------------------------------------------------------------------ optimisation
    def create_optimizer(self, model=None):
        if self.optimizer is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.SGD(
                params, lr=self.args.learning_rate, momentum=self.args.sgd_momentum, weight_decay=self.args.weight_decay
            )
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Constant `warmup_lr` for `warmup_epochs`, then cosine from `learning_rate` to 0 (CoOp's schedule)."""
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            steps_per_epoch = max(1, math.ceil(num_training_steps / max(self.args.num_train_epochs, 1e-9)))
            if self.args.max_steps and self.args.max_steps > 0:
                steps_per_epoch = max(1, len(self.get_train_dataloader()) // self.args.gradient_accumulation_steps)
            warmup = min(self.args.warmup_epochs * steps_per_epoch, num_training_steps)
            ratio = self.args.warmup_lr / self.args.learning_rate if self.args.learning_rate else 0.0
            decay = max(1, num_training_steps - warmup)

            def factor(step: int) -> float:
                if step < warmup:
                    return ratio
                return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, decay) / decay))

            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return self.lr_scheduler

    # ------------------------------------------------------------------ purification
    def start_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch: update augmentation views and recompute the clean split."""
        for transform in (self._pixel_transform, self._purify_transform):
            if transform is not None:
                transform.epoch = epoch
        if self.args.method != "nlprompt":
            return
        resumed = self._resumed_purification
        if resumed is not None and resumed["epoch"] == epoch:
            # resumed mid-epoch: this epoch's split was computed before the interruption, with other prompts
            self.clean_mask = resumed["clean_mask"]
            self._resumed_purification = None
            return
        self.purify(epoch)

    @torch.no_grad()
    def purify(self, epoch: int | None = None) -> dict[str, float]:
        """One PromptOT pass over the whole training set; sets `self.clean_mask` and returns its metrics."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        feats, labels, index = self._collect_features(model)
        text = model.text_features()
        result = purify(
            feats,
            text,
            labels,
            cost=self.args.ot_cost,
            reg=self.args.ot_reg,
            max_iter=self.args.ot_max_iter,
            tol=self.args.ot_tol,
            temperature=self.args.ot_temperature,
        )
        model.train(was_training)
        mask = torch.zeros(len(self._raw_train), dtype=torch.bool)
        mask[index] = result.clean_mask.cpu()
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            # every process ran the same solver on the same gathered data; process 0's split is the one
            mask = broadcast(mask.to(self.accelerator.device), from_process=0).cpu()
        self.clean_mask = mask
        self.last_purification = result
        stats = {
            "clean_fraction": float(mask.float().mean()),
            "noise_rate_estimated": 1.0 - float(mask.float().mean()),
            "ot_seconds": float(result.seconds),
            "ot_iterations": float(result.n_iter),
        }
        if self._truly_noisy is not None:
            detection = noise_detection_metrics((~mask).numpy(), self._truly_noisy.numpy())
            stats.update({f"noise_{k}": float(v) for k, v in detection.items() if k in ("precision", "recall", "f1")})
            stats["noise_rate_true"] = float(self._truly_noisy.float().mean())
        if not result.converged:
            logger.warning(
                "Sinkhorn did not reach ot_tol=%g in %d iterations (marginal error %.2e); the split uses the last "
                "iterate. Raise ot_max_iter or ot_reg.",
                self.args.ot_tol,
                result.n_iter,
                result.marginal_error,
            )
        self.purification_history.append({"epoch": epoch, **stats})
        self.mask_history.append(mask)
        self._pending_logs.update(stats)
        return stats

    def _collect_features(self, model):
        """Image features, given labels and sample indices of the whole training set, from every process."""
        loader = DataLoader(
            self._purify_view,
            batch_size=self.args.feature_batch_size,
            shuffle=False,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
        )
        loader = self.accelerator.prepare_data_loader(loader)
        parts = defaultdict(list)
        progress = tqdm(
            loader,
            desc="PromptOT pass",
            leave=False,
            disable=self.args.disable_tqdm or not self.is_world_process_zero() or len(loader) < 4,
        )
        for batch in progress:
            if "image_embeds" in batch:
                feats = batch["image_embeds"]
            else:
                feats = model.encode_images(batch["pixel_values"].to(self.accelerator.device))
            gathered = self.accelerator.gather_for_metrics((feats, batch["labels"], batch[SAMPLE_INDEX]))
            for key, value in zip(("feats", "labels", "index"), gathered):
                parts[key].append(value.cpu())
        feats, labels, index = (torch.cat(parts[k]) for k in ("feats", "labels", "index"))
        if index.numel() != len(self._raw_train) or index.unique().numel() != index.numel():
            raise RuntimeError(
                f"The purification pass saw {index.numel()} samples ({index.unique().numel()} distinct) but the "
                f"training set has {len(self._raw_train)}: samples were dropped or duplicated across processes."
            )
        # processes interleave their shards: put rows back in `sample_idx` order, so that every per-sample result
        # of the pass (pseudo-labels, scores) lines up with the dataset whatever the number of processes
        order = index.argsort()
        return feats[order], labels[order], index[order]

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        index = inputs.pop(SAMPLE_INDEX)
        outputs = model(**inputs)
        logits = outputs.logits
        method = self.args.method
        if method == "nlprompt":
            if self.clean_mask is None:
                raise RuntimeError("No PromptOT split yet: purification runs at the start of every epoch.")
            clean = self.clean_mask.to(index.device)[index]
            parts = losses.split_loss(logits, labels, clean)
            loss = parts.loss
            if model.training:
                self._metric_buffer["loss_ce"].append(float(parts.loss_ce.detach()))
                self._metric_buffer["loss_mae"].append(float(parts.loss_mae.detach()))
                self._metric_buffer["batch_clean_fraction"].append(parts.num_clean / max(1, len(labels)))
        elif method == "coop":
            loss = losses.cross_entropy_loss(logits, labels)
        elif method == "promptmae":
            loss = losses.mae_loss(logits, labels)
        else:
            loss = losses.gce_loss(logits, labels, q=self.args.gce_q)
        if model.training and method != "nlprompt":
            self._metric_buffer[f"loss_{method}"].append(float(loss.detach()))
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = inputs.pop("labels")
        inputs.pop(SAMPLE_INDEX, None)
        with torch.no_grad():
            logits = model(**inputs).logits
            loss = losses.cross_entropy_loss(logits, labels)
        if prediction_loss_only:
            return loss, None, None
        return loss, logits, labels

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if not any(k.startswith("eval_") for k in logs):
            for key, values in self._metric_buffer.items():
                if values:
                    logs[key] = float(np.mean(values))
            self._metric_buffer.clear()
            logs.update(self._pending_logs)
            self._pending_logs = {}
        super().log(logs, start_time)

    # ------------------------------------------------------------------ saving and resuming
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Only the adapter and our config, never the frozen CLIP; training args as JSON, not pickle."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir)
        with open(os.path.join(output_dir, TRAINING_ARGS_JSON), "w", encoding="utf-8") as f:
            f.write(self.args.to_json_string())

    def _save_checkpoint(self, model, trial):
        # Our state goes in first: the Trainer writes `trainer_state.json` last, so a checkpoint that has it is
        # complete (see `_last_complete_checkpoint`), and older checkpoints are rotated out only after that.
        # The Trainer's loss summed since its last log, averaged over processes (every process calls this method):
        # added back on each process after a resume, the next logged mean loss is the uninterrupted run's.
        unlogged = getattr(self, "_tr_loss", None)
        unlogged = float(self.accelerator.gather(unlogged.detach().reshape(1)).mean()) if unlogged is not None else 0.0
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            if self.clean_mask is not None:
                epoch = int(math.floor(self.state.epoch - 1e-6)) if self.state.epoch else 0
                tensors = {"clean_mask": self.clean_mask.to(torch.uint8), "epoch": torch.tensor([epoch])}
                if self.mask_history:
                    tensors["mask_history"] = torch.stack(self.mask_history).to(torch.uint8)
                save_file(tensors, os.path.join(folder, PURIFICATION_STATE))
            # what was measured but not logged yet, and the per-epoch history: a resumed run loses none of it
            with open(os.path.join(folder, PURIFICATION_LOGS), "w", encoding="utf-8") as f:
                json.dump(
                    {
                        "purification_history": self.purification_history,
                        "pending_logs": self._pending_logs,
                        "metric_buffer": dict(self._metric_buffer),
                        "unlogged_loss": unlogged,
                        "last_logged_step": getattr(self, "_globalstep_last_logged", self.state.global_step),
                    },
                    f,
                )
        super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from peft import set_peft_model_state_dict

        _disallow_pickle(resume_from_checkpoint)
        path = os.path.join(resume_from_checkpoint, ADAPTER_WEIGHTS)
        if not os.path.exists(path):
            raise ValueError(
                f"{resume_from_checkpoint!r} has no {ADAPTER_WEIGHTS}: not a checkpoint of this trainer. Pass a "
                f"`{PREFIX_CHECKPOINT_DIR}-<step>` folder written by NLPromptTrainer, or `resume_from_checkpoint=True`."
            )
        if not _is_complete_checkpoint(resume_from_checkpoint):
            raise ValueError(
                f"{resume_from_checkpoint!r} is an incomplete checkpoint (no readable trainer_state.json: the run was "
                "interrupted while writing it). Resume from the checkpoint before it, or pass "
                "`resume_from_checkpoint=True` to pick the last complete one."
            )
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        set_peft_model_state_dict(target.peft_model, load_file(path))
        state = os.path.join(resume_from_checkpoint, PURIFICATION_STATE)
        if os.path.exists(state):
            saved = load_file(state)
            self._resumed_purification = {"clean_mask": saved["clean_mask"].bool(), "epoch": int(saved["epoch"][0])}
            if "mask_history" in saved:
                self.mask_history = list(saved["mask_history"].bool().unbind(0))
        logs = os.path.join(resume_from_checkpoint, PURIFICATION_LOGS)
        if os.path.exists(logs):
            with open(logs, encoding="utf-8") as f:
                saved_logs = json.load(f)
            self.purification_history = saved_logs["purification_history"]
            self._pending_logs = saved_logs["pending_logs"]
            self._metric_buffer = defaultdict(list, saved_logs["metric_buffer"])
            self._resumed_loss = (saved_logs.get("unlogged_loss", 0.0), saved_logs.get("last_logged_step"))

    def _restore_unlogged_loss(self) -> None:
        """After a resume, put back the loss accumulated before the interruption but not logged yet."""
        resumed, self._resumed_loss = self._resumed_loss, None
        if resumed is None or resumed[1] is None or not hasattr(self, "_tr_loss"):
            return
        unlogged, last_logged = resumed
        self._tr_loss += unlogged
        self._total_loss_scalar -= unlogged  # `train_loss` keeps covering only this call's steps
        self._globalstep_last_logged = last_logged

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = _last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True but {self.args.output_dir!r} holds no complete checkpoint "
                    "(`checkpoint-<step>` with a trainer_state.json). Train from scratch (no resume_from_checkpoint), "
                    "or point `output_dir` to the run you want to continue."
                )
        start = time.perf_counter()
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        logger.info("Training took %.1f s", time.perf_counter() - start)
        return output

    def save_purification_history(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.purification_history, f, indent=2)


def _is_complete_checkpoint(folder: str) -> bool:
    """The Trainer writes `trainer_state.json` last: a checkpoint without a readable one was interrupted."""
    try:
        with open(os.path.join(folder, TRAINER_STATE_NAME), encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    return True


def _last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-<step>` of `output_dir` that was completely written (skipping interrupted saves)."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(m.group(1)), name)
        for name in os.listdir(output_dir)
        if (m := re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(steps):
        folder = os.path.join(output_dir, name)
        if _is_complete_checkpoint(folder):
            return folder
        logger.warning("Skipping %s: it was interrupted while being written (no readable trainer_state.json).", folder)
    return None


def _is_sorted(dataset) -> bool:
    idx = label_array(dataset, SAMPLE_INDEX)
    return bool(np.all(idx[:-1] <= idx[1:])) if len(idx) else True


def _check_labels(dataset, num_classes: int, name: str) -> None:
    if "label" not in dataset.column_names:
        raise ValueError(f"{name} has no 'label' column; found {dataset.column_names}. Map your label column to 'label'.")
    feature = dataset.features["label"]
    if isinstance(feature, ClassLabel) and feature.num_classes != num_classes:
        raise ValueError(
            f"{name} has {feature.num_classes} classes {feature.names} but the model has {num_classes} class names. "
            "Build the model with one class name per class of the data (e.g. `get_class_names(dataset)`)."
        )
    labels = label_array(dataset, "label")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(
            f"{name} has labels outside [0, {num_classes}) (the model's {num_classes} classes): e.g. {bad[:5].tolist()}. "
            "Check the class list given to the model and the label column."
        )
