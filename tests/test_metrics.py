"""Metrics: hand-computed values, the 0/0 conventions, AUROC against a brute-force pairwise count."""

import itertools
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlprompt_hf.metrics import (
    ACCURACY_METRIC_PATH,
    accuracy,
    auroc,
    confusion_matrix,
    estimated_noise_rate,
    load_accuracy_metric,
    noise_detection_metrics,
    per_class_accuracy,
    transition_matrix,
)


def test_accuracy_hand_values_and_input_types():
    assert accuracy([0, 1, 1, 2], [0, 1, 2, 2]) == 0.75
    assert accuracy(torch.tensor([0, 1]), np.array([0, 0])) == 0.5
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0]])  # argmax 0, 1, 0
    assert accuracy(logits, [0, 1, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="zero samples"):
        accuracy([], [])
    with pytest.raises(ValueError, match="integer class indices"):
        accuracy([0.5, 1.0], [0, 1])


def test_confusion_and_per_class_accuracy():
    preds, refs = [0, 1, 1, 2, 0], [0, 1, 2, 2, 2]
    # rows = true class, columns = predicted class
    expected = [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
    assert confusion_matrix(preds, refs).tolist() == expected
    assert confusion_matrix(preds, refs, num_classes=4).shape == (4, 4)
    per_class = per_class_accuracy(preds, refs, num_classes=4)
    assert per_class[:3].tolist() == [1.0, 1.0, pytest.approx(1 / 3)]
    assert np.isnan(per_class[3])  # no reference sample of class 3
    with pytest.raises(ValueError, match=r"\[0, 2\), found 2"):
        confusion_matrix(preds, refs, num_classes=2)


def test_noise_detection_hand_values():
    flagged = [True, True, True, False, False, False]
    truly = [True, True, False, True, False, False]
    m = noise_detection_metrics(flagged, truly)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    "flagged, truly, expected",
    [
        ([False, False], [False, False], (1.0, 1.0, 1.0)),  # clean data, nothing flagged
        ([False, False], [True, False], (1.0, 0.0, 0.0)),  # nothing flagged, one noisy sample missed
        ([True, False], [False, False], (0.0, 1.0, 0.0)),  # a false alarm on clean data
        ([], [], (1.0, 1.0, 1.0)),
    ],
)
def test_noise_detection_zero_division_conventions(flagged, truly, expected):
    m = noise_detection_metrics(np.array(flagged, dtype=bool), np.array(truly, dtype=bool))
    assert (m["precision"], m["recall"], m["f1"]) == expected


def _auroc_brute_force(scores, positives):
    wins = 0.0
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    for sp, sn in itertools.product(pos, neg):
        wins += 1.0 if sp > sn else 0.5 if sp == sn else 0.0
    return wins / (len(pos) * len(neg))


def test_auroc_hand_values():
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [True, False, False]) == 0.5
    assert auroc([0.9, 0.4, 0.4, 0.1], [True, True, False, False]) == 0.875
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        auroc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="finite"):
        auroc([float("nan"), 0.2], [True, False])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40).filter(
        lambda xs: 0 < sum(p for _, p in xs) < len(xs)
    )
)
def test_auroc_matches_pairwise_count(pairs):
    scores = [s / 5 for s, _ in pairs]  # few distinct values: many ties
    positives = [p for _, p in pairs]
    assert auroc(scores, positives) == pytest.approx(_auroc_brute_force(scores, positives), abs=1e-12)


def test_transition_matrix_hand_values():
    clean = [0, 0, 0, 0, 1, 1, 2]
    given_ = [0, 0, 0, 1, 1, 2, 2]
    counts = transition_matrix(clean, given_, num_classes=4, normalize=False)
    assert counts.tolist() == [[3, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    rates = transition_matrix(clean, given_, num_classes=4)
    assert rates[0].tolist() == [0.75, 0.25, 0.0, 0.0]
    assert rates[3].tolist() == [0.0, 0.0, 0.0, 0.0]  # class 3 never occurs as a true label


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_transition_matrix_rows_sum_to_one(num_classes, n, seed):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, num_classes, n)
    noisy = rng.integers(0, num_classes, n)
    rates = transition_matrix(clean, noisy, num_classes)
    present = np.bincount(clean, minlength=num_classes) > 0
    np.testing.assert_allclose(rates[present].sum(axis=1), 1.0, atol=1e-12)
    assert np.all(rates[~present] == 0.0)


def test_estimated_noise_rate():
    assert estimated_noise_rate([True, False, True, True]) == 0.25
    assert estimated_noise_rate(torch.tensor([True, True])) == 0.0
    assert estimated_noise_rate([]) == 0.0


def test_shipped_evaluate_metric_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert os.path.isfile(os.path.join(ACCURACY_METRIC_PATH, "top1_accuracy.py"))
    metric = load_accuracy_metric()
    out = metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], num_classes=3)
    assert out["accuracy"] == 0.75
    assert out["per_class_accuracy"] == [1.0, 1.0, 0.5]
