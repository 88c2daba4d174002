import random

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlprompt_hf.data import add_sample_index, inject_label_noise, noise_report, sample_fewshot


def labels_dataset(labels, num_classes, names=None):
    feature = ClassLabel(names=names) if names else ClassLabel(num_classes=num_classes)
    return Dataset.from_dict(
        {"x": list(range(len(labels))), "label": list(labels)},
        features=Features({"x": Value("int64"), "label": feature}),
    )


def balanced(num_classes=5, per_class=16):
    return labels_dataset([c for c in range(num_classes) for _ in range(per_class)], num_classes)


def arrays(ds):
    return np.array(ds["label"]), np.array(ds["clean_label"]), np.array(ds["is_noisy"])


# --- symmetric / asymmetric -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.125, 0.25, 0.5, 0.75])
@pytest.mark.parametrize("kind", ["symmetric", "asymmetric"])
def test_exact_noisy_count(kind, rate):
    ds = balanced()
    noisy, clean, flag = arrays(inject_label_noise(ds, rate=rate, kind=kind, seed=0))
    assert flag.sum() == int(rate * len(ds))
    assert (noisy != clean).sum() == int(rate * len(ds))
    np.testing.assert_array_equal(clean, np.array(ds["label"]))


def test_floor_is_robust_to_float_error():
    # 0.29 * 100 = 28.999999999999996 in floating point; the protocol says floor(r * N) = 29
    ds = labels_dataset([i % 4 for i in range(100)], 4)
    assert sum(inject_label_noise(ds, rate=0.29, kind="symmetric", seed=0)["is_noisy"]) == 29


def test_symmetric_never_keeps_true_label_and_reaches_every_other_class():
    ds = balanced(num_classes=4, per_class=200)
    noisy, clean, flag = arrays(inject_label_noise(ds, rate=0.6, kind="symmetric", seed=3))
    assert np.all(noisy[flag] != clean[flag])
    assert np.all(noisy[~flag] == clean[~flag])
    for c in range(4):
        targets = set(noisy[flag & (clean == c)].tolist())
        assert targets == set(range(4)) - {c}


def test_asymmetric_maps_to_next_class():
    ds = balanced(num_classes=3)
    noisy, clean, flag = arrays(inject_label_noise(ds, rate=0.5, kind="asymmetric", seed=0))
    np.testing.assert_array_equal(noisy[flag], (clean[flag] + 1) % 3)
    np.testing.assert_array_equal(noisy[~flag], clean[~flag])


def test_keeps_other_columns_and_class_names():
    ds = labels_dataset([0, 1, 2, 0, 1, 2], 3, names=["cat", "dog", "owl"])
    out = inject_label_noise(ds, rate=0.5, kind="symmetric", seed=0)
    assert out["x"] == ds["x"]
    assert out.features["label"].names == ["cat", "dog", "owl"]
    assert out.features["clean_label"].names == ["cat", "dog", "owl"]
    assert "clean_label" not in ds.column_names  # the input is untouched


def test_rate_zero_is_clean():
    noisy, clean, flag = arrays(inject_label_noise(balanced(), rate=0.0, kind="symmetric", seed=0))
    assert not flag.any() and np.array_equal(noisy, clean)


# --- seeds and global state -------------------------------------------------------------------------------------


def test_same_seed_same_dataset_different_seed_different():
    ds = balanced()
    a = inject_label_noise(ds, rate=0.5, kind="symmetric", seed=7)
    b = inject_label_noise(ds, rate=0.5, kind="symmetric", seed=7)
    c = inject_label_noise(ds, rate=0.5, kind="symmetric", seed=8)
    assert a["label"] == b["label"] and a["is_noisy"] == b["is_noisy"]
    assert a._fingerprint == b._fingerprint
    assert a["label"] != c["label"]


def test_seed_zero_is_honoured():
    ds = balanced()
    zero = [inject_label_noise(ds, rate=0.5, kind="symmetric", seed=0)["label"] for _ in range(2)]
    one = inject_label_noise(ds, rate=0.5, kind="symmetric", seed=1)["label"]
    assert zero[0] == zero[1]
    assert zero[0] != one
    # not "no seed": seed=None is refused rather than silently unseeded
    with pytest.raises(ValueError, match="integer `seed`"):
        inject_label_noise(ds, rate=0.5, kind="symmetric", seed=None)


def test_global_random_state_untouched():
    random.seed(123)
    np.random.seed(123)
    before_py, before_np = random.getstate(), np.random.get_state()
    ds = balanced()
    few = sample_fewshot(ds, shots=4, seed=0)
    inject_label_noise(few, rate=0.5, kind="symmetric", seed=0)
    inject_label_noise(few, rate=0.5, kind="k_wrong_shots", seed=0)
    assert random.getstate() == before_py
    after_np = np.random.get_state()
    assert (
        before_np[0] == after_np[0]
        and np.array_equal(before_np[1], after_np[1])
        and before_np[2:] == after_np[2:]
    )


# --- pairflip / instance / k_wrong_shots / real ------------------------------------------------------------------


def test_pairflip_uses_class_map_by_id_and_name():
    ds = labels_dataset([c for c in range(4) for _ in range(10)], 4, names=["a", "b", "c", "d"])
    out = inject_label_noise(ds, rate=0.5, kind="pairflip", seed=0, class_map={"a": "c", 1: 3})
    noisy, clean, flag = arrays(out)
    assert flag.sum() == 10  # floor(0.5 * 20 rows of the mapped classes a and b)
    assert set(np.unique(clean[flag]).tolist()) <= {0, 1}
    np.testing.assert_array_equal(noisy[flag], np.where(clean[flag] == 0, 2, 3))
    assert not flag[np.isin(clean, [2, 3])].any()


def test_instance_flips_to_most_similar_other_class():
    rng = np.random.default_rng(0)
    ds = balanced(num_classes=4, per_class=10)
    clean = np.array(ds["label"])
    sim = rng.normal(size=(40, 4))
    sim[np.arange(40), clean] = 10.0  # the true class is always the most similar: must never be chosen
    out = inject_label_noise(ds, rate=0.5, kind="instance", seed=0, similarity=sim)
    noisy, _, flag = arrays(out)
    assert flag.sum() == 20
    masked = sim.copy()
    masked[np.arange(40), clean] = -np.inf
    np.testing.assert_array_equal(noisy[flag], masked[flag].argmax(axis=1))


def test_instance_accepts_torch_and_checks_shape():
    import torch

    ds = balanced(num_classes=3, per_class=4)
    out = inject_label_noise(ds, rate=0.25, kind="instance", seed=0, similarity=torch.rand(12, 3))
    assert sum(out["is_noisy"]) == 3
    with pytest.raises(ValueError, match=r"shape \(N, C\) = \(12, 3\).*\(12, 4\)"):
        inject_label_noise(ds, rate=0.25, kind="instance", seed=0, similarity=np.zeros((12, 4)))
    with pytest.raises(ValueError, match="needs `similarity`"):
        inject_label_noise(ds, rate=0.25, kind="instance", seed=0)


@pytest.mark.parametrize("k", [0, 2, 4, 8])
def test_k_wrong_shots_uniform(k):
    ds = sample_fewshot(balanced(num_classes=6, per_class=20), shots=16, seed=0)
    noisy, clean, flag = arrays(
        inject_label_noise(ds, rate=0.0, kind="k_wrong_shots", seed=0, num_wrong_shots=k)
    )
    for c in range(6):
        assert flag[clean == c].sum() == k  # k of its 16 shots are relabelled
        assert (noisy == c).sum() == 16  # every class keeps 16 labelled rows...
        assert ((noisy == c) & flag).sum() == k  # ...of which exactly k are wrong
    assert np.all(noisy[flag] != clean[flag])


def test_k_wrong_shots_from_rate_and_next():
    ds = balanced(num_classes=4, per_class=16)
    by_rate = inject_label_noise(ds, rate=0.25, kind="k_wrong_shots", seed=0)
    assert noise_report(by_rate)["per_class"][0]["noisy_count"] == 4
    noisy, clean, flag = arrays(
        inject_label_noise(ds, rate=0.5, kind="k_wrong_shots", seed=0, wrong_label="next")
    )
    np.testing.assert_array_equal(noisy[flag], (clean[flag] + 1) % 4)
    assert all(flag[clean == c].sum() == 8 for c in range(4))


def test_k_wrong_shots_too_many():
    ds = labels_dataset([0] * 16 + [1] * 3, 2)
    with pytest.raises(ValueError, match=r"num_wrong_shots=4.*class 1 .*has only 3 rows"):
        inject_label_noise(ds, rate=0.0, kind="k_wrong_shots", seed=0, num_wrong_shots=4)


def test_real_noise_has_no_clean_label():
    ds = balanced()
    out = inject_label_noise(ds, rate=0.0, kind="real", seed=0)
    assert "clean_label" not in out.column_names and "is_noisy" not in out.column_names
    assert out["label"] == ds["label"]
    report = noise_report(out)
    assert report["realised_rate"] is None and report["transition_matrix"] is None
    assert [p["given_count"] for p in report["per_class"]] == [16] * 5
    with pytest.raises(ValueError, match="adds no synthetic noise"):
        inject_label_noise(ds, rate=0.2, kind="real", seed=0)


# --- report and sample index ------------------------------------------------------------------------------------


def test_noise_report_transition_matrix():
    ds = balanced(num_classes=3, per_class=8)
    out = inject_label_noise(ds, rate=0.5, kind="asymmetric", seed=0)
    report = noise_report(out)
    assert (
        report["requested_rate"] == 0.5 and report["realised_rate"] == 0.5 and report["kind"] == "asymmetric"
    )
    matrix = np.array(report["transition_matrix"])
    assert matrix.sum() == 24 and np.trace(matrix) == 12
    noisy, clean, _ = arrays(out)
    for i in range(3):
        for j in range(3):
            assert matrix[i, j] == ((clean == i) & (noisy == j)).sum()
    assert [p["clean_count"] for p in report["per_class"]] == [8, 8, 8]
    assert sum(p["noisy_count"] for p in report["per_class"]) == 12


def test_add_sample_index_once():
    ds = add_sample_index(inject_label_noise(balanced(), rate=0.25, kind="symmetric", seed=0))
    assert ds["sample_idx"] == list(range(80))
    assert add_sample_index(ds) is ds
    with pytest.raises(ValueError, match="not a permutation"):
        add_sample_index(ds.select([0, 5, 9]))


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), "0.5"])
def test_rate_outside_unit_interval(rate):
    with pytest.raises(ValueError, match=r"rate` in \[0, 1\).*got"):
        inject_label_noise(balanced(), rate=rate, kind="symmetric", seed=0)


def test_asymmetric_needs_two_classes():
    ds = labels_dataset([0, 0, 0, 0], 1)
    with pytest.raises(ValueError, match=r"at least 2 classes.*num_classes=1"):
        inject_label_noise(ds, rate=0.5, kind="asymmetric", seed=0)


def test_label_outside_range():
    ds = Dataset.from_dict({"label": [0, 1, 5]})
    with pytest.raises(ValueError, match=r"labels in \[0, 3\).*row 2 has label 5"):
        inject_label_noise(ds, rate=0.5, kind="symmetric", seed=0, num_classes=3)


def test_missing_label_column():
    ds = Dataset.from_dict({"target": [0, 1]})
    with pytest.raises(ValueError, match=r"label column named 'label'.*\['target'\].*label_column="):
        inject_label_noise(ds, rate=0.5, kind="symmetric", seed=0, num_classes=2)


def test_unknown_kind_and_double_injection():
    ds = balanced()
    with pytest.raises(ValueError, match="one of .*symmetric.*got 'sym'"):
        inject_label_noise(ds, rate=0.5, kind="sym", seed=0)
    once = inject_label_noise(ds, rate=0.5, kind="symmetric", seed=0)
    with pytest.raises(ValueError, match="already"):
        inject_label_noise(once, rate=0.5, kind="symmetric", seed=0)


def test_pairflip_bad_map():
    ds = balanced(num_classes=3)
    with pytest.raises(ValueError, match="needs `class_map`"):
        inject_label_noise(ds, rate=0.5, kind="pairflip", seed=0)
    with pytest.raises(ValueError, match="to itself"):
        inject_label_noise(ds, rate=0.5, kind="pairflip", seed=0, class_map={1: 1})
    with pytest.raises(ValueError, match=r"class id in \[0, 3\).*got 7"):
        inject_label_noise(ds, rate=0.5, kind="pairflip", seed=0, class_map={0: 7})


# --- properties -------------------------------------------------------------------------------------------------


@st.composite
def noisy_setups(draw):
    num_classes = draw(st.integers(2, 8))
    n = draw(st.integers(1, 60))
    # very imbalanced allowed: labels drawn from a skewed distribution, some classes possibly absent
    weights = draw(st.lists(st.floats(0.01, 1.0), min_size=num_classes, max_size=num_classes))
    seed = draw(st.integers(0, 2**16))
    p = np.array(weights) / sum(weights)
    labels = np.random.default_rng(seed).choice(num_classes, size=n, p=p)
    rate = draw(st.floats(0.0, 0.999))
    return labels, num_classes, rate, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noisy_setups(), st.sampled_from(["symmetric", "asymmetric"]))
def test_noise_invariants(setup, kind):
    labels, num_classes, rate, seed = setup
    ds = labels_dataset(labels, num_classes)
    noisy, clean, flag = arrays(inject_label_noise(ds, rate=rate, kind=kind, seed=seed))
    n = len(labels)
    assert flag.sum() == int(np.floor(round(rate * n, 9)))
    np.testing.assert_array_equal(clean, labels)
    assert np.all((noisy >= 0) & (noisy < num_classes))
    np.testing.assert_array_equal(flag, noisy != clean)
    if kind == "asymmetric":
        np.testing.assert_array_equal(noisy[flag], (clean[flag] + 1) % num_classes)
    report = noise_report(inject_label_noise(ds, rate=rate, kind=kind, seed=seed))
    assert np.array(report["transition_matrix"]).sum() == n
    assert report["num_noisy"] == flag.sum()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 7), st.integers(1, 12), st.data())
def test_k_wrong_shots_invariants(num_classes, shots, data):
    k = data.draw(st.integers(0, shots))
    seed = data.draw(st.integers(0, 1000))
    ds = balanced(num_classes=num_classes, per_class=shots)
    noisy, clean, flag = arrays(
        inject_label_noise(ds, rate=0.0, kind="k_wrong_shots", seed=seed, num_wrong_shots=k)
    )
    assert np.all(noisy[flag] != clean[flag])
    for c in range(num_classes):
        assert flag[clean == c].sum() == k
        assert (noisy == c).sum() == shots


def test_single_row_and_two_classes_edge_cases():
    one = labels_dataset([1], 2)
    assert (
        sum(inject_label_noise(one, rate=0.99, kind="symmetric", seed=0)["is_noisy"]) == 0
    )  # floor(0.99) = 0
    two = labels_dataset([0, 1], 2)
    noisy, clean, flag = arrays(inject_label_noise(two, rate=0.5, kind="symmetric", seed=0))
    assert flag.sum() == 1 and np.all(noisy[flag] == 1 - clean[flag])
