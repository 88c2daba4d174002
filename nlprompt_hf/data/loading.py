"""Load an image-classification dataset into the one shape the rest of the package expects.

Whatever the source (a Hub dataset id, a catalog short name, a local `imagefolder`, a CSV / JSONL file of image
paths and labels, a `save_to_disk` directory, or a `Dataset` already in memory), the result is a `DatasetDict`
with a `train` and a `test` split, each with an `image` column (`datasets.Image()`) and a `label` column
(`datasets.ClassLabel` whose names are the cleaned class names used in the prompts).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Image, load_dataset, load_from_disk

from ._common import check_label_range, label_array, require_column
from .catalog import DATASET_CATALOG

logger = logging.getLogger(__name__)

__all__ = ["clean_class_names", "get_class_names", "load_noisy_dataset"]

_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


CLASS_NAME_STYLES = ("lower", "split_camel_case", "year_first")


def _apply_style(name: str, style: str | None) -> str:
    if style is None:
        return name
    if style == "lower":
        return name.lower()
    if style == "split_camel_case":  # CoOp's UCF101 rule: "ApplyEyeMakeup" -> "Apply_Eye_Makeup"
        return "_".join(re.findall(r"[A-Z][^A-Z]*", name)) or name
    if (
        style == "year_first"
    ):  # CoOp's StanfordCars rule: "Tesla Model S Sedan 2012" -> "2012 Tesla Model S Sedan"
        words = name.split(" ")
        return (
            " ".join([words[-1], *words[:-1]])
            if len(words) > 1 and re.fullmatch(r"\d{4}", words[-1])
            else name
        )
    raise ValueError(
        f"Expected `class_name_style` to be one of {list(CLASS_NAME_STYLES)} or None, but got {style!r}."
    )


def clean_class_names(
    names: Sequence[str], renames: Mapping[str, str] | None = None, style: str | None = None
) -> list[str]:
    """Turn raw class names into prompt-ready ones: optional style rule, underscores to spaces, renames map.

    A key of `renames` may be the raw name or the name after the style rule and the underscore replacement.
    `style` is one of `"lower"`, `"split_camel_case"` (`ApplyEyeMakeup` -> `Apply Eye Makeup`) or
    `"year_first"` (`Tesla Model S Sedan 2012` -> `2012 Tesla Model S Sedan`), the rules CoOp applies in code.

    Example:

    ```python
    >>> clean_class_names(["apple_pie", "SeaLake"], renames={"SeaLake": "Sea or Lake"})
    ['apple pie', 'Sea or Lake']
    >>> clean_class_names(["ApplyEyeMakeup"], style="split_camel_case")
    ['Apply Eye Makeup']

    ```
    """
    renames = dict(renames or {})
    cleaned = []
    for raw in names:
        name = " ".join(_apply_style(str(raw), style).replace("_", " ").split())
        name = renames.get(str(raw), renames.get(name, name))
        cleaned.append(name)
    unused = (
        set(renames)
        - set(map(str, names))
        - {" ".join(_apply_style(str(n), style).replace("_", " ").split()) for n in names}
    )
    if unused:
        logger.warning("Class renames %s match no class name and were ignored.", sorted(unused))
    seen: dict[str, int] = {}
    for i, name in enumerate(cleaned):
        if name in seen:
            raise ValueError(
                f"Expected distinct class names, but classes {seen[name]} ({names[seen[name]]!r}) and {i} "
                f"({names[i]!r}) are both called {name!r} after cleaning. Give them distinct names with "
                f"`class_renames=` or `class_names=`."
            )
        seen[name] = i
    return cleaned


def get_class_names(dataset: Dataset | DatasetDict, label_column: str = "label") -> list[str]:
    """The class names of a dataset loaded by [`load_noisy_dataset`] (the names of its `ClassLabel`).

    Example:

    ```python
    >>> from datasets import ClassLabel, Dataset, Features
    >>> ds = Dataset.from_dict({"label": [0, 1]}, features=Features({"label": ClassLabel(names=["cat", "dog"])}))
    >>> get_class_names(ds)
    ['cat', 'dog']

    ```
    """
    if isinstance(dataset, DatasetDict):
        dataset = next(iter(dataset.values()))
    feature = dataset.features.get(label_column)
    if not isinstance(feature, ClassLabel):
        raise ValueError(
            f"Expected column {label_column!r} to be a `ClassLabel` carrying the class names, but found "
            f"{type(feature).__name__}. Load the data with `load_noisy_dataset`."
        )
    return list(feature.names)


def _read_class_names(class_names: Sequence[str] | str | os.PathLike) -> list[str]:
    if isinstance(class_names, (str, os.PathLike)):
        path = os.fspath(class_names)
        if not os.path.isfile(path):
            raise ValueError(
                f"Expected `class_names` to be a list of names or the path of a JSON file, but {path!r} is not a "
                f"file."
            )
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
        if isinstance(content, Mapping):
            for key in ("class_names", "names", "classnames"):
                if key in content:
                    return [str(n) for n in content[key]]
            try:  # {"0": "cat", "1": "dog"}
                return [str(content[k]) for k in sorted(content, key=int)]
            except (ValueError, TypeError):
                pass
        elif isinstance(content, list):
            return [str(n) for n in content]
        raise ValueError(
            f"Expected the JSON file {path!r} to hold a list of class names, {{'class_names': [...]}} or "
            f"{{'0': name, '1': name, ...}}, but found a {type(content).__name__}."
        )
    names = list(class_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"Expected `class_names` to be a non-empty list of strings, but got {class_names!r}."
        )
    return names


def _load_raw(
    source: Any, config_name: str | None, split_names: tuple[str, str], **load_kwargs
) -> DatasetDict:
    """Read `source` into a `DatasetDict` without touching its columns (plus the base dir of relative paths)."""
    if isinstance(source, DatasetDict):
        return source
    if isinstance(source, Dataset):
        return DatasetDict({split_names[0]: source})
    if isinstance(source, Mapping):  # {"train": "a.csv", "test": "b.csv"}
        files = {k: os.fspath(v) for k, v in source.items()}
        extensions = {os.path.splitext(f)[1].lower() for f in files.values()}
        if len(extensions) != 1 or next(iter(extensions)) not in _FILE_BUILDERS:
            raise ValueError(
                f"Expected every file of `source` to be one of {sorted(_FILE_BUILDERS)} with the same extension, "
                f"but got {files}."
            )
        return _load_files(files, next(iter(extensions)), **load_kwargs)
    source = os.fspath(source)
    if os.path.isfile(source):
        ext = os.path.splitext(source)[1].lower()
        if ext not in _FILE_BUILDERS:
            raise ValueError(
                f"Expected a file ending in one of {sorted(_FILE_BUILDERS)} (image paths and labels), but got "
                f"{source!r}. Pass a directory for an imagefolder, or a Hub dataset id."
            )
        return _load_files({split_names[0]: source}, ext, **load_kwargs)
    if os.path.isdir(source):
        if os.path.isfile(os.path.join(source, "dataset_dict.json")) or os.path.isfile(
            os.path.join(source, "state.json")
        ):
            loaded = load_from_disk(source)
            return loaded if isinstance(loaded, DatasetDict) else DatasetDict({split_names[0]: loaded})
        # a local folder: `datasets` infers the builder (imagefolder for class sub-folders, parquet, csv, ...)
        return load_dataset(source, config_name, **load_kwargs)
    return load_dataset(source, config_name, **load_kwargs)


def _load_files(files: dict[str, str], ext: str, **load_kwargs) -> DatasetDict:
    builder = _FILE_BUILDERS[ext]
    if ext == ".tsv":
        load_kwargs.setdefault("sep", "\t")
    loaded = load_dataset(builder, data_files=files, **load_kwargs)
    # image paths in the file are relative to the file itself, not to the working directory
    return DatasetDict(
        {
            split: ds.add_column("_base_dir", [os.path.dirname(os.path.abspath(files[split]))] * len(ds))
            for split, ds in loaded.items()
        }
    )


def _resolve_paths(dataset: Dataset, image_column: str) -> Dataset:
    if "_base_dir" not in dataset.column_names:
        return dataset

    def join(batch):
        batch[image_column] = [
            p if not isinstance(p, str) or os.path.isabs(p) else os.path.join(base, p)
            for p, base in zip(batch[image_column], batch["_base_dir"])
        ]
        return batch

    return dataset.map(join, batched=True, desc="Resolving image paths").remove_columns("_base_dir")


def load_noisy_dataset(
    source: str | os.PathLike | Dataset | DatasetDict | Mapping[str, str],
    *,
    config_name: str | None = None,
    train_split: str | None = None,
    test_split: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    clean_label_column: str | None = None,
    class_names: Sequence[str] | str | os.PathLike | None = None,
    class_renames: Mapping[str, str] | None = None,
    class_name_style: str | None = None,
    exclude_classes: Sequence[str] | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    **load_kwargs,
) -> DatasetDict:
    """Load an image-classification dataset as a `DatasetDict` with `train` / `test` splits of `image` + `label`.

    Sources, tried in this order:

    - a `datasets.Dataset` (used as the train split) or `DatasetDict` already in memory;
    - a short name of [`DATASET_CATALOG`] (e.g. `"eurosat"`): its Hub id, config, columns, splits and class
      renames become the defaults of the arguments below;
    - a CSV / TSV / JSON / JSONL file (or a `{split: file}` mapping) of (image path, label) rows, paths relative
      to the file;
    - a local directory: a `save_to_disk` folder, or anything `load_dataset(dir)` reads without a script
      (an `imagefolder` with one sub-folder per class, parquet / csv data files, ...);
    - otherwise a Hub dataset id, read with `load_dataset(source, config_name, **load_kwargs)`.

    Then, on every split: the image and label columns are renamed to `image` and `label` (other columns are
    dropped, except `clean_label_column`, renamed `clean_label`, for datasets that ship their true labels next
    to noisy ones); string paths become `datasets.Image()`; string labels become ids in the order of the class
    names; class names come from `class_names` (a list or a JSON file), else from the `ClassLabel` feature, else
    the sorted distinct label strings; underscores become spaces and `class_renames` is applied; the label
    column becomes a `ClassLabel` with those names. If the dataset has no test split, a stratified,
    seeded `test_size` fraction of the train split becomes the test split.

    Args:
        source (`str`, `os.PathLike`, `Dataset`, `DatasetDict` or `Mapping[str, str]`):
            Where the data is (see above).
        config_name (`str`, *optional*):
            Hub config (subset) name.
        train_split (`str`, *optional*, defaults to `"train"`):
            Name of the split to train on.
        test_split (`str`, *optional*, defaults to `"test"`):
            Name of the split to evaluate on; if the dataset has none, one is split off the train split.
        image_column (`str`, *optional*, defaults to `"image"`):
            Column holding images (or image paths).
        label_column (`str`, *optional*, defaults to `"label"`):
            Column holding the labels as given (ids or class-name strings).
        clean_label_column (`str`, *optional*):
            Column holding verified true labels, if the dataset has one (kept as `clean_label`).
        class_names (`list[str]` or path to a JSON file, *optional*):
            Class names in id order; required when labels are plain integers without a `ClassLabel` feature.
        class_renames (`Mapping[str, str]`, *optional*):
            Extra `{raw or cleaned name: prompt name}` renames (e.g. CoOp's EuroSAT names).
        class_name_style (`str`, *optional*):
            A rule applied to every raw name first: `"lower"`, `"split_camel_case"` or `"year_first"`.
        exclude_classes (`list[str]`, *optional*):
            Raw class names whose rows are dropped (ids are re-numbered), e.g. Caltech101's `faces_easy`.
        test_size (`float`, *optional*, defaults to `0.2`):
            Fraction of the train split held out when there is no test split.
        seed (`int`, *optional*, defaults to `0`):
            Seed of that stratified split.
        load_kwargs:
            Passed to `load_dataset` (e.g. `revision=`, `cache_dir=`, `data_files=`).

    Returns:
        `datasets.DatasetDict` with `train` and `test` splits; class names via [`get_class_names`].

    Raises:
        `ValueError`: on a missing split, image or label column; labels outside [0, C); a number of class names
        different from the number of classes; label strings that are not class names; duplicate class names.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"img": ["a.png", "b.png", "c.png", "d.png"], "cls": ["sea_lake", "forest"] * 2})
    >>> dd = load_noisy_dataset(ds, image_column="img", label_column="cls", test_size=0.5, seed=0)
    >>> get_class_names(dd), dd["train"].column_names, dd["test"].num_rows
    (['forest', 'sea lake'], ['image', 'label'], 2)

    ```
    """
    entry: Mapping[str, Any] = {}
    if isinstance(source, str) and source in DATASET_CATALOG and not os.path.exists(source):
        entry = DATASET_CATALOG[source]
        if entry["hub_id"] is None:
            raise ValueError(
                f"The catalog entry {source!r} has no Hub copy ({entry['source']}). Download the data and pass its "
                f"local path (a folder or a CSV / TSV file of image paths and labels)."
            )
        source = entry["hub_id"]
        config_name = config_name if config_name is not None else entry.get("config_name")
    train_split = train_split or entry.get("train_split", "train")
    test_split = test_split or entry.get("test_split", "test")
    image_column = image_column or entry.get("image_column", "image")
    label_column = label_column or entry.get("label_column", "label")
    if class_renames is None:
        class_renames = entry.get("class_renames")
    if class_name_style is None:
        class_name_style = entry.get("class_name_style")
    if exclude_classes is None:
        exclude_classes = entry.get("exclude_classes")
    if not 0 < test_size < 1:
        raise ValueError(f"Expected `test_size` in (0, 1), but got {test_size!r}.")

    raw = _load_raw(source, config_name, (train_split, test_split), **load_kwargs)
    if train_split not in raw:
        raise ValueError(
            f"Expected a split named {train_split!r} to train on, but the dataset has splits {list(raw)}. Pass "
            f"`train_split=` with one of them."
        )
    splits = {"train": raw[train_split]}
    if test_split in raw and test_split != train_split:
        splits["test"] = raw[test_split]
    else:
        logger.info(
            "No %r split: holding out a stratified %.0f%% of %r as the test split.",
            test_split,
            100 * test_size,
            train_split,
        )

    # columns: keep image + label (+ clean label), with the package's names
    kept = {image_column: "image", label_column: "label"}
    if clean_label_column:
        kept[clean_label_column] = "clean_label"
    for name, ds in splits.items():
        require_column(ds, image_column, argument="image_column", what="image")
        require_column(ds, label_column, argument="label_column", what="label")
        if clean_label_column:
            require_column(ds, clean_label_column, argument="clean_label_column", what="clean label")
        ds = _resolve_paths(ds, image_column)
        ds = ds.select_columns(list(kept))
        splits[name] = ds.rename_columns({k: v for k, v in kept.items() if k != v})

    raw_names = _resolve_class_names(splits, class_names, raw[train_split].features.get(label_column))
    all_names = clean_class_names(raw_names, class_renames, class_name_style)
    lookup = {n: i for i, n in enumerate(raw_names)}
    lookup.update({n: i for i, n in enumerate(all_names)})
    excluded = set()
    for cls in exclude_classes or ():
        if cls not in lookup:
            raise ValueError(
                f"Expected `exclude_classes` to name classes among {raw_names}, but got {cls!r}."
            )
        excluded.add(lookup[cls])
    # old id -> new id (-1: dropped), so that the kept classes are numbered 0..C'-1 in their original order
    remap = np.full(len(raw_names), -1, dtype=np.int64)
    kept_ids = [i for i in range(len(raw_names)) if i not in excluded]
    remap[kept_ids] = np.arange(len(kept_ids))
    label_feature = ClassLabel(names=[all_names[i] for i in kept_ids])
    for name, ds in splits.items():
        if excluded:
            ids = _encode_ids(ds, "label", lookup, len(raw_names), split=name)
            ds = ds.select(np.flatnonzero(remap[ids] >= 0).tolist())
        for column in [c for c in ("label", "clean_label") if c in ds.column_names]:
            ids = remap[_encode_ids(ds, column, lookup, len(raw_names), split=name)]
            ds = ds.remove_columns(column).add_column(column, ids.tolist(), feature=label_feature)
        if not isinstance(ds.features["image"], Image):
            ds = ds.cast_column("image", Image())
        splits[name] = ds

    if "test" not in splits:
        try:
            parts = splits["train"].train_test_split(
                test_size=test_size, seed=seed, stratify_by_column="label"
            )
        except ValueError as err:
            raise ValueError(
                f"Could not make a stratified test split of {test_size:.0%} of {train_split!r} ({err}). Every class "
                f"needs at least 2 examples; lower `test_size` or pass a dataset with a test split."
            ) from err
        splits = {"train": parts["train"], "test": parts["test"]}
    return DatasetDict(splits)


def _resolve_class_names(splits: dict[str, Dataset], class_names: Any, feature: Any) -> list[str]:
    if class_names is not None:
        names = _read_class_names(class_names)
        if isinstance(feature, ClassLabel) and feature.num_classes != len(names):
            raise ValueError(
                f"Expected one class name per class: the label column has {feature.num_classes} classes but "
                f"{len(names)} class names were given. Pass {feature.num_classes} names (in id order), or drop "
                f"`class_names=` to use the dataset's own."
            )
        return names
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    labels = [ds.features["label"] for ds in splits.values()]
    if all(getattr(f, "dtype", None) in ("string", "large_string") for f in labels):
        found: set[str] = set()
        for ds in splits.values():
            found.update(ds.unique("label"))
        return sorted(found)
    raise ValueError(
        "Expected class names: the label column holds integer ids without a `ClassLabel` feature, so the names "
        "are unknown. Pass `class_names=[...]` (in id order) or the path of a JSON file with them."
    )


def _encode_ids(ds: Dataset, column: str, lookup: dict[str, int], num_classes: int, split: str) -> np.ndarray:
    """The labels of `column` as ids into the raw class names (strings looked up, integers range-checked)."""
    current = ds.features[column]
    if getattr(current, "dtype", None) in ("string", "large_string"):
        values = ds.unique(column)
        unknown = sorted(v for v in values if v not in lookup)
        if unknown:
            raise ValueError(
                f"Expected every label of split {split!r} to be one of the class names {list(lookup)[:10]}..., "
                f"but found {unknown[:5]}. Fix the labels or pass the full `class_names=`."
            )
        return np.asarray([lookup[v] for v in ds[column]], dtype=np.int64)
    ids = label_array(ds, column)
    check_label_range(ids, num_classes, column if split == "train" else f"{column} (split {split!r})")
    return ids
