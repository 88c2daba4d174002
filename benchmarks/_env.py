"""What every benchmark records about the machine and the code it ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(*args: str) -> str | None:
    """Output of a git command in the repository, or None outside a checkout."""
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def base_environment() -> dict:
    """Python, torch, CPU count, load, commit (and files changed since it), date."""
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_files": [
            line.split(maxsplit=1)[-1] for line in (git("status", "--porcelain", "--untracked-files=no") or "").splitlines()
        ],
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def measure_in_subprocess(script: str, spec: dict) -> dict:
    """Run `script --worker <spec>` in a fresh process and return the JSON it prints on its `RESULT ` line, plus
    that child's own peak RSS (`ru_maxrss` from `os.wait4`), its wall time and the 1-minute load average before
    and after (above the thread count: other jobs shared the cores during the measurement)."""
    import json
    import sys
    import tempfile

    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(spec["threads"])  # torch and numpy's BLAS (POT) get the same number of threads
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(script), "--worker", json.dumps(spec)],
            stdout=out,
            stderr=err,
            cwd=REPO,
            env=env,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("RESULT ")]
        if returncode != 0 or not lines:
            raise RuntimeError(f"measurement {spec.get('kind')} failed (exit {returncode}):\n{err.read()[-4000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    result["load_average_1min"] = [load_before, os.getloadavg()[0]]
    result["process_wall_seconds"] = wall
    return result


def load_results(path: str) -> dict:
    """The results JSON at `path`, or {} when there is none yet."""
    import json

    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def update_results(path: str, results: dict) -> None:
    """Merge `results` (section -> dict) into the JSON at `path` atomically, keeping every other section's."""
    import json

    merged = {**load_results(path), **results}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
