"""`PromptAdapterConfig`: what a learned CoOp prompt needs beyond the PEFT adapter weights."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

CONFIG_NAME = "prompt_config.json"
CLASS_POSITIONS = ("end", "middle", "front")
DEFAULT_N_CTX = 16


@dataclass
class PromptAdapterConfig:
    r"""
    Configuration of a CoOp-style prompt learner (Zhou et al., https://arxiv.org/abs/2109.01134) as used by
    NLPrompt (https://arxiv.org/abs/2412.01256).

    The learned context vectors themselves are stored by PEFT (`adapter_model.safetensors`, a
    `TrainableTokensConfig` on `text_model.embeddings.token_embedding`); this file holds what PEFT cannot: the
    class names, how prompts are laid out and the token ids that make them up.

    Args:
        class_names (`list[str]`):
            One name per class, in label-id order. Underscores become spaces.
        n_ctx (`int`, *optional*):
            Number of learned context tokens. Defaults to 16 with random init, or to the number of tokens of
            `ctx_init` when it is given.
        ctx_init (`str`, *optional*, defaults to `"random"`):
            `"random"` draws the context from N(0, 0.02²); any other string (e.g. `"a photo of a"`) initialises
            the context from the embeddings of those words.
        class_specific (`bool`, *optional*, defaults to `False`):
            One context per class instead of one shared by all classes.
        class_position (`str`, *optional*, defaults to `"end"`):
            Where the class name goes: `"end"` (`[SOS] ctx name . [EOS]`), `"middle"` or `"front"`.
        zero_shot_template (`str`, *optional*, defaults to `"a photo of a {}."`):
            Hand-written template for the zero-shot baseline.
        init_seed (`int`, *optional*, defaults to `0`):
            Seed of the random context init (0 is a real seed).
        placeholder_token_ids (`list[int]`, *optional*):
            Vocabulary ids whose embedding rows carry the learned context. Chosen automatically among ids that
            never occur in ordinary text (control-byte symbols first, then the rarest merges), and checked
            never to occur in a class name or in the zero-shot template.
        base_model_name_or_path (`str`, *optional*):
            The CLIP checkpoint the adapter was trained on.
    """

    class_names: list[str]
    n_ctx: int | None = None
    ctx_init: str = "random"
    class_specific: bool = False
    class_position: str = "end"
    zero_shot_template: str = "a photo of a {}."
    init_seed: int = 0
    placeholder_token_ids: list[int] | None = None
    base_model_name_or_path: str | None = None
    # Filled in when the adapter is built: the tokenized prompts (C, L) and a signature of the base model,
    # so a plain PEFT user can feed the same ids and a mismatched base model is refused on load.
    prompt_input_ids: list[list[int]] | None = None
    prompt_attention_mask: list[list[int]] | None = None
    base_model_signature: dict[str, Any] | None = None
    library_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.class_names, str) or not isinstance(self.class_names, (list, tuple)):
            raise ValueError(
                f"`class_names` must be a list of strings, got {type(self.class_names).__name__}: "
                f"{self.class_names!r}. Pass e.g. class_names=['cat', 'dog']."
            )
        self.class_names = [normalize_class_name(name) for name in self.class_names]
        if len(self.class_names) == 0:
            raise ValueError("`class_names` is empty: expected at least one class name (two to classify).")
        empty = [i for i, name in enumerate(self.class_names) if not name]
        if empty:
            raise ValueError(f"`class_names` has empty names at positions {empty}; give every class a name.")
        seen: dict[str, int] = {}
        for i, name in enumerate(self.class_names):
            if name in seen:
                raise ValueError(
                    f"Duplicate class name {name!r} at positions {seen[name]} and {i} (after underscores became "
                    "spaces): two classes would get identical prompts. Rename one of them."
                )
            seen[name] = i
        if self.class_position not in CLASS_POSITIONS:
            raise ValueError(
                f"Unknown class_position {self.class_position!r}: expected one of {list(CLASS_POSITIONS)}."
            )
        if not isinstance(self.ctx_init, str) or not self.ctx_init.strip():
            raise ValueError(f"`ctx_init` must be 'random' or a non-empty string of words, got {self.ctx_init!r}.")
        if self.n_ctx is not None and (isinstance(self.n_ctx, bool) or not isinstance(self.n_ctx, int) or self.n_ctx <= 0):
            raise ValueError(f"`n_ctx` must be a positive integer, got {self.n_ctx!r}.")
        if self.ctx_init == "random" and self.n_ctx is None:
            self.n_ctx = DEFAULT_N_CTX
        if "{}" not in self.zero_shot_template:
            raise ValueError(
                f"`zero_shot_template` must contain '{{}}' where the class name goes, got {self.zero_shot_template!r}."
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_placeholders(self) -> int:
        return self.n_ctx * (self.num_classes if self.class_specific else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, CONFIG_NAME)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptAdapterConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown keys {unknown} in {CONFIG_NAME}; expected a subset of {sorted(known)}. The file may come "
                "from a newer nlprompt-hf: upgrade the library."
            )
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> PromptAdapterConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def normalize_class_name(name: Any) -> str:
    """CoOp convention: underscores become spaces; surrounding whitespace is dropped."""
    if not isinstance(name, str):
        raise ValueError(f"Class names must be strings, got {type(name).__name__}: {name!r}.")
    return " ".join(name.replace("_", " ").split())
