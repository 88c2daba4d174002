"""PromptOT (NLPrompt, https://arxiv.org/abs/2412.01256): probabilities, cost, the log-domain solver and
the clean/noisy split. POT's `ot.sinkhorn` is the reference where it converges, and documents its failure
where it does not (ε = 0.001, SPEC §6.1)."""

import math
import warnings

import numpy as np
import ot
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nlprompt_hf.purification import (
    DegeneratePlanError,
    FeatureCost,
    InvalidOTInputError,
    PurificationResult,
    class_probabilities,
    ot_cost,
    pseudo_labels,
    purify,
    solve_sinkhorn,
    transport_plan,
)


def _features(n, num_classes, dim=32, seed=0, signal=2.0, dtype=torch.float64):
    """Image features near their class prototype (CLIP-like: a confident but imperfect model)."""
    gen = torch.Generator().manual_seed(seed)
    text = torch.randn(num_classes, dim, generator=gen, dtype=dtype)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    images = torch.randn(n, dim, generator=gen, dtype=dtype) * signal + text[labels]
    return images, text, labels


def _clip_like_cost(n, num_classes, seed=0, margin=3.0, kind="neg_prob"):
    """Cost from CLIP-like probabilities: P = softmax(margin · onehot(y) + N(0, 1)), top-1 mass mostly 0.3-0.9."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    logits = margin * torch.nn.functional.one_hot(labels, num_classes).double()
    logits += torch.randn(n, num_classes, generator=gen, dtype=torch.float64)
    return ot_cost(logits.softmax(dim=1), kind)


def _uniform(n):
    return np.full(n, 1.0 / n)


def _pot_sinkhorn(M, reg):
    n, c = M.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.sinkhorn(_uniform(n), _uniform(c), M.numpy(), reg, numItermax=1000, stopThr=1e-6, log=True)


# --- probabilities and cost -------------------------------------------------------------------------------


def test_class_probabilities_normalises_features():
    images, text, _ = _features(20, 5)
    P = class_probabilities(images, text)
    assert P.shape == (20, 5)
    torch.testing.assert_close(P.sum(1), torch.ones(20, dtype=torch.float64))
    # scale of either side does not matter (L2-normalised), temperature 100 is the default
    torch.testing.assert_close(class_probabilities(3.0 * images, 0.5 * text), P)
    cos = torch.nn.functional.normalize(images, dim=1) @ torch.nn.functional.normalize(text, dim=1).T
    torch.testing.assert_close(P, torch.softmax(100.0 * cos, dim=1))


def test_ot_cost_kinds():
    P = torch.tensor([[0.25, 0.75, 0.0]], dtype=torch.float64)
    assert ot_cost(P, "neg_prob").tolist() == [[-0.25, -0.75, -0.0]]
    neg_log = ot_cost(P, "neg_log_prob")
    assert neg_log[0, 0].item() == pytest.approx(math.log(4)) and neg_log[0, 1].item() == pytest.approx(
        -math.log(0.75)
    )
    assert math.isfinite(neg_log[0, 2].item())  # -log 0 is clamped, never inf
    with pytest.raises(InvalidOTInputError, match="neg_prob"):
        ot_cost(P, "log")


def test_reference_cost_log_softmax_of_P_gives_the_plan_of_neg_P():
    """The reference's `-log_softmax(P)` differs from `-P` by a per-row constant: same plan."""
    images, text, _ = _features(300, 10, seed=1)
    P = class_probabilities(images, text)
    # solved far past the default tolerance so that the comparison shows exact equality, not two stopping points
    plan_neg_p = transport_plan(ot_cost(P, "neg_prob"), reg=0.01, tol=1e-12)
    plan_reference = transport_plan(-torch.log_softmax(P, dim=1), reg=0.01, tol=1e-12)
    torch.testing.assert_close(plan_reference, plan_neg_p, atol=1e-12, rtol=1e-7)


def test_feature_cost_matches_dense_cost():
    images, text, _ = _features(50, 7)
    for kind in ("neg_prob", "neg_log_prob"):
        dense = ot_cost(class_probabilities(images, text), kind)
        chunked = FeatureCost(images, text, kind=kind)
        torch.testing.assert_close(torch.cat([chunked.rows(0, 20), chunked.rows(20, 50)]), dense)


# --- the solver ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, kind", [("newton", "neg_prob"), ("newton", "neg_log_prob"), ("sinkhorn", "neg_prob")]
)
def test_marginals_satisfied(method, kind):
    M = _clip_like_cost(500, 20, seed=2, kind=kind)
    result = solve_sinkhorn(M, reg=0.01, method=method, max_iter=5000)
    assert result.converged and result.marginal_error < 1e-6
    plan = transport_plan(M, result=result)
    torch.testing.assert_close(
        plan.sum(1), torch.full((500,), 1 / 500, dtype=torch.float64), atol=0, rtol=1e-10
    )
    assert float((plan.sum(0) - 1 / 20).norm()) < 1e-6
    assert float((plan.sum(0) - 1 / 20).abs().max()) < 1e-6


@pytest.mark.parametrize("method", ["newton", "sinkhorn"])
def test_agrees_with_pot_sinkhorn_at_reference_eps(method):
    M = _clip_like_cost(2000, 50, seed=3)
    pot_plan, log = _pot_sinkhorn(M, 0.01)
    assert log["err"][-1] < 1e-6  # POT converged here
    plan = transport_plan(M, reg=0.01, method=method)
    # Both stop at a marginal error < 1e-6 of the same problem: the plans agree to that order.
    assert np.abs(plan.numpy() - pot_plan).sum() < 1e-4
    np.testing.assert_array_equal(plan.argmax(1).numpy(), pot_plan.argmax(1))
    np.testing.assert_array_equal(
        pseudo_labels(M, solve_sinkhorn(M, reg=0.01, method=method)).numpy(), pot_plan.argmax(1)
    )


def test_small_eps_where_pot_sinkhorn_degenerates():
    """SPEC §6.1: ε = 0.001, C = 100. The reference's POT call returns an all-zero (or NaN) plan, so that every
    pseudo-label is class 0; ours converges to a plan with the right marginals."""
    images, text, labels = _features(1000, 100, dim=64, seed=4)
    P = class_probabilities(images, text)
    reference_cost = -torch.log_softmax(P, dim=1)  # what the reference code computes
    pot_plan, _ = _pot_sinkhorn(reference_cost, 0.001)
    assert not np.isfinite(pot_plan).all() or pot_plan.sum() < 1e-12  # degenerate: zeros or NaN
    assert np.all(np.nan_to_num(pot_plan).argmax(1) == 0)  # ... hence every pseudo-label is class 0
    pot_neg_p, _ = _pot_sinkhorn(ot_cost(P), 0.001)  # -P overflows instead: exp(1000) = inf
    assert not np.isfinite(pot_neg_p).all() or pot_neg_p.sum() < 1e-12

    for M in (reference_cost, ot_cost(P)):
        result = solve_sinkhorn(M, reg=0.001)
        assert result.converged and result.marginal_error < 1e-6
        plan = transport_plan(M, result=result)
        assert bool(torch.isfinite(plan).all()) and plan.sum().item() == pytest.approx(1.0)
        assert float((plan.sum(0) - 0.01).abs().max()) < 1e-6
        assert len(set(plan.argmax(1).tolist())) > 50  # non-degenerate: the classes are used
    out = purify(images, text, labels, reg=0.001)
    assert out.converged and 0.5 < out.clean_fraction <= 1.0


def test_warm_start_converges_immediately():
    images, text, _ = _features(400, 10, seed=5)
    M = ot_cost(class_probabilities(images, text))
    first = solve_sinkhorn(M, reg=0.01)
    again = solve_sinkhorn(M, reg=0.01, init_g=first.g)
    assert again.converged and again.n_iter <= 2
    torch.testing.assert_close(again.g - again.g.mean(), first.g - first.g.mean(), atol=1e-6, rtol=0)


def test_chunking_does_not_change_the_result():
    images, text, labels = _features(333, 9, seed=6)
    source = FeatureCost(images, text)
    a = solve_sinkhorn(source, reg=0.01, chunk_size=17)
    b = solve_sinkhorn(source, reg=0.01)
    # different chunks round differently, so the iterates part at ~1e-16 and stop at different points < tol
    torch.testing.assert_close(a.g - a.g.mean(), b.g - b.g.mean(), atol=1e-5, rtol=0)
    assert torch.equal(pseudo_labels(source, a, chunk_size=10), pseudo_labels(source, b))
    cached = purify(images, text, labels, cache_cost=True)
    streamed = purify(images, text, labels, cache_cost=False, chunk_size=50)
    assert torch.equal(cached.clean_mask, streamed.clean_mask)


def test_non_uniform_marginals():
    gen = torch.Generator().manual_seed(7)
    M = torch.rand(30, 4, generator=gen, dtype=torch.float64)
    a = torch.rand(30, generator=gen, dtype=torch.float64) + 0.1
    a /= a.sum()
    b = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    plan = transport_plan(M, a, b, reg=0.05)
    torch.testing.assert_close(plan.sum(1), a, atol=1e-12, rtol=0)
    assert float((plan.sum(0) - b).norm()) < 1e-6
    pot = ot.sinkhorn(a.numpy(), b.numpy(), M.numpy(), 0.05, stopThr=1e-9, numItermax=100000)
    np.testing.assert_allclose(plan.numpy(), pot, atol=1e-6)


# --- errors -------------------------------------------------------------------------------------------------


def test_nan_features_raise_a_clear_error():
    images, text, labels = _features(10, 3)
    images[3, 0] = float("nan")
    images[7, 1] = float("inf")
    with pytest.raises(InvalidOTInputError, match=r"2 of 10 rows \(first at index 3\)") as info:
        purify(images, text, labels)
    assert isinstance(info.value, ValueError)
    text[1, 0] = float("nan")
    with pytest.raises(ValueError, match="text_features"):
        class_probabilities(images[:3], text)


@pytest.mark.parametrize("reg", [0.0, -0.01, float("nan"), float("inf")])
def test_non_positive_eps_raises(reg):
    M = torch.rand(5, 3, dtype=torch.float64)
    with pytest.raises(InvalidOTInputError, match="finite number > 0"):
        solve_sinkhorn(M, reg=reg)
    with pytest.raises(ValueError, match="reg"):
        purify(torch.randn(5, 4), torch.randn(3, 4), torch.zeros(5, dtype=torch.long), reg=reg)


def test_other_bad_inputs():
    images, text, labels = _features(6, 3)
    with pytest.raises(InvalidOTInputError, match=r"\[0, C\) with C = 3.*found label 3 at index 2"):
        purify(images, text, torch.tensor([0, 1, 3, 0, 1, 2]))
    with pytest.raises(InvalidOTInputError, match="found label -1"):
        purify(images, text, torch.tensor([0, 1, -1, 0, 1, 2]))
    with pytest.raises(InvalidOTInputError, match="shape"):
        purify(images, text, labels[:4])
    with pytest.raises(InvalidOTInputError, match="embedding size"):
        purify(images, text[:, :5], labels)
    with pytest.raises(InvalidOTInputError, match="NaN/inf"):
        solve_sinkhorn(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(InvalidOTInputError, match="same total mass"):
        solve_sinkhorn(torch.rand(3, 2), b=torch.tensor([0.5, 0.6]))
    with pytest.raises(InvalidOTInputError, match="cost"):
        purify(images, text, labels, cost="l2")


def test_degenerate_plan_raises_instead_of_returning_zeros():
    # A column potential far off and no pass left to fix it: the plan's second column underflows to 0.
    M = torch.tensor([[0.0, 1.0]] * 4, dtype=torch.float64)
    with pytest.raises(DegeneratePlanError, match="degenerate") as info:
        solve_sinkhorn(M, reg=1e-4, max_iter=1, init_g=torch.zeros(2))
    assert isinstance(info.value, RuntimeError)


# --- purify --------------------------------------------------------------------------------------------------


def test_purify_clean_set_is_the_argmax_definition():
    images, text, labels = _features(600, 12, seed=8)
    noisy = labels.clone()
    noisy[:200] = (noisy[:200] + 1) % 12  # pair-flip a third of the labels
    out = purify(images, text, noisy)
    assert isinstance(out, PurificationResult) and out.converged
    plan = transport_plan(FeatureCost(images, text), reg=0.01)
    assert torch.equal(out.pseudo_labels, plan.argmax(1))
    assert torch.equal(out.clean_mask, plan.argmax(1) == noisy)
    expected_score = plan.gather(1, noisy[:, None]).squeeze(1) / plan.sum(1)
    torch.testing.assert_close(out.label_score, expected_score)
    # the split finds the flipped labels: the plan supports the given label less on them
    assert out.clean_mask[200:].float().mean() > out.clean_mask[:200].float().mean()
    assert out.label_score[:200].mean() < out.label_score[200:].mean()
    assert out.seconds > 0 and out.g.shape == (12,)


def test_purify_float32_features_and_neg_log_prob():
    images, text, labels = _features(200, 5, dtype=torch.float32)
    out = purify(images, text, labels, cost="neg_log_prob")
    assert out.converged and out.clean_mask.dtype == torch.bool and out.pseudo_labels.dtype == torch.long


# --- properties over random problems ------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 200),
    num_classes=st.integers(2, 50),
    log10_reg=st.floats(-3.0, 0.0),
    skew=st.sampled_from([0.0, 0.9, 1.0]),
    signal=st.sampled_from([0.5, 2.0, 10.0]),
    seed=st.integers(0, 2**16),
)
# the edges, always run: a single sample, two classes, all labels one class, N < C, ε = 0.001
@example(n=1, num_classes=2, log10_reg=-2.0, skew=0.0, signal=2.0, seed=0)
@example(n=1, num_classes=50, log10_reg=-3.0, skew=0.0, signal=0.5, seed=1)
@example(n=200, num_classes=2, log10_reg=-3.0, skew=1.0, signal=0.5, seed=2)
@example(n=7, num_classes=28, log10_reg=-2.0, skew=0.0, signal=2.0, seed=0)
@example(n=200, num_classes=50, log10_reg=-3.0, skew=0.9, signal=0.5, seed=3)
def test_properties_of_the_split(n, num_classes, log10_reg, skew, signal, seed):
    reg = 10.0**log10_reg
    images, text, labels = _features(n, num_classes, dim=16, seed=seed, signal=signal)
    gen = torch.Generator().manual_seed(seed + 1)
    if skew > 0:  # very imbalanced given labels: most (or all) samples labelled 0
        labels = torch.where(torch.rand(n, generator=gen) < skew, torch.zeros_like(labels), labels)
    out = purify(images, text, labels, reg=reg)
    assert out.converged and out.marginal_error < 1e-6
    assert out.clean_mask.shape == out.pseudo_labels.shape == out.label_score.shape == (n,)
    assert bool(((out.pseudo_labels >= 0) & (out.pseudo_labels < num_classes)).all())
    assert torch.equal(out.clean_mask, out.pseudo_labels == labels)
    assert bool(((out.label_score >= 0) & (out.label_score <= 1)).all())
    plan = transport_plan(
        FeatureCost(images, text), reg=reg, result=solve_sinkhorn(FeatureCost(images, text), reg=reg)
    )
    assert bool(torch.isfinite(plan).all())
    torch.testing.assert_close(
        plan.sum(1), torch.full((n,), 1 / n, dtype=torch.float64), atol=1e-12, rtol=1e-9
    )
    assert float((plan.sum(0) - 1 / num_classes).norm()) < 1e-6
