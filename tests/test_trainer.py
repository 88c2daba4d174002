import math

import pytest
import torch
from transformers import CLIPModel, TrainerCallback

from nlprompt_hf import NLPromptConfig, NLPromptModel, NLPromptTrainer
from nlprompt_hf.data.noise import inject_label_noise
from tests.tiny_clip import make_image_dataset


def _data(noise=0.5, n_per_class=8, seed=0):
    ds = make_image_dataset(n_per_class=n_per_class, num_classes=4, seed=seed)
    train = inject_label_noise(ds["train"], rate=noise, kind="symmetric", seed=seed)
    return train, ds["test"]


def _args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        learning_rate=0.05,
        n_ctx=4,
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        feature_cache_dir=str(tmp_path / "cache"),
        seed=0,
    )
    return NLPromptConfig(**(defaults | kwargs))


def _trainer(clip_dir, tmp_path, train, test=None, **kwargs):
    args = _args(tmp_path, **kwargs)
    names = ["red square", "green circle", "blue bar", "yellow dot"]
    model = NLPromptModel.from_base(clip_dir, names, **args.prompt_kwargs())
    return NLPromptTrainer(model=model, args=args, train_dataset=train, eval_dataset=test)


def test_end_to_end_nlprompt_with_half_noise(tiny_clip_dir, tmp_path):
    train, test = _data(0.5)
    trainer = _trainer(tiny_clip_dir, tmp_path, train, test, eval_strategy="epoch")
    before = trainer.model.context_parameter.detach().clone()
    trainer.train()
    # purification ran at the start of every epoch, epoch 0 included
    assert [h["epoch"] for h in trainer.purification_history] == [0, 1, 2]
    train_logs = [h for h in trainer.state.log_history if "loss" in h and "eval_loss" not in h]
    assert len(train_logs) == 3
    for entry in train_logs:
        for key in ("clean_fraction", "ot_seconds", "loss_ce", "loss_mae", "noise_precision", "noise_recall",
                    "noise_f1", "noise_rate_estimated", "noise_rate_true"):
            assert key in entry, key
        assert 0.0 <= entry["clean_fraction"] <= 1.0
        assert entry["noise_rate_true"] == pytest.approx(0.5)
    evals = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    assert len(evals) == 3 and all(0 <= e["eval_accuracy"] <= 1 for e in evals)
    # only the context changed
    assert not torch.equal(before, trainer.model.context_parameter.detach())
    fresh = CLIPModel.from_pretrained(tiny_clip_dir).state_dict()
    for name, tensor in trainer.model.clip.state_dict().items():
        if "trainable_tokens" not in name:
            assert torch.equal(tensor, fresh[name.replace("token_embedding.base_layer.", "token_embedding.")]), name


def test_split_loss_uses_the_mask(tiny_clip_dir, tmp_path):
    train, _ = _data(0.5)
    trainer = _trainer(tiny_clip_dir, tmp_path, train, num_train_epochs=1)
    trainer.purify(0)
    batch = next(iter(trainer.get_train_dataloader()))
    idx = batch["sample_idx"]
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    logits = trainer.model(image_embeds=batch["image_embeds"]).logits
    clean = trainer.clean_mask[idx]
    p = logits.softmax(-1).gather(1, batch["labels"][:, None]).squeeze(1)
    expected = (-(p[clean].log()).sum() + (1 - p[~clean]).sum()) / len(idx)
    torch.testing.assert_close(loss, expected)


def test_clean_label_never_reaches_the_loss(tiny_clip_dir, tmp_path):
    train, _ = _data(0.5)
    seen = []
    trainer = _trainer(tiny_clip_dir, tmp_path, train, num_train_epochs=1)
    original = trainer.compute_loss

    def spy(model, inputs, *args, **kwargs):
        seen.append(set(inputs))
        return original(model, inputs, *args, **kwargs)

    trainer.compute_loss = spy
    trainer.train()
    assert seen and all(keys == {"sample_idx", "labels", "image_embeds"} for keys in seen)
    # same noisy labels, scrambled true labels: identical prompts
    scrambled = train.map(lambda r: {"clean_label": (r["clean_label"] + 1) % 4})
    other = _trainer(tiny_clip_dir, tmp_path / "b", scrambled, num_train_epochs=1)
    other.train()
    assert torch.equal(trainer.model.context_parameter, other.model.context_parameter)


@pytest.mark.parametrize("method", ["coop", "promptmae", "gce"])
def test_baselines_train(tiny_clip_dir, tmp_path, method):
    train, _ = _data(0.25)
    trainer = _trainer(tiny_clip_dir, tmp_path, train, method=method, num_train_epochs=1)
    before = trainer.model.context_parameter.detach().clone()
    trainer.train()
    assert trainer.purification_history == []  # no OT for the baselines
    assert not torch.equal(before, trainer.model.context_parameter.detach())
    assert any(f"loss_{method}" in h for h in trainer.state.log_history)


def test_subset_smaller_than_a_batch_still_trains(tiny_clip_dir, tmp_path):
    train, _ = _data(0.0, n_per_class=1)  # 4 samples, batch 8: one partial batch per epoch
    trainer = _trainer(tiny_clip_dir, tmp_path, train, num_train_epochs=2)
    before = trainer.model.context_parameter.detach().clone()
    trainer.train()
    assert trainer.state.global_step == 2
    assert not torch.equal(before, trainer.model.context_parameter.detach())


def test_real_noise_without_clean_label(tiny_clip_dir, tmp_path):
    ds = make_image_dataset(n_per_class=4, num_classes=4)
    trainer = _trainer(tiny_clip_dir, tmp_path, ds["train"], num_train_epochs=1)
    trainer.train()
    entry = next(h for h in trainer.state.log_history if "clean_fraction" in h)
    assert "noise_precision" not in entry and "noise_rate_true" not in entry


def test_schedule_constant_warmup_then_cosine(tiny_clip_dir, tmp_path):
    train, _ = _data(0.0)
    trainer = _trainer(tiny_clip_dir, tmp_path, train, num_train_epochs=4, learning_rate=0.1)
    trainer.create_optimizer()
    sched = trainer.create_scheduler(num_training_steps=16)  # 4 steps per epoch
    lrs = []
    for _ in range(16):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        sched.step()
    assert lrs[:4] == [pytest.approx(1e-5)] * 4
    assert lrs[4] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(0.05 * (1 + math.cos(math.pi * 6 / 12)))
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.optimizer.defaults["momentum"] == 0.9


def test_saves_only_the_adapter(tiny_clip_dir, tmp_path):
    train, _ = _data(0.5)
    trainer = _trainer(tiny_clip_dir, tmp_path, train, num_train_epochs=1)
    trainer.train()
    trainer.save_model()
    files = set(__import__("os").listdir(trainer.args.output_dir))
    assert {"adapter_config.json", "adapter_model.safetensors", "prompt_config.json", "training_args.json"} <= files
    assert not files & {"model.safetensors", "pytorch_model.bin", "training_args.bin"}
    reloaded = NLPromptModel.from_pretrained(trainer.args.output_dir)
    assert torch.equal(reloaded.context_parameter, trainer.model.context_parameter)


def test_same_seed_bit_identical_and_seed_zero_is_a_seed(tiny_clip_dir, tmp_path):
    train, _ = _data(0.5)

    def run(seed, sub):
        t = _trainer(tiny_clip_dir, tmp_path / sub, train, num_train_epochs=2, seed=seed)
        t.train()
        return t.model.context_parameter.detach().clone()

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


class _Crash(Exception):
    pass


class _CrashAfter(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise _Crash


def test_resume_gives_the_same_prompts(tiny_clip_dir, tmp_path):
    train, _ = _data(0.5)
    full = _trainer(tiny_clip_dir, tmp_path / "full", train, num_train_epochs=4)
    full.train()
    # interrupted run: checkpoints every 3 steps (mid-epoch: 4 steps per epoch), crashes before step 7
    part = _trainer(tiny_clip_dir, tmp_path / "part", train, num_train_epochs=4, save_strategy="steps", save_steps=3)
    part.add_callback(_CrashAfter(6))
    with pytest.raises(_Crash):
        part.train()
    resumed = _trainer(tiny_clip_dir, tmp_path / "part", train, num_train_epochs=4, save_strategy="steps", save_steps=3)
    resumed.train(resume_from_checkpoint=True)
    torch.testing.assert_close(resumed.model.context_parameter, full.model.context_parameter, rtol=0, atol=1e-7)


def test_bad_labels_are_refused(tiny_clip_dir, tmp_path):
    train, _ = _data(0.0)
    from datasets import Value

    bad = train.cast_column("label", Value("int64"))
    bad = bad.map(lambda r, i: {"label": 7 if i == 3 else r["label"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"labels outside \[0, 4\).*\[7\]"):
        _trainer(tiny_clip_dir, tmp_path, bad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="ce"), "Unknown method 'ce'"),
        (dict(ot_reg=0.0), "ot_reg must be > 0"),
        (dict(ot_cost="kl"), "Unknown ot_cost 'kl'"),
        (dict(dataloader_drop_last=True), "dataloader_drop_last=True would silently skip"),
        (dict(ot_features="augmented"), "needs augment=True"),
    ],
)
def test_bad_config(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        NLPromptConfig(output_dir=str(tmp_path), **kwargs)
