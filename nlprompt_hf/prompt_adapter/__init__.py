"""The prompt adapter: CoOp-style learned context on a frozen transformers `CLIPModel`, saved as a PEFT adapter."""

from .config import CONFIG_NAME, PromptAdapterConfig, normalize_class_name
from .model import NLPromptModel, PredictionOutput, PromptLearnerOutput

__all__ = [
    "CONFIG_NAME",
    "NLPromptModel",
    "PredictionOutput",
    "PromptAdapterConfig",
    "PromptLearnerOutput",
    "normalize_class_name",
]
