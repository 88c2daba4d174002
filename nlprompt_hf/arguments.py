"""Argument dataclasses of the `nlprompt-hf` commands and the parser that reads them from flags and YAML recipes.

The dataclasses here (with [`NLPromptConfig`] for `train`) are the only place a command-line default lives: the
parser is generated from them with `transformers.HfArgumentParser`, a recipe (`--config recipe.yaml`) only
overrides those defaults, and flags override the recipe. A recipe is a flat YAML mapping whose keys are field
names of the command's dataclasses, one to one; an unknown key is an error that names the nearest valid key.
"""

from __future__ import annotations

import difflib
import os
import sys
from argparse import ArgumentParser
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import yaml
from transformers import HfArgumentParser

from .config import METHODS, NLPromptConfig

__all__ = [
    "AdapterArguments",
    "AuditArguments",
    "AuditDataArguments",
    "AuditModelArguments",
    "DataArguments",
    "EvaluateArguments",
    "ModelArguments",
    "NLPromptParser",
    "NoiseArguments",
    "PredictArguments",
    "TrainRunArguments",
    "ZeroShotArguments",
    "load_recipe",
    "resolve_recipe_path",
]

NOISE_TYPES = ("real", "symmetric", "asymmetric", "k_wrong_shots")
DEMO_NAME = "demo"
PACKAGED_RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")


def _default_of(name: str) -> Any:
    """The default of an `NLPromptConfig` field, so that a borrowed option keeps one source of truth."""
    return NLPromptConfig.__dataclass_fields__[name].default


def _help_of(name: str) -> str:
    return NLPromptConfig.__dataclass_fields__[name].metadata.get("help", "")


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(f"Expected `{name}` to be one of {list(allowed)}, but got {value!r}.")


# --------------------------------------------------------------------------------------------------- model
@dataclass
class ModelArguments:
    r"""
    The base CLIP checkpoint (`train`, `zero-shot`).

    Args:
        model_name_or_path (`str`, *optional*, defaults to `"openai/clip-vit-base-patch16"`):
            A Hub id or a local directory of a transformers `CLIPModel` (with its tokenizer and image processor).
            `demo` is the small CLIP shipped inside this package (offline).
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Explicit opt-in for checkpoints that ship their own modelling code.
    """

    model_name_or_path: str = field(
        default="openai/clip-vit-base-patch16",
        metadata={
            "help": "Base CLIP: a Hub id or a local directory of a transformers CLIPModel (+ tokenizer and image "
            "processor). `demo` is the small CLIP shipped with the package (offline)."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow checkpoints that ship their own modelling code (explicit opt-in)."},
    )


@dataclass
class AdapterArguments:
    r"""
    A trained prompt adapter (`evaluate`, `predict`).

    Args:
        adapter_name_or_path (`str`):
            Directory written by `nlprompt-hf train` (or `NLPromptModel.save_pretrained`), or a Hub repo id.
        base_model_name_or_path (`str`, *optional*):
            Load this CLIP instead of the one recorded in the adapter (e.g. a local copy; weights must match).
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Explicit opt-in for checkpoints that ship their own modelling code.
    """

    adapter_name_or_path: str = field(
        metadata={"help": "Trained prompts: an output directory of `nlprompt-hf train`, or a Hub repo id."}
    )
    base_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Use this CLIP instead of the base model recorded in the adapter (e.g. a local copy)."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow checkpoints that ship their own modelling code (explicit opt-in)."},
    )


@dataclass
class AuditModelArguments(AdapterArguments):
    r"""
    What `audit` scores the labels with: a trained adapter, or the hand-written zero-shot prompts of a base CLIP.

    Args:
        adapter_name_or_path (`str`, *optional*):
            Trained prompts; when omitted, the prototypes are the zero-shot prompts of `base_model_name_or_path`.
        base_model_name_or_path (`str`, *optional*):
            The CLIP to use (required without an adapter; `demo` is the shipped small CLIP).
        zero_shot_template (`str`, *optional*):
            Template of the zero-shot prompts (defaults to the adapter's, or to `"a photo of a {}."`).
    """

    adapter_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Trained prompts (an output directory of `nlprompt-hf train` or a Hub repo id). Without it the "
            "labels are audited with the zero-shot prompts of --base_model_name_or_path."
        },
    )
    base_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The CLIP to audit with (required without --adapter_name_or_path; with one, overrides its "
            "recorded base model). `demo` is the shipped small CLIP."
        },
    )
    zero_shot_template: str | None = field(
        default=None,
        metadata={
            "help": "Template of the zero-shot prompts; unset means the adapter's, else 'a photo of a {}.'."
        },
    )


# --------------------------------------------------------------------------------------------------- data
@dataclass
class DataArguments:
    r"""
    Where the labelled images are and how to read them (see `nlprompt_hf.data.load_noisy_dataset`).

    Args:
        dataset_name_or_path (`str`):
            A Hub dataset id, a short name of `nlprompt_hf.data.DATASET_CATALOG` (`eurosat`, `dtd`, ...), a local
            imagefolder (one sub-folder per class), a CSV / JSONL file of image paths and labels, a `save_to_disk`
            folder, or `demo` (the generated shapes task of the shipped demo CLIP).
        dataset_config_name (`str`, *optional*): Hub config (subset) name.
        train_split (`str`, *optional*): split to train on (defaults to `train`, or the catalog's).
        test_split (`str`, *optional*): split to evaluate on (defaults to `test`, or the catalog's); when the
            dataset has none, a stratified `test_size` fraction of the train split is held out.
        image_column, label_column (`str`, *optional*): column names (default `image`, `label`, or the catalog's).
        clean_label_column (`str`, *optional*): a column of verified true labels, if the data has one.
        class_names (`list[str]`, *optional*): class names in label-id order, or one path to a JSON file of them.
        test_size (`float`, *optional*, defaults to `0.2`): held-out fraction when there is no test split.
        split_seed (`int`, *optional*, defaults to `0`): seed of that held-out split.
        max_eval_samples (`int`, *optional*): evaluate on the first N samples of the test split only (quick runs).
        test_dataset_name_or_path (`str`, *optional*): take the test split from another dataset with the same
            classes (Food-101N is tested on Food-101's test split).
    """

    dataset_name_or_path: str = field(
        metadata={
            "help": "Hub dataset id, catalog short name (eurosat, dtd, caltech101, ...), imagefolder directory, CSV / "
            "JSONL file of image paths and labels, save_to_disk folder, or `demo` (the generated demo task)."
        }
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub config (subset) name."})
    train_split: str | None = field(
        default=None, metadata={"help": "Split to train on / audit; unset means `train` (or the catalog's)."}
    )
    test_split: str | None = field(
        default=None,
        metadata={
            "help": "Split to evaluate on; unset means `test` (or the catalog's). If the dataset has none, a stratified "
            "--test_size fraction of the train split is held out."
        },
    )
    image_column: str | None = field(
        default=None, metadata={"help": "Image column; unset means `image` (or the catalog's)."}
    )
    label_column: str | None = field(
        default=None, metadata={"help": "Label column; unset means `label` (or the catalog's)."}
    )
    clean_label_column: str | None = field(
        default=None,
        metadata={"help": "Column of verified true labels, if the dataset ships one next to noisy ones."},
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={"help": "Class names in label-id order, or the path of one JSON file holding them."},
    )
    test_size: float = field(
        default=0.2, metadata={"help": "Held-out fraction when the dataset has no test split."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the held-out test split."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N test samples only (quick runs)."}
    )
    test_dataset_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Take the test split from this other dataset (same classes), e.g. `food101` to test prompts "
            "learned on Food-101N. Read with its catalog / own defaults."
        },
    )

    def __post_init__(self):
        if not 0 < self.test_size < 1:
            raise ValueError(f"Expected `test_size` in (0, 1), but got {self.test_size}.")
        if self.max_eval_samples is not None and self.max_eval_samples < 1:
            raise ValueError(f"Expected a positive `max_eval_samples`, but got {self.max_eval_samples}.")

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of [`nlprompt_hf.data.load_noisy_dataset`] held by these arguments."""
        names: Any = self.class_names
        if names is not None and len(names) == 1 and names[0].lower().endswith(".json"):
            names = names[0]
        return dict(
            config_name=self.dataset_config_name,
            train_split=self.train_split,
            test_split=self.test_split,
            image_column=self.image_column,
            label_column=self.label_column,
            clean_label_column=self.clean_label_column,
            class_names=names,
            test_size=self.test_size,
            seed=self.split_seed,
        )


@dataclass
class NoiseArguments:
    r"""
    Few-shot sampling and synthetic label noise of the training set (NLPrompt's protocol: noise after sampling).

    Args:
        shots (`int`, *optional*, defaults to `16`): examples per class; `0` keeps the whole train split.
        fewshot_seed (`int`, *optional*, defaults to `1`): seed of the few-shot sampler.
        noise_type (`str`, *optional*, defaults to `"real"`): `real` takes the labels as given (your own data, or
            real-world noise such as Food-101N); `symmetric`, `asymmetric`, `k_wrong_shots` inject
            synthetic noise and keep the true label for evaluation only.
        noise_rate (`float`, *optional*, defaults to `0.0`): fraction of corrupted labels, in [0, 1).
        noise_seed (`int`, *optional*, defaults to `1`): seed of the noise.
    """

    shots: int = field(
        default=16, metadata={"help": "Examples per class (few-shot); 0 keeps the whole train split."}
    )
    fewshot_seed: int = field(default=1, metadata={"help": "Seed of the few-shot sampler (0 is a seed too)."})
    noise_type: str = field(
        default="real",
        metadata={
            "help": "`real`: labels as given (own data, real-world noise such as Food-101N), no synthetic noise. "
            "`symmetric` / `asymmetric` / `k_wrong_shots`: inject seeded synthetic noise after "
            "few-shot sampling; the true labels are kept for evaluation only.",
            "choices": list(NOISE_TYPES),
        },
    )
    noise_rate: float = field(default=0.0, metadata={"help": "Fraction of corrupted labels, in [0, 1)."})
    noise_seed: int = field(default=1, metadata={"help": "Seed of the synthetic noise (0 is a seed too)."})

    def __post_init__(self):
        _check_choice("noise_type", self.noise_type, NOISE_TYPES)
        if self.shots < 0:
            raise ValueError(f"Expected `shots` >= 0 (0 = all samples), but got {self.shots}.")
        if not 0 <= self.noise_rate < 1:
            raise ValueError(
                f"Expected `noise_rate` in [0, 1), but got {self.noise_rate}. Use e.g. 0.5 for 50%."
            )
        if self.noise_type == "real" and self.noise_rate != 0:
            raise ValueError(
                f"noise_type='real' takes the labels as given, but noise_rate={self.noise_rate} was set. Pass "
                "--noise_type symmetric (or asymmetric, ...) to inject synthetic noise, or drop --noise_rate."
            )


@dataclass
class AuditDataArguments(NoiseArguments):
    r"""
    [`NoiseArguments`] for `audit`: by default every sample of the split is audited (`shots=0`) with its labels as
    given. Injecting known synthetic noise (`--noise_type symmetric --noise_rate 0.3`) measures how well the audit
    finds it (AUROC).
    """

    shots: int = field(
        default=0, metadata={"help": "Audit a few-shot subset (examples per class); 0 audits all."}
    )


# --------------------------------------------------------------------------------------------------- commands
@dataclass
class TrainRunArguments:
    r"""
    What `nlprompt-hf train` does around the training run itself.

    Args:
        baselines (`list[str]`, *optional*): other methods (`coop`, `promptmae`, `gce`, `nlprompt`) trained on the
            same noisy data for comparison; their test accuracy goes into `metrics.json` and the summary table.
        report (`bool`, *optional*, defaults to `True`): write `report.md` with PNG plots.
        keep_checkpoints (`bool`, *optional*, defaults to `False`): keep the Trainer's `checkpoint-*` folders in
            the finished output directory (they exist to resume an interrupted run).
    """

    baselines: list[str] | None = field(
        default=None,
        metadata={
            "help": "Other methods trained on the same noisy data for comparison (e.g. `coop`); their accuracy goes "
            "into metrics.json and the summary table."
        },
    )
    report: bool = field(default=True, metadata={"help": "Write report.md with PNG plots."})
    keep_checkpoints: bool = field(
        default=False,
        metadata={"help": "Keep the Trainer's checkpoint-* folders in the finished output directory."},
    )

    def __post_init__(self):
        for method in self.baselines or ():
            _check_choice("baselines", method, METHODS)


@dataclass
class EvaluateArguments:
    r"""
    Options of `evaluate` (and `zero-shot`).

    Args:
        eval_split (`str`, *optional*, defaults to `"test"`): `test` or `train` (after the data's own splitting).
        output_file (`str`, *optional*): write the metrics there as JSON.
        batch_size (`int`, *optional*, defaults to `128`): images per forward pass.
        feature_cache_dir (`str`, *optional*): where cached image features live (default under `HF_HOME`).
    """

    eval_split: str = field(
        default="test",
        metadata={"help": "Which split to score: `test` or `train`.", "choices": ["test", "train"]},
    )
    output_file: str | None = field(default=None, metadata={"help": "Write the metrics to this JSON file."})
    batch_size: int = field(
        default=_default_of("feature_batch_size"), metadata={"help": "Images per forward pass."}
    )
    feature_cache_dir: str | None = field(
        default=_default_of("feature_cache_dir"), metadata={"help": _help_of("feature_cache_dir")}
    )

    def __post_init__(self):
        _check_choice("eval_split", self.eval_split, ("test", "train"))


@dataclass
class ZeroShotArguments(EvaluateArguments):
    r"""
    [`EvaluateArguments`] plus the hand-written template of the zero-shot baseline.

    Args:
        zero_shot_template (`str`, *optional*, defaults to `"a photo of a {}."`): the prompt, `{}` is the class.
    """

    zero_shot_template: str = field(
        default=_default_of("zero_shot_template"), metadata={"help": _help_of("zero_shot_template")}
    )


@dataclass
class PredictArguments:
    r"""
    Options of `predict`.

    Args:
        images (`list[str]`): image files and/or folders (searched recursively for images).
        output_file (`str`, *optional*, defaults to `"predictions.csv"`): `.csv` or `.json` / `.jsonl`.
        top_k (`int`, *optional*, defaults to `5`): how many best classes to list per image.
        batch_size (`int`, *optional*, defaults to `128`): images per forward pass.
    """

    images: list[str] = field(metadata={"help": "Image files and/or folders (searched recursively)."})
    output_file: str = field(
        default="predictions.csv", metadata={"help": "Where to write the predictions: .csv, .json or .jsonl."}
    )
    top_k: int = field(default=5, metadata={"help": "Number of best classes listed per image."})
    batch_size: int = field(
        default=_default_of("feature_batch_size"), metadata={"help": "Images per forward pass."}
    )

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"Expected `top_k` >= 1, but got {self.top_k}.")
        ext = os.path.splitext(self.output_file)[1].lower()
        if ext not in (".csv", ".json", ".jsonl"):
            raise ValueError(
                f"Expected `output_file` to end in .csv, .json or .jsonl, but got {self.output_file!r}."
            )


@dataclass
class AuditArguments:
    r"""
    Options of `audit`: PromptOT on a labelled dataset, ranking the samples whose label the transport plan rejects.

    Args:
        output_dir (`str`, *optional*, defaults to `"nlprompt-audit"`): where `label_audit.csv`,
            `audit_metrics.json` and the audited `datasets` folder (`audited_dataset/`) go.
        audit_split (`str`, *optional*, defaults to `"train"`): `train` or `test`.
        ot_reg, ot_cost, ot_max_iter, ot_tol, ot_temperature: PromptOT settings, defaults of `NLPromptConfig`.
        batch_size (`int`, *optional*, defaults to `128`): images per forward pass.
        feature_cache_dir (`str`, *optional*): where cached image features live.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`): allow a non-empty `output_dir`.
        push_to_hub (`bool`, *optional*, defaults to `False`): upload the audited dataset (`Dataset.push_to_hub`).
        hub_dataset_id (`str`, *optional*): the dataset repo to push to.
        hub_private_repo (`bool`, *optional*): make that repo private.
    """

    output_dir: str = field(default="nlprompt-audit", metadata={"help": "Where the audit files go."})
    audit_split: str = field(
        default="train", metadata={"help": "Which split to audit.", "choices": ["train", "test"]}
    )
    ot_reg: float = field(default=_default_of("ot_reg"), metadata={"help": _help_of("ot_reg")})
    ot_cost: str = field(
        default=_default_of("ot_cost"),
        metadata=dict(NLPromptConfig.__dataclass_fields__["ot_cost"].metadata),
    )
    ot_max_iter: int = field(default=_default_of("ot_max_iter"), metadata={"help": _help_of("ot_max_iter")})
    ot_tol: float = field(default=_default_of("ot_tol"), metadata={"help": _help_of("ot_tol")})
    ot_temperature: float = field(
        default=_default_of("ot_temperature"), metadata={"help": _help_of("ot_temperature")}
    )
    batch_size: int = field(
        default=_default_of("feature_batch_size"), metadata={"help": "Images per forward pass."}
    )
    feature_cache_dir: str | None = field(
        default=_default_of("feature_cache_dir"), metadata={"help": _help_of("feature_cache_dir")}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output_dir."}
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the audited dataset to the Hub (`Dataset.push_to_hub`)."}
    )
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "Dataset repo id to push the audit to."}
    )
    hub_private_repo: bool | None = field(
        default=None, metadata={"help": "Make the pushed dataset repo private."}
    )

    def __post_init__(self):
        _check_choice("audit_split", self.audit_split, ("train", "test"))
        _check_choice(
            "ot_cost", self.ot_cost, NLPromptConfig.__dataclass_fields__["ot_cost"].metadata["choices"]
        )
        if not self.ot_reg > 0:
            raise ValueError(
                f"Expected `ot_reg` > 0 (Sinkhorn's entropic regularisation), but got {self.ot_reg}."
            )
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError(
                "--push_to_hub needs --hub_dataset_id (e.g. `me/my-dataset-audited`): the repo to upload the "
                "audited dataset to."
            )


# --------------------------------------------------------------------------------------------------- recipes
def resolve_recipe_path(path: str | os.PathLike) -> str:
    """A recipe file, or the name of one shipped inside the package (`demo` -> `nlprompt_hf/recipes/demo.yaml`)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    packaged = os.path.join(PACKAGED_RECIPES, path if path.endswith((".yaml", ".yml")) else f"{path}.yaml")
    if os.path.isfile(packaged):
        return packaged
    shipped = sorted(os.path.splitext(n)[0] for n in os.listdir(PACKAGED_RECIPES) if n.endswith(".yaml"))
    raise ValueError(
        f"Expected `--config` to be a YAML recipe file or the name of a packaged recipe {shipped}, but {path!r} is "
        "neither. See the `recipes/` folder of the repository for the paper's recipes."
    )


def load_recipe(path: str | os.PathLike, dataclass_types: Iterable[type] | None = None) -> dict[str, Any]:
    """Read a YAML recipe: a flat mapping whose keys are field names of `dataclass_types`.

    Args:
        path (`str` or `os.PathLike`): a YAML file, or the name of a recipe shipped in the package (`demo`).
        dataclass_types (iterable of dataclass types, *optional*): when given, every key must be a field of one
            of them.

    Returns:
        `dict`: the recipe's `{field: value}`.

    Raises:
        `ValueError`: if the file is not a mapping, or a key is not a field (the message names the nearest one).

    Example:

    ```python
    >>> from nlprompt_hf.arguments import DataArguments, load_recipe
    >>> load_recipe("demo", [DataArguments, NLPromptConfig])["dataset_name_or_path"]  # doctest: +SKIP
    'demo'
    ```
    """
    path = resolve_recipe_path(path)
    with open(path, encoding="utf-8") as f:
        content = yaml.safe_load(f)
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(
            f"Expected the recipe {path!r} to be a YAML mapping of option: value, but found a "
            f"{type(content).__name__}."
        )
    if dataclass_types is not None:
        valid = [f.name for dtype in dataclass_types for f in fields(dtype)]
        for key in content:
            if key not in valid:
                nearest = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.0)
                hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
                raise ValueError(
                    f"Unknown key {key!r} in the recipe {path!r}: it is not an option of this command.{hint} "
                    f"Recipe keys are the option names of `--help`, without the dashes."
                )
    return content


class NLPromptParser(HfArgumentParser):
    r"""
    `HfArgumentParser` with a `--config` option: a YAML recipe supplies defaults, flags override them.

    Example:

    ```python
    >>> parser = NLPromptParser((ModelArguments, DataArguments, NLPromptConfig))
    >>> model_args, data_args, training_args = parser.parse_args_and_config(["--config", "demo"])  # doctest: +SKIP
    ```
    """

    def __init__(self, dataclass_types=None, **kwargs):
        super().__init__(dataclass_types, **kwargs)
        self.add_argument(
            "--config",
            default=None,
            help="YAML recipe whose keys are the options below (flags given here override it), or the name of a "
            "recipe shipped with the package (`demo`).",
        )

    def parse_args_and_config(self, args: Sequence[str] | None = None) -> tuple:
        """Parse `args` (default `sys.argv[1:]`) into the dataclasses, after applying the `--config` recipe."""
        args = list(sys.argv[1:] if args is None else args)
        pre = ArgumentParser(add_help=False)
        pre.add_argument("--config", default=None)
        known, _ = pre.parse_known_args(args)
        if known.config is not None:
            recipe = load_recipe(known.config, self.dataclass_types)
            by_dest: dict[str, Any] = {}
            for action in self._actions:
                by_dest.setdefault(action.dest, action)  # the option itself, not its `--no_*` complement
            defaults = {}
            for key, value in recipe.items():
                action = by_dest[key]
                action.required = False  # the recipe supplies it
                # YAML reads `2e-3` or `no` as strings: argparse converts string defaults with the option's type
                if isinstance(value, (int, float)) and not isinstance(value, bool) and action.type is str:
                    value = str(value)
                defaults[key] = value
            self.set_defaults(**defaults)
        outputs = self.parse_args_into_dataclasses(args=args, return_remaining_strings=False)
        # the last output is the namespace of --config (not a dataclass): drop it
        return tuple(o for o in outputs if not hasattr(o, "config"))
