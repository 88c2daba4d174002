"""Human-readable outputs of a run: PNG plots, `report.md`, the console summary table.

Everything here reads finished figures (the Trainer's log history, the purification history, confusion and
transition matrices) and writes files; nothing trains or evaluates. Plots use matplotlib's object API
(`matplotlib.figure.Figure`), so no global backend is switched and no window is ever opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "plot_confusion_matrix",
    "plot_purification",
    "plot_training_curves",
    "plot_transition_matrices",
    "summary_table",
    "write_report",
]

TRAINING_CURVES_PNG = "training_curves.png"
PURIFICATION_PNG = "purification.png"
TRANSITION_PNG = "transition_matrices.png"
CONFUSION_PNG = "confusion_matrix.png"
REPORT_NAME = "report.md"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _epoch_series(log_history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the log entries holding `key` (the last entry per epoch wins)."""
    points: dict[float, float] = {}
    for entry in log_history:
        if key in entry and "epoch" in entry and entry[key] is not None:
            points[round(float(entry["epoch"]), 4)] = float(entry[key])
    epochs = sorted(points)
    return epochs, [points[e] for e in epochs]


def plot_training_curves(log_history: Sequence[dict[str, Any]], path: str) -> str:
    """Training loss and test accuracy per epoch (from `trainer.state.log_history`), written to `path`."""
    fig = _figure(9, 3.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs, loss = _epoch_series(log_history, "loss")
    ax_loss.plot(epochs, loss, marker="o", markersize=3, label="train loss")
    e_eval, eval_loss = _epoch_series(log_history, "eval_loss")
    if eval_loss:
        ax_loss.plot(e_eval, eval_loss, marker="s", markersize=3, label="test loss (CE, true labels)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_loss.legend(fontsize=8)
    e_acc, acc = _epoch_series(log_history, "eval_accuracy")
    if acc:
        ax_acc.plot(e_acc, [100 * a for a in acc], marker="o", markersize=3, color="tab:green")
    else:
        ax_acc.text(0.5, 0.5, "no per-epoch evaluation\n(eval_strategy: epoch)", ha="center", va="center")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="Test accuracy", ylim=(0, 100))
    _integer_ticks(ax_loss, ax_acc)
    fig.savefig(path)
    return path


def plot_purification(history: Sequence[dict[str, Any]], path: str) -> str:
    """Clean fraction and, when true labels are known, precision / recall of the noisy split, per epoch."""
    fig = _figure(6, 3.6)
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["clean_fraction"] for h in history], marker="o", markersize=3, label="clean fraction")
    if history and history[0].get("noise_rate_true"):  # precision / recall need some truly noisy sample
        ax.plot(
            epochs, [h["noise_precision"] for h in history], marker="s", markersize=3, label="noisy precision"
        )
        ax.plot(epochs, [h["noise_recall"] for h in history], marker="^", markersize=3, label="noisy recall")
        if "noise_rate_true" in history[0]:
            ax.axhline(
                1 - history[0]["noise_rate_true"], color="grey", linestyle="--", label="true clean fraction"
            )
    ax.set(
        xlabel="epoch (purification at its start)", ylabel="fraction", title="PromptOT split", ylim=(0, 1.02)
    )
    _integer_ticks(ax)
    ax.legend(fontsize=8)
    fig.savefig(path)
    return path


def _integer_ticks(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _heatmap(
    ax, matrix: np.ndarray, class_names: Sequence[str], title: str, xlabel: str, ylabel: str
) -> None:
    matrix = np.asarray(matrix, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    n = len(class_names)
    if n <= 20:
        ticks = np.arange(n)
        labels = [name if len(name) <= 14 else name[:13] + "…" for name in class_names]
        ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
        ax.set_yticks(ticks, labels, fontsize=7)
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    colour = "white" if normalised[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=6, color=colour)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return image


def plot_transition_matrices(
    estimated: np.ndarray, true: np.ndarray | None, class_names: Sequence[str], path: str
) -> str:
    """Side-by-side heatmaps of label transitions (rows: true class, columns: given label), counts in the cells.

    The estimate takes PromptOT's pseudo-label as the true class; the truth uses the clean label.

    Rows are normalised (colour = row fraction, numbers = counts). On real-noise data `true` is `None` and only
    the estimate is drawn.
    """
    n = len(class_names)
    size = min(4 + 0.35 * n, 16)
    panels = 1 if true is None else 2
    fig = _figure(size * panels, size)
    axes = np.atleast_1d(fig.subplots(1, panels))
    image = _heatmap(
        axes[0],
        estimated,
        class_names,
        "Estimated: PromptOT label → given label",
        "given label",
        "PromptOT label",
    )
    if true is not None:
        _heatmap(axes[1], true, class_names, "True: clean label → given label", "given label", "clean label")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="row fraction")
    fig.savefig(path)
    return path


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str) -> str:
    """Confusion matrix on the test split (rows: true class, columns: predicted class)."""
    n = len(class_names)
    size = min(4 + 0.35 * n, 16)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    image = _heatmap(ax, matrix, class_names, "Confusion matrix (test split)", "predicted", "true")
    fig.colorbar(image, ax=ax, shrink=0.8, label="row fraction")
    fig.savefig(path)
    return path


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


def summary_table(metrics: dict[str, Any]) -> str:
    """The short console / markdown table of a `train` run: zero-shot, baselines, the method, split quality."""
    method = metrics.get("method", "nlprompt")
    rows = [("zero-shot CLIP", metrics.get("zero_shot_accuracy"), None, None)]
    for name, result in (metrics.get("baselines") or {}).items():
        rows.append((_METHOD_NAMES.get(name, name), result.get("eval_accuracy"), None, None))
    split = metrics.get("final_split") or {}
    rows.append(
        (
            _METHOD_NAMES.get(method, method),
            metrics.get("eval_accuracy"),
            split.get("precision"),
            split.get("recall"),
        )
    )
    lines = [
        "| method | top-1 accuracy (%) | noisy-split precision (%) | noisy-split recall (%) |",
        "|---|---|---|---|",
    ]
    for name, acc, precision, recall in rows:
        lines.append(f"| {name} | {_pct(acc)} | {_pct(precision)} | {_pct(recall)} |")
    return "\n".join(lines)


_METHOD_NAMES = {"nlprompt": "NLPrompt", "coop": "CoOp (CE)", "promptmae": "PromptMAE", "gce": "GCE"}


def write_report(
    output_dir: str,
    metrics: dict[str, Any],
    log_history: Sequence[dict[str, Any]],
    *,
    class_names: Sequence[str],
    confusion: np.ndarray,
    estimated_transition: np.ndarray | None = None,
    true_transition: np.ndarray | None = None,
) -> str:
    """Write the PNG plots and `report.md` (which links them) into `output_dir`; returns the report's path."""
    history = metrics.get("purification") or []
    plots: list[tuple[str, str, str]] = []
    plot_training_curves(log_history, os.path.join(output_dir, TRAINING_CURVES_PNG))
    plots.append(("Training", TRAINING_CURVES_PNG, "Training loss and test accuracy per epoch."))
    if history:
        plot_purification(history, os.path.join(output_dir, PURIFICATION_PNG))
        caption = "Fraction of training samples PromptOT keeps as clean at the start of each epoch"
        if history[0].get("noise_rate_true"):
            caption += ", and precision / recall of the samples it flags as noisy (against the true labels)"
        plots.append(("PromptOT split", PURIFICATION_PNG, caption + "."))
    if estimated_transition is not None:
        plot_transition_matrices(
            estimated_transition, true_transition, class_names, os.path.join(output_dir, TRANSITION_PNG)
        )
        caption = "Estimated noise transitions (the last PromptOT pseudo-label taken as the true class)"
        if true_transition is not None:
            caption += " next to the true ones (clean vs given label)"
        plots.append(("Noise transition matrices", TRANSITION_PNG, caption + "."))
    plot_confusion_matrix(confusion, class_names, os.path.join(output_dir, CONFUSION_PNG))
    plots.append(("Confusion matrix", CONFUSION_PNG, "Predictions of the final prompts on the test split."))

    noise = metrics.get("noise_report") or {}
    setup = {
        "base model": metrics.get("base_model"),
        "dataset": metrics.get("dataset"),
        "method": metrics.get("method"),
        "training samples": noise.get("num_samples"),
        "test samples": metrics.get("num_test_samples"),
        "noise": _noise_text(metrics.get("noise")),
        "realised noise rate": None
        if noise.get("realised_rate") is None
        else f"{noise['realised_rate']:.3f}",
        "epochs": metrics.get("num_train_epochs"),
        "training time (s)": None
        if metrics.get("train_runtime") is None
        else f"{metrics['train_runtime']:.1f}",
    }
    lines = [f"# NLPrompt run report: {metrics.get('dataset', '')}", ""]
    lines += ["## Setup", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in setup.items() if v is not None]
    lines += ["", "## Results", "", summary_table(metrics), ""]
    per_class = metrics.get("per_class_accuracy") or {}
    if per_class:
        lines += ["### Per-class test accuracy", "", "| class | accuracy (%) |", "|---|---|"]
        lines += [f"| {name} | {_pct(acc)} |" for name, acc in per_class.items()]
        lines.append("")
    if history:
        last = history[-1]
        lines += ["### PromptOT split, last epoch", ""]
        lines.append(f"- clean fraction: {last['clean_fraction']:.3f}")
        if last.get("noise_rate_true"):
            lines.append(
                f"- samples flagged noisy: precision {last['noise_precision']:.3f}, recall {last['noise_recall']:.3f}, "
                f"F1 {last.get('noise_f1', float('nan')):.3f}"
            )
        lines.append(
            f"- Sinkhorn: {last.get('ot_iterations', 0):.0f} iterations, {last.get('ot_seconds', 0):.3f} s"
        )
        lines.append("")
    lines += ["## Plots", ""]
    for title, name, caption in plots:
        lines += [f"### {title}", "", caption, "", f"![{title}]({name})", ""]
    path = os.path.join(output_dir, REPORT_NAME)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def _noise_text(noise: dict[str, Any] | None) -> str | None:
    if not noise:
        return None
    if noise.get("type") == "real":
        return "labels as given (real noise)"
    return f"{noise.get('type')} {noise.get('rate')} (seed {noise.get('seed')})"
