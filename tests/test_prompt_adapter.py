import json
import os

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import CLIPModel

from nlprompt_hf.prompt_adapter import NLPromptModel, PromptAdapterConfig
from tests.tiny_clip import make_images

NAMES = ["red square", "green_circle", "blue bar"]


def _model(path, **kwargs):
    return NLPromptModel.from_base(path, NAMES, **kwargs)


def _images(n=6, seed=0):
    return make_images([i % 3 for i in range(n)], seed=seed)


def test_only_context_is_trainable(tiny_clip_dir):
    model = _model(tiny_clip_dir, n_ctx=4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0].endswith("trainable_tokens_delta.default")
    assert model.num_trainable_parameters() == 4 * 64
    assert model.context_parameter.shape == (4, 64)


def test_optimizer_step_changes_only_context(any_tiny_clip_dir):
    model = _model(any_tiny_clip_dir, n_ctx=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    pixels = model.preprocess(_images())
    for _ in range(3):
        out = model(pixel_values=pixels)
        loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0, 1, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed == [n for n, p in model.named_parameters() if p.requires_grad]
    # The frozen CLIP outside peft's wrapper is bit-identical to the checkpoint on disk.
    fresh = CLIPModel.from_pretrained(any_tiny_clip_dir).state_dict()
    for name, tensor in model.clip.state_dict().items():
        if "trainable_tokens" in name:
            continue
        key = name.replace("token_embedding.base_layer.", "token_embedding.")
        assert torch.equal(tensor, fresh[key]), name


def test_context_changes_prompt_features(tiny_clip_dir):
    model = _model(tiny_clip_dir, n_ctx=4)
    a = model.text_features().detach()
    with torch.no_grad():
        model.context_parameter.add_(0.5)
    assert not torch.allclose(a, model.text_features())


def test_prompt_layouts(tiny_clip_dir):
    for position in ("end", "middle", "front"):
        model = _model(tiny_clip_dir, n_ctx=4, class_position=position)
        ids = model.config.prompt_input_ids
        ctx = model.config.placeholder_token_ids
        name = model.tokenizer("green circle", add_special_tokens=False)["input_ids"]
        row = ids[1]
        assert row[0] == model.tokenizer.bos_token_id and model.tokenizer.eos_token_id in row
        body = row[1 : row.index(model.tokenizer.eos_token_id) - 1]
        expected = {"end": ctx + name, "front": name + ctx, "middle": ctx[:2] + name + ctx[2:]}[position]
        assert body == expected
    assert model.config.class_names[1] == "green circle"  # underscores become spaces


def test_class_specific_context(tiny_clip_dir):
    model = _model(tiny_clip_dir, n_ctx=2, class_specific=True)
    assert model.context_parameter.shape == (6, 64)
    assert len(set(model.config.placeholder_token_ids)) == 6
    ids = model.config.prompt_input_ids
    assert ids[0][1:3] != ids[1][1:3]


def test_word_init_uses_word_embeddings(tiny_clip_dir):
    model = _model(tiny_clip_dir, ctx_init="a photo of a")
    words = model.tokenizer("a photo of a", add_special_tokens=False)["input_ids"]
    assert model.config.n_ctx == len(words)
    base = model.clip.text_model.embeddings.token_embedding.base_layer.weight
    assert torch.equal(model.context_parameter.detach(), base[words])
    with pytest.raises(ValueError, match="n_ctx=3 but ctx_init"):
        _model(tiny_clip_dir, ctx_init="a photo of a", n_ctx=3)


def test_random_init_is_seeded(tiny_clip_dir):
    a = _model(tiny_clip_dir, n_ctx=4, init_seed=0).context_parameter.detach()
    b = _model(tiny_clip_dir, n_ctx=4, init_seed=0).context_parameter.detach()
    c = _model(tiny_clip_dir, n_ctx=4, init_seed=1).context_parameter.detach()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.01 < a.std().item() < 0.04


def test_logits_match_clip_formula(tiny_clip_dir):
    model = _model(tiny_clip_dir, n_ctx=4)
    pixels = model.preprocess(_images())
    with torch.no_grad():
        out = model(pixel_values=pixels)
        img = model.clip.get_image_features(pixel_values=pixels).pooler_output
        txt = model.clip.get_text_features(
            input_ids=model.prompt_input_ids, attention_mask=model.prompt_attention_mask
        ).pooler_output
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        expected = model.clip.logit_scale.exp() * img @ txt.t()
        from_cache = model(image_embeds=model.encode_images(pixels)).logits
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(from_cache, out.logits)


def test_zero_shot_equals_clip_logits_per_image(any_tiny_clip_dir):
    model = _model(any_tiny_clip_dir, n_ctx=4)
    images = _images()
    pixels = model.preprocess(images)
    with torch.no_grad():
        model.context_parameter.add_(1.0)  # the adapter must not leak into zero-shot
        ours = model.zero_shot_logits(model.encode_images(pixels))
    clip = CLIPModel.from_pretrained(any_tiny_clip_dir)
    texts = [f"a photo of a {n}." for n in model.class_names]
    tokens = model.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = clip(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels)
    torch.testing.assert_close(ours, ref.logits_per_image)


def test_predict(tiny_clip_dir):
    model = _model(tiny_clip_dir, n_ctx=4)
    images = _images(5)
    images[0] = images[0].convert("L")  # grayscale is converted, not an error
    pred = model.predict(images, batch_size=2)
    assert pred.probabilities.shape == (5, 3)
    torch.testing.assert_close(pred.probabilities.sum(-1), torch.ones(5))
    assert pred.labels == [NAMES[i].replace("_", " ") for i in pred.label_ids.tolist()]
    pixels = model.preprocess(_images(5))
    assert model.predict(pixels).probabilities.shape == (5, 3)


def test_save_reload_identical_logits(any_tiny_clip_dir, tmp_path):
    model = _model(any_tiny_clip_dir, n_ctx=4, class_position="middle")
    with torch.no_grad():
        model.context_parameter.normal_()
    model.save_pretrained(tmp_path)
    assert {"adapter_config.json", "adapter_model.safetensors", "prompt_config.json"} <= set(os.listdir(tmp_path))
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert len(saved) == 1 and next(iter(saved.values())).shape == (4, 64)  # only the context, never CLIP
    reloaded = NLPromptModel.from_pretrained(tmp_path)
    pixels = model.preprocess(_images())
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits, rtol=0, atol=0)
    assert reloaded.config.to_dict() == model.config.to_dict()


def test_plain_peft_load_gives_same_logits(any_tiny_clip_dir, tmp_path):
    model = _model(any_tiny_clip_dir, n_ctx=4)
    with torch.no_grad():
        model.context_parameter.normal_()
    model.save_pretrained(tmp_path)
    prompt = json.loads((tmp_path / "prompt_config.json").read_text())
    peft_model = PeftModel.from_pretrained(CLIPModel.from_pretrained(any_tiny_clip_dir), str(tmp_path))
    pixels = model.preprocess(_images())
    with torch.no_grad():
        out = peft_model(
            input_ids=torch.tensor(prompt["prompt_input_ids"]),
            attention_mask=torch.tensor(prompt["prompt_attention_mask"]),
            pixel_values=pixels,
        )
        torch.testing.assert_close(out.logits_per_image, model(pixel_values=pixels).logits)


def test_push_to_hub_sends_adapter_config_and_card(tiny_clip_dir, monkeypatch):
    import huggingface_hub

    sent = {}

    def fake_create_repo(self, repo_id, **kwargs):
        sent["created"] = repo_id
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        sent["repo_id"] = repo_id
        sent["files"] = {name: open(os.path.join(folder_path, name), "rb").read() for name in os.listdir(folder_path)}
        return "commit"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    model = _model(tiny_clip_dir, n_ctx=4)
    assert model.push_to_hub("me/prompts") == "commit"
    assert sent["created"] == "me/prompts" and sent["repo_id"] == "me/prompts"
    assert {"adapter_config.json", "adapter_model.safetensors", "prompt_config.json", "README.md"} <= set(sent["files"])
    card = sent["files"]["README.md"].decode()
    assert tiny_clip_dir in card and "2412.01256" in card and "library_name: peft" in card


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_ctx=0), "n_ctx` must be a positive integer, got 0"),
        (dict(n_ctx=-3), "got -3"),
        (dict(class_position="left"), "Unknown class_position 'left'"),
        (dict(class_names=[]), "`class_names` is empty"),
        (dict(class_names=["cat", "dog", "cat"]), "Duplicate class name 'cat'"),
        (dict(class_names=["sea_lion", "sea lion"]), "Duplicate class name 'sea lion'"),
        (dict(class_names="cat"), "must be a list of strings"),
    ],
)
def test_bad_config_arguments(kwargs, match):
    args = dict(class_names=["cat", "dog"]) | kwargs
    with pytest.raises(ValueError, match=match):
        PromptAdapterConfig(**args)


def test_placeholder_collision_is_refused(tiny_clip_dir):
    model = _model(tiny_clip_dir, n_ctx=2)
    name_id = model.tokenizer("red", add_special_tokens=False)["input_ids"][0]
    with pytest.raises(ValueError, match=f"Placeholder token id {name_id} .* collides with a token of class name 'red square'"):
        _model(tiny_clip_dir, n_ctx=2, placeholder_token_ids=[name_id, 5])


def test_placeholders_avoid_class_tokens_and_stay_below_eos(any_tiny_clip_dir):
    model = _model(any_tiny_clip_dir, n_ctx=8, class_specific=True)
    used = {t for name in model.class_names for t in model.tokenizer(name, add_special_tokens=False)["input_ids"]}
    placeholders = set(model.config.placeholder_token_ids)
    assert not placeholders & used
    assert max(placeholders) < model.tokenizer.eos_token_id


def test_loading_on_another_base_model_is_refused(tiny_clip_dir, tmp_path):
    from tests.tiny_clip import build_tiny_clip, build_tokenizer

    model = _model(tiny_clip_dir, n_ctx=4)
    model.save_pretrained(tmp_path / "adapter")
    other = build_tiny_clip(build_tokenizer(), seed=1)
    other.save_pretrained(tmp_path / "other")
    build_tokenizer().save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="trained on a different base model"):
        NLPromptModel.from_pretrained(tmp_path / "adapter", base_model_name_or_path=str(tmp_path / "other"))


def test_class_list_mismatch_is_refused(tiny_clip_dir):
    model = _model(tiny_clip_dir, n_ctx=4)
    model.check_class_names(["red_square", "green circle", "blue bar"])
    with pytest.raises(ValueError, match=r"missing \['blue bar'\], unexpected \['yellow dot'\]"):
        model.check_class_names(["red square", "green circle", "yellow dot"])
    with pytest.raises(ValueError, match="other order"):
        model.check_class_names(["green circle", "red square", "blue bar"])


def test_pickle_adapter_is_refused(tiny_clip_dir, tmp_path):
    model = _model(tiny_clip_dir, n_ctx=4)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "adapter_model.safetensors")
    os.remove(tmp_path / "adapter_model.safetensors")
    torch.save(weights, tmp_path / "adapter_model.bin")
    with pytest.raises(ValueError, match="Refusing to load 'adapter_model.bin'"):
        NLPromptModel.from_pretrained(tmp_path)
