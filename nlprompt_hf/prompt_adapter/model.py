"""`NLPromptModel`: a frozen transformers `CLIPModel` plus CoOp-style learned context, stored as a PEFT adapter."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
from peft import PeftModel, TrainableTokensConfig, get_peft_model
from torch import nn
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel
from transformers.utils import ModelOutput

from .. import __version__
from .config import CONFIG_NAME, PromptAdapterConfig
from .tokens import (
    build_prompt_ids,
    check_placeholder_ids,
    reserved_token_ids,
    select_placeholder_ids,
    text_token_ids,
)

logger = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "pytorch_model.bin")
TARGET_MODULE = "token_embedding"


@dataclass
class PromptLearnerOutput(ModelOutput):
    """Output of [`NLPromptModel.forward`].

    Args:
        logits (`torch.FloatTensor` of shape `(batch_size, num_classes)`):
            `exp(logit_scale) * cos(image, class prompt)`, exactly as CLIP's `logits_per_image`.
        image_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`): L2-normalised image features.
        text_embeds (`torch.FloatTensor` of shape `(num_classes, projection_dim)`): L2-normalised prompt features.
    """

    logits: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


@dataclass
class PredictionOutput(ModelOutput):
    """Output of [`NLPromptModel.predict`]: one row per image."""

    label_ids: torch.LongTensor | None = None
    labels: list[str] | None = None
    probabilities: torch.FloatTensor | None = None


def base_model_signature(clip: CLIPModel) -> dict[str, Any]:
    """Architecture and a weight checksum of the frozen CLIP: a later load on another base model is refused."""
    tc, vc = clip.config.text_config, clip.config.vision_config
    return {
        "model_type": clip.config.model_type,
        "vocab_size": tc.vocab_size,
        "text_hidden_size": tc.hidden_size,
        "vision_hidden_size": vc.hidden_size,
        "projection_dim": clip.config.projection_dim,
        "text_projection_sum": float(clip.text_projection.weight.detach().double().sum()),
        "logit_scale": float(clip.logit_scale.detach()),
    }


def _check_signature(expected: dict[str, Any] | None, found: dict[str, Any], base: str) -> None:
    if not expected:
        return
    for key, want in expected.items():
        got = found.get(key)
        same = math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5) if isinstance(want, float) else got == want
        if not same:
            raise ValueError(
                f"This adapter was trained on a different base model: {key} is {want!r} in the adapter's "
                f"{CONFIG_NAME} but {got!r} in {base!r}. Load it on the checkpoint it was trained on "
                "(`base_model_name_or_path` in its config)."
            )


def _disallow_pickle(directory: str) -> None:
    present = [name for name in PICKLE_WEIGHTS if os.path.exists(os.path.join(directory, name))]
    if present and not os.path.exists(os.path.join(directory, ADAPTER_WEIGHTS)):
        raise ValueError(
            f"Refusing to load {present[0]!r} from {directory!r}: pickle-based weight files can execute code when "
            f"loaded. Expected {ADAPTER_WEIGHTS!r}; convert the weights with safetensors and save them again."
        )


def _download_adapter(repo_id: str, revision: str | None, token: str | None) -> tuple[str, str]:
    """`prompt_config.json`, `adapter_config.json` and the safetensors weights of a Hub adapter, from the cache.

    Returns the local path of `prompt_config.json` and the snapshot folder holding the three files.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    files = {}
    for name in (CONFIG_NAME, "adapter_config.json", ADAPTER_WEIGHTS):
        try:
            files[name] = hf_hub_download(repo_id, name, revision=revision, token=token)
        except EntryNotFoundError as err:
            pickled = " (pickle-based weight files are never loaded)" if name == ADAPTER_WEIGHTS else ""
            raise ValueError(
                f"The Hub repo {repo_id!r} has no {name!r}{pickled}. Expected the files written by "
                f"`NLPromptModel.save_pretrained` / `push_to_hub` ({CONFIG_NAME}, adapter_config.json, "
                f"{ADAPTER_WEIGHTS}); push the adapter again with nlprompt-hf."
            ) from err
    return files[CONFIG_NAME], os.path.dirname(files[ADAPTER_WEIGHTS])


def _is_legacy_pooling(clip: CLIPModel) -> bool:
    # transformers pools at the argmax of the input ids when the config carries the old `eos_token_id: 2`
    return clip.config.text_config.eos_token_id == 2


class NLPromptModel(nn.Module):
    r"""
    A frozen CLIP whose class prompts carry learned context vectors (CoOp), the model NLPrompt trains.

    The context lives in a peft `TrainableTokensConfig` adapter on `text_model.embeddings.token_embedding`:
    the prompt of class c is `[SOS] <ctx placeholders> <class name> . [EOS]` and the embedding rows of the
    placeholder ids are the only trainable tensors. The saved directory is therefore a standard PEFT adapter
    (`adapter_config.json`, `adapter_model.safetensors`) plus `prompt_config.json` (class names, prompt ids).

    Example:

    ```python
    >>> from nlprompt_hf import NLPromptModel
    >>> model = NLPromptModel.from_base("openai/clip-vit-base-patch16", ["cat", "dog"], n_ctx=16)
    >>> model.predict(images).labels
    >>> model.save_pretrained("my-prompts")
    >>> model = NLPromptModel.from_pretrained("my-prompts")
    ```
    """

    def __init__(self, peft_model: PeftModel, config: PromptAdapterConfig, tokenizer=None, image_processor=None):
        super().__init__()
        self.peft_model = peft_model
        self.config = config
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        # Derived from the config: not part of the state (peft holds the only learned tensor).
        self.register_buffer("prompt_input_ids", torch.tensor(config.prompt_input_ids), persistent=False)
        self.register_buffer("prompt_attention_mask", torch.tensor(config.prompt_attention_mask), persistent=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(
        cls,
        base_model: str | os.PathLike | CLIPModel,
        class_names: list[str],
        *,
        n_ctx: int | None = None,
        ctx_init: str = "random",
        class_specific: bool = False,
        class_position: str = "end",
        zero_shot_template: str = "a photo of a {}.",
        init_seed: int = 0,
        placeholder_token_ids: list[int] | None = None,
        tokenizer=None,
        image_processor=None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        **from_pretrained_kwargs,
    ) -> NLPromptModel:
        r"""
        Build a new prompt learner on a CLIP checkpoint.

        Args:
            base_model (`str`, `os.PathLike` or `CLIPModel`):
                A Hub id (e.g. `"openai/clip-vit-base-patch16"`), a local directory, or a loaded `CLIPModel`.
            class_names (`list[str]`): one name per label id.
            n_ctx, ctx_init, class_specific, class_position, zero_shot_template, init_seed, placeholder_token_ids:
                see [`PromptAdapterConfig`].
            tokenizer, image_processor (*optional*):
                Defaults to the checkpoint's own (`AutoTokenizer`, `AutoImageProcessor` with the PIL backend).
            trust_remote_code (`bool`, *optional*, defaults to `False`):
                Explicit opt-in for checkpoints that ship their own modelling code.
        """
        config = PromptAdapterConfig(
            class_names=list(class_names),
            n_ctx=n_ctx,
            ctx_init=ctx_init,
            class_specific=class_specific,
            class_position=class_position,
            zero_shot_template=zero_shot_template,
            init_seed=init_seed,
            placeholder_token_ids=list(placeholder_token_ids) if placeholder_token_ids is not None else None,
        )
        if isinstance(base_model, CLIPModel):
            clip, base_name = base_model, base_model.config.name_or_path
        else:
            base_name = str(base_model)
            clip = _load_clip(base_name, revision, trust_remote_code, **from_pretrained_kwargs)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(base_name, revision=revision, trust_remote_code=trust_remote_code)
        if image_processor is None:
            image_processor = _load_image_processor(base_name, revision, trust_remote_code)
        config.base_model_name_or_path = base_name

        embedding = clip.text_model.embeddings.token_embedding.weight.detach()
        if config.ctx_init != "random":
            init_ids = text_token_ids(tokenizer, config.ctx_init)
            if config.n_ctx is not None and config.n_ctx != len(init_ids):
                raise ValueError(
                    f"n_ctx={config.n_ctx} but ctx_init {config.ctx_init!r} is {len(init_ids)} tokens: with word "
                    "init the context length is the number of tokens. Drop n_ctx or set it to "
                    f"{len(init_ids)}."
                )
            config.n_ctx = len(init_ids)

        legacy = _is_legacy_pooling(clip)
        max_id = tokenizer.eos_token_id if legacy else None
        reserved = reserved_token_ids(tokenizer, config)
        if config.placeholder_token_ids is None:
            config.placeholder_token_ids = select_placeholder_ids(tokenizer, config.num_placeholders, reserved, max_id)
        elif len(config.placeholder_token_ids) != config.num_placeholders:
            raise ValueError(
                f"Got {len(config.placeholder_token_ids)} placeholder_token_ids but the context needs "
                f"{config.num_placeholders} (n_ctx={config.n_ctx} x "
                f"{config.num_classes if config.class_specific else 1} context(s))."
            )
        check_placeholder_ids(tokenizer, config.placeholder_token_ids, reserved, max_id)
        max_length = clip.config.text_config.max_position_embeddings
        config.prompt_input_ids, config.prompt_attention_mask = build_prompt_ids(tokenizer, config, max_length)
        config.base_model_signature = base_model_signature(clip)
        config.library_version = __version__

        if config.ctx_init == "random":
            generator = torch.Generator().manual_seed(config.init_seed)
            init = torch.randn(config.num_placeholders, embedding.shape[1], generator=generator) * 0.02
        else:
            words = embedding[text_token_ids(tokenizer, config.ctx_init)]
            init = words.repeat(config.num_classes if config.class_specific else 1, 1)

        peft_config = TrainableTokensConfig(
            target_modules=[TARGET_MODULE], token_indices=list(config.placeholder_token_ids), init_weights=True
        )
        peft_model = get_peft_model(clip, peft_config)
        model = cls(peft_model, config, tokenizer, image_processor)
        with torch.no_grad():
            model.context_parameter.copy_(init.to(model.context_parameter))
        return model

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        base_model_name_or_path: str | None = None,
        is_trainable: bool = False,
        revision: str | None = None,
        token: str | None = None,
        trust_remote_code: bool = False,
        **from_pretrained_kwargs,
    ) -> NLPromptModel:
        r"""
        Load learned prompts saved with [`save_pretrained`] (a local directory or a Hub repo id).

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): adapter directory or Hub repo id.
            base_model_name_or_path (`str`, *optional*):
                Override the base CLIP recorded in the adapter (e.g. a local copy). Its weights must match the
                recorded signature.
            is_trainable (`bool`, *optional*, defaults to `False`): keep the context trainable (to resume).
        """
        path = str(pretrained_model_name_or_path)
        if os.path.isdir(path):
            config_file = os.path.join(path, CONFIG_NAME)
            if not os.path.exists(config_file):
                raise ValueError(
                    f"{path!r} has no {CONFIG_NAME}: it is not an nlprompt-hf adapter directory. Expected the "
                    f"output of `NLPromptModel.save_pretrained` ({CONFIG_NAME}, adapter_config.json, "
                    f"{ADAPTER_WEIGHTS})."
                )
            _disallow_pickle(path)
            if not os.path.exists(os.path.join(path, ADAPTER_WEIGHTS)):
                raise ValueError(
                    f"{path!r} has no {ADAPTER_WEIGHTS}: expected the adapter weights saved by "
                    "`NLPromptModel.save_pretrained`. Save the adapter again (only safetensors weights are loaded)."
                )
        else:
            # Fetch exactly the three files into the local cache and load from there: peft, given a Hub id whose
            # repo lacks the safetensors file, would fall back to a pickled `adapter_model.bin`.
            config_file, path = _download_adapter(path, revision, token)
            revision = None
        config = PromptAdapterConfig.from_json_file(config_file)
        base_name = base_model_name_or_path or config.base_model_name_or_path
        if not base_name:
            raise ValueError(f"{CONFIG_NAME} names no base model; pass `base_model_name_or_path`.")
        clip = _load_clip(base_name, None, trust_remote_code, **from_pretrained_kwargs)
        _check_signature(config.base_model_signature, base_model_signature(clip), base_name)
        tokenizer = AutoTokenizer.from_pretrained(base_name, trust_remote_code=trust_remote_code)
        image_processor = _load_image_processor(base_name, None, trust_remote_code)
        peft_model = PeftModel.from_pretrained(
            clip, path, is_trainable=is_trainable, revision=revision, token=token, use_safetensors=True
        )
        loaded = sorted(peft_model.peft_config["default"].token_indices)
        if loaded != sorted(config.placeholder_token_ids):
            raise ValueError(
                f"adapter_config.json trains token ids {loaded} but {CONFIG_NAME} expects "
                f"{sorted(config.placeholder_token_ids)}: the two files come from different runs."
            )
        return cls(peft_model, config, tokenizer, image_processor)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike, model_card=None) -> None:
        """Write the PEFT adapter, `prompt_config.json` and (optionally) a model card `README.md`."""
        save_directory = str(save_directory)
        os.makedirs(save_directory, exist_ok=True)
        self.peft_model.save_pretrained(save_directory, safe_serialization=True)
        self.config.save_pretrained(save_directory)
        if model_card is not None:
            model_card.save(os.path.join(save_directory, "README.md"))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload NLPrompt prompt adapter",
        model_card=None,
        revision: str | None = None,
        create_pr: bool = False,
    ):
        """Upload the adapter, `prompt_config.json` and a model card to the Hub in one commit."""
        from huggingface_hub import HfApi

        from ..model_card import build_model_card

        api = HfApi(token=token)
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        card = model_card if model_card is not None else build_model_card(self.config)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, model_card=card)
            return api.upload_folder(
                repo_id=getattr(repo_url, "repo_id", repo_id),
                folder_path=tmp,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
                repo_type="model",
            )

    # ------------------------------------------------------------------ parts
    @property
    def clip(self) -> CLIPModel:
        """The CLIPModel (its token embedding wrapped by peft)."""
        return self.peft_model.get_base_model()

    @property
    def context_parameter(self) -> nn.Parameter:
        """The learned context, (n_ctx, dim) or (num_classes * n_ctx, dim) for class-specific context."""
        layer = self.clip.text_model.embeddings.token_embedding
        return layer.trainable_tokens_delta[self.peft_model.active_adapter]

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def check_class_names(self, class_names: list[str]) -> None:
        """Raise if a dataset's classes differ from the ones the prompts were learned for."""
        from .config import normalize_class_name

        theirs = [normalize_class_name(n) for n in class_names]
        if theirs != self.config.class_names:
            missing = [n for n in self.config.class_names if n not in theirs]
            extra = [n for n in theirs if n not in self.config.class_names]
            detail = f"missing {missing}, unexpected {extra}" if (missing or extra) else "same names, other order"
            raise ValueError(
                f"The adapter was trained for {self.num_classes} classes {self.config.class_names} but the data has "
                f"{len(theirs)} classes {theirs} ({detail}). Evaluate on data with the adapter's class list, in "
                "its label order."
            )

    # ------------------------------------------------------------------ features and logits
    def text_features(self, normalize: bool = True) -> torch.Tensor:
        """Features of the C class prompts under the current context, (C, D). One text-encoder pass."""
        feats = self.clip.get_text_features(
            input_ids=self.prompt_input_ids, attention_mask=self.prompt_attention_mask
        ).pooler_output
        return feats / feats.norm(dim=-1, keepdim=True) if normalize else feats

    def encode_images(self, pixel_values: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Projected image features of the frozen image encoder, (N, D)."""
        feats = self.clip.get_image_features(pixel_values=pixel_values).pooler_output
        return feats / feats.norm(dim=-1, keepdim=True) if normalize else feats

    def logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """`exp(logit_scale) * cos(image, text)`, (N, C); `image_embeds` need not be normalised."""
        if text_embeds is None:
            text_embeds = self.text_features()
        image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
        return self.logit_scale * image_embeds.to(text_embeds.dtype) @ text_embeds.t()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        **unused,
    ) -> PromptLearnerOutput:
        """Logits of a batch given pixels, or cached (frozen) image features `image_embeds`."""
        if (pixel_values is None) == (image_embeds is None):
            raise ValueError("Pass exactly one of `pixel_values` or `image_embeds` (cached image features).")
        if image_embeds is None:
            with torch.no_grad():  # the image encoder is frozen: no graph through it
                image_embeds = self.encode_images(pixel_values)
        text = self.text_features()
        image = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
        logits = self.logit_scale * image.to(text.dtype) @ text.t()
        return PromptLearnerOutput(logits=logits, image_embeds=image, text_embeds=text)

    # ------------------------------------------------------------------ inference helpers
    def preprocess(self, images) -> torch.Tensor:
        """PIL images (any mode) -> pixel values with the checkpoint's own image processor."""
        from ..data.transforms import to_rgb

        if self.image_processor is None:
            raise ValueError("This model has no image processor; pass pixel values instead of images.")
        rgb = [to_rgb(img) for img in images]
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def image_features_of(self, images, batch_size: int = 64) -> torch.Tensor:
        """Image features (N, D) of PIL images or a pixel tensor, in batches."""
        device = self.prompt_input_ids.device
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            pixels = batch if isinstance(batch, torch.Tensor) else self.preprocess(batch)
            chunks.append(self.encode_images(pixels.to(device)))
        return torch.cat(chunks)

    @torch.no_grad()
    def predict(self, images, batch_size: int = 64) -> PredictionOutput:
        """Labels and class probabilities for PIL images or a `(N, 3, H, W)` pixel tensor."""
        was_training = self.training
        self.eval()
        probs = self.logits(self.image_features_of(images, batch_size)).softmax(dim=-1)
        self.train(was_training)
        ids = probs.argmax(dim=-1)
        return PredictionOutput(
            label_ids=ids, labels=[self.config.class_names[i] for i in ids.tolist()], probabilities=probs
        )

    @torch.no_grad()
    def zero_shot_text_features(self, template: str | None = None) -> torch.Tensor:
        """Normalised features of the hand-written prompts `template.format(name)`, adapter disabled, (C, D)."""
        template = template or self.config.zero_shot_template
        texts = [template.format(name) for name in self.config.class_names]
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.prompt_input_ids.device)
        with self.peft_model.disable_adapter():
            feats = self.clip.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).pooler_output
        return feats / feats.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def zero_shot_logits(self, image_embeds: torch.Tensor, template: str | None = None) -> torch.Tensor:
        """CLIP's own zero-shot logits with a hand template (the baseline NLPrompt is compared with)."""
        return self.logits(image_embeds, self.zero_shot_text_features(template))

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _load_clip(name: str, revision, trust_remote_code: bool, **kwargs) -> CLIPModel:
    clip = CLIPModel.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code, **kwargs)
    return clip.eval()


def _load_image_processor(name: str, revision, trust_remote_code: bool):
    try:
        return AutoImageProcessor.from_pretrained(
            name, revision=revision, trust_remote_code=trust_remote_code, backend="pil"
        )
    except OSError:
        logger.warning("No image processor found for %s: pass pixel values or image features directly.", name)
        return None
