"""Hand-computed values for the NLPrompt losses (https://arxiv.org/abs/2412.01256).

The example batch uses logits = log(p) so that softmax(logits) = p exactly:
    sample 0: p = [0.25, 0.75], given label 1
    sample 1: p = [0.25, 0.75], given label 0
    sample 2: p = [0.50, 0.50], given label 0
The expected numbers below are written out by hand (ln, sqrt), not recomputed with the loss formulas.
"""


import pytest
import torch

from nlprompt_hf.losses import cross_entropy_loss, gce_loss, mae_loss, split_loss

LOGITS = torch.log(torch.tensor([[0.25, 0.75], [0.25, 0.75], [0.5, 0.5]], dtype=torch.float64))
LABELS = torch.tensor([1, 0, 0])

# CE: -ln 0.75, ln 4, ln 2
CE = [0.2876820724517809, 1.3862943611198906, 0.6931471805599453]
# MAE: 1 - p_y
MAE = [0.25, 0.75, 0.5]
# GCE q = 0.5: (1 - sqrt(p_y)) / 0.5 -> 2 (1 - 0.8660254037844386), 2 (1 - 0.5), 2 (1 - 0.7071067811865476)
GCE_HALF = [0.2679491924311228, 1.0, 0.5857864376269049]


def test_cross_entropy_hand_values():
    torch.testing.assert_close(
        cross_entropy_loss(LOGITS, LABELS, reduction="none"), torch.tensor(CE, dtype=torch.float64)
    )
    assert cross_entropy_loss(LOGITS, LABELS).item() == pytest.approx(0.7890412047105389, abs=1e-12)
    assert cross_entropy_loss(LOGITS, LABELS, reduction="sum").item() == pytest.approx(
        2.3671236141316168, abs=1e-12
    )


def test_mae_hand_values_and_l1_identity():
    torch.testing.assert_close(
        mae_loss(LOGITS, LABELS, reduction="none"), torch.tensor(MAE, dtype=torch.float64)
    )
    assert mae_loss(LOGITS, LABELS).item() == pytest.approx(0.5, abs=1e-12)
    # 1 - p_y == 1/2 * ||p - onehot(y)||_1
    p = LOGITS.softmax(-1)
    half_l1 = 0.5 * (p - torch.nn.functional.one_hot(LABELS, 2)).abs().sum(-1)
    torch.testing.assert_close(mae_loss(LOGITS, LABELS, reduction="none"), half_l1)


def test_gce_hand_values_and_limits():
    torch.testing.assert_close(
        gce_loss(LOGITS, LABELS, q=0.5, reduction="none"), torch.tensor(GCE_HALF, dtype=torch.float64)
    )
    assert gce_loss(LOGITS, LABELS, q=0.5).item() == pytest.approx(0.6179118766860092, abs=1e-12)
    # q = 1 is MAE exactly; the reference's GCE(q=1) with p_y + 1e-6 only shifts it by a constant 1e-6.
    torch.testing.assert_close(
        gce_loss(LOGITS, LABELS, q=1.0, reduction="none"), torch.tensor(MAE, dtype=torch.float64)
    )
    # q -> 0 approaches CE
    torch.testing.assert_close(
        gce_loss(LOGITS, LABELS, q=1e-6, reduction="none"),
        torch.tensor(CE, dtype=torch.float64),
        atol=1e-5,
        rtol=0,
    )


def test_split_loss_hand_values():
    mask = torch.tensor([True, False, True])  # CE on samples 0 and 2, MAE on sample 1
    out = split_loss(LOGITS, LABELS, mask)
    # (0.2876820724517809 + 0.6931471805599453 + 0.75) / 3
    assert out.loss.item() == pytest.approx(0.5769430843372421, abs=1e-12)
    assert out.loss_ce.item() == pytest.approx(0.4904146265058631, abs=1e-12)  # (ln(4/3) + ln 2) / 2
    assert out.loss_mae.item() == pytest.approx(0.75, abs=1e-12)
    assert (out.num_clean, out.num_noisy) == (2, 1)
    # Trainer's num_items_in_batch under gradient accumulation
    assert split_loss(LOGITS, LABELS, mask, normalizer=6).loss.item() == pytest.approx(
        0.28847154216862105, abs=1e-12
    )
    # GCE as the noisy part
    gce_out = split_loss(LOGITS, LABELS, mask, noisy_loss="gce", gce_q=0.5)
    assert gce_out.loss.item() == pytest.approx(
        (0.2876820724517809 + 0.6931471805599453 + 1.0) / 3, abs=1e-12
    )


def test_split_loss_gradient_is_ce_on_clean_and_mae_on_noisy():
    logits = LOGITS.clone().requires_grad_(True)
    split_loss(logits, LABELS, torch.tensor([True, False, True])).loss.backward()
    # d CE / d logits = (p - onehot) / B; d MAE / d logits = -p_y (onehot - p) / B
    expected = (
        torch.tensor([[0.25, -0.25], [-0.25 * 0.75, 0.25 * 0.75], [-0.5, 0.5]], dtype=torch.float64) / 3
    )
    torch.testing.assert_close(logits.grad, expected)


@pytest.mark.parametrize("mask", [[True, True, True], [False, False, False]])
def test_split_loss_empty_part_is_zero_not_nan(mask):
    out = split_loss(LOGITS, LABELS, torch.tensor(mask))
    assert torch.isfinite(out.loss)
    if all(mask):
        assert out.loss.item() == pytest.approx(0.7890412047105389, abs=1e-12)
        assert out.loss_mae.item() == 0.0 and out.num_noisy == 0
    else:
        assert out.loss.item() == pytest.approx(0.5, abs=1e-12)
        assert out.loss_ce.item() == 0.0 and out.num_clean == 0


def test_empty_batch_gives_zero():
    logits = torch.zeros(0, 3, requires_grad=True)
    labels = torch.zeros(0, dtype=torch.long)
    out = split_loss(logits, labels, torch.zeros(0, dtype=torch.bool))
    assert out.loss.item() == 0.0 and not torch.isnan(out.loss_ce) and not torch.isnan(out.loss_mae)
    out.loss.backward()
    for fn in (cross_entropy_loss, mae_loss, gce_loss):
        assert fn(logits, labels).item() == 0.0


def test_losses_are_stable_for_extreme_logits():
    logits = torch.tensor([[1000.0, -1000.0]])
    assert cross_entropy_loss(logits, torch.tensor([1])).item() == pytest.approx(2000.0)
    assert mae_loss(logits, torch.tensor([1])).item() == pytest.approx(1.0)
    assert mae_loss(logits, torch.tensor([0])).item() == pytest.approx(0.0)


def test_half_precision_logits_are_upcast():
    logits = LOGITS.to(torch.bfloat16)
    assert cross_entropy_loss(logits, LABELS).dtype == torch.float32


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"in \[0, 2\).*found label 2"):
        mae_loss(LOGITS, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="found label -1"):
        cross_entropy_loss(LOGITS, torch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match="integer class indices"):
        cross_entropy_loss(LOGITS, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy_loss(LOGITS, LABELS, reduction="avg")
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        mae_loss(LOGITS, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="q"):
        gce_loss(LOGITS, LABELS, q=0.0)
    with pytest.raises(ValueError, match="bool"):
        split_loss(LOGITS, LABELS, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="clean_mask"):
        split_loss(LOGITS, LABELS, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="noisy_loss"):
        split_loss(LOGITS, LABELS, torch.tensor([True, False, True]), noisy_loss="l2")
