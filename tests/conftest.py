import os

# Tests never reach the Hub: set before transformers / datasets / evaluate are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from tests.tiny_clip import make_image_dataset, save_tiny_clip  # noqa: E402


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny CLIP (correct `eos_token_id`) saved to disk: load it with `from_pretrained`."""
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_clip_dir_legacy_eos(tmp_path_factory):
    """Same architecture with `eos_token_id: 2`, as the openai checkpoints on the Hub (argmax pooling)."""
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip-legacy"), legacy_eos=True)


@pytest.fixture(params=["eos", "legacy_eos"])
def any_tiny_clip_dir(request, tiny_clip_dir, tiny_clip_dir_legacy_eos):
    """Both pooling variants, for tests where the EOS handling matters."""
    return tiny_clip_dir if request.param == "eos" else tiny_clip_dir_legacy_eos


@pytest.fixture(scope="session")
def tiny_image_dataset():
    """4 classes, 8 train + 4 test images per class, generated in memory."""
    return make_image_dataset(n_per_class=8, num_classes=4, seed=0)
