"""nlprompt-hf: noisy-label prompt learning for CLIP models on the Hugging Face stack."""

__version__ = "0.1.0"
