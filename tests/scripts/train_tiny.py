"""Train the tiny CLIP with NLPrompt and dump the per-epoch splits and the final context.

Run directly (one process) or under `accelerate launch --cpu --num_processes 2`: the multi-process test compares
the two. Usage: `python train_tiny.py CLIP_DIR OUT_FILE N_SAMPLES PER_DEVICE_BATCH EPOCHS`.
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from nlprompt_hf import NLPromptConfig, NLPromptModel, NLPromptTrainer  # noqa: E402
from nlprompt_hf.data.noise import inject_label_noise  # noqa: E402
from nlprompt_hf.trainer import compute_accuracy  # noqa: E402
from tests.tiny_clip import make_image_dataset  # noqa: E402


def main(clip_dir, out_file, n_samples, batch, epochs):
    ds = make_image_dataset(n_per_class=8, num_classes=4, seed=0)["train"].select(range(int(n_samples)))
    train = inject_label_noise(ds, rate=0.5, kind="symmetric", seed=0, num_classes=4)
    out_dir = os.path.join(os.path.dirname(out_file), "trainer-out")
    args = NLPromptConfig(
        output_dir=out_dir,
        num_train_epochs=int(epochs),
        per_device_train_batch_size=int(batch),
        learning_rate=0.05,
        n_ctx=4,
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        feature_cache_dir=os.path.join(os.path.dirname(out_file), "cache"),
        feature_batch_size=4,  # several OT-pass batches per process: shards interleave in the gather
        seed=0,
    )
    model = NLPromptModel.from_base(clip_dir, ds.features["label"].names, **args.prompt_kwargs())
    # 15 test images: uneven across 2 processes, so the evaluation gather must drop the padding too
    test = make_image_dataset(n_per_class=8, num_classes=4, seed=0)["test"].select(range(15))

    def metrics(prediction):
        return {**compute_accuracy(prediction), "num_samples": float(len(prediction.label_ids))}

    trainer = NLPromptTrainer(model=model, args=args, train_dataset=train, eval_dataset=test, compute_metrics=metrics)
    trainer.train()
    evaluation = trainer.evaluate()
    if trainer.is_world_process_zero():
        masks = {f"mask_{h['epoch']}": m.to(torch.uint8) for h, m in zip(trainer.purification_history, trainer.mask_history)}
        context = trainer.accelerator.unwrap_model(trainer.model).context_parameter.detach().clone()
        world = torch.tensor([trainer.accelerator.num_processes, trainer.args.world_size])
        accuracy = torch.tensor([evaluation["eval_accuracy"], evaluation["eval_num_samples"]], dtype=torch.float64)
        pseudo = trainer.last_purification.pseudo_labels.cpu()  # in sample_idx order, whatever the process count
        save_file(
            {"context": context, "world_size": world, "eval_accuracy": accuracy, "pseudo": pseudo, **masks}, out_file
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
