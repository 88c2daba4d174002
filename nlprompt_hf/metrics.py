# Copyright 2025 The nlprompt-hf authors.
# Licensed under the Apache License, Version 2.0.
"""Metrics of noisy-label prompt learning (NLPrompt, https://arxiv.org/abs/2412.01256).

Pure numpy functions (torch tensors, lists and numpy arrays are all accepted):

- classification: [`accuracy`], [`per_class_accuracy`], [`confusion_matrix`];
- label noise: [`noise_detection_metrics`] (how well a split flags the truly noisy samples),
  [`auroc`] (ranking quality of a per-sample score), [`transition_matrix`], [`estimated_noise_rate`];
- [`load_accuracy_metric`]: the same top-1 accuracy as a Hugging Face `evaluate` metric shipped inside the
  package, so that it loads offline (`evaluate.load("accuracy")` needs the Hub).

Conventions: predictions come first, references (true labels) second, as in `evaluate`; in confusion and
transition matrices rows are the true (reference / clean) label and columns the other one.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = [
    "ACCURACY_METRIC_PATH",
    "accuracy",
    "auroc",
    "confusion_matrix",
    "estimated_noise_rate",
    "load_accuracy_metric",
    "noise_detection_metrics",
    "per_class_accuracy",
    "transition_matrix",
]

ACCURACY_METRIC_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "evaluate_modules", "top1_accuracy"
)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _labels_1d(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (one label per sample), got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if (
            np.issubdtype(arr.dtype, np.floating)
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
        ):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(
                f"`{name}` must hold integer class indices, got dtype {arr.dtype}. Pass predicted class ids "
                "(e.g. `logits.argmax(-1)`), not scores."
            )
    return arr.astype(np.int64, copy=False)


def _pair(predictions: Any, references: Any) -> tuple[np.ndarray, np.ndarray]:
    preds = _to_numpy(predictions, "predictions")
    if preds.ndim == 2:  # logits / probabilities: take the top-1 class
        preds = preds.argmax(axis=-1)
    preds = _labels_1d(preds, "predictions")
    refs = _labels_1d(references, "references")
    if preds.shape != refs.shape:
        raise ValueError(
            f"`predictions` and `references` must have the same length, got {preds.shape[0]} and {refs.shape[0]}."
        )
    return preds, refs


def _check_range(labels: np.ndarray, num_classes: int, name: str) -> None:
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise ValueError(
            f"`{name}` must lie in [0, {num_classes}), found {bad}. Pass the right `num_classes` or fix the labels."
        )


def _bool_1d(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D boolean mask, got shape {arr.shape}.")
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(
                f"`{name}` must be boolean (or 0/1), found values {np.unique(arr)[:5].tolist()}."
            )
        arr = arr.astype(bool)
    return arr


def accuracy(predictions: Any, references: Any) -> float:
    """Top-1 accuracy: the fraction of samples whose prediction equals the reference label.

    Args:
        predictions (array-like of shape `(N,)` or `(N, C)`):
            Predicted class ids, or logits/probabilities (their argmax is taken).
        references (array-like of shape `(N,)`):
            True class ids.

    Returns:
        `float` in `[0, 1]`.

    Example:

    ```python
    >>> from nlprompt_hf.metrics import accuracy
    >>> accuracy([0, 1, 1, 2], [0, 1, 2, 2])
    0.75

    ```
    """
    preds, refs = _pair(predictions, references)
    if preds.size == 0:
        raise ValueError("`accuracy` of zero samples is undefined: got empty `predictions` and `references`.")
    return float(np.mean(preds == refs))


def per_class_accuracy(predictions: Any, references: Any, num_classes: int | None = None) -> np.ndarray:
    """Accuracy of each true class (recall per class); `nan` for classes without any reference sample.

    Args:
        predictions (array-like of shape `(N,)` or `(N, C)`): predicted class ids (or logits).
        references (array-like of shape `(N,)`): true class ids.
        num_classes (`int`, *optional*): defaults to `max(label) + 1`.

    Returns:
        `np.ndarray` of shape `(num_classes,)`, float64.

    Example:

    ```python
    >>> from nlprompt_hf.metrics import per_class_accuracy
    >>> per_class_accuracy([0, 1, 1, 2], [0, 1, 2, 2], num_classes=4).tolist()
    [1.0, 1.0, 0.5, nan]

    ```
    """
    preds, refs = _pair(predictions, references)
    matrix = confusion_matrix(preds, refs, num_classes)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / np.maximum(support, 1), np.nan)


def confusion_matrix(predictions: Any, references: Any, num_classes: int | None = None) -> np.ndarray:
    """Confusion matrix of counts: rows are the true (reference) class, columns the predicted class.

    Args:
        predictions (array-like of shape `(N,)` or `(N, C)`): predicted class ids (or logits).
        references (array-like of shape `(N,)`): true class ids.
        num_classes (`int`, *optional*): defaults to `max(label) + 1`.

    Returns:
        `np.ndarray` of shape `(num_classes, num_classes)`, int64.

    Example:

    ```python
    >>> from nlprompt_hf.metrics import confusion_matrix
    >>> confusion_matrix([0, 1, 1], [0, 1, 0]).tolist()
    [[1, 1], [0, 1]]

    ```
    """
    preds, refs = _pair(predictions, references)
    if num_classes is None:
        num_classes = int(max(preds.max(initial=-1), refs.max(initial=-1))) + 1 or 1
    _check_range(preds, num_classes, "predictions")
    _check_range(refs, num_classes, "references")
    flat = np.bincount(refs * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def noise_detection_metrics(flagged_noisy: Any, truly_noisy: Any) -> dict[str, float]:
    """Precision / recall / F1 of a split that flags samples as noisy, against the truly noisy ones.

    For PromptOT (https://arxiv.org/abs/2412.01256) `flagged_noisy = ~clean_mask` and
    `truly_noisy = given_label != clean_label`.

    The 0/0 cases are defined so that a vacuous statement is true: nothing flagged → precision 1 (no flagged
    sample is wrong); nothing truly noisy → recall 1 (no noisy sample was missed); F1 is their harmonic mean,
    0 when both are 0. So a split that flags nothing on clean data scores 1/1/1, and one that flags nothing
    on noisy data scores precision 1, recall 0, F1 0.

    Args:
        flagged_noisy (array-like of bool, shape `(N,)`): samples the split calls noisy.
        truly_noisy (array-like of bool, shape `(N,)`): samples whose given label is wrong.

    Returns:
        `dict` with `precision`, `recall`, `f1`, `accuracy` (of the flag), and the counts `tp`, `fp`, `fn`, `tn`,
        `num_flagged`, `num_truly_noisy`.

    Example:

    ```python
    >>> from nlprompt_hf.metrics import noise_detection_metrics
    >>> m = noise_detection_metrics([True, True, False, False], [True, False, True, False])
    >>> m["precision"], m["recall"], m["f1"]
    (0.5, 0.5, 0.5)

    ```
    """
    flagged = _bool_1d(flagged_noisy, "flagged_noisy")
    truth = _bool_1d(truly_noisy, "truly_noisy")
    if flagged.shape != truth.shape:
        raise ValueError(
            f"`flagged_noisy` and `truly_noisy` must have the same length, got {flagged.shape[0]} and {truth.shape[0]}."
        )
    tp = int(np.sum(flagged & truth))
    fp = int(np.sum(flagged & ~truth))
    fn = int(np.sum(~flagged & truth))
    tn = int(np.sum(~flagged & ~truth))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    total = tp + fp + fn + tn
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float((tp + tn) / total) if total else 1.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "num_flagged": tp + fp,
        "num_truly_noisy": tp + fn,
    }


def auroc(scores: Any, positives: Any) -> float:
    """Area under the ROC curve of `scores` for detecting `positives` (rank-based, ties averaged).

    Equals the probability that a random positive scores higher than a random negative, counting ties as
    1/2 (Mann–Whitney U / (n_pos · n_neg)). For a label audit, pass `scores = 1 - label_score` and
    `positives = truly_noisy`.

    Args:
        scores (array-like of float, shape `(N,)`): higher means "more likely positive".
        positives (array-like of bool, shape `(N,)`): the true positives.

    Returns:
        `float` in `[0, 1]`.

    Raises:
        `ValueError`: non-finite scores, or no positive or no negative sample (AUROC undefined).

    Example:

    ```python
    >>> from nlprompt_hf.metrics import auroc
    >>> auroc([0.9, 0.4, 0.4, 0.1], [True, True, False, False])  # one tie between classes
    0.875

    ```
    """
    s = _to_numpy(scores, "scores").astype(np.float64)
    pos = _bool_1d(positives, "positives")
    if s.ndim != 1 or s.shape != pos.shape:
        raise ValueError(
            f"`scores` must be 1-D with one score per sample ({pos.shape[0]}), got shape {s.shape}."
        )
    if not np.all(np.isfinite(s)):
        bad = int(np.sum(~np.isfinite(s)))
        raise ValueError(f"`scores` must be finite, found {bad} NaN/inf values. Drop or fix those samples.")
    n_pos = int(pos.sum())
    n_neg = int(pos.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"AUROC needs at least one positive and one negative sample, got {n_pos} positives and {n_neg} "
            "negatives. It is undefined for this input; skip it (e.g. on data without label noise)."
        )
    # Average ranks (1-based) with ties sharing the mean of their positions.
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    mean_rank = (starts + ends + 1) / 2.0  # mean of positions start+1 .. end
    ranks[order] = np.repeat(mean_rank, ends - starts)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def transition_matrix(
    from_labels: Any, to_labels: Any, num_classes: int, normalize: bool = True
) -> np.ndarray:
    """Label transition matrix: row = true / clean label (`from_labels`), column = given / noisy label
    (`to_labels`).

    With `normalize=True`, entry `[i, j]` estimates `P(given = j | true = i)` and every row of a class that
    occurs sums to 1; rows of classes that never occur in `from_labels` are all 0. Symmetric noise at rate
    `r` gives `1 - r` on the diagonal and `r / (C - 1)` elsewhere.

    Args:
        from_labels (array-like of int, shape `(N,)`): true (clean) labels, or the pseudo-labels of PromptOT
            as their estimate.
        to_labels (array-like of int, shape `(N,)`): given (noisy) labels.
        num_classes (`int`): number of classes C.
        normalize (`bool`, *optional*, defaults to `True`): row-normalise; counts otherwise.

    Returns:
        `np.ndarray` of shape `(C, C)`: float64 if normalised, else int64.

    Example:

    ```python
    >>> from nlprompt_hf.metrics import transition_matrix
    >>> transition_matrix([0, 0, 0, 0, 1], [0, 0, 0, 1, 1], num_classes=2).tolist()
    [[0.75, 0.25], [0.0, 1.0]]

    ```
    """
    src = _labels_1d(from_labels, "from_labels")
    dst = _labels_1d(to_labels, "to_labels")
    if src.shape != dst.shape:
        raise ValueError(
            f"`from_labels` and `to_labels` must have the same length, got {src.shape[0]} and {dst.shape[0]}."
        )
    counts = confusion_matrix(dst, src, num_classes)  # rows = from (true), columns = to (given)
    if not normalize:
        return counts
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1), 0.0)


def estimated_noise_rate(clean_mask: Any) -> float:
    """Noise rate estimated by a split: the fraction of samples it does not call clean (`1 - mean(clean)`).

    Args:
        clean_mask (array-like of bool, shape `(N,)`): e.g. [`~nlprompt_hf.purification.PurificationResult`]'s
            `clean_mask`.

    Returns:
        `float` in `[0, 1]` (0 for an empty mask).

    Example:

    ```python
    >>> from nlprompt_hf.metrics import estimated_noise_rate
    >>> estimated_noise_rate([True, False, True, True])
    0.25

    ```
    """
    mask = _bool_1d(clean_mask, "clean_mask")
    return float(1.0 - mask.mean()) if mask.size else 0.0


def load_accuracy_metric(**kwargs):
    """Load the shipped `top1_accuracy` `evaluate` metric (accuracy + per-class accuracy) by path, offline.

    `evaluate.load("accuracy")` fetches its script from the Hugging Face Hub and fails without network; this
    one lives in the package (`nlprompt_hf/evaluate_modules/top1_accuracy`). `evaluate` is imported here
    only, because importing it takes seconds.

    Args:
        kwargs: passed to `evaluate.load` (e.g. `experiment_id`).

    Returns:
        `evaluate.Metric`: `compute(predictions=..., references=..., num_classes=None)` returns
        `{"accuracy": float, "per_class_accuracy": list[float]}`.

    Example:

    ```python
    >>> from nlprompt_hf.metrics import load_accuracy_metric
    >>> metric = load_accuracy_metric()  # doctest: +SKIP
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"]  # doctest: +SKIP
    0.6666666666666666

    ```
    """
    import evaluate  # slow import: keep it out of module import time

    return evaluate.load(ACCURACY_METRIC_PATH, **kwargs)
