"""Small helpers shared by the data modules: column checks and label arrays."""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset


def require_column(dataset: Dataset, column: str, *, argument: str, what: str) -> None:
    """Raise a `ValueError` naming the missing column, the columns there are and the argument to change."""
    if column not in dataset.column_names:
        raise ValueError(
            f"Expected {'an' if what[0] in 'aeiou' else 'a'} {what} column named {column!r}, but the dataset has "
            f"columns {dataset.column_names}. "
            f"Pass `{argument}=` with the name of the {what} column, or rename it with "
            f"`dataset.rename_column(<old>, {column!r})`."
        )


def label_array(dataset: Dataset, column: str) -> np.ndarray:
    """The integer labels of `column` as an (N,) int64 array, without decoding any other column."""
    if len(dataset) == 0:
        return np.zeros(0, dtype=np.int64)
    # numpy formatting of a single column reads Arrow directly (and honours `select` views) without decoding images
    values = np.asarray(dataset.select_columns([column]).with_format("numpy")[:][column])
    if values.dtype.kind not in "iu":
        if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
            return values.astype(np.int64)
        raise ValueError(
            f"Expected integer class ids in column {column!r}, but found values of type {values.dtype} "
            f"(e.g. {values[:3].tolist()}). Map string labels to ids first, e.g. with `load_noisy_dataset(..., "
            f"class_names=[...])` or `dataset.class_encode_column({column!r})`."
        )
    return values.astype(np.int64)


def infer_num_classes(dataset: Dataset, column: str, num_classes: int | None) -> int:
    """`num_classes` if given, else the size of the `ClassLabel` feature of `column`."""
    feature = dataset.features.get(column)
    if num_classes is None:
        if isinstance(feature, ClassLabel):
            return feature.num_classes
        raise ValueError(
            f"Could not tell the number of classes: column {column!r} is a {type(feature).__name__}, not a "
            f"`ClassLabel`. Pass `num_classes=` or cast the column with "
            f"`dataset.cast_column({column!r}, ClassLabel(names=[...]))`."
        )
    if isinstance(feature, ClassLabel) and feature.num_classes != num_classes:
        raise ValueError(
            f"`num_classes={num_classes}` but the `ClassLabel` of column {column!r} has {feature.num_classes} "
            f"names. Drop `num_classes=` or pass {feature.num_classes}."
        )
    return int(num_classes)


def check_label_range(labels: np.ndarray, num_classes: int, column: str) -> None:
    """Every label must be a class id in [0, num_classes)."""
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        idx = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Expected labels in [0, {num_classes}) in column {column!r}, but row {idx} has label "
            f"{int(labels[idx])} ({int(bad.sum())} rows out of range). Check `num_classes` / the class names, "
            f"or filter those rows out."
        )


def class_name(dataset: Dataset, column: str, label: int) -> str:
    """`'3 (cat)'` when the column is a `ClassLabel`, else `'3'`: for error messages."""
    feature = dataset.features.get(column)
    if isinstance(feature, ClassLabel) and 0 <= label < feature.num_classes:
        return f"{label} ({feature.int2str(int(label))!r})"
    return str(label)
