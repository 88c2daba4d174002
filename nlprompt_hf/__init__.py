"""nlprompt-hf: noisy-label prompt learning (NLPrompt, CVPR 2025) for CLIP models on the Hugging Face stack.

The public API is re-exported here; heavy modules are imported lazily so `import nlprompt_hf` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "NLPromptModel": "nlprompt_hf.prompt_adapter",
    "PromptAdapterConfig": "nlprompt_hf.prompt_adapter",
    "NLPromptConfig": "nlprompt_hf.config",
    "NLPromptTrainer": "nlprompt_hf.trainer",
    "build_model_card": "nlprompt_hf.model_card",
    "purify": "nlprompt_hf.purification",
    "PurificationResult": "nlprompt_hf.purification",
    "split_loss": "nlprompt_hf.losses",
    "load_accuracy_metric": "nlprompt_hf.metrics",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .config import NLPromptConfig  # noqa: F401
    from .losses import split_loss  # noqa: F401
    from .metrics import load_accuracy_metric  # noqa: F401
    from .model_card import build_model_card  # noqa: F401
    from .prompt_adapter import NLPromptModel, PromptAdapterConfig  # noqa: F401
    from .purification import PurificationResult, purify  # noqa: F401
    from .trainer import NLPromptTrainer  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nlprompt_hf' has no attribute {name!r}")
