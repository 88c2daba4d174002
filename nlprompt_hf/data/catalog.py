"""Hub sources of the datasets of the NLPrompt paper, by short name, with CoOp's class-name handling.

Each entry gives [`load_noisy_dataset`] its defaults: `load_noisy_dataset("eurosat")` is
`load_noisy_dataset("Honaker/eurosat_dataset", label_column="labels", test_split="test", class_renames=...)`.
Fields:

- `hub_id`, `config_name`: what to pass to `load_dataset` (`hub_id` is `None` where no Hub copy is known);
- `image_column`, `label_column`, `train_split`, `test_split`: names in that Hub dataset (a missing test split
  is replaced by a seeded stratified split of the train split);
- `class_renames`: CoOp's renames (applied after underscores become spaces);
- `class_name_style`: a rule applied to every raw name before that (`"lower"`, `"split_camel_case"`,
  `"year_first"`), for renames CoOp does with code rather than with a table;
- `exclude_classes`: classes CoOp drops (their rows are removed and the ids re-numbered);
- `verified`: whether the id, columns and splits were read on the dataset's Hub card (nothing was downloaded);
- `source`: where the id was found.

See `docs/datasets.md` for the notes behind each entry.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = ["DATASET_CATALOG"]

_EUROSAT_RENAMES = {
    # CoOp datasets/eurosat.py NEW_CNAMES
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}

_ENTRIES: dict[str, dict[str, Any]] = {
    "caltech101": {
        "hub_id": "flwrlabs/caltech101",
        "image_column": "image",
        "label_column": "label",
        "train_split": "train",
        "test_split": "test",  # absent on the Hub: a stratified split of "train" is made
        # CoOp datasets/caltech101.py: drops BACKGROUND_Google (not in this copy) and Faces_easy, singularises 4 names
        "exclude_classes": ("faces_easy",),
        "class_renames": {
            "airplanes": "airplane",
            "faces": "face",
            "leopards": "leopard",
            "motorbikes": "motorbike",
        },
        "verified": True,
        "source": "Hub card of flwrlabs/caltech101 (features image / label ClassLabel of 101 names, one train split)",
    },
    "dtd": {
        "hub_id": "tanganke/dtd",
        "image_column": "image",
        "label_column": "label",
        "train_split": "train",
        "test_split": "test",
        "class_renames": {},  # CoOp uses DTD's folder names (banded, blotchy, ...) as they are
        "verified": False,
        "source": "Hub file tree of tanganke/dtd (data/train-*.parquet, data/test-*.parquet); column names not seen, assumed image / label",
    },
    "eurosat": {
        "hub_id": "Honaker/eurosat_dataset",
        "image_column": "image",
        "label_column": "labels",
        "train_split": "train",
        "test_split": "test",
        "class_renames": _EUROSAT_RENAMES,
        "verified": True,
        "source": "Hub card of Honaker/eurosat_dataset (image / labels ClassLabel AnnualCrop..SeaLake; train 21600, validation 2700, test 2700); alternatives timm/eurosat-rgb, tanganke/eurosat",
    },
    "flowers102": {
        "hub_id": "dpdl-benchmark/oxford_flowers102",
        "image_column": "image",
        "label_column": "label",
        "train_split": "train",
        "test_split": "test",
        "class_renames": {},  # CoOp reads cat_to_name.json: names such as "pink primrose"
        "verified": False,
        "source": "Hub file tree of dpdl-benchmark/oxford_flowers102 (train / validation / test parquet); columns and class names not seen: if the ClassLabel lacks the cat_to_name.json names, pass class_names=",
    },
    "oxford_pets": {
        "hub_id": "timm/oxford-iiit-pet",
        "image_column": "image",
        "label_column": "label",
        "train_split": "train",
        "test_split": "test",
        "class_name_style": "lower",  # CoOp lower-cases the breed ("Abyssinian" -> "abyssinian")
        "class_renames": {},
        "verified": False,
        "source": "Hub file tree of timm/oxford-iiit-pet (data/train-*.parquet 378 MB, data/test-*.parquet 413 MB); columns not seen, assumed image / label; alternative pcuenq/oxford-pets (cited by lancedb's docs)",
    },
    "stanford_cars": {
        "hub_id": "tanganke/stanford_cars",
        "image_column": "image",
        "label_column": "label",
        "train_split": "train",
        "test_split": "test",
        "class_name_style": "year_first",  # CoOp moves the year first: "2012 Tesla Model S Sedan"
        "class_renames": {},
        "verified": False,
        "source": 'Hub file tree and card diff of tanganke/stanford_cars (parquet, test 8041 rows, `load_dataset("tanganke/stanford_cars")`); columns not seen, assumed image / label',
    },
    "ucf101": {
        "hub_id": "flwrlabs/ucf101",
        "image_column": "image",
        "label_column": "label",
        "train_split": "train",
        "test_split": "test",
        "class_name_style": "split_camel_case",  # CoOp: "ApplyEyeMakeup" -> "Apply_Eye_Makeup" -> "Apply Eye Makeup"
        "class_renames": {},
        "verified": False,
        "source": "Hub card of flwrlabs/ucf101 (split names not seen) (image frames with video_id / clip_id / frame, label ClassLabel ApplyEyeMakeup..); CoOp uses one middle frame per video: filter frames before few-shot sampling",
    },
    "food101": {
        "hub_id": "ethz/food101",
        "image_column": "image",
        "label_column": "label",
        "train_split": "train",
        "test_split": "validation",  # the official 250-per-class test images are the Hub's "validation" split
        "class_renames": {},
        "verified": True,
        "source": "Hub dataset viewer of ethz/food101 (image / label ClassLabel of 101 classes; train 75.8k, validation 25.3k)",
    },
    "food101n": {
        "hub_id": None,
        "image_column": "image",
        "label_column": "label",
        "train_split": "train",
        "test_split": "test",
        "class_renames": {},
        "verified": False,
        "source": "no Hub copy found; download from https://kuanghuei.github.io/Food-101N/ and load meta/imagelist.tsv as a CSV (see docs/datasets.md); test on food101's test split",
    },
}

DATASET_CATALOG = MappingProxyType({name: MappingProxyType(entry) for name, entry in _ENTRIES.items()})
"""Read-only `{short name: entry}`; see the module docstring for the fields."""
