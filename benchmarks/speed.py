"""Speed benchmarks of nlprompt-hf, one function per section, results merged into `benchmarks/results/speed.json`.

Sections:

- `ot` (here): the PromptOT solve (NLPrompt, https://arxiv.org/abs/2412.01256) at Food-101N scale and beyond.
  For N in {1k, 10k, 100k, 310k} x C = 101: our solver (`nlprompt_hf.purification.solve_sinkhorn` +
  chunked `pseudo_labels`) against POT's `ot.sinkhorn` (what the reference code calls) on the same cost
  `M = -softmax(100 f tᵀ)` (f, t random unit vectors, D = 512, seeded), the same ε = 0.01, the same stopping
  threshold 1e-6 on the column marginal and 1000 iterations at most. Reported per solver: wall time, iterations,
  final marginal error, convergence, peak memory; between them: agreement of the argmax pseudo-labels. Also
  the whole `purify()` call from the features (cost build + solve + labels + per-sample scores). The stretch
  (`--skip-stretch` to leave it out): N = 1.28 M x C = 1000 (ImageNet scale), ours only, the cost built in row
  chunks from the features at every pass: the N x C matrix never exists (a dense float64 plan alone would be
  10.2 GB). And, at N = 10k, POT's log-domain and stabilised solvers (`method="sinkhorn_log"`,
  `"sinkhorn_stabilized"`) next to ours at ε = 0.01 and 0.001: why we did not simply use them.
- `epoch`, `cache`: training speed ratios, in `benchmarks/speed_training.py` (run through this entry point).

Measurement: every measurement runs in its own fresh subprocess (no warm caches shared between the two sides
of a comparison). Memory is reported two ways: `peak_rss_mb`, the peak resident set size of that subprocess
(`ru_maxrss` from `os.wait4` on the child: interpreter, inputs and solver), and `solve_extra_mb`, the resident
set size sampled every 2 ms from `/proc/self/statm` during the timed call minus the resident size just before it
(the solver's own working memory). tracemalloc is not used: it does not see torch's allocations.

Usage:

```
python benchmarks/speed.py --sections ot --threads 2            # the OT section (~3 min + ~5 min stretch)
python benchmarks/speed.py --sections ot --sizes 1000,10000 --skip-stretch --threads 1   # quick look
python benchmarks/speed.py --sections ot,epoch,cache
```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _env import base_environment, load_results, measure_in_subprocess, update_results  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(BENCH_DIR, "results", "speed.json")

OT_SIZES = (1_000, 10_000, 100_000, 310_000)
OT_CLASSES = 101
OT_DIM = 512
OT_REG = 0.01
OT_TOL = 1e-6
OT_MAX_ITER = 1000
STRETCH_N, STRETCH_C = 1_280_000, 1000

MEMORY_METHOD = (
    "peak_rss_mb: ru_maxrss of the measurement's own subprocess (os.wait4); solve_extra_mb: RSS sampled every "
    "2 ms from /proc/self/statm during the timed call minus the RSS just before it"
)


# =============================================================================================== worker side
class _RssSampler:
    """Peak resident set size of this process during a `with` block, sampled from /proc/self/statm."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.before = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.before = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def report(self) -> dict:
        return {"rss_before_mb": self.before / 2**20, "solve_extra_mb": (self.peak - self.before) / 2**20}


def _unit_vectors(n: int, dim: int, seed: int, chunk: int = 65536):
    """Seeded random unit vectors, float32, generated in chunks (no float64 temporary of the whole array)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, dim, dtype=torch.float32)
    for start in range(0, n, chunk):
        block = torch.randn(min(chunk, n - start), dim, generator=gen)
        out[start : start + block.shape[0]] = torch.nn.functional.normalize(block, dim=1)
    return out


def _ot_inputs(spec: dict):
    import torch

    from nlprompt_hf.purification import class_probabilities, ot_cost

    images = _unit_vectors(spec["n"], spec["dim"], seed=spec["seed"])
    text = _unit_vectors(spec["c"], spec["dim"], seed=spec["seed"] + 1)
    cost = ot_cost(class_probabilities(images, text)).double()  # (N, C), float64: both solvers read the same
    labels = torch.randint(
        0, spec["c"], (spec["n"],), generator=torch.Generator().manual_seed(spec["seed"] + 2)
    )
    return images, text, labels, cost


def work_ot_ours(spec: dict) -> dict:
    import numpy as np

    from nlprompt_hf.purification import pseudo_labels, purify, solve_sinkhorn

    images, text, labels, cost = _ot_inputs(spec)
    solve_sinkhorn(cost[:64], reg=spec["reg"])  # warm-up of the kernels on a tiny problem (not timed)
    with _RssSampler() as rss:
        start = time.perf_counter()
        result = solve_sinkhorn(cost, reg=spec["reg"], max_iter=spec["max_iter"], tol=spec["tol"])
        pseudo = pseudo_labels(cost, result)
        seconds = time.perf_counter() - start
    np.save(spec["labels_out"], pseudo.numpy())
    out = {
        "seconds": seconds,
        "n_iter": result.n_iter,
        "n_newton": result.n_newton,
        "converged": result.converged,
        "marginal_error": result.marginal_error,
        **rss.report(),
    }
    del cost
    # The whole PromptOT call from the features (cost built in chunks, solve, labels, per-sample scores).
    with _RssSampler() as rss_purify:
        start = time.perf_counter()
        purified = purify(images, text, labels, reg=spec["reg"], max_iter=spec["max_iter"], tol=spec["tol"])
        out["purify_seconds"] = time.perf_counter() - start
    out["purify_n_iter"] = purified.n_iter
    out["purify_extra_mb"] = rss_purify.report()["solve_extra_mb"]
    return out


def work_ot_pot(spec: dict) -> dict:
    import warnings

    import numpy as np
    import ot

    _, _, _, cost = _ot_inputs(spec)
    M = cost.numpy()
    del cost
    n, c = M.shape
    a, b = np.full(n, 1.0 / n), np.full(c, 1.0 / c)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _RssSampler() as rss:
            start = time.perf_counter()
            plan, log = ot.sinkhorn(
                a, b, M, spec["reg"], numItermax=spec["max_iter"], stopThr=spec["tol"], log=True
            )
            pseudo = plan.argmax(axis=1)
            seconds = time.perf_counter() - start
    np.save(spec["labels_out"], pseudo)
    marginal_error = float(np.linalg.norm(plan.sum(axis=0) - b))
    return {
        "seconds": seconds,
        "n_iter": int(log["niter"]) + 1,  # POT reports the last iteration index
        "converged": bool(log["err"] and log["err"][-1] < spec["tol"]),
        "marginal_error": marginal_error,
        "finite_plan": bool(np.isfinite(plan).all()),
        "warnings": sorted({str(w.message)[:80] for w in caught}),
        **rss.report(),
    }


def work_ot_stretch(spec: dict) -> dict:
    from nlprompt_hf.purification import FeatureCost, pseudo_labels, solve_sinkhorn

    images = _unit_vectors(spec["n"], spec["dim"], seed=spec["seed"])
    text = _unit_vectors(spec["c"], spec["dim"], seed=spec["seed"] + 1)
    source = FeatureCost(images, text, kind="neg_prob", cache=False)  # rows built from the features per pass
    with _RssSampler() as rss:
        start = time.perf_counter()
        result = solve_sinkhorn(source, reg=spec["reg"], max_iter=spec["max_iter"], tol=spec["tol"])
        pseudo = pseudo_labels(source, result)
        seconds = time.perf_counter() - start
    counts = pseudo.bincount(minlength=spec["c"])
    return {
        "seconds": seconds,
        "seconds_per_pass": seconds / (result.n_iter + 2),  # + the initial and the pseudo-label passes
        "n_iter": result.n_iter,
        "n_newton": result.n_newton,
        "converged": result.converged,
        "marginal_error": result.marginal_error,
        "features_mb": images.numel() * 4 / 2**20,
        "dense_float64_plan_mb": spec["n"] * spec["c"] * 8 / 2**20,
        "pseudo_label_count_min_max": [int(counts.min()), int(counts.max())],
        **rss.report(),
    }


def work_ot_pot_variants(spec: dict) -> dict:
    """POT's other Sinkhorn solvers (log domain, stabilised) next to ours at ε = 0.01 and 0.001."""
    import warnings

    import numpy as np
    import ot

    from nlprompt_hf.purification import pseudo_labels, solve_sinkhorn

    _, _, _, cost = _ot_inputs(spec)
    M = cost.numpy()
    n, c = M.shape
    a, b = np.full(n, 1.0 / n), np.full(c, 1.0 / c)
    out = {}
    for reg in spec["regs"]:
        start = time.perf_counter()
        ours = solve_sinkhorn(cost, reg=reg, max_iter=spec["max_iter"], tol=spec["tol"])
        reference = pseudo_labels(cost, ours).numpy()
        entry = {
            "ours": {
                "seconds": time.perf_counter() - start,
                "n_iter": ours.n_iter,
                "converged": ours.converged,
                "marginal_error": ours.marginal_error,
            }
        }
        for method in ("sinkhorn", "sinkhorn_log", "sinkhorn_stabilized"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                plan = ot.sinkhorn(
                    a, b, M, reg, method=method, numItermax=spec["max_iter"], stopThr=spec["tol"]
                )
                seconds = time.perf_counter() - start
                finite = bool(np.isfinite(plan).all())
                error = float(np.linalg.norm(plan.sum(axis=0) - b)) if finite else None
            entry[method] = {
                "seconds": seconds,
                "finite_plan": finite,
                "marginal_error": error,
                "converged": bool(finite and error < spec["tol"]),
                "argmax_agreement_with_ours": float(np.mean(plan.argmax(axis=1) == reference))
                if finite
                else None,
            }
        out[str(reg)] = entry
    return out


WORKERS: dict[str, Callable[[dict], dict]] = {
    "ot_pot_variants": work_ot_pot_variants,
    "ot_ours": work_ot_ours,
    "ot_pot": work_ot_pot,
    "ot_stretch": work_ot_stretch,
}


def worker_main(spec_json: str) -> int:
    import torch

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


def environment(threads: int) -> dict:
    import ot

    return {**base_environment(), "threads": threads, "pot": ot.__version__, "memory": MEMORY_METHOD}


def section_ot(
    threads: int,
    sizes: Sequence[int] = OT_SIZES,
    num_classes: int = OT_CLASSES,
    stretch: bool = True,
    pot_variants: bool = True,
    repeats: int = 3,
    seed: int = 0,
    progress=print,
) -> dict:
    """Our PromptOT solver vs POT's `ot.sinkhorn` (same cost, ε, tolerance), plus the ImageNet-scale stretch."""
    import numpy as np

    rows = []
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes or ():
            base = dict(
                n=n,
                c=num_classes,
                dim=OT_DIM,
                seed=seed,
                reg=OT_REG,
                tol=OT_TOL,
                max_iter=OT_MAX_ITER,
                threads=threads,
            )
            # alternate the two sides `repeats` times; keep the run with the median time of each side (a shared
            # machine can stall one run by far more than the difference being measured)
            runs: dict[str, list[dict]] = {"ours": [], "pot": []}
            for _ in range(max(1, repeats)):
                runs["ours"].append(
                    measure(dict(base, kind="ot_ours", labels_out=os.path.join(tmp, "ours.npy")))
                )
                runs["pot"].append(
                    measure(dict(base, kind="ot_pot", labels_out=os.path.join(tmp, "pot.npy")))
                )
            ours, pot = (_median_run(runs[side]) for side in ("ours", "pot"))
            agreement = float(
                np.mean(np.load(os.path.join(tmp, "ours.npy")) == np.load(os.path.join(tmp, "pot.npy")))
            )
            row = {"n": n, "c": num_classes, "ours": ours, "pot": pot, "argmax_agreement": agreement}
            row["speedup_over_pot"] = pot["seconds"] / ours["seconds"]
            rows.append(row)
            progress(_ot_row_line(row))
    if pot_variants and sizes:
        spec = dict(
            kind="ot_pot_variants",
            n=10_000,
            c=num_classes,
            dim=OT_DIM,
            seed=seed,
            regs=[OT_REG, 0.001],
            tol=OT_TOL,
            max_iter=OT_MAX_ITER,
            threads=threads,
        )
        variants = measure(spec)
        progress(f"POT variants at N=10,000: {json.dumps(variants)}")
    result = {
        "config": {
            "cost": "neg_prob (M = -softmax(100 f t^T)), f, t random unit vectors",
            "dim": OT_DIM,
            "reg": OT_REG,
            "tol": OT_TOL,
            "max_iter": OT_MAX_ITER,
            "seed": seed,
            "ours": "solve_sinkhorn(method='newton') + pseudo_labels (chunked argmax of g - M)",
            "pot": "ot.sinkhorn (sinkhorn_knopp, numpy float64) + argmax of the dense plan",
            "timed": "solve + pseudo-labels; the cost matrix is built before the clock starts (same for both)",
            "repeats": repeats,
        },
        "rows": rows,
        **({"pot_variants_n10000": variants} if pot_variants and sizes else {}),
        "environment": dict(environment(threads), load_average_at_start=load_at_start),
    }
    if stretch:
        load_at_start = os.getloadavg()
        spec = dict(
            kind="ot_stretch",
            n=STRETCH_N,
            c=STRETCH_C,
            dim=OT_DIM,
            seed=seed,
            reg=OT_REG,
            tol=OT_TOL,
            max_iter=OT_MAX_ITER,
            threads=threads,
        )
        result["stretch"] = measure(spec)
        result["stretch"].update(
            n=STRETCH_N,
            c=STRETCH_C,
            environment=dict(environment(threads), load_average_at_start=load_at_start),
        )
        progress(_stretch_line(result["stretch"]))
    return result


def _median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["seconds"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["seconds_all_runs"] = [r["seconds"] for r in runs]
    return median


def _ot_row_line(row: dict) -> str:
    o, p = row["ours"], row["pot"]
    return (
        f"N={row['n']:>8,} C={row['c']}: ours {o['seconds']:7.2f} s ({o['n_iter']:>3} passes, "
        f"{'conv' if o['converged'] else 'NOT conv'}, +{o['solve_extra_mb']:.0f} MB, peak {o['peak_rss_mb']:.0f} MB)"
        f" | POT {p['seconds']:7.2f} s ({p['n_iter']:>4} it, {'conv' if p['converged'] else 'NOT conv'}, "
        f"+{p['solve_extra_mb']:.0f} MB, peak {p['peak_rss_mb']:.0f} MB) | argmax agreement "
        f"{100 * row['argmax_agreement']:.3f} % | purify() {o['purify_seconds']:.2f} s"
    )


def _stretch_line(s: dict) -> str:
    return (
        f"stretch N={s['n']:,} C={s['c']}: {s['seconds']:.1f} s ({s['n_iter']} passes, "
        f"{s['seconds_per_pass']:.1f} s/pass, {'conv' if s['converged'] else 'NOT conv'}, error "
        f"{s['marginal_error']:.1e}); peak RSS {s['peak_rss_mb']:.0f} MB (features {s['features_mb']:.0f} MB, "
        f"solver +{s['solve_extra_mb']:.0f} MB; a dense float64 plan would be {s['dense_float64_plan_mb']:.0f} MB)"
    )


def print_ot_table(result: dict, progress=print) -> None:
    progress(
        "| N | C | ours (s) | passes | POT (s) | POT iters | POT converged | argmax agreement | peak RSS ours / POT (MB) |"
    )
    progress("|---|---|---|---|---|---|---|---|---|")
    for row in result.get("rows", []):
        o, p = row["ours"], row["pot"]
        progress(
            f"| {row['n']:,} | {row['c']} | {o['seconds']:.2f} | {o['n_iter']} | {p['seconds']:.2f} | {p['n_iter']} | "
            f"{p['converged']} | {100 * row['argmax_agreement']:.3f} % | {o['peak_rss_mb']:.0f} / {p['peak_rss_mb']:.0f} |"
        )
    if "stretch" in result:
        progress(_stretch_line(result["stretch"]))


SECTIONS = ("ot", "epoch", "cache")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["ot"],
        help=f"Comma- or space-separated, from {', '.join(SECTIONS)}.",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--sizes", default=",".join(str(n) for n in OT_SIZES), help="ot: sample counts N.")
    parser.add_argument("--classes", type=int, default=OT_CLASSES, help="ot: number of classes C.")
    parser.add_argument(
        "--skip-stretch",
        action="store_true",
        help="ot: leave out N = 1.28 M x C = 1000 (a previous result is kept).",
    )
    parser.add_argument(
        "--stretch-only",
        action="store_true",
        help="ot: run only the stretch (the size rows already saved are kept).",
    )
    parser.add_argument(
        "--skip-pot-variants",
        action="store_true",
        help="ot: leave out POT's sinkhorn_log / sinkhorn_stabilized at N = 10k (about 90 s, mostly sinkhorn_log).",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="Repeats per measurement (ot: median run kept; epoch/cache: medians).",
    )
    parser.add_argument("--demo-model", default=None, help="epoch: CLIP for the demo-task ratio.")
    args = parser.parse_args(argv)
    sections = [s for item in args.sections for s in item.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    say = lambda s: print(s, flush=True)  # noqa: E731
    if "ot" in sections:
        say("[ot]")
        sizes = [] if args.stretch_only else [int(s) for s in args.sizes.split(",") if s]
        result = section_ot(
            args.threads,
            sizes,
            args.classes,
            stretch=not args.skip_stretch,
            pot_variants=not args.skip_pot_variants,
            repeats=args.repeats or 3,
            progress=say,
        )
        previous = load_results(args.output).get("ot", {})
        if args.stretch_only:  # keep the size rows of the last full run
            result = dict(previous, stretch=result["stretch"])
        elif args.skip_stretch and "stretch" in previous:  # keep the last stretch result
            result["stretch"] = previous["stretch"]
        update_results(args.output, {"ot": result})  # lands as soon as it is done
        print_ot_table(result, say)
    training = [s for s in sections if s != "ot"]
    if training:
        sys.path.insert(0, BENCH_DIR)
        import speed_training

        speed_training.run_sections(
            training, args.threads, args.repeats or 2, args.output, demo_model=args.demo_model, progress=say
        )
    say(f"Wrote {os.path.relpath(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
