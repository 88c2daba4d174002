"""`NLPromptConfig`: every option of an NLPrompt run, one `TrainingArguments` subclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

METHODS = ("nlprompt", "coop", "promptmae", "gce")
OT_COSTS = ("neg_prob", "neg_log_prob")
OT_FEATURES = ("cached", "augmented")
CLASS_POSITIONS = ("end", "middle", "front")


@dataclass
class NLPromptConfig(TrainingArguments):
    r"""
    Configuration of [`NLPromptTrainer`]: the method, PromptOT, the prompt learner and the optimisation.

    Defaults follow the 16-shot recipes of NLPrompt (https://arxiv.org/abs/2412.01256) and CoOp. Those that differ
    from [`~transformers.TrainingArguments`]:

    - `learning_rate`: `2e-3` (SGD, momentum `sgd_momentum=0.9`), `weight_decay`: `5e-4`;
    - `per_device_train_batch_size`: `32`, `num_train_epochs`: `200`;
    - `lr_scheduler_type`: `"cosine"`, after `warmup_epochs=1` epoch at the constant `warmup_lr=1e-5`;
    - `logging_strategy`, `save_strategy`: `"epoch"` (`save_total_limit=1`);
    - `remove_unused_columns`: `False` (the `sample_idx` column keys the per-sample clean mask);
    - `dataloader_drop_last`: `False` (a subset smaller than a batch still trains);
    - `seed`: `1` (any integer, 0 included, is honoured).

    Example:

    ```python
    >>> from nlprompt_hf import NLPromptConfig
    >>> args = NLPromptConfig(output_dir="out", method="nlprompt", ot_reg=0.01, n_ctx=16)
    ```
    """

    # ----------------------------------------------------------------- method
    method: str = field(
        default="nlprompt",
        metadata={
            "help": "Training objective: `nlprompt` (PromptOT split, CE on clean + MAE on noisy), `coop` (CE on "
            "all, = CoOp), `promptmae` (MAE on all), `gce` (generalized cross-entropy on all).",
            "choices": list(METHODS),
        },
    )
    gce_q: float = field(default=0.5, metadata={"help": "q of the GCE loss (q -> 0 is CE, q = 1 is MAE)."})

    # ----------------------------------------------------------------- PromptOT
    ot_reg: float = field(default=0.01, metadata={"help": "Entropic regularisation epsilon of Sinkhorn (> 0)."})
    ot_cost: str = field(
        default="neg_prob",
        metadata={
            "help": "Transport cost: `neg_prob` (M = -P, what the reference code effectively runs) or "
            "`neg_log_prob` (M = -log P, as the paper's text reads).",
            "choices": list(OT_COSTS),
        },
    )
    ot_max_iter: int = field(default=1000, metadata={"help": "Maximum number of Sinkhorn iterations."})
    ot_tol: float = field(default=1e-6, metadata={"help": "Sinkhorn stopping threshold on the marginal error."})
    ot_temperature: float = field(
        default=100.0, metadata={"help": "P = softmax(temperature * cos(image, prompt)) before the OT step."}
    )
    ot_features: str = field(
        default="cached",
        metadata={
            "help": "Image features the purification pass uses: `cached` (frozen, un-augmented view; fast) or "
            "`augmented` (re-encode the augmented view each epoch, as the reference code).",
            "choices": list(OT_FEATURES),
        },
    )

    # ----------------------------------------------------------------- prompt learner
    n_ctx: int | None = field(
        default=16, metadata={"help": "Number of learned context tokens (ignored with word init)."}
    )
    ctx_init: str = field(
        default="random",
        metadata={"help": "`random` (N(0, 0.02^2)) or words to initialise the context from, e.g. 'a photo of a'."},
    )
    class_specific: bool = field(default=False, metadata={"help": "One context per class instead of a shared one."})
    class_position: str = field(
        default="end",
        metadata={"help": "Where the class name goes in the prompt.", "choices": list(CLASS_POSITIONS)},
    )
    zero_shot_template: str = field(
        default="a photo of a {}.", metadata={"help": "Hand-written template of the zero-shot baseline."}
    )

    # ----------------------------------------------------------------- images
    use_feature_cache: bool = field(
        default=True,
        metadata={
            "help": "Encode every image once with the frozen image encoder and train on the cached features. "
            "Turned off automatically when `augment` is on."
        },
    )
    augment: bool = field(
        default=False,
        metadata={"help": "Train-time augmentation (random resized crop, scale 0.08-1, + horizontal flip)."},
    )
    feature_cache_dir: str | None = field(
        default=None, metadata={"help": "Where cached image features live (default: under HF_HOME)."}
    )
    feature_batch_size: int = field(default=128, metadata={"help": "Batch size of the feature-extraction pass."})

    # ----------------------------------------------------------------- optimisation
    sgd_momentum: float = field(default=0.9, metadata={"help": "Momentum of the SGD optimizer."})
    warmup_epochs: int = field(default=1, metadata={"help": "Epochs at the constant `warmup_lr` before cosine."})
    warmup_lr: float = field(default=1e-5, metadata={"help": "Learning rate of the constant warm-up epochs."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output directory."}
    )

    # ----------------------------------------------------------------- overridden TrainingArguments defaults
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak learning rate (SGD)."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device for training."})
    per_device_eval_batch_size: int = field(default=256, metadata={"help": "Batch size per device for evaluation."})
    num_train_epochs: float = field(default=200, metadata={"help": "Number of training epochs."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Scheduler after the warm-up epochs."})
    logging_strategy: str = field(default="epoch", metadata={"help": "When to log (`epoch` or `steps`)."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save checkpoints."})
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept on disk."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the trainer needs the `sample_idx` column."}
    )
    dataloader_drop_last: bool = field(default=False, metadata={"help": "Kept False: small subsets still train."})
    seed: int = field(default=1, metadata={"help": "Random seed (any integer, 0 included)."})
    # `None | str | list[str]` in this order, as in TrainingArguments: HfArgumentParser cannot parse other orders
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Experiment trackers to report to."})

    def __post_init__(self):
        for name, value, allowed in (
            ("method", self.method, METHODS),
            ("ot_cost", self.ot_cost, OT_COSTS),
            ("ot_features", self.ot_features, OT_FEATURES),
            ("class_position", self.class_position, CLASS_POSITIONS),
        ):
            if value not in allowed:
                raise ValueError(
                    f"Unknown {name} {value!r}: expected one of {list(allowed)}. Set `{name}` to one of them."
                )
        if not self.ot_reg > 0:
            raise ValueError(
                f"ot_reg must be > 0 (the entropic regularisation of Sinkhorn), got {self.ot_reg}. "
                "The reference value is 0.01."
            )
        if self.ot_max_iter < 1 or not self.ot_tol > 0:
            raise ValueError(f"Need ot_max_iter >= 1 and ot_tol > 0, got {self.ot_max_iter} and {self.ot_tol}.")
        if not 0 < self.gce_q <= 1:
            raise ValueError(f"gce_q must be in (0, 1], got {self.gce_q}.")
        if self.n_ctx is not None and self.n_ctx <= 0:
            raise ValueError(f"n_ctx must be a positive integer, got {self.n_ctx}.")
        if self.warmup_epochs < 0 or self.warmup_lr < 0:
            raise ValueError(f"warmup_epochs and warmup_lr must be >= 0, got {self.warmup_epochs}, {self.warmup_lr}.")
        if self.ot_features == "augmented" and not self.augment:
            raise ValueError(
                "ot_features='augmented' needs augment=True (there is no augmented view otherwise). Set augment=True, "
                "or ot_features='cached'."
            )
        if self.augment and self.use_feature_cache:
            # augmented pixels change every epoch: a cache of one view would silently disable the augmentation
            self.use_feature_cache = False
        if self.dataloader_drop_last:
            raise ValueError(
                "dataloader_drop_last=True would silently skip the last partial batch of every epoch (the "
                "reference's defect 3). Leave it False."
            )
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must stay False: the trainer reads the `sample_idx` column.")
        super().__post_init__()

    def prompt_kwargs(self) -> dict:
        """Arguments of [`NLPromptModel.from_base`] held by this config."""
        return dict(
            n_ctx=None if self.ctx_init != "random" else self.n_ctx,
            ctx_init=self.ctx_init,
            class_specific=self.class_specific,
            class_position=self.class_position,
            zero_shot_template=self.zero_shot_template,
            init_seed=self.seed,
        )
