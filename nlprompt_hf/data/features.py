"""Frozen image-feature cache.

The CLIP image encoder is frozen in prompt learning, so the features of the un-augmented images never change:
they are computed once (batched, `no_grad`, eval mode, with a progress bar) and reused by every training step and
every PromptOT purification pass. The cache file is keyed by the model (config + a fingerprint of the vision
weights), the dataset (`_fingerprint` + length + image column) and the preprocessing (the processor's config), so
any change of these computes and stores a new entry. Files are safetensors, written atomically.

With train augmentation on, every epoch sees different pixels: features cannot be cached, the cache is bypassed
(the encoder then runs inside the training step instead).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .transforms import RandomResizedCropFlip, load_image, processor_output_size

logger = logging.getLogger(__name__)

__all__ = ["FeatureCacheInfo", "compute_image_features", "default_feature_cache_dir", "model_fingerprint"]

_CACHE_VERSION = 1


@dataclass(frozen=True)
class FeatureCacheInfo:
    """What [`compute_image_features`] did.

    Args:
        hit (`bool`): the features were read from the cache.
        key (`str`): the cache key (hex digest).
        path (`str`, *optional*): the cache file (`None` when the cache was bypassed).
        bypassed (`bool`): caching was off (`use_cache=False` or augmentation on).
    """

    hit: bool
    key: str
    path: str | None
    bypassed: bool


def default_feature_cache_dir() -> str:
    """`$NLPROMPT_HF_FEATURE_CACHE`, else `$HF_HOME/nlprompt_hf/features`, else `~/.cache/nlprompt_hf/features`."""
    if os.environ.get("NLPROMPT_HF_FEATURE_CACHE"):
        return os.environ["NLPROMPT_HF_FEATURE_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "nlprompt_hf", "features")
    return os.path.join(os.path.expanduser("~"), ".cache", "nlprompt_hf", "features")


def _vision_parameters(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    named = list(model.named_parameters()) + [(f"buffer.{n}", b) for n, b in model.named_buffers()]
    vision = [(n, p) for n, p in named if n.startswith(("vision_model.", "visual_projection."))]
    return vision or named  # a model that is not a CLIPModel: fingerprint everything


def model_fingerprint(model: torch.nn.Module) -> str:
    """A cheap hash identifying the image tower: config, and per vision tensor its name, shape, dtype, sum and a
    strided sample of its values (a change to any weight changes the sum or the sample in practice).

    Example:

    ```python
    >>> import torch
    >>> a = model_fingerprint(torch.nn.Linear(2, 2))
    >>> isinstance(a, str) and len(a) == 64
    True

    ```
    """
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    h.update(type(model).__name__.encode())
    if config is not None and hasattr(config, "to_json_string"):
        h.update(config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for name, tensor in _vision_parameters(model):
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 1024)].float().cpu().numpy()
            h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            h.update(np.float64(flat.double().sum().item()).tobytes())
            h.update(np.ascontiguousarray(sample).tobytes())
    return h.hexdigest()


def _processor_config(image_processor: Any) -> dict[str, Any]:
    if hasattr(image_processor, "to_dict"):
        return image_processor.to_dict()
    return {"class": type(image_processor).__name__, "repr": repr(image_processor)}


def _cache_key(model, image_processor, dataset: Dataset, image_column: str, augmentation: dict | None) -> str:
    payload = {
        "version": _CACHE_VERSION,
        "model": model_fingerprint(model),
        "dataset": {
            "fingerprint": dataset._fingerprint,
            "num_rows": len(dataset),
            "image_column": image_column,
        },
        "processor": _processor_config(image_processor),
        "augmentation": augmentation,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    try:
        p = next(model.parameters())
        return p.device, p.dtype
    except (StopIteration, AttributeError):
        return torch.device("cpu"), torch.float32


def compute_image_features(
    model: Any,
    image_processor: Any,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    image_column: str = "image",
    progress: bool = True,
    use_cache: bool = True,
    augment: bool = False,
    seed: int = 0,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, FeatureCacheInfo]:
    """Image features of every row of `dataset`, from the on-disk cache when possible.

    The features are CLIP's projected, *un-normalised* image embeddings,
    `model.get_image_features(pixel_values=...).pooler_output`, computed in eval mode under `torch.no_grad()` in
    batches, in row order. They are stored as `<cache_dir>/<key>.safetensors`, written to a temporary file and
    renamed so that an interrupted run never leaves a half-written entry. The key hashes the model
    ([`model_fingerprint`]), the dataset (`_fingerprint`, number of rows, image column) and the preprocessing
    (the processor's `to_dict()` and the augmentation settings), so changing any of them computes a new entry.

    With `augment=True` (random resized crop + flip, see [`RandomResizedCropFlip`]) the features differ at every
    call, so the cache is bypassed: nothing is read or written.

    Args:
        model (`transformers.CLIPModel` or any module with `get_image_features`):
            The frozen model; its training mode is restored afterwards.
        image_processor:
            The checkpoint's image processor, e.g. `AutoImageProcessor.from_pretrained(path, backend="pil")`.
        dataset (`datasets.Dataset`):
            Rows to encode; its image column may hold decoded images or undecoded cells / paths.
        batch_size (`int`, *optional*, defaults to `64`):
            Images per forward pass.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Cache folder; defaults to [`default_feature_cache_dir`].
        image_column (`str`, *optional*, defaults to `"image"`):
            Column holding the images.
        progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar while encoding.
        use_cache (`bool`, *optional*, defaults to `True`):
            Read and write the cache.
        augment (`bool`, *optional*, defaults to `False`):
            Encode one augmented view per image instead (bypasses the cache).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the augmentation.
        return_info (`bool`, *optional*, defaults to `False`):
            Also return a [`FeatureCacheInfo`] saying whether the cache was hit.

    Returns:
        `torch.Tensor` of shape (N, D) on the CPU (D = the projection dimension), or `(features, info)`.

    Raises:
        `ValueError`: if the image column is missing or an image cannot be read (the message names the file,
        or the row when there is no file).

    Example:

    ```python
    >>> from transformers import AutoImageProcessor, CLIPModel
    >>> model = CLIPModel.from_pretrained("openai/clip-vit-base-patch16")  # doctest: +SKIP
    >>> processor = AutoImageProcessor.from_pretrained("openai/clip-vit-base-patch16", backend="pil")  # doctest: +SKIP
    >>> feats, info = compute_image_features(model, processor, train, return_info=True)  # doctest: +SKIP
    >>> feats.shape, info.hit  # doctest: +SKIP
    (torch.Size([160, 512]), False)

    ```
    """
    if image_column not in dataset.column_names:
        raise ValueError(
            f"Expected an image column named {image_column!r}, but the dataset has columns {dataset.column_names}. "
            f"Pass `image_column=`."
        )
    if not hasattr(model, "get_image_features"):
        raise ValueError(
            f"Expected a model with `get_image_features` (e.g. a transformers `CLIPModel`), but got "
            f"{type(model).__name__}."
        )
    if batch_size < 1:
        raise ValueError(f"Expected a positive `batch_size`, but got {batch_size}.")

    augmenter = RandomResizedCropFlip(processor_output_size(image_processor), seed=seed) if augment else None
    bypass = not use_cache or augmenter is not None
    key = _cache_key(
        model, image_processor, dataset, image_column, augmenter.settings() if augmenter else None
    )
    path = None
    if not bypass:
        folder = os.fspath(cache_dir) if cache_dir is not None else default_feature_cache_dir()
        path = os.path.join(folder, f"{key}.safetensors")
        if os.path.isfile(path):
            try:
                features = load_file(path)["features"]
            except (SafetensorError, KeyError, OSError) as err:
                # not a safetensors file of ours (corrupt, or planted): never trust it, compute and overwrite it
                logger.warning("Ignoring unreadable feature cache entry %s (%s); recomputing.", path, err)
            else:
                if features.shape[0] == len(dataset):
                    logger.info("Image features: cache hit %s", path)
                    info = FeatureCacheInfo(hit=True, key=key, path=path, bypassed=False)
                    return (features, info) if return_info else features
                logger.warning(
                    "Ignoring cache entry %s with %d rows for %d rows.", path, features.shape[0], len(dataset)
                )
    elif augmenter is not None:
        logger.info("Image features: augmentation on, feature cache bypassed.")

    features = _encode(model, image_processor, dataset, image_column, batch_size, progress, augmenter)
    if path is not None:
        _atomic_save(features, path, key)
        logger.info("Image features: computed and cached at %s", path)
    info = FeatureCacheInfo(hit=False, key=key, path=path, bypassed=bypass)
    return (features, info) if return_info else features


def _encode(model, image_processor, dataset, image_column, batch_size, progress, augmenter) -> torch.Tensor:
    # read undecoded cells so that an unreadable file is reported by name (see `load_image`)
    raw = dataset
    if isinstance(dataset.features.get(image_column), Image):
        raw = dataset.cast_column(image_column, Image(decode=False))
    raw = raw.select_columns([image_column])
    device, dtype = _model_device_dtype(model)
    was_training = getattr(model, "training", False)
    model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in tqdm(
                range(0, len(raw), batch_size), desc="Encoding images", disable=not progress, unit="batch"
            ):
                cells = raw[start : start + batch_size][image_column]
                images = [load_image(cell, row=start + i) for i, cell in enumerate(cells)]
                if augmenter is not None:
                    images = [augmenter(image) for image in images]
                pixels = image_processor(images=images, return_tensors="pt")["pixel_values"]
                out = model.get_image_features(pixel_values=pixels.to(device=device, dtype=dtype))
                # transformers 5 returns an output object; older versions (and simple modules) a tensor
                out = out.pooler_output if hasattr(out, "pooler_output") else out
                chunks.append(out.float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros(0, 0)
    return torch.cat(chunks)


def _atomic_save(features: torch.Tensor, path: str, key: str) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file({"features": features.contiguous()}, tmp, metadata={"key": key, "format": "pt"})
        os.replace(tmp, path)  # atomic on POSIX: readers see the old state or the complete file
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
