# Copyright 2025 The nlprompt-hf authors.
# Licensed under the Apache License, Version 2.0.
"""Losses of NLPrompt (Pan et al., "NLPrompt: Noise-Label Prompt Learning for Vision-Language Models",
CVPR 2025, https://arxiv.org/abs/2412.01256).

Pure tensor functions: logits and labels in, a scalar (or per-sample) loss out. No trainer, no model.

- [`cross_entropy_loss`]: CE, trained on the samples PromptOT calls clean (and by CoOp on every sample).
- [`mae_loss`]: mean absolute error on the softmax output, `1 - p_y` (PromptMAE), robust to wrong labels.
- [`gce_loss`]: generalized cross-entropy `(1 - p_y^q) / q` (Zhang & Sabuncu 2018), between CE (q -> 0)
  and MAE (q = 1).
- [`split_loss`]: the NLPrompt loss on one batch: CE on the clean samples, MAE on the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "SplitLossOutput",
    "cross_entropy_loss",
    "gce_loss",
    "mae_loss",
    "split_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(logits: torch.Tensor, labels: torch.Tensor, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"`reduction` must be one of {_REDUCTIONS}, got {reduction!r}. Pass 'mean', 'sum' or 'none'."
        )
    if logits.dim() != 2:
        raise ValueError(
            f"`logits` must have shape (batch_size, num_classes), got shape {tuple(logits.shape)}. "
            "Flatten any extra dimensions first."
        )
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"`labels` must have shape ({logits.shape[0]},) to match `logits` {tuple(logits.shape)}, got "
            f"shape {tuple(labels.shape)}. Pass one integer class index per sample."
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"`labels` must hold integer class indices, got dtype {labels.dtype}. Convert with `labels.long()`."
        )
    if labels.numel() > 0:
        lo, hi = int(labels.min()), int(labels.max())
        num_classes = logits.shape[1]
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"`labels` must lie in [0, {num_classes}) for logits with {num_classes} classes, found label "
                f"{bad}. Check that the label column and the class names of the prompt agree."
            )


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    if per_sample.numel() == 0:  # mean of nothing: 0, not NaN (an empty part of a split batch)
        return per_sample.sum()
    return per_sample.mean()


def _log_prob_of_label(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # log p_y through log_softmax: exact where softmax would round p_y to 0 or 1.
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    log_probs = F.log_softmax(logits, dim=-1)  # (B, C)
    return log_probs.gather(1, labels.long().unsqueeze(1)).squeeze(1)  # (B,)


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Cross-entropy `-log p_y` with `p = softmax(logits)`.

    NLPrompt (https://arxiv.org/abs/2412.01256) applies it to the samples that PromptOT marks clean; CoOp
    applies it to all samples.

    Args:
        logits (`torch.Tensor` of shape `(batch_size, num_classes)`):
            Unnormalised class scores (for CLIP: `logit_scale.exp() * cos(image, text)`).
        labels (`torch.Tensor` of shape `(batch_size,)`):
            Integer class indices in `[0, num_classes)`.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"` (0 for an empty batch), `"sum"` or `"none"` (per-sample losses).

    Returns:
        `torch.Tensor`: a scalar, or shape `(batch_size,)` with `reduction="none"`.

    Example:

    ```python
    >>> import torch
    >>> from nlprompt_hf.losses import cross_entropy_loss
    >>> round(cross_entropy_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0])).item(), 4)  # log 2
    0.6931

    ```
    """
    _check_inputs(logits, labels, reduction)
    per_sample = -_log_prob_of_label(logits, labels)  # (B,)
    return _reduce(per_sample, reduction)


def mae_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Mean absolute error on the softmax output: `1 - p_y`, which equals `½ ‖p - onehot(y)‖₁`.

    PromptMAE of NLPrompt (https://arxiv.org/abs/2412.01256): bounded and symmetric, so a wrong label
    pulls far less than under cross-entropy. NLPrompt applies it, with the *given* (possibly wrong)
    label, to the samples that PromptOT marks noisy.

    The reference code computes it as GCE with `q = 1` and an epsilon: `mean(1 - (p_y + 1e-6))`. That
    differs from this value by the constant `1e-6` only, so gradients are identical; we return the exact
    `1 - p_y`.

    Args:
        logits (`torch.Tensor` of shape `(batch_size, num_classes)`):
            Unnormalised class scores.
        labels (`torch.Tensor` of shape `(batch_size,)`):
            Integer class indices in `[0, num_classes)`.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"` (0 for an empty batch), `"sum"` or `"none"`.

    Returns:
        `torch.Tensor`: a scalar in `[0, 1]`, or shape `(batch_size,)` with `reduction="none"`.

    Example:

    ```python
    >>> import torch
    >>> from nlprompt_hf.losses import mae_loss
    >>> mae_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).item()  # 1 - 0.5
    0.5

    ```
    """
    _check_inputs(logits, labels, reduction)
    per_sample = 1.0 - _log_prob_of_label(logits, labels).exp()  # (B,)
    return _reduce(per_sample, reduction)


def gce_loss(
    logits: torch.Tensor, labels: torch.Tensor, q: float = 0.5, reduction: str = "mean"
) -> torch.Tensor:
    r"""Generalized cross-entropy `(1 - p_y^q) / q` (Zhang & Sabuncu, NeurIPS 2018,
    https://arxiv.org/abs/1805.07836), a baseline of NLPrompt (https://arxiv.org/abs/2412.01256).

    `q → 0` recovers cross-entropy and `q = 1` is exactly MAE ([`mae_loss`]); the NLPrompt reference code
    implements its MAE as this loss with `q = 1` and `p_y + 1e-6` (a constant shift, same gradient).

    Args:
        logits (`torch.Tensor` of shape `(batch_size, num_classes)`):
            Unnormalised class scores.
        labels (`torch.Tensor` of shape `(batch_size,)`):
            Integer class indices in `[0, num_classes)`.
        q (`float`, *optional*, defaults to `0.5`):
            Exponent in `(0, 1]`; 0.5 is the usual choice.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"` (0 for an empty batch), `"sum"` or `"none"`.

    Returns:
        `torch.Tensor`: a scalar, or shape `(batch_size,)` with `reduction="none"`.

    Example:

    ```python
    >>> import torch
    >>> from nlprompt_hf.losses import gce_loss
    >>> gce_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]), q=1.0).item()  # = MAE = 1 - 0.5
    0.5

    ```
    """
    _check_inputs(logits, labels, reduction)
    if not (0.0 < float(q) <= 1.0):
        raise ValueError(
            f"`q` of the GCE loss must be in (0, 1], got {q}. Use q=0.5 (usual), q=1 for MAE, or the "
            "cross-entropy loss for q -> 0."
        )
    per_sample = (1.0 - (q * _log_prob_of_label(logits, labels)).exp()) / q  # (B,)
    return _reduce(per_sample, reduction)


@dataclass
class SplitLossOutput:
    """Output of [`split_loss`].

    Attributes:
        loss (`torch.Tensor`): scalar to back-propagate, `(Σ_clean CE + Σ_noisy MAE) / normalizer`.
        loss_ce (`torch.Tensor`): mean CE over the clean samples of the batch (0 if there are none); for logging.
        loss_mae (`torch.Tensor`): mean noisy-part loss over the noisy samples (0 if there are none); for logging.
        num_clean (`int`): number of clean samples in the batch.
        num_noisy (`int`): number of noisy samples in the batch.
    """

    loss: torch.Tensor
    loss_ce: torch.Tensor
    loss_mae: torch.Tensor
    num_clean: int
    num_noisy: int


def split_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    clean_mask: torch.Tensor,
    noisy_loss: str = "mae",
    gce_q: float = 0.5,
    normalizer: int | float | torch.Tensor | None = None,
) -> SplitLossOutput:
    r"""The NLPrompt loss on one batch: cross-entropy on the clean samples, MAE on the noisy ones.

    NLPrompt (https://arxiv.org/abs/2412.01256, §3): PromptOT splits the training set into a clean part
    (pseudo-label of the transport plan == given label) trained with CE and a noisy part trained with
    MAE against the *given* label, without any weighting between the two. Here both parts live in one
    batch, selected by a per-sample mask:

        loss = (Σ_{i clean} CE_i + Σ_{i noisy} MAE_i) / B

    Difference from the reference code: the reference builds two data loaders and, in every epoch, takes
    optimizer steps on all-clean batches and then on all-noisy batches, each loss averaged over its own
    batch (and drops the last incomplete batch of each). Here every sample enters its step with the same
    weight `1 / B` as in the reference, so the gradient summed over an epoch is the same, but clean and
    noisy samples share steps (no order effect, no dropped subset: a part smaller than a batch still
    trains). An empty clean or noisy part contributes 0 (never NaN).

    Args:
        logits (`torch.Tensor` of shape `(batch_size, num_classes)`):
            Unnormalised class scores.
        labels (`torch.Tensor` of shape `(batch_size,)`):
            The given (possibly noisy) labels, integer indices in `[0, num_classes)`.
        clean_mask (`torch.Tensor` of shape `(batch_size,)`, `bool`):
            `True` for samples that PromptOT marked clean (CE), `False` for noisy ones (MAE).
        noisy_loss (`str`, *optional*, defaults to `"mae"`):
            Loss of the noisy part: `"mae"` (NLPrompt) or `"gce"` (with `gce_q`).
        gce_q (`float`, *optional*, defaults to `0.5`):
            `q` of the GCE loss when `noisy_loss="gce"`.
        normalizer (`int`, `float` or `torch.Tensor`, *optional*):
            Divide the summed loss by this instead of the batch size, e.g. the Trainer's
            `num_items_in_batch` under gradient accumulation.

    Returns:
        [`SplitLossOutput`]: the loss to back-propagate and its parts for logging.

    Example:

    ```python
    >>> import torch
    >>> from nlprompt_hf.losses import split_loss
    >>> logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    >>> out = split_loss(logits, torch.tensor([0, 1]), torch.tensor([True, False]))
    >>> round(out.loss.item(), 4), out.num_clean, out.num_noisy  # (log 2 + 0.5) / 2
    (0.5966, 1, 1)

    ```
    """
    _check_inputs(logits, labels, "none")
    if clean_mask.dim() != 1 or clean_mask.shape[0] != logits.shape[0]:
        raise ValueError(
            f"`clean_mask` must have shape ({logits.shape[0]},) to match the batch, got shape "
            f"{tuple(clean_mask.shape)}. Pass one boolean per sample (True = clean)."
        )
    if clean_mask.dtype != torch.bool:
        raise ValueError(
            f"`clean_mask` must be a bool tensor, got dtype {clean_mask.dtype}. Use `mask.bool()` "
            "(an integer mask would be read as indices)."
        )
    if noisy_loss not in ("mae", "gce"):
        raise ValueError(f"`noisy_loss` must be 'mae' or 'gce', got {noisy_loss!r}.")
    clean_mask = clean_mask.to(logits.device)
    log_p_y = _log_prob_of_label(logits, labels)  # (B,)
    ce = -log_p_y  # (B,)
    if noisy_loss == "mae":
        noisy = 1.0 - log_p_y.exp()  # (B,)
    else:
        if not (0.0 < float(gce_q) <= 1.0):
            raise ValueError(f"`gce_q` must be in (0, 1], got {gce_q}.")
        noisy = (1.0 - (gce_q * log_p_y).exp()) / gce_q  # (B,)
    # torch.where keeps the graph free of the unused branch's gradient; sums over an empty part are 0.
    zero = torch.zeros((), dtype=ce.dtype, device=ce.device)
    ce_sum = torch.where(clean_mask, ce, zero).sum()
    noisy_sum = torch.where(clean_mask, zero, noisy).sum()
    num_clean = int(clean_mask.sum())
    num_noisy = int(clean_mask.numel() - num_clean)
    denom = logits.shape[0] if normalizer is None else normalizer
    if isinstance(denom, torch.Tensor):
        denom = denom.to(ce.device, ce.dtype)
    if logits.shape[0] == 0:
        loss = ce_sum + noisy_sum  # 0, with a graph
    else:
        loss = (ce_sum + noisy_sum) / denom
    return SplitLossOutput(
        loss=loss,
        loss_ce=(ce_sum / max(num_clean, 1)).detach(),
        loss_mae=(noisy_sum / max(num_noisy, 1)).detach(),
        num_clean=num_clean,
        num_noisy=num_noisy,
    )
