"""Images to model inputs: robust decoding to RGB, seeded train augmentation, the checkpoint's own processor.

No torchvision: decoding and augmentation use PIL and numpy, resizing / normalisation is done by the image
processor saved with the checkpoint (`AutoImageProcessor.from_pretrained(path, backend="pil")`).
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

__all__ = [
    "RandomResizedCropFlip",
    "load_image",
    "processor_output_size",
    "to_rgb",
]

_DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError)


def _describe(value: Any, row: int | None) -> str:
    path = (
        value.get("path")
        if isinstance(value, dict)
        else value
        if isinstance(value, (str, os.PathLike))
        else None
    )
    if path:
        return f"file {os.fspath(path)!r}" + (f" (row {row})" if row is not None else "")
    return f"row {row}" if row is not None else "an image without a file path"


def load_image(value: Any, row: int | None = None) -> PILImage.Image:
    """Decode one image cell into an RGB `PIL.Image`, or raise a `ValueError` naming the file (or the row).

    Args:
        value (`PIL.Image.Image`, `dict`, `str`, `os.PathLike` or `bytes`):
            A decoded image, an undecoded `datasets.Image` cell `{"path": ..., "bytes": ...}`, a path or raw bytes.
        row (`int`, *optional*):
            Row index, used in the error message when the image has no path.

    Returns:
        `PIL.Image.Image` in mode `"RGB"` (see [`to_rgb`]).

    Example:

    ```python
    >>> from PIL import Image
    >>> load_image(Image.new("L", (4, 4), 128)).mode
    'RGB'

    ```
    """
    try:
        if isinstance(value, PILImage.Image):
            image = value
        elif isinstance(value, dict):
            if value.get("bytes") is not None:
                image = PILImage.open(io.BytesIO(value["bytes"]))
            elif value.get("path"):
                image = PILImage.open(value["path"])
            else:
                raise ValueError("the cell has neither bytes nor a path")
        elif isinstance(value, (str, os.PathLike)):
            image = PILImage.open(value)
        elif isinstance(value, (bytes, bytearray)):
            image = PILImage.open(io.BytesIO(value))
        else:
            raise ValueError(f"unsupported image value of type {type(value).__name__}")
        image.load()  # PIL opens lazily: truncated data only fails here
        image = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as err:
        raise ValueError(
            f"Could not read {_describe(value, row)} as an image ({type(err).__name__}: {err}). Remove or replace "
            f"the file, or filter the row out of the dataset."
        ) from err
    return to_rgb(image)


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Convert any PIL mode to 8-bit RGB without clipping or losing the picture.

    - 16-bit grayscale (`"I;16*"`, and `"I"` holding values above 255) is scaled from [0, 65535] to [0, 255]
      (PIL's own `convert` clips it, turning most of the image white);
    - other integer / float grayscale (`"I"`, `"F"`) is scaled from [0, 1] or its own min-max range;
    - images with transparency (`"RGBA"`, `"LA"`, `"PA"`, palette with a transparent colour) are composited on
      white, so transparent areas do not turn black;
    - everything else (`"L"`, `"1"`, `"P"`, `"CMYK"`, `"YCbCr"`, ...) goes through `Image.convert("RGB")`.

    Example:

    ```python
    >>> import numpy as np
    >>> from PIL import Image
    >>> deep = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))  # mode "I;16"
    >>> np.asarray(to_rgb(deep))[0, 0].tolist()
    [255, 255, 255]

    ```
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(image).astype(np.float64)
        low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if mode.startswith("I;16") or (mode == "I" and low >= 0 and 255 < high <= 65535):
            arr = arr / 257.0  # 65535 / 255: the full 16-bit range onto the 8-bit range
        elif mode == "F" and low >= 0 and high <= 1:
            arr = arr * 255.0
        elif low < 0 or high > 255:
            arr = (arr - low) / (high - low) * 255.0 if high > low else np.zeros_like(arr)
        gray = PILImage.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def processor_output_size(image_processor: Any) -> tuple[int, int]:
    """(height, width) of the pixels the processor produces: its crop size if it center-crops, else its size.

    Example:

    ```python
    >>> from transformers import CLIPImageProcessorPil
    >>> processor_output_size(CLIPImageProcessorPil(crop_size={"height": 32, "width": 32}))
    (32, 32)

    ```
    """
    size = (
        getattr(image_processor, "crop_size", None)
        if getattr(image_processor, "do_center_crop", False)
        else None
    )
    size = size or getattr(image_processor, "size", None) or {}
    size = dict(size) if not isinstance(size, dict) else size
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise ValueError(f"Could not tell the output size of the image processor from size={size!r}.")


class RandomResizedCropFlip:
    """Random resized crop (area scale 0.08–1, aspect ratio 3/4–4/3) then horizontal flip, seeded, in PIL.

    The train augmentation of CoOp / NLPrompt (`random_resized_crop` + `random_flip`), written without
    torchvision. Draws from its own `np.random.default_rng(seed)`: the sequence of crops is reproducible for a
    given seed and order of calls, and global random states are untouched.

    Args:
        size (`tuple[int, int]`): output (height, width), usually [`processor_output_size`] of the processor.
        seed (`int`, *optional*, defaults to `0`): seed of the augmentation's generator.
        scale (`tuple[float, float]`, *optional*, defaults to `(0.08, 1.0)`): range of the crop's area fraction.
        ratio (`tuple[float, float]`, *optional*, defaults to `(3/4, 4/3)`): range of the crop's aspect ratio.
        flip_prob (`float`, *optional*, defaults to `0.5`): probability of a horizontal flip.

    Example:

    ```python
    >>> from PIL import Image
    >>> RandomResizedCropFlip((16, 16), seed=0)(Image.new("RGB", (40, 30))).size
    (16, 16)

    ```
    """

    def __init__(self, size, seed: int = 0, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_prob: float = 0.5):
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"Expected 0 < scale[0] <= scale[1] <= 1, but got scale={scale!r}.")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"Expected 0 < ratio[0] <= ratio[1], but got ratio={ratio!r}.")
        self.size = (int(size[0]), int(size[1]))
        self.seed, self.scale, self.ratio, self.flip_prob = seed, tuple(scale), tuple(ratio), flip_prob
        self.rng = np.random.default_rng(seed)

    def settings(self) -> dict[str, Any]:
        """The parameters, e.g. for a cache key."""
        return {
            "size": self.size,
            "seed": self.seed,
            "scale": self.scale,
            "ratio": self.ratio,
            "flip": self.flip_prob,
        }

    def _crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):  # rejection sampling as in the usual definition, then a center-crop fallback
            target = area * self.rng.uniform(*self.scale)
            aspect = math.exp(self.rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(self.rng.integers(0, height - h + 1))
                left = int(self.rng.integers(0, width - w + 1))
                return left, top, left + w, top + h
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image: PILImage.Image) -> PILImage.Image:
        box = self._crop_box(*image.size)
        out = image.resize((self.size[1], self.size[0]), PILImage.Resampling.BICUBIC, box=box)
        if self.rng.random() < self.flip_prob:
            out = out.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
        return out
