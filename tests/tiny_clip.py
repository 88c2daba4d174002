"""Builders for the tiny offline CLIP used across the test suite.

Nothing here touches the Hub: the tokenizer is an OpenAI-layout byte-level vocabulary built in memory,
the model is a randomly initialised ~200k-parameter `CLIPModel`, and both are written to a directory so
that tests go through the real `from_pretrained` loading path.
"""

from __future__ import annotations

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from PIL import Image as PILImage
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

IMAGE_SIZE = 32


def _byte_symbols() -> list[str]:
    # GPT-2 / CLIP byte-to-unicode table: printable bytes map to themselves, the rest to code points >= 256.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def build_tokenizer(words: tuple[str, ...] = ()) -> CLIPTokenizer:
    """Byte-level CLIP tokenizer; each word in `words` becomes a single token through explicit merges."""
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    merges = []
    for word in words:
        # left-to-right merges: "c a t</w>" -> "ca t</w>" -> "cat</w>"
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merges.append((current, piece))
            current = current + piece
            if current not in vocab:
                vocab[current] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def build_tiny_clip(tokenizer: CLIPTokenizer, *, legacy_eos: bool = False, seed: int = 0) -> CLIPModel:
    """A ~200k-parameter CLIP: hidden 64, 2 layers, 32x32 images, patch 8."""
    torch.manual_seed(seed)
    eos = 2 if legacy_eos else tokenizer.eos_token_id
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=IMAGE_SIZE,
            patch_size=8,
        ),
        projection_dim=32,
    )
    return CLIPModel(config).eval()


def save_tiny_clip(path, *, legacy_eos: bool = False, words: tuple[str, ...] = ()) -> str:
    tokenizer = build_tokenizer(words)
    model = build_tiny_clip(tokenizer, legacy_eos=legacy_eos)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


CLASS_NAMES = ("red_square", "green circle", "blue bar", "yellow dot")
_COLOURS = np.array([[220, 30, 30], [30, 200, 40], [40, 60, 230], [230, 220, 40]], dtype=np.float32)


def make_images(labels, seed: int, size: int = IMAGE_SIZE) -> list[PILImage.Image]:
    """One image per label: a coloured blob whose colour depends on the class, on a noisy background."""
    rng = np.random.default_rng(seed)
    images = []
    for label in labels:
        arr = rng.normal(120, 25, size=(size, size, 3))
        x0, y0 = rng.integers(0, size // 2, size=2)
        arr[y0 : y0 + size // 2, x0 : x0 + size // 2] = _COLOURS[label % len(_COLOURS)] + rng.normal(0, 10, 3)
        images.append(PILImage.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return images


def make_image_dataset(
    n_per_class: int = 8, num_classes: int = 4, seed: int = 0, test_per_class: int = 4
) -> DatasetDict:
    """A small `DatasetDict` (train/test) of generated images with a `ClassLabel` label column."""
    names = [f"class_{i}" for i in range(num_classes)]
    names[: min(num_classes, len(CLASS_NAMES))] = CLASS_NAMES[:num_classes]
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    splits = {}
    for offset, (split, k) in enumerate((("train", n_per_class), ("test", test_per_class))):
        labels = [c for c in range(num_classes) for _ in range(k)]
        images = make_images(labels, seed=seed * 2 + offset)
        splits[split] = Dataset.from_dict({"image": images, "label": labels}, features=features)
    return DatasetDict(splits)
