"""Synthetic label noise, the noise report and the sample-index column.

Every function here is pure: it takes a `datasets.Dataset` (and plain arrays) and returns a new `Dataset` or a
plain dict, never imports a model, and draws randomness only from its own `np.random.default_rng(seed)`.

Protocol (NLPrompt, CVPR 2025, https://arxiv.org/abs/2412.01256, following CoOp-style few-shot learning): noise
is applied *after* few-shot sampling; the labels used for training go in `label`, the true labels in
`clean_label` (read only by evaluation), and a boolean `is_noisy` marks the corrupted rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, Value

from ._common import check_label_range, infer_num_classes, label_array, require_column

__all__ = ["NOISE_KINDS", "add_sample_index", "inject_label_noise", "noise_report"]

NOISE_KINDS = ("symmetric", "asymmetric", "pairflip", "instance", "k_wrong_shots", "real")
CLEAN_LABEL_COLUMN = "clean_label"
IS_NOISY_COLUMN = "is_noisy"
SAMPLE_INDEX_COLUMN = "sample_idx"
# Noise settings are written into `Dataset.info.description` under this marker so that `noise_report` can
# compare the requested and the realised rate after `save_to_disk` / `load_from_disk`.
_INFO_MARKER = "nlprompt_hf.noise="


def _num_to_flip(rate: float, n: int) -> int:
    # floor(r * N), robust to float error (0.29 * 100 = 28.999999999999996 must give 29)
    return int(math.floor(round(rate * n, 9)))


def _check_rate(rate: Any) -> float:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float, np.integer, np.floating))
        or not (0 <= rate < 1)
    ):
        raise ValueError(
            f"Expected a noise `rate` in [0, 1), but got {rate!r}. Use a fraction such as 0.5 for 50% noise "
            f"(a rate of 1 would leave no correct label to learn from)."
        )
    return float(rate)


def _resolve_class(value: Any, names: Sequence[str] | None, num_classes: int, what: str) -> int:
    if isinstance(value, str):
        if names is None or value not in names:
            raise ValueError(
                f"Expected {what} to be a class id in [0, {num_classes}) or one of the class names {list(names or [])}, "
                f"but got {value!r}."
            )
        return names.index(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (0 <= value < num_classes):
        raise ValueError(f"Expected {what} to be a class id in [0, {num_classes}), but got {value!r}.")
    return int(value)


def _symmetric_targets(true: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    # adding an offset in [1, C-1] modulo C gives every *other* class with probability 1/(C-1)
    return (true + rng.integers(1, num_classes, size=len(true))) % num_classes


def _balanced_wrong_labels(true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Relabel the rows of `true` so that no row keeps its label and every class receives as many rows as it gives.

    A random permutation of the multiset of true labels, then each row that drew its own label swaps with a random
    row for which the swap is valid. Such a row exists whenever no class holds more than half of the rows (checked
    by the caller): rows of other classes number K - k_a, of which at most k_a - 1 hold label a.
    """
    target = rng.permutation(true)
    for i in range(len(true)):
        a = true[i]
        if target[i] != a:
            continue
        candidates = np.flatnonzero((target != a) & (true != a))
        j = int(rng.choice(candidates))
        target[i], target[j] = target[j], target[i]
    return target


def inject_label_noise(
    dataset: Dataset,
    rate: float,
    kind: str,
    seed: int,
    num_classes: int | None = None,
    class_map: Mapping[int | str, int | str] | None = None,
    *,
    similarity: Any = None,
    num_wrong_shots: int | None = None,
    wrong_label: str = "uniform",
    label_column: str = "label",
) -> Dataset:
    """Corrupt the labels of a (few-shot) dataset with seeded synthetic noise.

    The returned dataset has the input's columns, with `label_column` holding the labels to train on, plus
    `clean_label` (the true labels; only evaluation may read them) and `is_noisy` (`label != clean_label`). With
    `kind="real"` the labels are taken as given: there is no `clean_label` and no `is_noisy` column at all, and
    everything downstream must work without them.

    Noise kinds (N rows, C classes, rate r):

    - `"symmetric"`: exactly ⌊r·N⌋ rows, chosen uniformly at random over the whole set, get a label drawn uniformly
      from the C − 1 *other* classes (never the true one).
    - `"asymmetric"`: exactly ⌊r·N⌋ rows, chosen uniformly, get y → (y + 1) mod C. Needs C ≥ 2.
    - `"pairflip"`: a user-given `class_map` `{source: target}` (ids or class names). Exactly ⌊r·M⌋ rows, chosen
      uniformly among the M rows whose true class is a key of the map, get y → `class_map[y]`; other classes are
      left alone. `{c: (c + 1) % C for c in range(C)}` is the same as `"asymmetric"`.
    - `"instance"`: instance-dependent noise. Exactly ⌊r·N⌋ rows, chosen uniformly, are flipped to the class most
      similar to *that image* other than its true class, i.e. argmax over c ≠ y of `similarity[i, c]` (ties go
      to the lowest id). `similarity` is an (N, C) array of zero-shot CLIP image–text similarities or
      probabilities, row i for row i of `dataset`; computing it needs a model and is left to the caller (e.g.
      the cached image features times the normalised text features of the class prompts).
    - `"k_wrong_shots"`: the protocol of PTNL (Wu et al., ICCV 2023, https://arxiv.org/abs/2307.11978) and JoAPR
      (Guo & Gu, CVPR 2024): in a K-shot set, every class has exactly k wrong shots, so "rate" means k/K (NLPrompt's
      rates 0.125 … 0.75 are k = 2 … 12 of 16 shots). PTNL/JoAPR build this while sampling (k of the K images
      labelled c are drawn from other classes); applied after sampling, the equivalent is: exactly k rows of every
      true class are relabelled, and with `wrong_label="uniform"` (their "symflip") the new labels are a random
      assignment in which no row keeps its label and *every class also receives exactly k wrong rows*, so each
      class keeps its size and exactly k of the rows labelled c are wrong; with `wrong_label="next"` (their
      "pairflip") y → (y + 1) mod C (JoAPR fills class c with images of class c + 1, i.e. y → y − 1: the same
      protocol up to renaming the classes). k is `num_wrong_shots` if given, else ⌊r·n_c⌋ for a class with n_c
      rows.
    - `"real"`: real-world noise (e.g. Food-101N): labels as given, `rate` must be 0, no `clean_label`.

    With `rate=0` a synthetic kind returns `clean_label == label` and `is_noisy` all `False`.

    Args:
        dataset (`datasets.Dataset`):
            The training set, usually the output of [`sample_fewshot`]. Must not already carry `clean_label`.
        rate (`float`):
            Noise rate r in [0, 1).
        kind (`str`):
            One of `"symmetric"`, `"asymmetric"`, `"pairflip"`, `"instance"`, `"k_wrong_shots"`, `"real"`.
        seed (`int`):
            Seed of the noise's own `np.random.default_rng`; `0` is a seed like any other. The global `random`,
            `np.random` and `torch` states are never read nor advanced.
        num_classes (`int`, *optional*):
            Number of classes C; defaults to the size of the `ClassLabel` feature of `label_column`.
        class_map (`Mapping`, *optional*):
            For `kind="pairflip"`: `{source_class: target_class}` with ids or class names.
        similarity (array-like of shape `(N, C)`, *optional*):
            For `kind="instance"`: per-row zero-shot similarities (numpy array, torch tensor or nested lists).
        num_wrong_shots (`int`, *optional*):
            For `kind="k_wrong_shots"`: k, the number of wrong shots per class (then `rate` must be 0 or k/n_c).
        wrong_label (`str`, *optional*, defaults to `"uniform"`):
            For `kind="k_wrong_shots"`: `"uniform"` (class-balanced random other class) or `"next"` ((y + 1) mod C).
        label_column (`str`, *optional*, defaults to `"label"`):
            Column with the true integer labels; it receives the noisy labels.

    Returns:
        `datasets.Dataset`: a new dataset (the input is not modified).

    Raises:
        `ValueError`: on a missing label column, labels outside [0, C), a rate outside [0, 1), an unknown kind,
        C < 2 with a non-zero rate, a bad `class_map` / `similarity` / `num_wrong_shots`, or a dataset that already
        has a `clean_label` column.

    Example:

    ```python
    >>> from datasets import ClassLabel, Dataset, Features
    >>> ds = Dataset.from_dict({"label": [0, 1, 2, 3] * 4}, features=Features({"label": ClassLabel(num_classes=4)}))
    >>> noisy = inject_label_noise(ds, rate=0.5, kind="asymmetric", seed=0)
    >>> sum(noisy["is_noisy"])
    8
    >>> all(y == (c + 1) % 4 for y, c, n in zip(noisy["label"], noisy["clean_label"], noisy["is_noisy"]) if n)
    True

    ```
    """
    require_column(dataset, label_column, argument="label_column", what="label")
    if kind not in NOISE_KINDS:
        raise ValueError(f"Expected `kind` to be one of {list(NOISE_KINDS)}, but got {kind!r}.")
    rate = _check_rate(rate)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Expected an integer `seed`, but got {seed!r}. Pass e.g. `seed=0`.")
    if CLEAN_LABEL_COLUMN in dataset.column_names or IS_NOISY_COLUMN in dataset.column_names:
        raise ValueError(
            f"The dataset already has a {CLEAN_LABEL_COLUMN!r} or {IS_NOISY_COLUMN!r} column: noise was injected "
            f"already. Inject noise once, into the clean dataset (remove those columns to start over)."
        )
    num_classes = infer_num_classes(dataset, label_column, num_classes)
    clean = label_array(dataset, label_column)
    check_label_range(clean, num_classes, label_column)
    feature = dataset.features[label_column]
    names = feature.names if isinstance(feature, ClassLabel) else None

    if kind == "real":
        if rate != 0:
            raise ValueError(
                f"`kind='real'` takes the labels as given (real-world noise) and adds no synthetic noise, but "
                f"rate={rate} was passed. Use rate=0.0, or a synthetic kind such as 'symmetric'."
            )
        # nothing may recover a true label in real-noise mode
        return dataset

    n = len(clean)
    if kind != "k_wrong_shots" and rate > 0 and num_classes < 2:
        raise ValueError(
            f"`kind={kind!r}` needs at least 2 classes to give a wrong label, but found num_classes={num_classes}. "
            f"Use rate=0.0 or a dataset with more classes."
        )

    rng = np.random.default_rng(seed)
    noisy = clean.copy()
    if kind in ("symmetric", "asymmetric", "instance"):
        flip = rng.choice(n, size=_num_to_flip(rate, n), replace=False)
        if kind == "symmetric":
            noisy[flip] = _symmetric_targets(clean[flip], num_classes, rng)
        elif kind == "asymmetric":
            noisy[flip] = (clean[flip] + 1) % num_classes
        else:
            scores = _similarity_matrix(similarity, n, num_classes)
            masked = scores[flip].copy()
            masked[np.arange(len(flip)), clean[flip]] = -np.inf
            noisy[flip] = np.argmax(masked, axis=1)
    elif kind == "pairflip":
        mapping = _resolve_class_map(class_map, names, num_classes)
        eligible = np.flatnonzero(np.isin(clean, list(mapping)))
        flip = rng.choice(eligible, size=_num_to_flip(rate, len(eligible)), replace=False)
        noisy[flip] = [mapping[int(y)] for y in clean[flip]]
    else:  # k_wrong_shots
        noisy = _k_wrong_shots(clean, num_classes, rate, num_wrong_shots, wrong_label, rng, names)

    label_feature = feature if isinstance(feature, ClassLabel) else ClassLabel(num_classes=num_classes)
    # rename first: dropping the only column of a `select` view would leave nothing to flatten
    out = dataset.rename_column(label_column, CLEAN_LABEL_COLUMN)
    if not isinstance(feature, ClassLabel):
        out = out.cast_column(CLEAN_LABEL_COLUMN, label_feature)
    out = out.add_column(label_column, noisy.tolist(), feature=label_feature)
    out = out.add_column(IS_NOISY_COLUMN, (noisy != clean).tolist(), feature=Value("bool"))
    settings = {"kind": kind, "rate": rate, "seed": int(seed), "num_wrong_shots": num_wrong_shots}
    out.info.description = _INFO_MARKER + json.dumps(settings)
    return out


def _resolve_class_map(class_map: Any, names: Sequence[str] | None, num_classes: int) -> dict[int, int]:
    if not isinstance(class_map, Mapping) or not class_map:
        raise ValueError(
            f"`kind='pairflip'` needs `class_map`, a non-empty mapping {{source_class: target_class}} (ids or "
            f"class names), but got {class_map!r}. For y -> (y + 1) mod C use `kind='asymmetric'`."
        )
    mapping = {}
    for src, dst in class_map.items():
        s = _resolve_class(src, names, num_classes, "a `class_map` key")
        d = _resolve_class(dst, names, num_classes, "a `class_map` value")
        if s == d:
            raise ValueError(f"`class_map` maps class {src!r} to itself: a flip must change the class.")
        mapping[s] = d
    return mapping


def _similarity_matrix(similarity: Any, n: int, num_classes: int) -> np.ndarray:
    if similarity is None:
        raise ValueError(
            "`kind='instance'` needs `similarity`, an (N, C) array of zero-shot image-text similarities "
            "(row i for row i of the dataset), but got None."
        )
    if hasattr(similarity, "detach"):  # a torch tensor, without importing torch here
        similarity = similarity.detach().cpu().float().numpy()
    scores = np.asarray(similarity, dtype=np.float64)
    if scores.shape != (n, num_classes):
        raise ValueError(
            f"Expected `similarity` of shape (N, C) = ({n}, {num_classes}), but got shape {scores.shape}. Pass "
            f"one row per dataset row and one column per class."
        )
    if not np.isfinite(scores).all():
        raise ValueError(
            "`similarity` contains NaN or infinite values; pass finite similarities or probabilities."
        )
    return scores


def _k_wrong_shots(
    clean: np.ndarray,
    num_classes: int,
    rate: float,
    num_wrong_shots: int | None,
    wrong_label: str,
    rng: np.random.Generator,
    names: Sequence[str] | None,
) -> np.ndarray:
    if wrong_label not in ("uniform", "next"):
        raise ValueError(f"Expected `wrong_label` to be 'uniform' or 'next', but got {wrong_label!r}.")
    counts = np.bincount(clean, minlength=num_classes)
    present = np.flatnonzero(counts)
    if num_wrong_shots is not None:
        if (
            isinstance(num_wrong_shots, bool)
            or not isinstance(num_wrong_shots, (int, np.integer))
            or num_wrong_shots < 0
        ):
            raise ValueError(
                f"Expected `num_wrong_shots` to be a non-negative integer, but got {num_wrong_shots!r}."
            )
        smallest = int(present[np.argmin(counts[present])]) if len(present) else 0
        if len(present) and num_wrong_shots > counts[smallest]:
            label = f"{smallest} ({names[smallest]!r})" if names else str(smallest)
            raise ValueError(
                f"Expected num_wrong_shots <= the size of every class, but got num_wrong_shots={num_wrong_shots} "
                f"and class {label} has only {int(counts[smallest])} rows. Lower `num_wrong_shots`."
            )
        if rate and any(_num_to_flip(rate, int(counts[c])) != num_wrong_shots for c in present):
            raise ValueError(
                f"Pass either `num_wrong_shots` or `rate` for kind='k_wrong_shots', not both (got rate={rate} and "
                f"num_wrong_shots={num_wrong_shots}, which disagree for some class sizes)."
            )
        per_class = np.where(counts > 0, num_wrong_shots, 0)
    else:
        per_class = np.array([_num_to_flip(rate, int(c)) for c in counts])
    if per_class.sum() and len(present) < 2:
        raise ValueError(
            f"`kind='k_wrong_shots'` needs at least 2 classes with rows to give wrong labels, but found "
            f"{len(present)}. Use rate=0.0 or a dataset with more classes."
        )
    if wrong_label == "uniform" and per_class.sum() and 2 * per_class.max() > per_class.sum():
        raise ValueError(
            f"Cannot give every class as many wrong rows as it loses: class {int(per_class.argmax())} has "
            f"{int(per_class.max())} wrong shots, more than all other classes together ({int(per_class.sum() - per_class.max())}). "
            f"Use more balanced classes (e.g. `sample_fewshot` first) or `wrong_label='next'`."
        )
    chosen = np.concatenate(
        [
            rng.choice(np.flatnonzero(clean == c), size=int(k), replace=False)
            for c, k in enumerate(per_class)
            if k
        ]
        or [np.zeros(0, dtype=np.int64)]
    )
    noisy = clean.copy()
    if len(chosen):
        if wrong_label == "uniform":
            noisy[chosen] = _balanced_wrong_labels(clean[chosen], rng)
        else:
            noisy[chosen] = (clean[chosen] + 1) % num_classes
    return noisy


def noise_report(
    dataset: Dataset,
    num_classes: int | None = None,
    *,
    requested_rate: float | None = None,
    label_column: str = "label",
) -> dict[str, Any]:
    """Summarise the label noise of a dataset: requested vs realised rate, per-class counts, transition matrix.

    Reads `clean_label` (so it belongs to evaluation and reporting, never to training). On real-noise data
    (no `clean_label`) the realised rate and the transition matrix are unknown and reported as `None`.

    Args:
        dataset (`datasets.Dataset`):
            Output of [`inject_label_noise`] (or any dataset with `label_column` and optionally `clean_label`).
        num_classes (`int`, *optional*):
            Number of classes C; defaults to the size of the `ClassLabel` feature of `label_column`.
        requested_rate (`float`, *optional*):
            The rate that was asked for; defaults to the one [`inject_label_noise`] recorded in `dataset.info`.
        label_column (`str`, *optional*, defaults to `"label"`):
            Column with the labels as given (the noisy ones).

    Returns:
        `dict` with keys `kind`, `num_samples`, `num_noisy`, `requested_rate`, `realised_rate`, `per_class` (a list
        of `{"label", "name", "clean_count", "given_count", "noisy_count"}`; `noisy_count` counts rows of that
        *true* class whose label is wrong) and `transition_matrix` (C × C counts, rows = clean label, columns =
        given label).

    Example:

    ```python
    >>> from datasets import ClassLabel, Dataset, Features
    >>> ds = Dataset.from_dict({"label": [0, 1] * 4}, features=Features({"label": ClassLabel(names=["a", "b"])}))
    >>> report = noise_report(inject_label_noise(ds, rate=0.25, kind="symmetric", seed=0))
    >>> report["requested_rate"], report["realised_rate"], report["num_noisy"]
    (0.25, 0.25, 2)

    ```
    """
    require_column(dataset, label_column, argument="label_column", what="label")
    num_classes = infer_num_classes(dataset, label_column, num_classes)
    given = label_array(dataset, label_column)
    check_label_range(given, num_classes, label_column)
    feature = dataset.features[label_column]
    names = list(feature.names) if isinstance(feature, ClassLabel) else [str(c) for c in range(num_classes)]

    settings: dict[str, Any] = {}
    description = dataset.info.description or ""
    if description.startswith(_INFO_MARKER):
        settings = json.loads(description[len(_INFO_MARKER) :])
    if requested_rate is None:
        requested_rate = settings.get("rate")

    given_counts = np.bincount(given, minlength=num_classes)
    if CLEAN_LABEL_COLUMN in dataset.column_names:
        clean = label_array(dataset, CLEAN_LABEL_COLUMN)
        check_label_range(clean, num_classes, CLEAN_LABEL_COLUMN)
        matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(matrix, (clean, given), 1)
        wrong = clean != given
        clean_counts = np.bincount(clean, minlength=num_classes)
        noisy_counts = np.bincount(clean[wrong], minlength=num_classes)
        num_noisy = int(wrong.sum())
        realised = num_noisy / len(given) if len(given) else 0.0
        transition = matrix.tolist()
    else:
        clean_counts = noisy_counts = None
        num_noisy = realised = transition = None

    per_class = [
        {
            "label": c,
            "name": names[c],
            "clean_count": None if clean_counts is None else int(clean_counts[c]),
            "given_count": int(given_counts[c]),
            "noisy_count": None if noisy_counts is None else int(noisy_counts[c]),
        }
        for c in range(num_classes)
    ]
    return {
        "kind": settings.get("kind", "real" if transition is None else None),
        "num_samples": len(given),
        "num_noisy": num_noisy,
        "requested_rate": requested_rate,
        "realised_rate": realised,
        "per_class": per_class,
        "transition_matrix": transition,
    }


def add_sample_index(dataset: Dataset, column: str = SAMPLE_INDEX_COLUMN) -> Dataset:
    """Add an integer column `sample_idx` = 0 … N − 1, the key of the trainer's per-sample clean mask.

    Idempotent: a dataset that already has the column is returned unchanged, as long as the column is a
    permutation of 0 … N − 1 (a dataset subsampled after indexing is rejected, since its indices would not
    address a mask of length N).

    Args:
        dataset (`datasets.Dataset`): the training set (after few-shot sampling and noise injection).
        column (`str`, *optional*, defaults to `"sample_idx"`): name of the index column.

    Returns:
        `datasets.Dataset`: the dataset with the index column.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> list(add_sample_index(Dataset.from_dict({"label": [3, 1, 2]}))["sample_idx"])
    [0, 1, 2]

    ```
    """
    if column in dataset.column_names:
        existing = label_array(dataset, column)
        if not np.array_equal(np.sort(existing), np.arange(len(dataset))):
            raise ValueError(
                f"Column {column!r} exists but is not a permutation of 0..{len(dataset) - 1} (the dataset was "
                f"filtered or subsampled after indexing). Remove it with `dataset.remove_columns({column!r})` and "
                f"call `add_sample_index` again."
            )
        return dataset
    return dataset.add_column(column, list(range(len(dataset))), feature=Value("int64"))
