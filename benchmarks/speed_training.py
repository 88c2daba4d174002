"""Training-speed sections of `benchmarks/speed.py`: the cost of purification, and the gain of the feature cache.

- `epoch`: epoch time of NLPrompt / CoOp (CE). The extra work of NLPrompt is the PromptOT pass at the start of each
  epoch (one no-grad text-encoder pass over the class prompts, a pass over the cached training features and a
  Sinkhorn solve); the steps themselves cost the same (one loss function or another). Measured on

  * a ViT-B/32-shaped `CLIPModel` with random weights (vision 768 x 12 layers, patch 32, image 224; text
    512 x 12 layers; projection 512; vocabulary 49408), 100 classes x 16 shots, cached features, n_ctx 16,
    batch 32 (50 steps per epoch). The tokenizer is a byte-level CLIP tokenizer built in memory
    (`nlprompt_hf.demo.build_demo_tokenizer` over the class names, one token per class name), so a prompt is
    `[SOS] 16 x ctx <class> . [EOS]`, 20 tokens. The cached features are seeded Gaussian vectors (1600 x 512):
    an epoch on cached features never runs the image encoder, so encoding 1600 images through a random ViT
    (~2 min on 2 cores) would change no timing, only the values Sinkhorn sees.
  * the demo task with the shipped demo CLIP and the demo recipe's hyperparameters (160 samples, 5 steps per
    epoch), at 50 % symmetric noise: per-epoch times over the recipe's 50 epochs, median.

- `cache`: epoch time re-encoding the images at every step / training on the frozen-feature cache, ViT-B/32-shaped
  random model, 10 classes x 16 shots, 224 x 224 images (generated), CoOp (CE) and NLPrompt. The one-time
  feature extraction of the cached variant is reported next to it (setup, not part of an epoch).

Every measurement runs in its own subprocess (a fresh interpreter: no warm caches shared between the two sides of a
ratio), the two sides of a ratio alternate, and each is repeated (`--repeats`); medians are reported. Peak memory is
the peak resident set size of that subprocess (`ru_maxrss` from `os.wait4` on the child: model, data, training,
interpreter; per measurement, not cumulative).

Usage (normally through `benchmarks/speed.py --sections epoch cache`):

```
python benchmarks/speed_training.py --sections epoch cache --threads 2
```
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _env import base_environment, measure_in_subprocess, update_results  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(BENCH_DIR, "results", "speed.json")

VITB32 = dict(
    text=dict(
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=8,
        max_position_embeddings=77,
        vocab_size=49408,
    ),
    vision=dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=32,
    ),
    projection_dim=512,
)


# =============================================================================================== worker side
class _EpochTimer:
    """Trainer callback: wall time of every epoch (purification included), of every step, of each epoch's start."""

    def __new__(cls):
        from transformers import TrainerCallback

        class EpochTimer(TrainerCallback):
            def __init__(self):
                self.epochs, self.steps, self.epoch_start = [], [], []
                self._t0 = self._ts = None
                self._first = False

            def on_epoch_begin(self, args, state, control, **kwargs):
                self._t0 = time.perf_counter()
                self._first = True

            def on_step_begin(self, args, state, control, **kwargs):
                self._ts = time.perf_counter()
                if self._first:
                    self.epoch_start.append(self._ts - self._t0)
                    self._first = False

            def on_step_end(self, args, state, control, **kwargs):
                self.steps.append(time.perf_counter() - self._ts)

            def on_epoch_end(self, args, state, control, **kwargs):
                self.epochs.append(time.perf_counter() - self._t0)

        return EpochTimer()


def _class_names(n: int) -> list[str]:
    """`classaa`, `classab`, ...: letters only, so that each is one token of the byte-level tokenizer."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["class" + letters[i // 26 % 26] + letters[i % 26] for i in range(n)]


def _vitb32_clip(class_names: Sequence[str], seed: int = 0):
    """A ViT-B/32-shaped `CLIPModel` with random weights, a byte-level tokenizer and a 224 px processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from nlprompt_hf.demo import build_demo_tokenizer

    tokenizer = build_demo_tokenizer(list(class_names) + ["a", "photo", "of"], model_max_length=77)
    text = dict(
        VITB32["text"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = CLIPConfig(
        text_config=text, vision_config=VITB32["vision"], projection_dim=VITB32["projection_dim"]
    )
    torch.manual_seed(seed)
    clip = CLIPModel(config).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    return clip, tokenizer, processor


def _images(labels: Sequence[int], size: int, seed: int):
    """Generated RGB images: a noisy background and a class-coloured rectangle (content is irrelevant to speed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(max(labels) + 1, 3))
    out = []
    for label in labels:
        arr = rng.normal(120, 30, size=(size, size, 3))
        x0, y0 = rng.integers(0, size // 2, size=2)
        arr[y0 : y0 + size // 2, x0 : x0 + size // 2] = palette[label] + rng.normal(0, 10, 3)
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def _noisy_labels(num_classes: int, shots: int, rate: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    clean = np.repeat(np.arange(num_classes), shots)
    labels = clean.copy()
    flip = rng.choice(len(clean), size=int(rate * len(clean)), replace=False)
    labels[flip] = (clean[flip] + rng.integers(1, num_classes, size=len(flip))) % num_classes
    return clean.tolist(), labels.tolist()


def _train(model, args, train, test, train_features, test_features):
    from transformers.trainer_callback import PrinterCallback

    from nlprompt_hf import NLPromptTrainer

    timer = _EpochTimer()
    trainer = NLPromptTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=test,
        train_features=train_features,
        eval_features=test_features,
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    return {
        "epoch_seconds": timer.epochs,
        "step_seconds": timer.steps,
        "epoch_start_seconds": timer.epoch_start,  # epoch begin -> first step: PromptOT pass for NLPrompt
        "ot_solver_seconds": [h["ot_seconds"] for h in trainer.purification_history],
        "train_seconds": total,
        "steps_per_epoch": len(timer.steps) // max(1, len(timer.epochs)),
    }


def _args(tmp: str, **kwargs):
    from nlprompt_hf import NLPromptConfig

    base = dict(
        output_dir=tmp,
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_strategy="epoch",
    )
    return NLPromptConfig(**(base | kwargs))


def work_vitb32_epoch(spec: dict) -> dict:
    """One epoch of `spec['method']` on the ViT-B/32-shaped model with cached (Gaussian) features."""
    import torch
    from datasets import ClassLabel, Dataset, Features, Value

    from nlprompt_hf import NLPromptModel

    t0 = time.perf_counter()
    names = _class_names(spec["classes"])
    clip, tokenizer, processor = _vitb32_clip(names)
    model = NLPromptModel.from_base(
        clip, names, n_ctx=spec["n_ctx"], tokenizer=tokenizer, image_processor=processor
    )
    clean, labels = _noisy_labels(spec["classes"], spec["shots"], spec["noise"], seed=0)
    features = Features({"label": ClassLabel(names=names), "clean_label": Value("int64")})
    train = Dataset.from_dict({"label": labels, "clean_label": clean}, features=features)
    feats = torch.randn(len(train), VITB32["projection_dim"], generator=torch.Generator().manual_seed(0))
    setup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        args = _args(
            tmp,
            method=spec["method"],
            n_ctx=spec["n_ctx"],
            num_train_epochs=spec["epochs"],
            per_device_train_batch_size=32,
            seed=spec["repeat"],
        )
        out = _train(model, args, train, None, feats, None)
    return {"setup_seconds": setup, "prompt_tokens": len(model.config.prompt_input_ids[0]), **out}


def work_cache(spec: dict) -> dict:
    """One epoch of `spec['method']`, re-encoding pixels every step (`cached=False`) or on cached features."""
    from datasets import ClassLabel, Dataset, Features, Image, Value

    from nlprompt_hf import NLPromptModel
    from nlprompt_hf.data import compute_image_features

    t0 = time.perf_counter()
    names = _class_names(spec["classes"])
    clip, tokenizer, processor = _vitb32_clip(names)
    model = NLPromptModel.from_base(
        clip, names, n_ctx=spec["n_ctx"], tokenizer=tokenizer, image_processor=processor
    )
    clean, labels = _noisy_labels(spec["classes"], spec["shots"], spec["noise"], seed=0)
    features = Features({"image": Image(), "label": ClassLabel(names=names), "clean_label": Value("int64")})
    train = Dataset.from_dict(
        {"image": _images(clean, spec["image_size"], seed=0), "label": labels, "clean_label": clean},
        features=features,
    )
    setup = time.perf_counter() - t0
    feats, extract = None, 0.0
    if spec["cached"]:
        t1 = time.perf_counter()
        feats = compute_image_features(clip, processor, train, use_cache=False, progress=False, batch_size=32)
        extract = time.perf_counter() - t1
    with tempfile.TemporaryDirectory() as tmp:
        args = _args(
            tmp,
            method=spec["method"],
            n_ctx=spec["n_ctx"],
            num_train_epochs=spec["epochs"],
            per_device_train_batch_size=32,
            use_feature_cache=spec["cached"],
            seed=spec["repeat"],
        )
        out = _train(model, args, train, None, feats, None)
    return {"setup_seconds": setup, "feature_extraction_seconds": extract, **out}


def work_demo_epoch(spec: dict) -> dict:
    """The demo recipe's run (demo CLIP, demo task, 16 shots, sym 0.5, recipe's epochs) for `spec['method']`."""
    import dataclasses

    sys.path.insert(0, BENCH_DIR)
    import noise_sweep

    from nlprompt_hf import NLPromptModel

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_args, data_args, noise_args, _, base = noise_sweep.load_demo_recipe("demo", output_dir=tmp)
    if spec.get("model"):
        model_args.model_name_or_path = spec["model"]
    pool = noise_sweep.DemoPool(model_args, data_args, base)
    train, feats = pool.training_set(noise_args.shots, noise_args.noise_type, noise_args.noise_rate, seed=1)
    setup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        changes = dict(
            output_dir=tmp,
            method=spec["method"],
            use_cpu=True,
            disable_tqdm=True,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
        )
        if spec.get("epochs"):
            changes["num_train_epochs"] = spec["epochs"]
        args = dataclasses.replace(base, **changes)
        model = NLPromptModel.from_base(pool.model_path, pool.class_names, **args.prompt_kwargs())
        out = _train(model, args, train, None, feats, None)
    return {
        "setup_seconds": setup,
        "model": model_args.model_name_or_path,
        "n_ctx": args.n_ctx,
        "batch_size": args.per_device_train_batch_size,
        "num_train_samples": len(train),
        **out,
    }


WORKERS = {"vitb32_epoch": work_vitb32_epoch, "cache": work_cache, "demo_epoch": work_demo_epoch}


def worker_main(spec_json: str) -> int:
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    import datasets
    import torch
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    spec = json.loads(spec_json)
    torch.set_num_threads(spec["threads"])
    result = WORKERS[spec["kind"]](spec)
    result["torch_threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# =============================================================================================== parent side
def measure(spec: dict) -> dict:
    """One measurement in a fresh subprocess of this script (see `_env.measure_in_subprocess`)."""
    return measure_in_subprocess(__file__, spec)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _side_by_side(name: str, specs: dict[str, dict], repeats: int, progress, per_epoch: bool = False) -> dict:
    """Measure each labelled spec `repeats` times, alternating the labels; medians and ratios of the medians."""
    raw: dict[str, list[dict]] = {label: [] for label in specs}
    for r in range(repeats):
        order = list(specs) if r % 2 == 0 else list(specs)[::-1]
        for label in order:
            result = measure(dict(specs[label], repeat=r))
            raw[label].append(result)
            epochs = result["epoch_seconds"]
            progress(
                f"  {name} {label} repeat {r}: epoch {_median(epochs[1:] if per_epoch and len(epochs) > 1 else epochs):.3f} s"
                f" (median of {len(epochs)}), peak RSS {result['peak_rss_mb']:.0f} MB"
            )
    summary = {}
    for label, runs in raw.items():
        if per_epoch:  # many epochs per process: the median over every epoch but each process's first
            epochs = [e for run in runs for e in (run["epoch_seconds"][1:] or run["epoch_seconds"])]
        else:
            epochs = [e for run in runs for e in run["epoch_seconds"]]
        summary[label] = {
            "epoch_seconds_median": _median(epochs),
            "epoch_seconds_all": epochs,
            "step_seconds_median": _median([s for run in runs for s in run["step_seconds"]]),
            "step_seconds_min": min((s for run in runs for s in run["step_seconds"]), default=None),
            "epoch_start_seconds_median": _median([s for run in runs for s in run["epoch_start_seconds"]]),
            "ot_solver_seconds_median": _median([s for run in runs for s in run["ot_solver_seconds"]]),
            "peak_rss_mb_max": max(run["peak_rss_mb"] for run in runs),
            "steps_per_epoch": runs[0]["steps_per_epoch"],
            "setup_seconds_median": _median([run["setup_seconds"] for run in runs]),
        }
        # contention-robust estimate of an epoch: its start (the PromptOT pass for NLPrompt) + steps x fastest step
        summary[label]["epoch_seconds_from_components"] = summary[label]["epoch_start_seconds_median"] + (
            summary[label]["steps_per_epoch"] * summary[label]["step_seconds_min"]
        )
        summary[label]["load_average_1min"] = [run.get("load_average_1min") for run in runs]
        if "feature_extraction_seconds" in runs[0]:
            summary[label]["feature_extraction_seconds_median"] = _median(
                [run["feature_extraction_seconds"] for run in runs]
            )
    return {"summary": summary, "runs": raw}


EPOCH_PARTS = ("vitb32_random", "demo")


def section_epoch(
    threads: int,
    repeats: int,
    progress=print,
    demo_model: str | None = None,
    demo_repeats: int | None = None,
    parts: Sequence[str] = EPOCH_PARTS,
    vitb32_repeats: int | None = None,
) -> dict:
    """Epoch time NLPrompt / CoOp-CE on the ViT-B/32-shaped model (100 x 16) and on the demo task.

    Each part carries its own wall time and environment, so one part can be rerun alone (`parts`) and merged
    into an existing result.
    """
    out = {
        "description": "epoch time NLPrompt / CoOp (CE), cached image features; the two sides alternate, each in "
        "its own subprocess; medians",
    }
    if "vitb32_random" in parts:
        start = time.perf_counter()
        common = dict(
            kind="vitb32_epoch", classes=100, shots=16, n_ctx=16, epochs=1, noise=0.5, threads=threads
        )
        vit = _side_by_side(
            "vitb32",
            {"coop": dict(common, method="coop"), "nlprompt": dict(common, method="nlprompt")},
            vitb32_repeats or repeats,
            progress,
        )
        s = vit["summary"]
        ratio = s["nlprompt"]["epoch_seconds_median"] / s["coop"]["epoch_seconds_median"]
        components = (
            s["nlprompt"]["epoch_seconds_from_components"] / s["coop"]["epoch_seconds_from_components"]
        )
        out["vitb32_random"] = {
            "setting": "ViT-B/32-shaped CLIPModel, random weights (151 M parameters), 100 classes x 16 shots "
            "(50 % symmetric noise), cached features (seeded Gaussian, 1600 x 512), n_ctx 16 (20-token prompts), "
            "batch 32 (50 steps per epoch), SGD, 1 epoch per process",
            "ratio_nlprompt_over_coop": ratio,
            "ratio_from_components": components,
            "ratio_from_components_note": "(median epoch start + steps x fastest step) of NLPrompt over the same for "
            "CoOp: insensitive to other jobs slowing some steps; the epoch start is the PromptOT pass for NLPrompt",
            "purification_pass_seconds_median": s["nlprompt"]["epoch_start_seconds_median"],
            "target": "<= 1.15",
            "target_met": ratio <= 1.15,
            **vit,
            "wall_seconds": time.perf_counter() - start,
            "environment": environment(threads),
        }
    if "demo" in parts:
        start = time.perf_counter()
        demo_common = dict(kind="demo_epoch", threads=threads, model=demo_model)
        demo = _side_by_side(
            "demo",
            {"coop": dict(demo_common, method="coop"), "nlprompt": dict(demo_common, method="nlprompt")},
            demo_repeats or repeats,
            progress,
            per_epoch=True,
        )
        d = demo["summary"]
        out["demo"] = {
            "setting": "demo CLIP on the demo task, demo recipe (its n_ctx, batch, epochs), 16 shots per class, "
            "50 % symmetric noise (seed 1); median per-epoch time over all epochs but the first of each process",
            "model": demo["runs"]["coop"][0]["model"],
            "ratio_nlprompt_over_coop": d["nlprompt"]["epoch_seconds_median"]
            / d["coop"]["epoch_seconds_median"],
            "ratio_total_train_time": _median([r["train_seconds"] for r in demo["runs"]["nlprompt"]])
            / _median([r["train_seconds"] for r in demo["runs"]["coop"]]),
            **demo,
            "wall_seconds": time.perf_counter() - start,
            "environment": environment(threads),
        }
    return out


def section_cache(threads: int, repeats: int, progress=print) -> dict:
    """Epoch time re-encoding pixels every step / on the frozen-feature cache (ViT-B/32-shaped, 10 x 16, 224 px)."""
    start = time.perf_counter()
    common = dict(
        kind="cache", classes=10, shots=16, n_ctx=16, epochs=1, noise=0.5, image_size=224, threads=threads
    )
    out = {
        "description": "epoch time re-encoding the images every step / using the frozen-feature cache; the cached "
        "side's one-time feature extraction is reported separately (setup)",
        "setting": "ViT-B/32-shaped CLIPModel, random weights, 10 classes x 16 shots, 224 x 224 generated images, "
        "n_ctx 16, batch 32 (5 steps per epoch), 1 epoch per process, 50 % symmetric noise",
    }
    for method in ("coop", "nlprompt"):
        res = _side_by_side(
            f"cache/{method}",
            {
                "reencode": dict(common, method=method, cached=False),
                "cached": dict(common, method=method, cached=True),
            },
            repeats,
            progress,
        )
        s = res["summary"]
        out[method] = {
            "ratio_reencode_over_cached": s["reencode"]["epoch_seconds_median"]
            / s["cached"]["epoch_seconds_median"],
            "feature_extraction_seconds": s["cached"]["feature_extraction_seconds_median"],
            **res,
        }
    out["expected"] = ">= 2x"
    out["wall_seconds"] = time.perf_counter() - start
    out["environment"] = environment(threads)
    return out


def environment(threads: int) -> dict:
    return {
        **base_environment(),
        "threads": threads,
        "memory": "peak RSS of each measurement's own subprocess (ru_maxrss from os.wait4 on that child)",
    }


SECTIONS = {"epoch": section_epoch, "cache": section_cache}



def summary_lines(results: dict) -> list[str]:
    lines = []
    if "epoch" in results:
        e = results["epoch"]
        for key in ("vitb32_random", "demo"):
            if key in e:
                s = e[key]["summary"]
                lines.append(
                    f"epoch [{key}]: NLPrompt / CoOp = {e[key]['ratio_nlprompt_over_coop']:.3f} "
                    f"({s['nlprompt']['epoch_seconds_median']:.3f} s / {s['coop']['epoch_seconds_median']:.3f} s; "
                    f"peak RSS {s['nlprompt']['peak_rss_mb_max']:.0f} / {s['coop']['peak_rss_mb_max']:.0f} MB)"
                )
    if "cache" in results:
        c = results["cache"]
        for method in ("coop", "nlprompt"):
            if method in c:
                s = c[method]["summary"]
                lines.append(
                    f"cache [{method}]: re-encode / cached = {c[method]['ratio_reencode_over_cached']:.1f}x "
                    f"({s['reencode']['epoch_seconds_median']:.2f} s / {s['cached']['epoch_seconds_median']:.2f} s; "
                    f"one-time extraction {c[method]['feature_extraction_seconds']:.2f} s; peak RSS "
                    f"{s['reencode']['peak_rss_mb_max']:.0f} / {s['cached']['peak_rss_mb_max']:.0f} MB)"
                )
    return lines


def run_sections(
    sections: Sequence[str],
    threads: int,
    repeats: int,
    output: str,
    demo_model: str | None = None,
    progress=print,
    epoch_parts: Sequence[str] = EPOCH_PARTS,
    vitb32_repeats: int | None = None,
) -> dict:
    results = {}
    for name in sections:
        progress(f"[{name}]")
        if name == "epoch":
            results[name] = section_epoch(
                threads, repeats, progress, demo_model=demo_model, parts=epoch_parts
            )
            if tuple(epoch_parts) != EPOCH_PARTS and os.path.isfile(output):
                # a partial rerun replaces only the parts it measured
                with open(output, encoding="utf-8") as f:
                    previous = json.load(f).get("epoch", {})
                results[name] = {**previous, **results[name]}
        else:
            results[name] = SECTIONS[name](threads, repeats, progress)
        update_results(output, {name: results[name]})  # each section lands as soon as it is done
    for line in summary_lines(results):
        progress(line)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--demo-model", default=None, help="CLIP for the demo-task ratio (default: the demo CLIP)."
    )
    parser.add_argument(
        "--epoch-parts",
        nargs="+",
        choices=EPOCH_PARTS,
        default=list(EPOCH_PARTS),
        help="epoch: parts to (re)run.",
    )
    parser.add_argument(
        "--vitb32-repeats",
        type=int,
        default=None,
        help="epoch: repeats of the ViT-B/32 part (default --repeats).",
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    run_sections(
        args.sections,
        args.threads,
        args.repeats,
        args.output,
        demo_model=args.demo_model,
        progress=lambda s: print(s, flush=True),
        epoch_parts=args.epoch_parts,
        vitb32_repeats=args.vitb32_repeats,
    )
    print(f"Wrote {os.path.relpath(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
