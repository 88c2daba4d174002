"""A real `nlprompt-hf train` run SIGKILLed mid-epoch, then resumed, ends exactly where an uninterrupted run does
(issue 6, item 2).

Each run is a subprocess of `tests/scripts/train_cli_until.py` (the console script's `main`, plus a point where
it stops and waits, so the kill lands at a known place whatever the machine's speed):

- `step:7`: killed at the start of step 7, mid-epoch (4 steps per epoch), after `checkpoint-6` was written;
- `save:6`: killed while `checkpoint-6` is being written (adapter, optimizer, RNG state on disk, no
  `trainer_state.json` yet): resuming must fall back to `checkpoint-3`.

Checked: the killed run leaves nothing in the final output directory (only the `<dir>.incomplete` staging folder
with its `RUN_INCOMPLETE` marker); `--resume_from_checkpoint true` finishes it; the adapter is bit-identical to the
uninterrupted run's, and so are `metrics.json` and every per-epoch log of `trainer_state.json` (losses, PromptOT
split, noisy-split precision / recall, eval accuracy), except wall-clock timings and the Trainer's `train_loss`,
which by design covers only the steps of the resumed `train()` call.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny_clip import make_image_dataset

pytestmark = pytest.mark.multiprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "train_cli_until.py")
FINAL_FILES = {"adapter_model.safetensors", "adapter_config.json", "prompt_config.json", "metrics.json",
               "trainer_state.json", "README.md"}
TIMINGS = {"ot_seconds", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def _train_args(workdir, clip_dir, output_dir):
    return [
        "--model_name_or_path", clip_dir, "--dataset_name_or_path", str(workdir / "data"),
        "--shots", "0", "--noise_type", "symmetric", "--noise_rate", "0.5", "--noise_seed", "0",
        "--no_report", "--num_train_epochs", "4", "--per_device_train_batch_size", "8",  # 32 samples: 4 steps/epoch
        "--learning_rate", "0.05", "--n_ctx", "4", "--use_cpu", "--disable_tqdm", "true",
        "--save_strategy", "steps", "--save_steps", "3", "--seed", "0",
        "--feature_cache_dir", str(workdir / "cache"), "--output_dir", str(workdir / output_dir),
    ]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def _run(args, cwd):
    proc = subprocess.run([sys.executable, SCRIPT, "--", *args], capture_output=True, text=True, env=_env(),
                          cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _run_and_kill(args, cwd, hang_at, output_dir):
    marker = cwd / f"{output_dir}.hang"
    log = cwd / f"{output_dir}.log"  # a file, not a pipe: a full pipe would block the run before the kill point
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, SCRIPT, "--hang-at", hang_at, "--", *args], env=_env(), cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before {hang_at}:\n{log.read_text()[-5000:]}")
            assert time.monotonic() < deadline, "the run never reached the kill point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_clip_dir):
    path = tmp_path_factory.mktemp("interruption")
    make_image_dataset(n_per_class=8, num_classes=4, seed=0).save_to_disk(str(path / "data"))
    return path


@pytest.fixture(scope="module")
def uninterrupted(workdir, tiny_clip_dir):
    _run(_train_args(workdir, tiny_clip_dir, "full"), workdir)
    return workdir / "full"


def _log_history(folder):
    with open(folder / "trainer_state.json", encoding="utf-8") as f:
        history = json.load(f)["log_history"]
    return [{k: v for k, v in entry.items() if k not in TIMINGS and k != "train_loss"} for entry in history]


def _metrics(folder):
    with open(folder / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    metrics.pop("train_runtime")
    metrics["purification"] = [{k: v for k, v in e.items() if k not in TIMINGS} for e in metrics["purification"]]
    return metrics


@pytest.mark.parametrize("hang_at", ["step:7", "save:6"])
def test_sigkill_then_resume_matches_uninterrupted(workdir, tiny_clip_dir, uninterrupted, hang_at):
    name = f"killed-{hang_at.replace(':', '-')}"
    args = _train_args(workdir, tiny_clip_dir, name)
    _run_and_kill(args, workdir, hang_at, name)

    # nothing that looks finished: no final directory at all, only the marked staging folder with checkpoints
    final, staging = workdir / name, workdir / f"{name}.incomplete"
    assert not final.exists()
    assert (staging / "RUN_INCOMPLETE").is_file()
    assert not FINAL_FILES & set(os.listdir(staging))
    checkpoints = sorted(n for n in os.listdir(staging) if n.startswith("checkpoint-"))
    if hang_at == "save:6":  # checkpoint-6 half-written (no trainer_state.json), checkpoint-3 intact
        assert checkpoints == ["checkpoint-3", "checkpoint-6"]
        assert not (staging / "checkpoint-6" / "trainer_state.json").exists()
    else:
        assert checkpoints == ["checkpoint-6"]
    # a plain rerun refuses to silently start over on top of the unfinished run
    proc = subprocess.run([sys.executable, SCRIPT, "--", *args], capture_output=True, text=True, env=_env(),
                          cwd=workdir, timeout=300)
    assert proc.returncode == 1 and "--resume_from_checkpoint true" in proc.stderr

    _run([*args, "--resume_from_checkpoint", "true"], workdir)
    assert not staging.exists()
    assert FINAL_FILES <= set(os.listdir(final))
    ours, reference = load_file(final / "adapter_model.safetensors"), load_file(uninterrupted / "adapter_model.safetensors")
    assert ours.keys() == reference.keys()
    for key in ours:
        assert torch.equal(ours[key], reference[key]), key
    assert _metrics(final) == _metrics(uninterrupted)
    assert _log_history(final) == _log_history(uninterrupted)
