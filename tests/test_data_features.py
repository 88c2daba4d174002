import os

import pytest
import torch
from datasets import Dataset, Image
from safetensors import safe_open
from transformers import AutoImageProcessor, CLIPModel

from nlprompt_hf.data import (
    compute_image_features,
    default_feature_cache_dir,
    inject_label_noise,
    model_fingerprint,
    sample_fewshot,
)


@pytest.fixture
def model(tiny_clip_dir):
    return CLIPModel.from_pretrained(tiny_clip_dir)


@pytest.fixture
def processor(tiny_clip_dir):
    return AutoImageProcessor.from_pretrained(tiny_clip_dir, backend="pil")


def test_matches_get_image_features_and_is_cached(model, processor, tiny_image_dataset, tmp_path):
    train = tiny_image_dataset["train"]
    feats, info = compute_image_features(
        model, processor, train, batch_size=5, cache_dir=tmp_path, progress=False, return_info=True
    )
    assert not info.hit and not info.bypassed and os.path.isfile(info.path)
    assert feats.shape == (len(train), model.config.projection_dim)
    with torch.no_grad():
        pixels = processor(images=[im.convert("RGB") for im in train["image"]], return_tensors="pt")[
            "pixel_values"
        ]
        expected = model.get_image_features(pixel_values=pixels).pooler_output
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(feats.norm(dim=-1), torch.ones(len(train)))  # un-normalised

    again, info2 = compute_image_features(
        model, processor, train, cache_dir=tmp_path, progress=False, return_info=True
    )
    assert info2.hit and info2.key == info.key
    torch.testing.assert_close(again, feats)
    # safetensors on disk, no temporary files left behind
    with safe_open(info.path, framework="pt") as f:
        assert list(f.keys()) == ["features"] and f.metadata()["key"] == info.key
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []


def test_invalidated_by_vision_weights_not_by_text_weights(model, processor, tiny_image_dataset, tmp_path):
    train = tiny_image_dataset["train"]
    _, first = compute_image_features(
        model, processor, train, cache_dir=tmp_path, progress=False, return_info=True
    )
    with torch.no_grad():
        model.text_projection.weight.add_(1.0)  # the text tower does not change image features
    _, same = compute_image_features(
        model, processor, train, cache_dir=tmp_path, progress=False, return_info=True
    )
    assert same.hit
    before = model_fingerprint(model)
    with torch.no_grad():
        model.vision_model.encoder.layers[1].mlp.fc2.weight[3, 7] += 1e-3  # one weight, deep inside
    assert model_fingerprint(model) != before
    feats, changed = compute_image_features(
        model, processor, train, cache_dir=tmp_path, progress=False, return_info=True
    )
    assert not changed.hit and changed.key != first.key


def test_invalidated_by_preprocessing_and_dataset(
    model, processor, tiny_image_dataset, tmp_path, tiny_clip_dir
):
    train = tiny_image_dataset["train"]
    _, first = compute_image_features(
        model, processor, train, cache_dir=tmp_path, progress=False, return_info=True
    )
    other = AutoImageProcessor.from_pretrained(tiny_clip_dir, backend="pil", image_mean=[0.5, 0.5, 0.5])
    feats, info = compute_image_features(
        model, other, train, cache_dir=tmp_path, progress=False, return_info=True
    )
    assert not info.hit and info.key != first.key
    _, sub = compute_image_features(
        model, processor, train.select(range(8)), cache_dir=tmp_path, progress=False, return_info=True
    )
    assert not sub.hit and sub.key != first.key


def test_augmentation_bypasses_cache(model, processor, tiny_image_dataset, tmp_path):
    train = tiny_image_dataset["train"]
    cache = tmp_path / "cache"
    a, info = compute_image_features(
        model, processor, train, cache_dir=cache, progress=False, augment=True, seed=0, return_info=True
    )
    b = compute_image_features(model, processor, train, cache_dir=cache, progress=False, augment=True, seed=1)
    assert info.bypassed and not info.hit and info.path is None
    assert not cache.exists()  # nothing read, nothing written
    plain = compute_image_features(model, processor, train, cache_dir=tmp_path / "plain", progress=False)
    assert a.shape == plain.shape and not torch.allclose(a, b) and not torch.allclose(a, plain)


def test_real_noise_few_shot_flows_and_mode_restored(model, processor, tiny_image_dataset, tmp_path):
    real = inject_label_noise(tiny_image_dataset["train"], rate=0.0, kind="real", seed=0)
    few = sample_fewshot(real, shots=2, seed=0)
    model.train()
    feats, info = compute_image_features(
        model, processor, few, cache_dir=tmp_path, progress=False, return_info=True
    )
    assert feats.shape[0] == 8 and "clean_label" not in few.column_names
    assert model.training  # the caller's mode is restored
    assert compute_image_features(
        model, processor, few, cache_dir=tmp_path, return_info=True, progress=False
    )[1].hit


def test_unreadable_image_named(model, processor, tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG garbage")
    ds = Dataset.from_dict({"image": [str(bad)], "label": [0]}).cast_column("image", Image())
    with pytest.raises(ValueError, match=r"corrupt\.png.*row 0"):
        compute_image_features(model, processor, ds, cache_dir=tmp_path / "cache", progress=False)


def test_bad_arguments(model, processor, tiny_image_dataset):
    with pytest.raises(ValueError, match=r"image column named 'img'.*\['image', 'label'\]"):
        compute_image_features(
            model, processor, tiny_image_dataset["train"], image_column="img", use_cache=False
        )
    with pytest.raises(ValueError, match="get_image_features"):
        compute_image_features(torch.nn.Linear(2, 2), processor, tiny_image_dataset["train"], use_cache=False)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("NLPROMPT_HF_FEATURE_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert default_feature_cache_dir() == os.path.join(str(tmp_path), "nlprompt_hf", "features")
    monkeypatch.setenv("NLPROMPT_HF_FEATURE_CACHE", str(tmp_path / "feats"))
    assert default_feature_cache_dir() == str(tmp_path / "feats")


def test_rebuilt_pipeline_hits_the_cache(model, processor, tmp_path):
    """Fingerprints are content-derived: the same data, sampled and corrupted with the same seeds, is a hit."""
    from nlprompt_hf.data import add_sample_index
    from tests.tiny_clip import make_image_dataset

    def pipeline():
        train = make_image_dataset(n_per_class=6, num_classes=3, seed=0)["train"]
        few = sample_fewshot(train, shots=4, seed=0)
        return add_sample_index(inject_label_noise(few, rate=0.25, kind="symmetric", seed=0))

    _, first = compute_image_features(
        model, processor, pipeline(), cache_dir=tmp_path, progress=False, return_info=True
    )
    _, second = compute_image_features(
        model, processor, pipeline(), cache_dir=tmp_path, progress=False, return_info=True
    )
    assert not first.hit and second.hit
