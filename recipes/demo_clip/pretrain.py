"""Contrastively pretrain the small demo `CLIPModel` on generated captioned shapes (CPU, seeded).

Usage:

```bash
OMP_NUM_THREADS=1 python recipes/demo_clip/pretrain.py --config recipes/demo_clip/config.yaml
```

Flags override the YAML (`--max_steps 20 --output_dir /tmp/smoke`). The output directory holds a
`CLIPModel`, its tokenizer and image processor (all loadable with `from_pretrained` offline) and
`pretrain_metrics.json` with the zero-shot and linear-probe figures on the demo task.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, HfArgumentParser

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))  # run from a checkout
from nlprompt_hf.demo.shapes import (  # noqa: E402
    DEMO_SHIFTS,
    SHAPES,
    ZERO_SHOT_TEMPLATE,
    generate_corpus,
    make_demo_task,
)
from nlprompt_hf.demo.tokenizer import build_demo_tokenizer  # noqa: E402

logger = logging.getLogger("demo_clip.pretrain")


@dataclass
class PretrainConfig:
    """Settings of the demo CLIP pretraining; `config.yaml` maps one-to-one onto these fields."""

    # Run
    output_dir: str = field(default="recipes/demo_clip/work/checkpoint", metadata={"help": "Where to save."})
    seed: int = field(default=0, metadata={"help": "Seed of the corpus, the initialisation and the data order."})
    num_threads: int = field(default=1, metadata={"help": "torch CPU threads (1: leave the other core free)."})
    # Corpus
    corpus_size: int = field(default=200_000, metadata={"help": "Pre-generated captioned images."})
    # Model
    vision_hidden_size: int = field(default=192, metadata={"help": "Vision transformer width."})
    vision_layers: int = field(default=4, metadata={"help": "Vision transformer depth."})
    vision_heads: int = field(default=4, metadata={"help": "Vision attention heads."})
    patch_size: int = field(default=8, metadata={"help": "ViT patch size on 32×32 images."})
    text_hidden_size: int = field(default=128, metadata={"help": "Text transformer width."})
    text_layers: int = field(default=3, metadata={"help": "Text transformer depth."})
    text_heads: int = field(default=4, metadata={"help": "Text attention heads."})
    projection_dim: int = field(default=128, metadata={"help": "Shared embedding width."})
    # Optimisation
    max_steps: int = field(default=3600, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=256, metadata={"help": "Image–caption pairs per step."})
    learning_rate: float = field(default=1.5e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay on matrices."})
    warmup_steps: int = field(default=150, metadata={"help": "Linear warm-up steps before the cosine decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    # Logging and evaluation
    log_steps: int = field(default=100, metadata={"help": "Steps between log lines."})
    eval_steps: int = field(default=500, metadata={"help": "Steps between quick zero-shot checks (0: never)."})
    eval_task_seed: int = field(default=2025, metadata={"help": "Seed of the held-out demo task."})
    eval_shifts: list[str] = field(
        default_factory=lambda: list(DEMO_SHIFTS), metadata={"help": "Demo-task variants to evaluate."}
    )
    probe_shots: int = field(default=16, metadata={"help": "Shots per class of the linear probe."})
    probe_seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Linear-probe seeds."})
    eval_only: bool = field(
        default=False,
        metadata={"help": "Skip training: re-evaluate the checkpoint in `output_dir` on `eval_shifts` and "
                  "update its pretrain_metrics.json."},
    )

    def __post_init__(self):
        for shift in self.eval_shifts:
            if shift not in DEMO_SHIFTS:
                raise ValueError(f"`eval_shifts` entries must be in {list(DEMO_SHIFTS)}, found {shift!r}.")
        if self.warmup_steps >= self.max_steps and self.max_steps > 20:
            raise ValueError(
                f"`warmup_steps` ({self.warmup_steps}) must be below `max_steps` ({self.max_steps})."
            )


def parse_config(argv=None) -> PretrainConfig:
    """Read `--config` YAML as defaults, then let command-line flags override them."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(PretrainConfig)
    if known.config:
        with open(known.config) as f:
            values = yaml.safe_load(f) or {}
        unknown = set(values) - set(PretrainConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown keys in {known.config}: {sorted(unknown)}; expected PretrainConfig fields.")
        parser.set_defaults(**values)
    (config,) = parser.parse_args_into_dataclasses(args=rest)
    return config


def build_model(config: PretrainConfig, tokenizer) -> CLIPModel:
    clip_config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": config.text_hidden_size,
            "intermediate_size": 4 * config.text_hidden_size,
            "num_hidden_layers": config.text_layers,
            "num_attention_heads": config.text_heads,
            "max_position_embeddings": tokenizer.model_max_length,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": config.vision_hidden_size,
            "intermediate_size": 4 * config.vision_hidden_size,
            "num_hidden_layers": config.vision_layers,
            "num_attention_heads": config.vision_heads,
            "image_size": 32,
            "patch_size": config.patch_size,
        },
        projection_dim=config.projection_dim,
    )
    torch.manual_seed(config.seed)
    return CLIPModel(clip_config)


def to_pixels(images_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, 32, 32, 3) uint8 → (B, 3, 32, 32) float, the same maths as `CLIPImageProcessorPil`."""
    x = images_uint8.permute(0, 3, 1, 2).float() * (1 / 255)
    return (x - mean[:, None, None]) / std[:, None, None]


@torch.no_grad()
def image_features(model: CLIPModel, pixel_values: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    out = [model.get_image_features(pixel_values=pixel_values[i : i + batch_size]).pooler_output
           for i in range(0, len(pixel_values), batch_size)]
    return F.normalize(torch.cat(out), dim=-1)  # (N, D)


@torch.no_grad()
def class_text_features(model: CLIPModel, tokenizer, template: str = ZERO_SHOT_TEMPLATE) -> torch.Tensor:
    enc = tokenizer([template.format(name) for name in SHAPES], padding=True, return_tensors="pt")
    feats = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    return F.normalize(feats.pooler_output, dim=-1)  # (C, D)


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, l2: float = 1e-4) -> float:
    """Multinomial logistic regression on frozen features (LBFGS, full batch); returns test top-1."""
    w = torch.zeros(train_x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=300, line_search_fn="strong_wolfe")
    scale = 10.0  # normalised features: let logits grow without a huge weight norm

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(scale * train_x @ w + b, train_y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return ((scale * test_x @ w + b).argmax(-1) == test_y).float().mean().item()


def evaluate_task(model, tokenizer, processor, config: PretrainConfig, shift: str) -> dict:
    """Zero-shot and few-shot linear-probe top-1 on one demo-task variant, through the saved processor."""
    task = make_demo_task(seed=config.eval_task_seed, shift=shift)
    feats = {}
    for split in ("train", "test"):
        pixels = processor(images=list(task[split]["image"]), return_tensors="pt")["pixel_values"]
        feats[split] = (image_features(model, pixels), torch.tensor(list(task[split]["label"])))
    test_x, test_y = feats["test"]
    zero_shot = ((test_x @ class_text_features(model, tokenizer).T).argmax(-1) == test_y).float().mean().item()
    train_x, train_y = feats["train"]
    probes = []
    for seed in config.probe_seeds:
        rng = np.random.default_rng(seed)
        idx = np.concatenate(
            [rng.choice(np.nonzero(train_y.numpy() == c)[0], config.probe_shots, replace=False)
             for c in range(len(SHAPES))]
        )
        probes.append(linear_probe(train_x[idx], train_y[idx], test_x, test_y, len(SHAPES)))
    return {
        "zero_shot_top1": zero_shot,
        "linear_probe_top1_mean": float(np.mean(probes)),
        "linear_probe_top1_std": float(np.std(probes)),
        "linear_probe_top1_per_seed": probes,
        "test_size": len(test_y),
    }


def quick_zero_shot(model, tokenizer, mean, std, shift: str, n: int = 500) -> float:
    """Cheap mid-training check on `n` fresh images of one variant (not the demo task's own images)."""
    images, _, labels = generate_corpus(n, [4242, n], **DEMO_SHIFTS[shift])
    x = image_features(model, to_pixels(torch.from_numpy(images), mean, std))
    return ((x @ class_text_features(model, tokenizer).T).argmax(-1).numpy() == labels).mean().item()


def reevaluate(config: PretrainConfig) -> None:
    """Evaluate an existing checkpoint on `config.eval_shifts`, merging into its metrics file."""
    from transformers import CLIPTokenizer

    model = CLIPModel.from_pretrained(config.output_dir).eval()
    tokenizer = CLIPTokenizer.from_pretrained(config.output_dir)
    processor = CLIPImageProcessorPil.from_pretrained(config.output_dir)
    path = os.path.join(config.output_dir, "pretrain_metrics.json")
    metrics = json.load(open(path)) if os.path.exists(path) else {"demo_task": {}}
    for shift in config.eval_shifts:
        metrics["demo_task"][shift] = evaluate_task(model, tokenizer, processor, config, shift)
        logger.info("demo task shift=%s: %s", shift, json.dumps(metrics["demo_task"][shift]))
    with open(path, "w") as f:
        json.dump(metrics, f, indent=2)


def main(argv=None):
    config = parse_config(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    torch.set_num_threads(config.num_threads)
    if config.eval_only:
        return reevaluate(config)
    os.makedirs(config.output_dir, exist_ok=True)
    start = time.time()

    tokenizer = build_demo_tokenizer()
    logger.info("Generating %d captioned images (seed %d)...", config.corpus_size, config.seed)
    images, captions, _ = generate_corpus(config.corpus_size, config.seed)
    enc = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt")
    input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
    images_t = torch.from_numpy(images)
    # Per-channel corpus statistics become the processor's normalisation.
    flat = images.reshape(-1, 3).astype(np.float64) / 255
    mean = torch.tensor(flat.mean(0), dtype=torch.float32)
    std = torch.tensor(flat.std(0), dtype=torch.float32)
    del flat
    gen_seconds = time.time() - start
    logger.info("Corpus ready in %.1fs; mean %s std %s", gen_seconds, mean.tolist(), std.tolist())

    model = build_model(config, tokenizer)
    logger.info("Model: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6,
    )

    def lr_lambda(step):
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)

    # Deterministic data order: a fresh seeded permutation per pass over the corpus.
    order_rng = np.random.default_rng([config.seed, 1])
    order, cursor = order_rng.permutation(config.corpus_size), 0
    history, running, train_start = [], [], time.time()
    model.train()
    for step in tqdm(range(1, config.max_steps + 1), desc="pretrain", mininterval=30):
        if cursor + config.batch_size > len(order):
            order, cursor = order_rng.permutation(config.corpus_size), 0
        idx = torch.from_numpy(order[cursor : cursor + config.batch_size])
        cursor += config.batch_size
        out = model(input_ids=input_ids[idx], attention_mask=attention_mask[idx],
                    pixel_values=to_pixels(images_t[idx], mean, std), return_loss=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():  # CLIP caps the temperature at 100
            model.logit_scale.clamp_(0, math.log(100))
        running.append(out.loss.item())
        if step % config.log_steps == 0 or step == config.max_steps:
            elapsed = time.time() - train_start
            record = {"step": step, "loss": float(np.mean(running)), "lr": scheduler.get_last_lr()[0],
                      "logit_scale": model.logit_scale.exp().item(), "seconds": elapsed}
            running = []
            if config.eval_steps and (step % config.eval_steps == 0 or step == config.max_steps):
                model.eval()
                for shift in ("none", "texture"):
                    record[f"quick_zero_shot_{shift}"] = quick_zero_shot(model, tokenizer, mean, std, shift)
                model.train()
            history.append(record)
            logger.info("step %d %s (%.2f s/step)", step, json.dumps(record), elapsed / step)
    train_seconds = time.time() - train_start
    model.eval()

    model.save_pretrained(config.output_dir, safe_serialization=True)
    tokenizer.save_pretrained(config.output_dir)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
        image_mean=mean.tolist(), image_std=std.tolist(),
    )
    processor.save_pretrained(config.output_dir)

    # Check that the saved processor reproduces the training-time pixels exactly.
    from PIL import Image

    sample = images[:8]
    via_processor = processor(images=[Image.fromarray(im) for im in sample], return_tensors="pt")["pixel_values"]
    processor_max_abs_diff = (via_processor - to_pixels(torch.from_numpy(sample), mean, std)).abs().max().item()

    results = {}
    for shift in config.eval_shifts:
        results[shift] = evaluate_task(model, tokenizer, processor, config, shift)
        logger.info("demo task shift=%s: %s", shift, json.dumps(results[shift]))
    metrics = {
        "config": asdict(config),
        "steps": config.max_steps,
        "threads": config.num_threads,
        "seed": config.seed,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "corpus_seconds": gen_seconds,
        "train_seconds": train_seconds,
        "wall_seconds": time.time() - start,
        "seconds_per_step": train_seconds / config.max_steps,
        "final_loss": history[-1]["loss"],
        "corpus_mean": mean.tolist(),
        "corpus_std": std.tolist(),
        "processor_max_abs_diff": processor_max_abs_diff,
        "zero_shot_template": ZERO_SHOT_TEMPLATE,
        "demo_task": results,
        "history": history,
        "torch_version": torch.__version__,
    }
    with open(os.path.join(config.output_dir, "pretrain_metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    logger.info("Done in %.1f min; saved to %s", metrics["wall_seconds"] / 60, config.output_dir)


if __name__ == "__main__":
    main()
