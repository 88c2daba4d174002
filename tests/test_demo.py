"""The demo corpus generator, the demo tokenizer, the demo task and the shipped demo checkpoint."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlprompt_hf.demo import DEMO_CHECKPOINT, SHAPES, ZERO_SHOT_TEMPLATE, generate_corpus, load_demo_task
from nlprompt_hf.demo.shapes import DEMO_SHIFTS, TRAIN_TEMPLATES, caption_vocabulary, make_demo_task
from nlprompt_hf.demo.tokenizer import build_demo_tokenizer, bytes_to_unicode, control_byte_token_ids


@pytest.fixture(scope="module")
def tokenizer():
    return build_demo_tokenizer()


def test_generator_is_deterministic_per_seed():
    images_a, captions_a, shapes_a = generate_corpus(40, seed=0)
    images_b, captions_b, shapes_b = generate_corpus(40, seed=0)
    np.testing.assert_array_equal(images_a, images_b)
    np.testing.assert_array_equal(shapes_a, shapes_b)
    assert captions_a == captions_b
    images_c, captions_c, _ = generate_corpus(40, seed=1)
    assert not np.array_equal(images_a, images_c)
    assert captions_a != captions_c


@pytest.mark.parametrize("shift", list(DEMO_SHIFTS))
def test_generator_shapes_and_labels(shift):
    images, captions, shape_ids = generate_corpus(30, seed=3, **DEMO_SHIFTS[shift])
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.uint8
    assert shape_ids.shape == (30,) and shape_ids.min() >= 0 and shape_ids.max() < len(SHAPES)
    # Every caption names its image's shape.
    for caption, shape in zip(captions, shape_ids):
        assert SHAPES[shape] in caption.rstrip(".").split()
    # Not blank: each image has both the shape and the background in it.
    assert (images.reshape(30, -1).std(axis=1) > 5).all()


def test_generator_honours_given_shapes_and_rejects_bad_arguments():
    _, _, shape_ids = generate_corpus(10, seed=0, shapes=np.arange(10))
    np.testing.assert_array_equal(shape_ids, np.arange(10))
    with pytest.raises(ValueError, match="`shapes` must hold 3 ids"):
        generate_corpus(3, seed=0, shapes=[0, 1, 10])
    with pytest.raises(ValueError, match="`style` must be one of"):
        generate_corpus(3, seed=0, style="dotted")
    with pytest.raises(ValueError, match="`background_probs` must have one probability"):
        generate_corpus(3, seed=0, backgrounds=("plain",), background_probs=(0.5, 0.5))


def test_zero_shot_prompt_is_held_out_of_pretraining_captions():
    assert all("photo" not in template for template in TRAIN_TEMPLATES)


def test_demo_task_features_and_sizes():
    task = load_demo_task(train_per_class=3, test_size=20)
    assert set(task) == {"train", "test"}
    assert task["train"].num_rows == 3 * len(SHAPES) and task["test"].num_rows == 20
    assert task["train"].features["label"].names == list(SHAPES)
    assert type(task["train"].features["image"]).__name__ == "Image"
    assert np.bincount(task["train"]["label"], minlength=len(SHAPES)).tolist() == [3] * len(SHAPES)
    assert task["test"][0]["image"].size == (32, 32)
    # The task's images come from held-out seeds, not the pretraining corpus (seed 0).
    pretrain_images, _, _ = generate_corpus(30, seed=0, shapes=np.repeat(np.arange(10), 3))
    first = np.asarray(make_demo_task(train_per_class=3, test_size=5, shift="none")["train"][0]["image"])
    assert not np.array_equal(first, pretrain_images[0])
    with pytest.raises(ValueError, match="`shift` must be one of"):
        make_demo_task(shift="sepia")


def test_tokenizer_caption_words_are_single_tokens(tokenizer):
    for word in caption_vocabulary():
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    ids = tokenizer(ZERO_SHOT_TEMPLATE.format("hexagon"))["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == 8  # start, a, photo, of, a, hexagon, ".", end


def test_tokenizer_layout(tokenizer):
    vocab = tokenizer.get_vocab()
    assert tokenizer.eos_token_id == len(vocab) - 1 == max(vocab.values())
    assert tokenizer.bos_token_id == len(vocab) - 2
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    symbols = list(bytes_to_unicode().values())
    assert [vocab[s] for s in symbols] == list(range(256))
    assert [vocab[s + "</w>"] for s in symbols] == list(range(256, 512))
    # Arbitrary text still tokenizes (byte fallback), and caption text never hits control bytes.
    ids = tokenizer("zebra café 42")["input_ids"]
    assert tokenizer.unk_token_id not in ids[1:-1]
    controls = set(control_byte_token_ids().values())
    assert len(controls) == 65 and min(controls) == 188
    _, captions, _ = generate_corpus(50, seed=0)
    assert not controls & {i for c in captions for i in tokenizer(c)["input_ids"]}


@pytest.mark.demo
@pytest.mark.skipif(not os.path.isdir(DEMO_CHECKPOINT), reason="demo checkpoint not shipped")
def test_shipped_checkpoint_loads_offline_and_beats_chance(monkeypatch):
    from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    size = sum(os.path.getsize(os.path.join(DEMO_CHECKPOINT, f)) for f in os.listdir(DEMO_CHECKPOINT))
    assert size <= 20 * 2**20
    model = CLIPModel.from_pretrained(DEMO_CHECKPOINT).eval()
    tokenizer = CLIPTokenizer.from_pretrained(DEMO_CHECKPOINT)
    processor = AutoImageProcessor.from_pretrained(DEMO_CHECKPOINT, backend="pil")
    assert model.dtype == torch.float32
    assert model.config.text_config.eos_token_id == tokenizer.eos_token_id == len(tokenizer) - 1
    assert model.config.text_config.bos_token_id == tokenizer.bos_token_id

    test = load_demo_task(train_per_class=1, test_size=200)["test"]
    pixels = processor(images=list(test["image"]), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (200, 3, 32, 32)
    text = tokenizer([ZERO_SHOT_TEMPLATE.format(name) for name in SHAPES], padding=True, return_tensors="pt")
    with torch.no_grad():
        image_emb = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        text_emb = F.normalize(model.get_text_features(**text).pooler_output, dim=-1)
    accuracy = ((image_emb @ text_emb.T).argmax(-1) == torch.tensor(list(test["label"]))).float().mean().item()
    assert accuracy > 0.3  # chance is 0.1
