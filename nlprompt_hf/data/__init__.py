"""Everything before the model sees a batch: loading, few-shot sampling, label noise, images, cached features.

The functions here are pure: they take a `datasets.Dataset` and return a new one (or a tensor / dict), draw
randomness only from their own seeded generators, and never import the trainer.

Example:

```python
>>> from nlprompt_hf.data import inject_label_noise, load_noisy_dataset, sample_fewshot  # doctest: +SKIP
>>> data = load_noisy_dataset("eurosat")  # doctest: +SKIP
>>> train = sample_fewshot(data["train"], shots=16, seed=1)  # doctest: +SKIP
>>> train = inject_label_noise(train, rate=0.5, kind="symmetric", seed=1)  # doctest: +SKIP

```
"""

from .catalog import DATASET_CATALOG
from .features import FeatureCacheInfo, compute_image_features, default_feature_cache_dir, model_fingerprint
from .fewshot import sample_fewshot
from .loading import clean_class_names, get_class_names, load_noisy_dataset
from .noise import NOISE_KINDS, add_sample_index, inject_label_noise, noise_report
from .transforms import (
    RandomResizedCropFlip,
    load_image,
    processor_output_size,
    to_rgb,
)

__all__ = [
    "DATASET_CATALOG",
    "NOISE_KINDS",
    "FeatureCacheInfo",
    "RandomResizedCropFlip",
    "add_sample_index",
    "clean_class_names",
    "compute_image_features",
    "default_feature_cache_dir",
    "get_class_names",
    "inject_label_noise",
    "load_image",
    "load_noisy_dataset",
    "model_fingerprint",
    "noise_report",
    "processor_output_size",
    "sample_fewshot",
    "to_rgb",
]
