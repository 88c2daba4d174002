# Copyright 2025 The nlprompt-hf authors.
# Licensed under the Apache License, Version 2.0.
"""PromptOT: optimal-transport purification of a noisy training set (NLPrompt, Pan et al., CVPR 2025,
https://arxiv.org/abs/2412.01256, §3.2).

Once per epoch, the image features of all training samples are transported onto the text features of the
class prompts (the prototypes) with uniform marginals; the argmax of each row of the entropic transport
plan is a pseudo-label, and a sample is *clean* when its pseudo-label equals its given label.

Pure tensor functions: no trainer, no model. The pieces:

- [`class_probabilities`]: `P = softmax(temperature · f̂ t̂ᵀ)`, `(N, C)`.
- [`ot_cost`]: the cost matrix from `P` (`"neg_prob"`: `-P`, reference behaviour; `"neg_log_prob"`:
  `-log P`, the paper's text).
- [`FeatureCost`]: the same cost built row-chunk by row-chunk from the features, so that large problems
  (ImageNet: N = 1.28 M, C = 1000) never hold an `N × C` float64 matrix.
- [`solve_sinkhorn`]: entropic OT in the log domain, correct for every `ε > 0`, returning the dual
  potentials `(f, g)`. Sinkhorn updates, accelerated by Newton steps on the semi-dual (see its docstring).
- [`transport_plan`]: the dense plan `Q` (small problems and tests).
- [`pseudo_labels`]: `argmax_c Q_ic = argmax_c (g_c - M_ic)` in row chunks (the plan is never built).
- [`purify`]: the whole PromptOT step, returning a [`PurificationResult`].
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "COST_KINDS",
    "DegeneratePlanError",
    "FeatureCost",
    "InvalidOTInputError",
    "PurificationResult",
    "SinkhornResult",
    "class_probabilities",
    "ot_cost",
    "pseudo_labels",
    "purify",
    "solve_sinkhorn",
    "transport_plan",
]

COST_KINDS = ("neg_prob", "neg_log_prob")

# Elements per row chunk (~2 MB in float64): large enough for vectorised kernels, small enough for cache.
_CHUNK_ELEMENTS = 1 << 18
# Below this, entries of the row-normalised plan are dropped from the float32 Hessian so that no product
# of two entries is a float32 subnormal (< 1.2e-38), which makes the matrix product ~100x slower; such
# entries change no Newton direction measurably.
_HESSIAN_FLOOR = 1e-19
# The Hessian of the semi-dual costs N·C² flops per pass; above this budget it is estimated from an
# evenly strided subset of rows (the gradient, hence the solution, stays exact; only the step changes),
# but from no fewer than _HESSIAN_MIN_ROWS_PER_CLASS · C rows: measured at C = 1000, a Hessian from 4 rows
# per class needs ~2-3x the passes of the full one, from 32 rows per class ~1.1-1.3x.
_HESSIAN_FLOP_BUDGET = 1e9
_HESSIAN_MIN_ROWS_PER_CLASS = 32
# ε-scaling: each stage multiplies ε by this; intermediate stages stop once every column mass is within
# a factor exp(_STAGE_LOG_RATIO) of its target.
_EPS_SCALING_FACTOR = 0.2
_STAGE_LOG_RATIO = 0.1
# Levenberg–Marquardt damping μ of the first step of a stage (μ = 1 is about a Sinkhorn update, 0 Newton).
_LM_INITIAL_DAMPING = 0.01
_LM_MIN_DAMPING = 1e-12
# Beyond μ = 1 a damped step is shorter than a Sinkhorn update, which is then the better fallback.
_LM_MAX_DAMPING = 1.0
# Largest move of a potential in one Newton step, in units of ε.
_MAX_STEP = 50.0


class InvalidOTInputError(ValueError):
    """Invalid input to PromptOT: non-finite features or cost, `ε ≤ 0`, bad marginals or labels."""


class DegeneratePlanError(RuntimeError):
    """The transport plan became degenerate (non-finite potentials, an empty row or column)."""


# --------------------------------------------------------------------------------------------------
# Probabilities and cost
# --------------------------------------------------------------------------------------------------


def _check_finite_rows(x: torch.Tensor, name: str) -> None:
    if x.numel() == 0 or bool(torch.isfinite(x.sum())):  # fast path: NaN/inf propagate into the sum
        return
    bad = ~torch.isfinite(x).reshape(x.shape[0], -1).all(dim=1)  # (N,)
    if bool(bad.any()):
        count = int(bad.sum())
        first = int(bad.nonzero()[0, 0])
        hint = {
            "image_features": "Check the image encoder output (fp16 overflow, a corrupt image) and recompute or drop "
            "those samples.",
            "text_features": "The class prompts' text features are not finite: the learned context has probably "
            "diverged (lower the learning rate, or resume from the last good checkpoint).",
        }.get(name, "Check how it was computed (log of 0, division by 0, an fp16 overflow).")
        raise InvalidOTInputError(
            f"`{name}` must be finite, found NaN/inf in {count} of {x.shape[0]} rows (first at index {first}). {hint}"
        )


def _check_features(image_features: torch.Tensor, text_features: torch.Tensor) -> None:
    if image_features.dim() != 2 or text_features.dim() != 2:
        raise InvalidOTInputError(
            "`image_features` must have shape (N, D) and `text_features` shape (C, D), got "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}. Pool/flatten the encoder outputs first."
        )
    if image_features.shape[1] != text_features.shape[1]:
        raise InvalidOTInputError(
            f"Image and text features must share the embedding size D, got D = {image_features.shape[1]} for "
            f"images and D = {text_features.shape[1]} for texts. Use the projected features of the same CLIP model."
        )
    if image_features.shape[0] == 0 or text_features.shape[0] == 0:
        raise InvalidOTInputError(
            f"PromptOT needs at least one sample and one class, got N = {image_features.shape[0]} samples and "
            f"C = {text_features.shape[0]} classes."
        )
    _check_finite_rows(image_features, "image_features")
    _check_finite_rows(text_features, "text_features")


def _check_temperature(temperature: float) -> None:
    if not (math.isfinite(float(temperature)) and float(temperature) > 0):
        raise InvalidOTInputError(
            f"`temperature` must be a finite number > 0, got {temperature}. NLPrompt uses 100."
        )


def _check_kind(kind: str) -> None:
    if kind not in COST_KINDS:
        raise InvalidOTInputError(
            f"`cost` must be one of {COST_KINDS}, got {kind!r}. 'neg_prob' is the reference code's effective "
            "cost, 'neg_log_prob' the paper's formula."
        )


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _scaled_logits(
    image_features: torch.Tensor, text_features: torch.Tensor, temperature: float
) -> torch.Tensor:
    dtype = _compute_dtype(image_features)
    img = F.normalize(image_features.to(dtype), dim=-1)  # (N, D)
    txt = F.normalize(text_features.to(device=img.device, dtype=dtype), dim=-1)  # (C, D)
    return temperature * (img @ txt.T)  # (N, C)


def class_probabilities(
    image_features: torch.Tensor, text_features: torch.Tensor, temperature: float = 100.0
) -> torch.Tensor:
    r"""Class probabilities of PromptOT: `P = softmax(temperature · f̂ t̂ᵀ)` with L2-normalised features.

    NLPrompt (https://arxiv.org/abs/2412.01256) uses the text features of the *current* learned prompts
    as class prototypes and the temperature 100 of CLIP.

    Args:
        image_features (`torch.Tensor` of shape `(N, D)`):
            Image features of the training samples (normalised here).
        text_features (`torch.Tensor` of shape `(C, D)`):
            Text features of the class prompts (normalised here).
        temperature (`float`, *optional*, defaults to `100.0`):
            Multiplier of the cosine similarities before the softmax.

    Returns:
        `torch.Tensor` of shape `(N, C)`: rows sum to 1; float64 for float64 input, float32 otherwise.

    Example:

    ```python
    >>> import torch
    >>> from nlprompt_hf.purification import class_probabilities
    >>> P = class_probabilities(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    >>> P.argmax(dim=1).tolist(), round(P.sum().item(), 6)
    ([0], 1.0)

    ```
    """
    _check_features(image_features, text_features)
    _check_temperature(temperature)
    return _scaled_logits(image_features, text_features, temperature).softmax(dim=-1)  # (N, C)


def ot_cost(P: torch.Tensor, kind: str = "neg_prob") -> torch.Tensor:
    r"""The PromptOT cost matrix from the class probabilities `P`.

    - `"neg_prob"`: `M = -P`, the *effective* cost of the reference code. The reference computes
      `M = -log_softmax(P)`, i.e. it applies a softmax to probabilities a second time:
      `-log_softmax(P)_ic = -P_ic + log Σ_k exp(P_ik)`. The second term is a constant per row `i`, and adding
      `r_i` to row `i` of the cost only multiplies row `i` of the Gibbs kernel `exp(-M/ε)` by `exp(-r_i/ε)`,
      which the row scaling `u_i` (dual potential `f_i`) absorbs exactly: with row marginals fixed, the plan is
      identical. So its plan is the plan of `M = -P`. (Not numerically: the extra ~log C makes `exp(-M/ε)`
      underflow to 0 for small `ε`, the reference's failure at `ε = 0.001`.)
    - `"neg_log_prob"`: `M = -log P`, the formula in the paper's text. `P` is clamped at the smallest
      positive normal number of its dtype so that `-log 0 = inf` never enters the cost (use [`FeatureCost`]
      to get the exact `-log_softmax` of the logits instead).

    Args:
        P (`torch.Tensor` of shape `(N, C)`):
            Class probabilities, e.g. from [`class_probabilities`].
        kind (`str`, *optional*, defaults to `"neg_prob"`):
            `"neg_prob"` or `"neg_log_prob"`.

    Returns:
        `torch.Tensor` of shape `(N, C)`: the cost `M`.

    Example:

    ```python
    >>> import torch
    >>> from nlprompt_hf.purification import ot_cost
    >>> ot_cost(torch.tensor([[0.25, 0.75]])).tolist()
    [[-0.25, -0.75]]

    ```
    """
    _check_kind(kind)
    if P.dim() != 2:
        raise InvalidOTInputError(f"`P` must have shape (N, C), got shape {tuple(P.shape)}.")
    _check_finite_rows(P, "P")
    if kind == "neg_prob":
        return -P
    return -torch.log(P.clamp(min=torch.finfo(P.dtype).tiny))


class FeatureCost:
    r"""A PromptOT cost matrix `M` (`N × C`) served in row chunks, built from the features on demand.

    The solver and [`pseudo_labels`] only ever ask for row blocks, so a problem of ImageNet size
    (N = 1.28 M, C = 1000: 10 GB as a dense float64 matrix) runs in the memory of the features plus a few
    chunks. With `cache=True` the computed blocks are kept (in float64) and later passes reuse them; use
    it when `N·C·8` bytes fit comfortably in memory.

    Args:
        image_features (`torch.Tensor` of shape `(N, D)`):
            Image features (L2-normalised here).
        text_features (`torch.Tensor` of shape `(C, D)`):
            Text features of the class prompts (L2-normalised here).
        kind (`str`, *optional*, defaults to `"neg_prob"`):
            `"neg_prob"` (`M = -P`) or `"neg_log_prob"` (`M = -log P`, computed as the exact `-log_softmax`
            of the scaled logits); see [`ot_cost`].
        temperature (`float`, *optional*, defaults to `100.0`):
            Multiplier of the cosine similarities.
        cache (`bool`, *optional*, defaults to `False`):
            Keep the float64 blocks after the first pass.
    """

    def __init__(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        kind: str = "neg_prob",
        temperature: float = 100.0,
        cache: bool = False,
    ):
        _check_features(image_features, text_features)
        _check_temperature(temperature)
        _check_kind(kind)
        self._dtype = dtype = _compute_dtype(image_features)
        # No normalised copy of the image features (at ImageNet scale that would double their 2.6 GB):
        # keep the caller's tensor and 1 / ‖f_i‖ per row, and scale each block of logits instead.
        self._img = image_features  # (N, D)
        inv_norm = torch.empty(image_features.shape[0], dtype=dtype, device=image_features.device)
        step = max(1, _CHUNK_ELEMENTS // max(image_features.shape[1], 1))
        for start in range(0, image_features.shape[0], step):
            block = image_features[start : start + step].to(dtype)
            inv_norm[start : start + step] = 1.0 / torch.linalg.vector_norm(block, dim=1).clamp(min=1e-12)
        self._scale = inv_norm.mul_(float(temperature))  # (N,) temperature / ‖f_i‖
        self._txt_t = F.normalize(
            text_features.to(device=image_features.device, dtype=dtype), dim=-1
        ).T.contiguous()  # (D, C)
        self.kind = kind
        self.temperature = float(temperature)
        self.cache = cache
        self._blocks: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return (self._img.shape[0], self._txt_t.shape[1])

    @property
    def device(self) -> torch.device:
        return self._img.device

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows `start:stop` of the cost, float64, shape `(stop - start, C)`."""
        key = (start, stop)
        if key in self._blocks:
            return self._blocks[key]
        logits = self._img[start:stop].to(self._dtype) @ self._txt_t  # (n, C) = ‖f_i‖ cos(f_i, t_c)
        logits = logits.mul_(self._scale[start:stop, None]).double()  # temperature · cos
        if self.kind == "neg_prob":
            block = logits.softmax(dim=-1).neg_()
        else:
            block = logits.log_softmax(dim=-1).neg_()
        if self.cache:
            self._blocks[key] = block
        return block


class _DenseCost:
    """A dense `(N, C)` cost tensor behind the same `rows()` interface as [`FeatureCost`]."""

    def __init__(self, cost: torch.Tensor):
        if cost.dim() != 2:
            raise InvalidOTInputError(f"The cost must have shape (N, C), got shape {tuple(cost.shape)}.")
        if cost.shape[0] == 0 or cost.shape[1] == 0:
            raise InvalidOTInputError(
                f"The cost must have at least one row and one column, got {tuple(cost.shape)}."
            )
        if cost.is_complex() or not cost.is_floating_point():
            cost = cost.double()
        _check_finite_rows(cost, "cost")
        self._cost = cost

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._cost.shape)

    @property
    def device(self) -> torch.device:
        return self._cost.device

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self._cost[start:stop].double()


def _as_cost(cost: torch.Tensor | FeatureCost | _DenseCost) -> FeatureCost | _DenseCost:
    if isinstance(cost, (FeatureCost, _DenseCost)):
        return cost
    if isinstance(cost, torch.Tensor):
        return _DenseCost(cost)
    raise InvalidOTInputError(
        f"`cost` must be a torch.Tensor of shape (N, C) or a FeatureCost, got {type(cost).__name__}."
    )


def _chunks(n: int, num_classes: int, chunk_size: int | None) -> Iterator[tuple[int, int]]:
    step = chunk_size or max(1, _CHUNK_ELEMENTS // max(num_classes, 1))
    for start in range(0, n, step):
        yield start, min(start + step, n)


# --------------------------------------------------------------------------------------------------
# Sinkhorn
# --------------------------------------------------------------------------------------------------


@dataclass
class SinkhornResult:
    """Dual potentials of the entropic OT problem and convergence information ([`solve_sinkhorn`]).

    The plan is `Q_ic = exp((f_i + g_c - M_ic) / ε)`; its rows sum exactly to `a` (f is recomputed from g),
    and `marginal_error` is the L2 norm of (column sums of `Q`) − `b`, as `ot.sinkhorn`'s stopping rule.

    Attributes:
        f (`torch.Tensor` of shape `(N,)`, float64): row potentials.
        g (`torch.Tensor` of shape `(C,)`, float64): column potentials.
        n_iter (`int`): passes over the cost (the initial one, then one per Sinkhorn update or Newton trial step).
        converged (`bool`): whether `marginal_error < tol` was reached within `max_iter` passes.
        marginal_error (`float`): final column-marginal violation `‖Qᵀ1 − b‖₂`.
        reg (`float`): the entropic regularisation `ε` used.
        n_newton (`int`): accepted Newton steps among the passes.
    """

    f: torch.Tensor
    g: torch.Tensor
    n_iter: int
    converged: bool
    marginal_error: float
    reg: float
    n_newton: int = 0


def _check_reg(reg: float) -> float:
    try:
        value = float(reg)
    except (TypeError, ValueError):
        raise InvalidOTInputError(f"`reg` (ε) must be a number > 0, got {reg!r}.") from None
    if not (math.isfinite(value) and value > 0):
        raise InvalidOTInputError(
            f"`reg` (the entropic regularisation ε) must be a finite number > 0, got {reg}. NLPrompt uses 0.01; "
            "for the unregularised problem use `ot.emd`."
        )
    return value


def _check_marginal(x: torch.Tensor | None, n: int, name: str, device: torch.device) -> torch.Tensor:
    if x is None:
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=device)
    x = torch.as_tensor(x, dtype=torch.float64, device=device)
    if x.shape != (n,):
        raise InvalidOTInputError(f"Marginal `{name}` must have shape ({n},), got {tuple(x.shape)}.")
    if not bool(torch.isfinite(x).all()) or bool((x <= 0).any()):
        raise InvalidOTInputError(
            f"Marginal `{name}` must be finite and > 0 everywhere, found min {float(x.min())}. Drop the rows or "
            "columns with zero mass before solving."
        )
    return x


class _Pass:
    """Everything one pass over the cost computes at a point `g` of the semi-dual."""

    __slots__ = ("g", "f", "col", "objective", "hessian")

    def __init__(self, g, f, col, objective, hessian):
        self.g, self.f, self.col, self.objective, self.hessian = g, f, col, objective, hessian


def _evaluate(cost, g, a, b, reg, chunk_size, hessian_stride) -> _Pass:
    """One pass: f(g), column sums of the plan, the semi-dual objective and (optionally) its Hessian.

    With `s_i = softmax_c((g_c - M_ic)/ε)` (the plan's row `i`, normalised), `f_i = ε (log a_i - LSE_c(...))`,
    columns `col = Σ_i a_i s_i`, objective `J(g) = Σ_i a_i f_i + Σ_c b_c g_c` (concave, gradient `b - col`),
    Hessian `-(diag(col) - Σ_i a_i s_i s_iᵀ) / ε`; `hessian` holds `Σ_i a_i s_i s_iᵀ`.
    """
    n, num_classes = cost.shape
    f = torch.empty(n, dtype=torch.float64, device=g.device)
    col = torch.zeros(num_classes, dtype=torch.float64, device=g.device)
    hess = None
    if hessian_stride:
        hess = torch.zeros(num_classes, num_classes, dtype=torch.float32, device=g.device)
    buffered: list[torch.Tensor] = []  # strided rows of the plan, scaled by sqrt(a_i), float32
    buffered_rows = 0
    for start, stop in _chunks(n, num_classes, chunk_size):
        z = (g - cost.rows(start, stop)).div_(reg)  # (n, C)
        zmax = z.amax(dim=1, keepdim=True)  # (n, 1)
        z.sub_(zmax).exp_()  # stabilised: the largest entry of each row is exactly 1
        zsum = z.sum(dim=1, keepdim=True)  # (n, 1)
        a_chunk = a[start:stop]
        f[start:stop] = reg * (a_chunk.log() - zmax.squeeze(1) - zsum.log().squeeze(1))
        z.div_(zsum)  # (n, C) row-softmax s_i
        col.addmv_(z.T, a_chunk)
        if hess is not None:
            offset = (-start) % hessian_stride  # global rows i with i % stride == 0
            rows = z[offset::hessian_stride]  # (m, C)
            if rows.shape[0]:
                scaled = torch.where(rows > _HESSIAN_FLOOR, rows, 0.0).mul_(
                    a_chunk[offset::hessian_stride, None].sqrt()
                )
                buffered.append(scaled.float())
                buffered_rows += rows.shape[0]
            if buffered_rows * num_classes >= _CHUNK_ELEMENTS * 16 or (stop == n and buffered):
                block = torch.cat(buffered)  # (m, C): one large matrix product instead of one per chunk
                hess.addmm_(block.T, block)
                buffered, buffered_rows = [], 0
    if hess is not None:
        hess = hess.double()
        if hessian_stride > 1:
            hess *= float(a.sum()) / float(a[::hessian_stride].sum())  # the strided rows stand for all rows
    objective = float(a @ f + b @ g)
    if not (math.isfinite(objective) and bool(torch.isfinite(col).all())):
        raise DegeneratePlanError(
            f"The transport plan became non-finite (reg ε = {reg}). This should not happen for a finite cost; "
            "please report it with the cost matrix's shape and range."
        )
    return _Pass(g, f, col, objective, hess)


def _initial_g(cost, a, b, reg, chunk_size) -> tuple[torch.Tensor, float]:
    """Column update from `f = ε log a` (the first half-step of `ot.sinkhorn`, which starts from `u = 1/N`),
    and the range `max M - min M` of the cost."""
    n, num_classes = cost.shape
    lse = torch.full((num_classes,), -math.inf, dtype=torch.float64, device=a.device)
    lo, hi = math.inf, -math.inf
    for start, stop in _chunks(n, num_classes, chunk_size):
        block = cost.rows(start, stop)  # (n, C)
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        z = a[start:stop].log().unsqueeze(1) - block / reg  # (n, C)
        lse = torch.logaddexp(lse, torch.logsumexp(z, dim=0))
    return reg * (b.log() - lse), hi - lo


def _sinkhorn_step(state: _Pass, b: torch.Tensor, reg: float) -> torch.Tensor:
    # A column whose mass underflowed to 0 gets a large finite step (ascent all the same); never inf.
    col = state.col.clamp(min=torch.finfo(torch.float64).tiny)
    return reg * (b.log() - col.log())


def _newton_step(
    state: _Pass, b: torch.Tensor, reg: float, damping: float
) -> tuple[torch.Tensor, float] | None:
    """Levenberg–Marquardt-damped Newton direction on the semi-dual and the increase of `J` it predicts.

    Solves `(L + μ diag(col)) δ = ε (b - col)` with `L = diag(col) - Σ_i a_i s_i s_iᵀ` (`-ε` times the
    Hessian of `J`), gauge fixed by `Σ δ = 0`. `μ = 0` is Newton's step; a large `μ` gives `δ_c ≈ ε (b_c -
    col_c) / (μ col_c)`, a linearised Sinkhorn update shortened by `1/μ`, and a small `μ` lengthens it where
    `J` is flat (nearly one-hot rows), where Newton's quadratic model is useless.
    """
    num_classes = b.shape[0]
    # L is the Laplacian of the weights W_ck = Σ_i a_i s_ic s_ik (c ≠ k), because Σ_k s_ik = 1. Forming it
    # from the off-diagonal products avoids the cancellation in diag(col) - H for nearly one-hot rows
    # (s_ic ≈ 1), where a float32 H would make it indefinite; a Laplacian is PSD by construction.
    weights = state.hessian.clone()
    weights.fill_diagonal_(0.0)
    laplacian = torch.diag(weights.sum(dim=1)) - weights  # (C, C), PSD with null vector 1
    system = laplacian + damping * torch.diag(state.col)
    scale = float(system.diagonal().mean())
    if not (math.isfinite(scale) and scale > 0):
        return None
    system = system + (scale / num_classes)  # + scale/C · 11ᵀ removes the null space of L
    grad = b - state.col
    try:
        delta = torch.linalg.solve(system, reg * grad)
    except RuntimeError:  # singular (torch.linalg.LinAlgError subclasses RuntimeError)
        return None
    delta = delta - delta.mean()
    if not bool(torch.isfinite(delta).all()):
        return None
    # Trust region in the max norm: where L is (nearly) singular (N < C, columns no row reaches), the linear
    # system extrapolates without bound; a potential moving by 50 ε changes a column's mass by e^50 at most.
    largest = float(delta.abs().max())
    if largest > _MAX_STEP * reg:
        delta = delta * (_MAX_STEP * reg / largest)
    predicted = float(grad @ delta) - 0.5 * float(delta @ (laplacian @ delta)) / reg
    return delta, predicted


def _solve_stage(source, state, a, b, reg, tol, log_ratio_tol, budget, chunk_size, stride, use_newton):
    """Iterate at one ε until `‖col − b‖₂ < tol` (or, for an ε-scaling stage, every column within a factor
    `exp(log_ratio_tol)` of its target) or `budget` passes. Returns `(state, err, passes, newton_steps)`.

    Newton mode is a Levenberg–Marquardt trust region on the concave semi-dual `J`: a step is kept when it
    increases `J` (Armijo, with float64 rounding slack) or halves the marginal error; the damping `μ`
    shrinks after steps that the quadratic model predicted well and grows after rejected ones.
    """
    passes = newton_steps = 0
    damping, growth = _LM_INITIAL_DAMPING, 2.0
    err = float((state.col - b).norm())
    while passes < budget:
        log_ratio = float((state.col.clamp(min=1e-300).log() - b.log()).abs().max())
        if err < tol or (log_ratio_tol is not None and log_ratio < log_ratio_tol):
            break
        proposal = _newton_step(state, b, reg, damping) if use_newton else None
        if proposal is not None and proposal[1] > 0:
            delta, predicted = proposal
            trial = _evaluate(source, state.g + delta, a, b, reg, chunk_size, stride)
            passes += 1
            trial_err = float((trial.col - b).norm())
            actual = trial.objective - state.objective
            slack = 1e-13 * (abs(state.objective) + reg)  # float64 rounding of J near the optimum
            # Armijo ascent on J, and some progress (J up, or the marginal error down).
            if actual >= 1e-4 * predicted - slack and (actual > slack or trial_err < err):
                state, err = trial, trial_err
                newton_steps += 1
                # Nielsen's update: shrink μ smoothly with the model's quality, reset the growth factor.
                rho = min(actual / predicted, 1.0)
                damping = max(damping * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), _LM_MIN_DAMPING)
                growth = 2.0
                continue
            damping = min(damping * growth, _LM_MAX_DAMPING)
            growth *= 2.0
            if passes >= budget:
                break
        # A Sinkhorn update always increases J: progress is guaranteed after a rejected step.
        state = _evaluate(source, state.g + _sinkhorn_step(state, b, reg), a, b, reg, chunk_size, stride)
        passes += 1
        err = float((state.col - b).norm())
    return state, err, passes, newton_steps


def solve_sinkhorn(
    cost: torch.Tensor | FeatureCost,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    reg: float = 0.01,
    max_iter: int = 1000,
    tol: float = 1e-6,
    method: str = "newton",
    init_g: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> SinkhornResult:
    r"""Entropic optimal transport in the log domain: the dual potentials of
    `min_Q ⟨Q, M⟩ - ε H(Q)` s.t. `Q 1 = a`, `Qᵀ 1 = b`, for every `ε > 0`.

    This is the PromptOT solver of NLPrompt (https://arxiv.org/abs/2412.01256). The reference runs POT's
    `ot.sinkhorn` (scaling domain), whose Gibbs kernel `exp(-M/ε)` underflows to 0 (or overflows) once
    `ε` is small relative to the cost range, e.g. `ε = 0.001` with C = 100, and silently returns an all-zero
    plan. Here every exponential is taken relative to its row maximum (`f` is recomputed exactly from `g`
    in each pass), so no `ε > 0` under- or overflows, and the cost is read in row chunks, so `M` need not
    exist as a dense matrix.

    Iterations. `method="sinkhorn"` runs plain Sinkhorn updates `g ← g + ε log(b / Qᵀ1)` (one pass over the
    cost each; the same iterates as `ot.sinkhorn` up to rounding). `method="newton"` (default) reaches the
    same fixed point faster, by maximising the concave semi-dual `J(g) = Σ_i a_i f_i(g) + Σ_c b_c g_c`
    (C unknowns; `f` is a closed form of `g`) with
    - Newton steps `(L + μ diag(Qᵀ1)) δ = ε (b − Qᵀ1)`, `L = -ε ∇²J` (a C × C matrix accumulated in the
      same pass), globalised by a Levenberg–Marquardt trust region (a step is kept when `J` increases; `μ`
      shrinks after good steps, grows after rejected ones): quadratic convergence near the solution;
    - ε-scaling: stages at ε = cost range × 0.2^k down to `reg` (the first from `g = 0`, where the plan is
      nearly uniform), each later one warm-started by extrapolating `g` linearly in ε from the two previous
      stages, so that nearly one-hot rows (a confident model, small ε) never leave the iterate on a flat
      part of `J` far from the solution; intermediate stages stop at every column within 10 % of its mass;
    - a Newton step moves no potential by more than 50 ε, and a rejected step is followed by a Sinkhorn
      update, so every second pass at worst makes Sinkhorn's progress.
    Measured at ε = 0.01, C = 101: 8–20 passes for CLIP-like probabilities where Sinkhorn needs 400 to
    over 1000; 50–80 passes for extremely one-hot rows, where Sinkhorn has not converged after 1000;
    about 20 passes at C = 1000.
    The solution is the same (same problem, same stopping rule); only the path differs.

    Stopping rule (as `ot.sinkhorn`): stop when `‖Qᵀ1 − b‖₂ < tol` (row marginals are exact by
    construction) or after `max_iter` passes (checked at every pass; POT checks every 10th iteration).

    Args:
        cost (`torch.Tensor` of shape `(N, C)` or [`FeatureCost`]):
            The cost matrix `M` (any float dtype; computed in float64 chunk by chunk).
        a (`torch.Tensor` of shape `(N,)`, *optional*):
            Row marginal, positive, same total mass as `b`. Defaults to uniform `1/N`.
        b (`torch.Tensor` of shape `(C,)`, *optional*):
            Column marginal, positive. Defaults to uniform `1/C`.
        reg (`float`, *optional*, defaults to `0.01`):
            Entropic regularisation `ε > 0`.
        max_iter (`int`, *optional*, defaults to `1000`):
            Maximum number of passes over the cost.
        tol (`float`, *optional*, defaults to `1e-6`):
            Stop when the column-marginal L2 error is below this (POT's `stopThr`).
        method (`str`, *optional*, defaults to `"newton"`):
            `"newton"` (Sinkhorn + Newton acceleration) or `"sinkhorn"` (plain log-domain Sinkhorn).
        init_g (`torch.Tensor` of shape `(C,)`, *optional*):
            Warm start for the column potential (e.g. the previous epoch's `g`).
        chunk_size (`int`, *optional*):
            Rows per chunk; default keeps a chunk near 2^18 elements.

    Returns:
        [`SinkhornResult`]: `f`, `g`, `n_iter`, `converged`, `marginal_error`, `reg`, `n_newton`.

    Raises:
        [`InvalidOTInputError`] (a `ValueError`): non-finite cost, `reg ≤ 0`, bad marginals.
        [`DegeneratePlanError`] (a `RuntimeError`): the plan became non-finite or lost a whole row/column.

    Example:

    ```python
    >>> import torch
    >>> from nlprompt_hf.purification import solve_sinkhorn, transport_plan
    >>> M = torch.tensor([[4.0, 5.0], [5.0, 4.0], [4.0, 5.0], [5.0, 4.0]])
    >>> res = solve_sinkhorn(M, reg=0.001)  # exp(-M / 0.001) underflows: ot.sinkhorn returns zeros here
    >>> res.converged, transport_plan(M, result=res).sum(0).round(decimals=6).tolist()
    (True, [0.5, 0.5])

    ```
    """
    reg = _check_reg(reg)
    if method not in ("newton", "sinkhorn"):
        raise InvalidOTInputError(f"`method` must be 'newton' or 'sinkhorn', got {method!r}.")
    if int(max_iter) < 1:
        raise InvalidOTInputError(f"`max_iter` must be >= 1, got {max_iter}.")
    if not (float(tol) > 0):
        raise InvalidOTInputError(f"`tol` must be > 0, got {tol}.")
    source = _as_cost(cost)
    n, num_classes = source.shape
    device = source.device
    a = _check_marginal(a, n, "a", device)
    b = _check_marginal(b, num_classes, "b", device)
    if abs(float(a.sum()) - float(b.sum())) > 1e-8 * float(a.sum()):
        raise InvalidOTInputError(
            f"Marginals must have the same total mass, got sum(a) = {float(a.sum())} and sum(b) = {float(b.sum())}. "
            "Normalise both to sum to 1."
        )
    use_newton = method == "newton" and num_classes > 1
    stride = 0
    if use_newton:
        hessian_rows = max(
            math.ceil(_HESSIAN_FLOP_BUDGET / num_classes**2), _HESSIAN_MIN_ROWS_PER_CLASS * num_classes
        )
        stride = max(1, n // hessian_rows)

    if init_g is not None:
        g = torch.as_tensor(init_g, dtype=torch.float64, device=device).clone()
        if g.shape != (num_classes,) or not bool(torch.isfinite(g).all()):
            raise InvalidOTInputError(
                f"`init_g` must be a finite tensor of shape ({num_classes},), got {tuple(g.shape)}."
            )
        schedule = [reg]  # a warm start is already near the solution at this ε
    else:
        g, cost_range = _initial_g(source, a, b, reg, chunk_size)
        schedule = [reg]
        if use_newton:
            # ε-scaling: solve first at ε ≈ cost range (a smooth, well-coupled problem), then divide ε by 10
            # per stage, warm-starting g (in cost units, continuous in ε). Without it, nearly one-hot rows
            # (a very confident model) leave the semi-dual flat far from the solution and both Sinkhorn and
            # Newton crawl.
            eps = cost_range
            while eps > 1.5 * reg:
                schedule.insert(-1, eps)
                eps *= _EPS_SCALING_FACTOR
            if len(schedule) > 1:
                g = torch.zeros_like(g)  # at ε ≈ cost range the plan is close to uniform: g = 0 is a fine start

    n_iter = 0 if init_g is not None else 1  # the initial column half-step is a pass too
    n_newton = 0
    state = err = None
    history: list[tuple[float, torch.Tensor]] = []  # (ε, solved g) of the finished stages
    for stage, eps in enumerate(schedule):
        last = stage == len(schedule) - 1
        if len(history) >= 2:
            # Predictor: g*(ε) is smooth in ε; extrapolate linearly from the last two stages. For nearly
            # one-hot rows g*(ε) is close to affine in ε, and a cold restart would land where the semi-dual
            # is flat (every row one-hot), far outside Newton's basin.
            (eps0, g0), (eps1, g1) = history[-2], history[-1]
            g = g1 + (eps - eps1) * (g1 - g0) / (eps1 - eps0)
        elif history:
            g = history[-1][1]
        state = _evaluate(source, g, a, b, eps, chunk_size, stride)
        n_iter += 1
        state, err, passes, steps = _solve_stage(
            source,
            state,
            a,
            b,
            eps,
            tol,
            None if last else _STAGE_LOG_RATIO,
            max_iter - n_iter,
            chunk_size,
            stride,
            use_newton,
        )
        n_iter += passes
        n_newton += steps
        history.append((eps, state.g))
        if n_iter >= max_iter:
            break

    converged = err < tol
    if not converged:
        logger.warning(
            "Sinkhorn did not converge in %d passes (marginal error %.3g >= tol %.3g, reg %.3g); the pseudo-labels "
            "come from the last iterate. Increase `max_iter` or `reg`.",
            n_iter,
            err,
            tol,
            reg,
        )
    # A plan whose columns hold (numerically) no mass at all is degenerate: refuse it rather than return it.
    if (
        float(state.col.min()) <= 0.0
        or not bool(torch.isfinite(state.g).all())
        or not bool(torch.isfinite(state.f).all())
    ):
        raise DegeneratePlanError(
            f"The transport plan is degenerate after {n_iter} passes (reg ε = {reg}, marginal error {err:.3g}, "
            f"smallest column mass {float(state.col.min()):.3g} vs expected {float(b.min()):.3g}). Increase `max_iter`."
        )
    return SinkhornResult(
        f=state.f,
        g=state.g,
        n_iter=n_iter,
        converged=converged,
        marginal_error=err,
        reg=reg,
        n_newton=n_newton,
    )


def transport_plan(
    cost: torch.Tensor | FeatureCost,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    reg: float = 0.01,
    max_iter: int = 1000,
    tol: float = 1e-6,
    method: str = "newton",
    result: SinkhornResult | None = None,
) -> torch.Tensor:
    r"""The dense entropic transport plan `Q_ic = exp((f_i + g_c - M_ic) / ε)` (float64, `(N, C)`).

    For small problems and tests; PromptOT itself only needs [`pseudo_labels`]. Solves with
    [`solve_sinkhorn`] unless a `result` for this cost is given. See https://arxiv.org/abs/2412.01256.

    Args:
        cost (`torch.Tensor` of shape `(N, C)` or [`FeatureCost`]):
            The cost matrix.
        a (`torch.Tensor` of shape `(N,)`, *optional*):
            Row marginal; uniform by default.
        b (`torch.Tensor` of shape `(C,)`, *optional*):
            Column marginal; uniform by default.
        reg (`float`, *optional*, defaults to `0.01`):
            Entropic regularisation `ε > 0`.
        max_iter (`int`, *optional*, defaults to `1000`):
            Maximum passes of the solver.
        tol (`float`, *optional*, defaults to `1e-6`):
            Column-marginal L2 error to stop at.
        method (`str`, *optional*, defaults to `"newton"`):
            See [`solve_sinkhorn`].
        result ([`SinkhornResult`], *optional*):
            Potentials already solved for this cost (then nothing is solved again).

    Returns:
        `torch.Tensor` of shape `(N, C)`, float64: rows sum to `a`, columns to `b` within `tol`.
    """
    source = _as_cost(cost)
    if result is None:
        result = solve_sinkhorn(source, a, b, reg=reg, max_iter=max_iter, tol=tol, method=method)
    n, num_classes = source.shape
    plan = torch.empty(n, num_classes, dtype=torch.float64, device=source.device)
    for start, stop in _chunks(n, num_classes, None):
        plan[start:stop] = (
            (result.f[start:stop, None] + result.g - source.rows(start, stop)) / result.reg
        ).exp()
    return plan


def _row_scores(
    source, g: torch.Tensor, reg: float, labels: torch.Tensor | None, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    n, num_classes = source.shape
    pseudo = torch.empty(n, dtype=torch.long, device=g.device)
    score = None if labels is None else torch.empty(n, dtype=torch.float64, device=g.device)
    for start, stop in _chunks(n, num_classes, chunk_size):
        z = g - source.rows(start, stop)  # (n, C); f_i is a row constant: argmax_c Q_ic = argmax_c z_ic
        pseudo[start:stop] = z.argmax(dim=1)
        if score is not None:
            # Q_{i,y_i} / Σ_c Q_ic = softmax_c(z_i / ε)[y_i]
            logq = (z / reg).log_softmax(dim=1)
            score[start:stop] = logq.gather(1, labels[start:stop, None]).squeeze(1).exp()
    return pseudo, score


def pseudo_labels(
    cost: torch.Tensor | FeatureCost, g: torch.Tensor | SinkhornResult, chunk_size: int | None = None
) -> torch.Tensor:
    r"""Pseudo-labels `ŷ_i = argmax_c Q_ic` without building the plan.

    `Q_ic = exp((f_i + g_c - M_ic)/ε)` and `f_i` is constant along row `i`, so `argmax_c Q_ic =
    argmax_c (g_c - M_ic)`: one chunked pass over the cost with the column potential `g` (NLPrompt,
    https://arxiv.org/abs/2412.01256, step 7 of PromptOT).

    Args:
        cost (`torch.Tensor` of shape `(N, C)` or [`FeatureCost`]): the cost matrix.
        g (`torch.Tensor` of shape `(C,)` or [`SinkhornResult`]): the column potential.
        chunk_size (`int`, *optional*): rows per chunk.

    Returns:
        `torch.Tensor` of shape `(N,)`, `torch.long`, values in `[0, C)`.
    """
    source = _as_cost(cost)
    if isinstance(g, SinkhornResult):
        g = g.g
    g = torch.as_tensor(g, dtype=torch.float64, device=source.device)
    if g.shape != (source.shape[1],):
        raise InvalidOTInputError(f"`g` must have shape ({source.shape[1]},), got {tuple(g.shape)}.")
    return _row_scores(source, g, 1.0, None, chunk_size)[0]


# --------------------------------------------------------------------------------------------------
# PromptOT
# --------------------------------------------------------------------------------------------------


@dataclass
class PurificationResult:
    """Result of [`purify`] (PromptOT, https://arxiv.org/abs/2412.01256).

    Attributes:
        clean_mask (`torch.Tensor` of shape `(N,)`, bool): `pseudo_labels == labels` (train with CE).
        pseudo_labels (`torch.Tensor` of shape `(N,)`, long): `argmax_c Q_ic`.
        label_score (`torch.Tensor` of shape `(N,)`, float64): `Q_{i,y_i} / Σ_c Q_ic` in `[0, 1]`, how much
            the plan supports the given label; low values rank likely label issues first.
        n_iter (`int`): passes of the solver over the cost.
        converged (`bool`): whether the marginal error fell below `tol`.
        marginal_error (`float`): final `‖Qᵀ1 − b‖₂`.
        seconds (`float`): wall time of the whole purification.
        g (`torch.Tensor` of shape `(C,)`, float64): the column potential (warm start for the next epoch).
    """

    clean_mask: torch.Tensor
    pseudo_labels: torch.Tensor
    label_score: torch.Tensor
    n_iter: int
    converged: bool
    marginal_error: float
    seconds: float
    g: torch.Tensor | None = None

    @property
    def clean_fraction(self) -> float:
        return float(self.clean_mask.float().mean()) if self.clean_mask.numel() else 0.0


def purify(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    labels: torch.Tensor,
    *,
    cost: str = "neg_prob",
    reg: float = 0.01,
    max_iter: int = 1000,
    tol: float = 1e-6,
    temperature: float = 100.0,
    method: str = "newton",
    init_g: torch.Tensor | None = None,
    chunk_size: int | None = None,
    cache_cost: bool | None = None,
) -> PurificationResult:
    r"""PromptOT purification of NLPrompt (https://arxiv.org/abs/2412.01256): split the training set into
    clean and noisy samples with an entropic transport plan onto the class prototypes.

    Steps (SPEC §2): `P = softmax(temperature · f̂ t̂ᵀ)`; cost `M = -P` (`"neg_prob"`, reference) or
    `-log P` (`"neg_log_prob"`, paper); uniform marginals; Sinkhorn with `reg` (log-domain, any `ε > 0`,
    [`solve_sinkhorn`]); `ŷ_i = argmax_c Q_ic`; clean set `{i : ŷ_i == y_i}` exactly.

    Args:
        image_features (`torch.Tensor` of shape `(N, D)`):
            Frozen image features of all training samples (normalised here).
        text_features (`torch.Tensor` of shape `(C, D)`):
            Text features of the *current* prompts, one per class (normalised here).
        labels (`torch.Tensor` of shape `(N,)`):
            Given (possibly noisy) labels in `[0, C)`.
        cost (`str`, *optional*, defaults to `"neg_prob"`):
            `"neg_prob"` or `"neg_log_prob"`, see [`ot_cost`].
        reg (`float`, *optional*, defaults to `0.01`):
            Entropic regularisation `ε > 0`.
        max_iter (`int`, *optional*, defaults to `1000`):
            Maximum passes of the solver.
        tol (`float`, *optional*, defaults to `1e-6`):
            Column-marginal L2 error to stop at.
        temperature (`float`, *optional*, defaults to `100.0`):
            Multiplier of the cosine similarities.
        method (`str`, *optional*, defaults to `"newton"`):
            Solver path, see [`solve_sinkhorn`].
        init_g (`torch.Tensor` of shape `(C,)`, *optional*):
            Warm start (e.g. `previous_result.g`).
        chunk_size (`int`, *optional*):
            Rows per chunk.
        cache_cost (`bool`, *optional*):
            Keep the float64 cost blocks between passes; default: when `N·C ≤ 2^27` (1 GiB).

    Returns:
        [`PurificationResult`].

    Example:

    ```python
    >>> import torch
    >>> from nlprompt_hf.purification import purify
    >>> text = torch.eye(3)  # three class prototypes
    >>> images = torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.1, 0.0, 1.0]])
    >>> out = purify(images, text, torch.tensor([0, 1, 1]))  # the third label is wrong
    >>> out.clean_mask.tolist(), out.pseudo_labels.tolist()
    ([True, True, False], [0, 1, 2])

    ```
    """
    start_time = time.perf_counter()
    _check_features(image_features, text_features)
    n, num_classes = image_features.shape[0], text_features.shape[0]
    labels = torch.as_tensor(labels)
    if labels.shape != (n,):
        raise InvalidOTInputError(
            f"`labels` must have shape ({n},) (one per image feature), got {tuple(labels.shape)}."
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InvalidOTInputError(f"`labels` must be integer class indices, got dtype {labels.dtype}.")
    labels = labels.long().to(image_features.device)
    out_of_range = (labels < 0) | (labels >= num_classes)
    if bool(out_of_range.any()):
        first = int(out_of_range.nonzero()[0, 0])
        raise InvalidOTInputError(
            f"Labels must lie in [0, C) with C = {num_classes} classes (one text feature per class), found label "
            f"{int(labels[first])} at index {first} ({int(out_of_range.sum())} out of range). Pass one text feature "
            "per class, or fix the label column."
        )
    if cache_cost is None:
        cache_cost = n * num_classes <= (1 << 27)
    source = FeatureCost(image_features, text_features, kind=cost, temperature=temperature, cache=cache_cost)
    result = solve_sinkhorn(
        source, reg=reg, max_iter=max_iter, tol=tol, method=method, init_g=init_g, chunk_size=chunk_size
    )
    pseudo, score = _row_scores(source, result.g, result.reg, labels, chunk_size)
    return PurificationResult(
        clean_mask=pseudo == labels,
        pseudo_labels=pseudo,
        label_score=score,
        n_iter=result.n_iter,
        converged=result.converged,
        marginal_error=result.marginal_error,
        seconds=time.perf_counter() - start_time,
        g=result.g,
    )
