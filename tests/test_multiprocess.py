"""`accelerate launch --num_processes 2` on CPU gives the same PromptOT split and prompts as one process."""

import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "train_tiny.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.multiprocess


def _free_port() -> int:
    # a fixed port collides when two test sessions run on one machine
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, ACCELERATE_USE_CPU="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _launch(tmp_path, clip_dir, n, per_device_batch, processes, epochs=2):
    out = tmp_path / f"p{processes}" / "result.safetensors"
    out.parent.mkdir(parents=True)
    args = [SCRIPT, clip_dir, str(out), str(n), str(per_device_batch), str(epochs)]
    if processes == 1:
        _run([sys.executable, *args], tmp_path)
    else:
        accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
        # `--cpu --num_processes 2` starts ONE process (accelerate's simple launcher needs mpirun for more);
        # `--multi_gpu` is the torch elastic launcher, which on a machine without GPUs runs N CPU processes
        # (gloo): the trainer's `use_cpu=True` keeps them on the CPU
        _run([accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *args],
             tmp_path)
    result = load_file(out)
    # a launcher that silently ran one process would make every comparison below vacuous
    assert result.pop("world_size").tolist() == [processes, processes]
    return result


def test_two_processes_match_one(tiny_clip_dir, tmp_path):
    # 32 samples: global batch 8 = 2 x 4, so both runs take the same optimisation steps
    one = _launch(tmp_path / "even", tiny_clip_dir, 32, 8, 1)
    two = _launch(tmp_path / "even", tiny_clip_dir, 32, 4, 2)
    assert set(one) == set(two) == {"context", "mask_0", "mask_1", "eval_accuracy", "pseudo"}
    assert torch.equal(one["pseudo"], two["pseudo"])  # per-sample results line up with the dataset
    for epoch in (0, 1):
        assert torch.equal(one[f"mask_{epoch}"], two[f"mask_{epoch}"])
    torch.testing.assert_close(two["context"], one["context"], rtol=0, atol=1e-5)
    # the same final accuracy, over every one of the 15 test images exactly once
    assert one["eval_accuracy"][1] == two["eval_accuracy"][1] == 15
    assert abs(float(one["eval_accuracy"][0] - two["eval_accuracy"][0])) <= 1 / 15 + 1e-9


def test_uneven_split_across_processes(tiny_clip_dir, tmp_path):
    # 27 samples over 2 processes: the purification pass must see every sample exactly once
    one = _launch(tmp_path / "odd", tiny_clip_dir, 27, 8, 1, epochs=1)
    two = _launch(tmp_path / "odd", tiny_clip_dir, 27, 4, 2, epochs=1)
    assert one["mask_0"].numel() == two["mask_0"].numel() == 27
    assert torch.equal(one["mask_0"], two["mask_0"])
    assert torch.equal(one["pseudo"], two["pseudo"])
