"""Few-shot sampling: `k` examples per class, seeded, as a pure function on a `datasets.Dataset`."""

from __future__ import annotations

import logging

import numpy as np
from datasets import ClassLabel, Dataset

from ._common import class_name, label_array, require_column

logger = logging.getLogger(__name__)

__all__ = ["sample_fewshot"]


def sample_fewshot(
    dataset: Dataset,
    shots: int,
    seed: int,
    label_column: str = "label",
    allow_fewer: bool = False,
) -> Dataset:
    """Sample `shots` examples of every class, without replacement.

    The few-shot protocol of CoOp (and of NLPrompt, which injects label noise *after* this step): each class
    contributes exactly `shots` examples drawn uniformly at random. Sampling uses its own
    `np.random.default_rng(seed)`, so the global `random` / `np.random` / `torch` states are untouched and
    the same seed always gives the same subset. Rows keep their original relative order.

    Classes are the ids present in `label_column`, plus, when it is a `ClassLabel`, every declared class (so a
    declared class with no example at all is reported, not silently skipped).

    Args:
        dataset (`datasets.Dataset`):
            The pool to sample from (typically the full training split).
        shots (`int`):
            Number of examples per class, `>= 1`.
        seed (`int`):
            Seed of the sampler; `0` is a seed like any other.
        label_column (`str`, *optional*, defaults to `"label"`):
            Column holding integer class ids (the labels as given).
        allow_fewer (`bool`, *optional*, defaults to `False`):
            If a class has fewer than `shots` examples, take all of them and log a warning instead of raising.

    Returns:
        `datasets.Dataset`: the selected rows (a new dataset; the input is not modified).

    Raises:
        `ValueError`: if the label column is missing, `shots < 1`, or a class has fewer than `shots` examples
        and `allow_fewer=False`.

    Example:

    ```python
    >>> from datasets import ClassLabel, Dataset, Features, Value
    >>> ds = Dataset.from_dict(
    ...     {"text": list("abcdefgh"), "label": [0, 0, 0, 0, 1, 1, 1, 1]},
    ...     features=Features({"text": Value("string"), "label": ClassLabel(names=["cat", "dog"])}),
    ... )
    >>> few = sample_fewshot(ds, shots=2, seed=0)
    >>> sorted(few["label"])
    [0, 0, 1, 1]

    ```
    """
    require_column(dataset, label_column, argument="label_column", what="label")
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ValueError(
            f"Expected `shots` to be a positive integer, but got {shots!r}. Use e.g. `shots=16`."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Expected an integer `seed`, but got {seed!r}. Pass e.g. `seed=0`.")

    labels = label_array(dataset, label_column)
    classes = set(np.unique(labels).tolist())
    feature = dataset.features[label_column]
    if isinstance(feature, ClassLabel):
        classes |= set(range(feature.num_classes))

    rng = np.random.default_rng(seed)
    chosen = []
    short = []
    for label in sorted(classes):
        members = np.flatnonzero(labels == label)
        if len(members) < shots:
            short.append((label, len(members)))
            chosen.append(members)
            continue
        chosen.append(rng.choice(members, size=shots, replace=False))

    if short:
        described = ", ".join(
            f"class {class_name(dataset, label_column, label)} has {count}" for label, count in short
        )
        if not allow_fewer:
            raise ValueError(
                f"Expected at least shots={shots} examples per class, but {described}. Lower `shots`, or pass "
                f"`allow_fewer=True` to take every example of the smaller classes."
            )
        logger.warning(
            "allow_fewer=True: taking all examples of %d class(es) with fewer than %d shots (%s); the few-shot "
            "set is not class-balanced.",
            len(short),
            shots,
            described,
        )

    indices = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return dataset.select(indices.tolist())
