"""Same seed, bit-identical prompts on CPU; seed 0 is a seed (issue 6, item 4); and a run resumed with augmentation
on sees the augmented views an uninterrupted one does.

`tests/test_trainer.py::test_same_seed_bit_identical_and_seed_zero_is_a_seed` covers the trainer on precomputed
features. Here: the pixel path with augmentation (random crops drawn per sample and epoch, the OT pass on the clean
or on the augmented view), and the whole data pipeline end to end (load from disk, few-shot sampling, noise,
feature cache) where the second run reads its features from the cache the first one wrote.
"""

import numpy as np
import pytest
import torch

from nlprompt_hf import NLPromptConfig, NLPromptModel, NLPromptTrainer
from nlprompt_hf.data import features as features_module
from nlprompt_hf.data import get_class_names, inject_label_noise, load_noisy_dataset, sample_fewshot
from tests.tiny_clip import make_image_dataset


def _train(clip_dir, train, output_dir, cache_dir, seed, **kwargs):
    args = NLPromptConfig(
        output_dir=str(output_dir), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=0.05, n_ctx=4,
        use_cpu=True, disable_tqdm=True, save_strategy="no", feature_cache_dir=str(cache_dir), seed=seed, **kwargs
    )
    model = NLPromptModel.from_base(clip_dir, get_class_names(train), **args.prompt_kwargs())
    trainer = NLPromptTrainer(model=model, args=args, train_dataset=train)
    trainer.train()
    return trainer.model.context_parameter.detach().clone(), torch.stack(trainer.mask_history)


@pytest.mark.parametrize("ot_features", ["cached", "augmented"])
def test_augmented_training_is_bit_identical_and_seeded(tiny_clip_dir, tmp_path, ot_features):
    train = inject_label_noise(make_image_dataset(n_per_class=4, num_classes=4)["train"], rate=0.5,
                               kind="symmetric", seed=0)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        runs[name] = _train(tiny_clip_dir, train, tmp_path / name, tmp_path / "cache", seed, augment=True,
                            ot_features=ot_features)
    (a, mask_a), (b, mask_b), (c, _) = runs["a"], runs["b"], runs["c"]
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b)
    assert not torch.equal(a, c)  # seed 0 is not "no seed": another seed gives other prompts


def _pipeline(source, seed):
    data = load_noisy_dataset(source)
    train = sample_fewshot(data["train"], shots=4, seed=seed)
    return inject_label_noise(train, rate=0.5, kind="symmetric", seed=seed)


def test_data_pipeline_and_feature_cache_end_to_end(tiny_clip_dir, tmp_path, monkeypatch):
    make_image_dataset(n_per_class=6, num_classes=4, seed=3).save_to_disk(str(tmp_path / "data"))
    encoded = []
    original = features_module._encode

    def counting_encode(*args, **kwargs):
        encoded.append(len(args[2]))
        return original(*args, **kwargs)

    monkeypatch.setattr(features_module, "_encode", counting_encode)
    cache = tmp_path / "cache"

    first = _pipeline(str(tmp_path / "data"), seed=0)
    second = _pipeline(str(tmp_path / "data"), seed=0)
    for column in ("label", "clean_label", "is_noisy"):
        assert first[column] == second[column]
    assert np.array_equal(np.asarray(first["image"][0]), np.asarray(second["image"][0]))

    prompts_1, masks_1 = _train(tiny_clip_dir, first, tmp_path / "a", cache, seed=0)
    assert encoded == [16]  # first run: features computed once and cached
    prompts_2, masks_2 = _train(tiny_clip_dir, second, tmp_path / "b", cache, seed=0)
    assert encoded == [16]  # second run: read from the cache, not recomputed
    assert torch.equal(prompts_1, prompts_2) and torch.equal(masks_1, masks_2)

    # seed 0 vs seed 1 through the whole pipeline: other shots, other noise, other prompts
    other = _pipeline(str(tmp_path / "data"), seed=1)
    assert other["clean_label"] != first["clean_label"] or other["label"] != first["label"]
    prompts_3, _ = _train(tiny_clip_dir, other, tmp_path / "c", cache, seed=1)
    assert not torch.equal(prompts_1, prompts_3)


class _Crash(Exception):
    pass


def test_resume_with_augmentation_gives_the_same_prompts(tiny_clip_dir, tmp_path):
    # the augmented views are drawn from (seed, epoch, sample_idx): a resumed run sees the views it would have seen
    from transformers import TrainerCallback

    class CrashAt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 3:  # 2 steps per epoch: right after checkpoint-3, mid-epoch 1
                raise _Crash

    train = inject_label_noise(make_image_dataset(n_per_class=4, num_classes=4)["train"], rate=0.5,
                               kind="symmetric", seed=0)

    def trainer(folder, **kwargs):
        args = NLPromptConfig(
            output_dir=str(folder), num_train_epochs=3, per_device_train_batch_size=8, learning_rate=0.05, n_ctx=4,
            use_cpu=True, disable_tqdm=True, feature_cache_dir=str(tmp_path / "cache"), seed=0, augment=True,
            ot_features="augmented", **kwargs
        )
        model = NLPromptModel.from_base(tiny_clip_dir, get_class_names(train), **args.prompt_kwargs())
        return NLPromptTrainer(model=model, args=args, train_dataset=train)

    full = trainer(tmp_path / "full", save_strategy="no")
    full.train()
    part = trainer(tmp_path / "part", save_strategy="steps", save_steps=3)
    part.add_callback(CrashAt())
    with pytest.raises(_Crash):
        part.train()
    resumed = trainer(tmp_path / "part", save_strategy="steps", save_steps=3)
    resumed.train(resume_from_checkpoint=True)
    assert torch.equal(resumed.model.context_parameter, full.model.context_parameter)
    assert torch.equal(torch.stack(resumed.mask_history), torch.stack(full.mask_history))
    assert [h["epoch"] for h in resumed.purification_history] == [0, 1, 2]
