import logging
import random

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from nlprompt_hf.data import inject_label_noise, sample_fewshot


def pool(counts, names=None):
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    feature = ClassLabel(names=names) if names else ClassLabel(num_classes=len(counts))
    return Dataset.from_dict(
        {"idx": list(range(len(labels))), "label": labels},
        features=Features({"idx": Value("int64"), "label": feature}),
    )


def test_k_per_class_without_replacement():
    few = sample_fewshot(pool([20, 30, 25]), shots=8, seed=0)
    assert np.bincount(few["label"]).tolist() == [8, 8, 8]
    assert len(set(few["idx"])) == 24
    assert few["idx"] == sorted(few["idx"])  # original order kept


def test_seeded_and_seed_zero_honoured():
    ds = pool([20, 20])
    a, b = sample_fewshot(ds, 4, seed=0)["idx"], sample_fewshot(ds, 4, seed=0)["idx"]
    c = sample_fewshot(ds, 4, seed=1)["idx"]
    assert a == b and a != c


def test_global_state_untouched():
    random.seed(0)
    np.random.seed(0)
    expected_py, expected_np = random.random(), np.random.rand()
    random.seed(0)
    np.random.seed(0)
    sample_fewshot(pool([10, 10]), 4, seed=3)
    assert random.random() == expected_py and np.random.rand() == expected_np


def test_too_few_raises_naming_class_count_and_k():
    ds = pool([10, 3, 10], names=["cat", "dog", "owl"])
    with pytest.raises(ValueError, match=r"shots=4.*class 1 \('dog'\) has 3.*allow_fewer=True"):
        sample_fewshot(ds, shots=4, seed=0)


def test_declared_class_without_examples_is_reported():
    ds = Dataset.from_dict({"label": [0, 0, 0]}, features=Features({"label": ClassLabel(names=["a", "b"])}))
    with pytest.raises(ValueError, match=r"class 1 \('b'\) has 0"):
        sample_fewshot(ds, shots=2, seed=0)


def test_allow_fewer_takes_all_and_warns(caplog):
    ds = pool([10, 3, 10])
    with caplog.at_level(logging.WARNING, logger="nlprompt_hf.data.fewshot"):
        few = sample_fewshot(ds, shots=4, seed=0, allow_fewer=True)
    assert np.bincount(few["label"]).tolist() == [4, 3, 4]
    assert "allow_fewer=True" in caplog.text and "has 3" in caplog.text


def test_bad_arguments():
    ds = pool([5, 5])
    with pytest.raises(ValueError, match="positive integer.*got 0"):
        sample_fewshot(ds, shots=0, seed=0)
    with pytest.raises(ValueError, match=r"label column named 'target'.*\['idx', 'label'\]"):
        sample_fewshot(ds, shots=2, seed=0, label_column="target")


def test_fewshot_then_noise_then_real_noise_flows():
    ds = pool([20, 20, 20])
    few = sample_fewshot(ds, shots=16, seed=0)
    noisy = inject_label_noise(few, rate=0.25, kind="symmetric", seed=0)
    assert sum(noisy["is_noisy"]) == 12
    # real-noise data (no clean_label) samples the same way, on the labels as given
    real = inject_label_noise(ds, rate=0.0, kind="real", seed=0)
    few_real = sample_fewshot(real, shots=4, seed=0)
    assert "clean_label" not in few_real.column_names and len(few_real) == 12
