"""Batch views of a training set for the Trainer: cached features or pixels, looked up by `sample_idx`.

These are `datasets` transforms (`Dataset.with_transform`): the dataset is neither copied nor mutated, only the
columns the loss may see are exposed (`clean_label` never is).
"""

from __future__ import annotations

import torch
from datasets import Image

from .transforms import RandomResizedCropFlip, load_image, processor_output_size

SAMPLE_INDEX = "sample_idx"


class FeatureLookup:
    """`with_transform` function: rows -> `{sample_idx, labels, image_embeds}` from a features tensor (N, D)."""

    columns = (SAMPLE_INDEX, "label")

    def __init__(self, features: torch.Tensor):
        self.features = features

    def __call__(self, batch: dict[str, list]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(batch[SAMPLE_INDEX], dtype=torch.long)
        return {
            SAMPLE_INDEX: idx,
            "labels": torch.as_tensor(batch["label"], dtype=torch.long),
            "image_embeds": self.features[idx],
        }


class PixelTransform:
    """`with_transform` function: rows -> `{sample_idx, labels, pixel_values}` with the checkpoint's processor.

    With `augment=True` every image gets a random resized crop (scale 0.08-1) and a horizontal flip drawn from a generator
    seeded with `(seed, epoch, sample_idx)`: the same sample in the same epoch always gets the same
    view, so a run resumed from a checkpoint sees exactly the views of an uninterrupted one. The trainer sets
    `epoch` at the start of every epoch.
    """

    columns = (SAMPLE_INDEX, "label", "image")

    def __init__(self, image_processor, augment: bool = False, seed: int = 0):
        self.image_processor = image_processor
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __call__(self, batch: dict[str, list]) -> dict[str, torch.Tensor]:
        rows = batch[SAMPLE_INDEX]
        images = [load_image(value, row=int(i)) for value, i in zip(batch["image"], rows)]
        if self.augment:
            size = processor_output_size(self.image_processor)
            images = [
                RandomResizedCropFlip(size, seed=(self.seed, self.epoch, int(i)))(img) for img, i in zip(images, rows)
            ]
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return {
            SAMPLE_INDEX: torch.as_tensor(batch[SAMPLE_INDEX], dtype=torch.long),
            "labels": torch.as_tensor(batch["label"], dtype=torch.long),
            "pixel_values": pixels,
        }


def training_view(dataset, transform):
    """The dataset restricted to the columns `transform` reads, with the transform attached (a view, no copy)."""
    missing = [c for c in transform.columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The dataset has no column(s) {missing}; found {dataset.column_names}. Load it with "
            "`nlprompt_hf.data` (image + label columns) and add the index with `add_sample_index`."
        )
    view = dataset.select_columns(list(transform.columns))
    if "image" in transform.columns:
        # decoding is ours (`load_image`): any PIL mode to RGB, and an unreadable file is named in the error
        view = view.cast_column("image", Image(decode=False))
    return view.with_transform(transform)
