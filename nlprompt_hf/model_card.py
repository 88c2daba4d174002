"""Model cards for learned prompts, built with huggingface_hub's `ModelCard`."""

from __future__ import annotations

import os
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

CITATION = """@inproceedings{pan2025nlprompt,
  title     = {NLPrompt: Noise-Label Prompt Learning for Vision-Language Models},
  author    = {Pan, Bikang and Li, Qun and Tang, Xiaoying and Huang, Wei and Fang, Zhen and Liu, Feng and Wang, Jingya and Yu, Jingyi and Shi, Ye},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2025},
  url       = {https://arxiv.org/abs/2412.01256}
}"""


def _table(rows: dict[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    for key, value in rows.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def build_model_card(
    config,
    *,
    method: str | None = None,
    dataset: str | None = None,
    noise: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    repo_id: str | None = None,
) -> ModelCard:
    """A model card for a prompt adapter: base model, data, noise settings, method, results, usage, citation.

    Args:
        config ([`PromptAdapterConfig`]): the adapter's config.
        method (`str`, *optional*): training method (`nlprompt`, `coop`, `promptmae`, `gce`).
        dataset (`str`, *optional*): dataset id or path used for training.
        noise (`dict`, *optional*): label-noise settings (type, rate, seed) or `{"type": "real"}`.
        results (`dict`, *optional*): evaluation figures, e.g. `{"eval_accuracy": 0.83}`.
        repo_id (`str`, *optional*): where the card will live (used in the usage snippet).
    """
    base = config.base_model_name_or_path or "unknown"
    # Hub metadata may only name Hub repos: local paths stay in the text, not in `base_model` / `datasets`
    is_hub_id = lambda name: bool(name) and "/" in name and not os.path.exists(name)  # noqa: E731
    data = ModelCardData(
        library_name="peft",
        base_model=base if is_hub_id(base) else None,
        license="apache-2.0",
        pipeline_tag="zero-shot-image-classification",
        tags=["nlprompt-hf", "prompt-learning", "coop", "noisy-labels", "clip", f"method:{method or 'unknown'}"],
        datasets=[dataset] if is_hub_id(dataset) else None,
    )
    noise_rows = {"label noise": "none given"} if not noise else {f"noise {k}": v for k, v in noise.items()}
    settings = {
        "base model": base,
        "method": method or "unknown",
        "dataset": dataset or "unknown",
        **noise_rows,
        "classes": config.num_classes,
        "n_ctx": config.n_ctx,
        "context init": config.ctx_init,
        "class-specific context": config.class_specific,
        "class position": config.class_position,
    }
    results_md = _table(results) if results else "No evaluation results were recorded."
    load_path = repo_id or "path/to/adapter"
    content = f"""---
{data.to_yaml()}
---

# Learned prompts for `{base}` ({method or 'prompt learning'})

CoOp-style context vectors for the frozen CLIP model `{base}`, trained with
[nlprompt-hf](https://arxiv.org/abs/2412.01256) ({method or 'unknown method'}). Only the context is learned
({config.num_placeholders} token embeddings); every CLIP weight is unchanged. The files are a standard PEFT
adapter (`adapter_config.json`, `adapter_model.safetensors`) plus `prompt_config.json` (class names, prompt ids).

## Training setup

{_table(settings)}

## Results

{results_md}

## Usage

```python
from nlprompt_hf import NLPromptModel

model = NLPromptModel.from_pretrained("{load_path}")
prediction = model.predict(images)  # list of PIL images
print(prediction.labels, prediction.probabilities)
```

With plain PEFT, feed the saved prompt ids (`prompt_config.json` → `prompt_input_ids`) to
`PeftModel.from_pretrained(CLIPModel.from_pretrained("{base}"), "{load_path}")`.

Classes: {", ".join(config.class_names[:50])}{" …" if config.num_classes > 50 else ""}

## Citation

```bibtex
{CITATION}
```
"""
    return ModelCard(content)
