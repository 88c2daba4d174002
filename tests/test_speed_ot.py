"""Smoke test of the `ot` section of `benchmarks/speed.py` (tiny sizes; the real run is documented there)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.multiprocess
def test_ot_section_writes_its_results_and_keeps_other_sections(tmp_path):
    output = tmp_path / "speed.json"
    output.write_text(json.dumps({"epoch": {"kept": True}}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "speed.py"), "--sections", "ot", "--sizes", "300",
           "--skip-stretch", "--skip-pot-variants", "--threads", "1", "--output", str(output)]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO, env=env, capture_output=True, timeout=300)
    results = json.loads(output.read_text())
    assert results["epoch"] == {"kept": True}
    (row,) = results["ot"]["rows"]
    assert row["n"] == 300 and row["c"] == 101
    assert row["ours"]["converged"] and row["ours"]["marginal_error"] < 1e-6
    assert 0.99 <= row["argmax_agreement"] <= 1.0 or not row["pot"]["converged"]
    assert row["ours"]["peak_rss_mb"] > 0 and row["pot"]["peak_rss_mb"] > 0
    assert results["ot"]["environment"]["threads"] == 1
