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
