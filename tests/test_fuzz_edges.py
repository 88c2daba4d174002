"""Property tests at the edges: PromptOT and label-noise injection over random shapes (issue 6, item 6).

`tests/test_data_noise.py` already fuzzes symmetric / asymmetric / k-wrong-shots noise (exact counts, label range,
transition matrix) over skewed class distributions; this file adds the kinds it does not (pairflip, instance),
a dataset whose rows all sit in one class, and, next to `tests/test_purification.py`'s property test, PromptOT with
both costs (pseudo-labels = the argmax of the plan's rows), N = 1 (the plan is the column marginal), every label in
one class (some must be flagged), and C = 2 at ε = 1e-3.
"""

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlprompt_hf.data import inject_label_noise
from nlprompt_hf.purification import FeatureCost, purify, solve_sinkhorn, transport_plan

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _labels_dataset(labels, num_classes):
    return Dataset.from_dict(
        {"x": list(range(len(labels))), "label": [int(y) for y in labels]},
        features=Features({"x": Value("int64"), "label": ClassLabel(num_classes=num_classes)}),
    )


def _skewed_labels(rng, n, num_classes, skew):
    """Labels with class c drawn with probability ∝ skew**c (skew 1: balanced; skew 0.05: one class dominates)."""
    p = skew ** np.arange(num_classes, dtype=np.float64)
    return rng.choice(num_classes, size=n, p=p / p.sum())


# ----------------------------------------------------------------------------------------------- noise injection


@FAST
@given(
    num_classes=st.integers(2, 8),
    n=st.integers(1, 50),
    skew=st.sampled_from([1.0, 0.5, 0.05]),
    rate=st.floats(0.0, 0.999),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_pairflip_invariants(num_classes, n, skew, rate, seed, data):
    labels = _skewed_labels(np.random.default_rng(seed), n, num_classes, skew)
    sources = data.draw(st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=num_classes, unique=True))
    class_map = {s: (s + data.draw(st.integers(1, num_classes - 1))) % num_classes for s in sources}
    out = inject_label_noise(_labels_dataset(labels, num_classes), rate=rate, kind="pairflip", seed=seed,
                             class_map=class_map)
    noisy, clean, flag = (np.array(out[c]) for c in ("label", "clean_label", "is_noisy"))
    eligible = np.isin(clean, list(class_map))
    # exactly floor(r * M) of the M rows whose class is a key of the map, each sent to its target
    assert flag.sum() == int(np.floor(round(rate * eligible.sum(), 9)))
    assert not flag[~eligible].any()
    assert all(noisy[i] == class_map[int(clean[i])] for i in np.flatnonzero(flag))
    np.testing.assert_array_equal(clean, labels)
    np.testing.assert_array_equal(flag, noisy != clean)


@FAST
@given(
    num_classes=st.integers(2, 8),
    n=st.integers(1, 50),
    skew=st.sampled_from([1.0, 0.5, 0.05]),
    rate=st.floats(0.0, 0.999),
    seed=st.integers(0, 2**16),
)
def test_instance_noise_invariants(num_classes, n, skew, rate, seed):
    rng = np.random.default_rng(seed)
    labels = _skewed_labels(rng, n, num_classes, skew)
    similarity = rng.normal(size=(n, num_classes))
    out = inject_label_noise(_labels_dataset(labels, num_classes), rate=rate, kind="instance", seed=seed,
                             similarity=similarity)
    noisy, clean, flag = (np.array(out[c]) for c in ("label", "clean_label", "is_noisy"))
    assert flag.sum() == int(np.floor(round(rate * n, 9)))
    assert np.all((noisy >= 0) & (noisy < num_classes))
    for i in np.flatnonzero(flag):  # the most similar class other than the true one
        masked = similarity[i].copy()
        masked[clean[i]] = -np.inf
        assert noisy[i] == int(np.argmax(masked))


@FAST
@given(
    num_classes=st.integers(2, 6),
    n=st.integers(1, 40),
    rate=st.floats(0.0, 0.999),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["symmetric", "asymmetric"]),
)
def test_all_rows_in_one_class(num_classes, n, rate, seed, kind):
    # every row in the last class: the other classes are declared but empty
    ds = _labels_dataset([num_classes - 1] * n, num_classes)
    out = inject_label_noise(ds, rate=rate, kind=kind, seed=seed)
    noisy, flag = np.array(out["label"]), np.array(out["is_noisy"])
    assert flag.sum() == int(np.floor(round(rate * n, 9)))
    assert np.all(noisy[flag] != num_classes - 1) and np.all(noisy[~flag] == num_classes - 1)
    if kind == "asymmetric":
        assert np.all(noisy[flag] == 0)  # (C - 1 + 1) mod C


# ----------------------------------------------------------------------------------------------- PromptOT


def _problem(seed, n, num_classes, dim, skew):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, dim, generator=g, dtype=torch.float64)
    text = torch.randn(num_classes, dim, generator=g, dtype=torch.float64)
    labels = torch.as_tensor(_skewed_labels(np.random.default_rng(seed), n, num_classes, skew))
    return images, text, labels


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    num_classes=st.integers(2, 10),
    dim=st.integers(2, 6),
    reg=st.sampled_from([1e-3, 1e-2, 0.1, 1.0]),
    cost=st.sampled_from(["neg_prob", "neg_log_prob"]),
    skew=st.sampled_from([1.0, 0.3, 0.01]),
    seed=st.integers(0, 2**16),
)
def test_purify_invariants(n, num_classes, dim, reg, cost, skew, seed):
    images, text, labels = _problem(seed, n, num_classes, dim, skew)
    result = purify(images, text, labels, reg=reg, cost=cost)
    assert result.converged and result.marginal_error < 1e-6
    # outputs: shapes, label range, the mask is exactly "pseudo-label == given label"
    assert result.pseudo_labels.shape == result.clean_mask.shape == result.label_score.shape == (n,)
    assert bool(((result.pseudo_labels >= 0) & (result.pseudo_labels < num_classes)).all())
    assert torch.equal(result.clean_mask, result.pseudo_labels == labels)
    assert bool(torch.isfinite(result.label_score).all())
    assert bool(((result.label_score >= 0) & (result.label_score <= 1)).all())
    # the plan behind it: uniform marginals, rows exactly and columns within the solver's tolerance
    source = FeatureCost(images, text, kind=cost)
    solved = solve_sinkhorn(source, reg=reg)
    plan = transport_plan(source, result=solved)
    assert bool(torch.isfinite(plan).all()) and float(plan.min()) >= 0
    torch.testing.assert_close(plan.sum(1), torch.full((n,), 1 / n, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert float((plan.sum(0) - 1 / num_classes).norm()) < 1e-6
    # pseudo-labels are the argmax of the plan's rows wherever that argmax is not a near-tie
    top2 = plan.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-9 * top2[:, 0]
    assert torch.equal(result.pseudo_labels[clear], plan.argmax(1)[clear])


@FAST
@given(
    num_classes=st.integers(2, 10),
    dim=st.integers(2, 6),
    reg=st.sampled_from([1e-3, 1e-2, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_purify_single_sample(num_classes, dim, reg, seed):
    # N = 1: the row marginal is all the mass, so the plan *is* the column marginal whatever the cost
    images, text, _ = _problem(seed, 1, num_classes, dim, 1.0)
    result = purify(images, text, torch.tensor([num_classes - 1]), reg=reg)
    assert result.converged
    assert result.pseudo_labels.shape == (1,) and 0 <= int(result.pseudo_labels) < num_classes
    plan = transport_plan(FeatureCost(images, text), reg=reg)
    torch.testing.assert_close(plan[0], torch.full((num_classes,), 1 / num_classes, dtype=torch.float64),
                               rtol=0, atol=1e-6)


@FAST
@given(
    n=st.integers(2, 40),
    num_classes=st.integers(2, 10),
    reg=st.sampled_from([1e-3, 1e-2]),
    seed=st.integers(0, 2**16),
)
def test_purify_all_labels_in_one_class(n, num_classes, reg, seed):
    # uniform column marginals forbid sending every sample to one class: if all rows had their argmax in
    # class 0, each Q_i0 >= 1/(NC) and their sum 1/C would force every row to be uniform. So unless the cost
    # rows are all identical (then the plan is uniform and every row a tie), some samples labelled 0 are flagged.
    images, text, _ = _problem(seed, n, num_classes, 4, 1.0)
    labels = torch.zeros(n, dtype=torch.long)
    result = purify(images, text, labels, reg=reg)
    assert result.converged
    assert torch.equal(result.clean_mask, result.pseudo_labels == 0)
    cost = FeatureCost(images, text).rows(0, n)
    if float((cost - cost[:1]).abs().max()) > 1e-6:
        assert not bool(result.clean_mask.all())


@pytest.mark.parametrize("cost", ["neg_prob", "neg_log_prob"])
def test_two_classes_small_epsilon(cost):
    # C = 2 with ε = 1e-3: the regime where the reference's scaling-domain Sinkhorn returns an all-zero plan
    images, text, labels = _problem(0, 64, 2, 8, 1.0)
    result = purify(images, text, labels, reg=1e-3, cost=cost)
    plan = transport_plan(FeatureCost(images, text, kind=cost), reg=1e-3)
    assert result.converged and float(plan.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(plan.sum(0), torch.full((2,), 0.5, dtype=torch.float64), rtol=0, atol=1e-6)
    counts = torch.bincount(result.pseudo_labels, minlength=2)
    assert int(counts.min()) > 0  # not every pseudo-label is class 0
