"""Procedural captioned shapes: the corpus the demo CLIP was pretrained on and the demo task.

Every image is 32×32 RGB with one shape on a background. Rendering is vectorised numpy: each shape
is an inside/outside test on a 2× supersampled grid, averaged down to 32×32 for anti-aliased edges.
All randomness comes from `np.random.default_rng(seed)`, so a seed fixes the arrays and captions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon", "heart", "arrow")

# Named colours (RGB anchors, jittered per image). Names appear in captions.
COLORS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
    "pink": (240, 120, 190),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
}
SIZES = ("small", "large")
POSITIONS = ("in the center", "on the left", "on the right", "at the top", "at the bottom")
# Backgrounds seen in pretraining, then the ones only the shifted demo task uses.
PRETRAIN_BACKGROUNDS = ("plain", "gradient", "noisy")
BACKGROUNDS = PRETRAIN_BACKGROUNDS + ("striped", "checkered")
STYLES = ("filled", "outline")

# Caption templates used for pretraining. "a photo of a {shape}." is deliberately held out: it is
# the zero-shot prompt, so zero-shot accuracy measures transfer to an unseen phrasing.
TRAIN_TEMPLATES = (
    "a {shape}.",
    "a {color} {shape}.",
    "a {size} {shape}.",
    "a {size} {color} {shape}.",
    "a {color} {shape} on a {background} background.",
    "a {shape} {position}.",
    "a {size} {color} {shape} {position}.",
    "a picture of a {color} {shape}.",
    "an image of a {shape} on a {background} background.",
    "a drawing of a {size} {shape}.",
    "there is a {color} {shape} {position} on a {background} background.",
)
ZERO_SHOT_TEMPLATE = "a photo of a {}."

IMAGE_SIZE = 32
_SUPERSAMPLE = 2
_CHUNK = 2048
_ARTICLE = re.compile(r"(^|\s)a ([aeiou])")

# Named distribution shifts for the demo task: keyword overrides of `generate_corpus`.
# "smaller" (the default) draws shapes at radius 0.20-0.30 of the side where pretraining saw 0.24-0.44:
# the features still separate the shapes, but zero-shot CLIP loses some accuracy that a few labelled
# shots can win back. The others degrade the features themselves (measured in recipes/demo_clip/README.md).
DEMO_SHIFTS = {
    "none": {},
    "smaller": {"size_ranges": ((0.20, 0.25), (0.25, 0.30))},
    "texture": {"backgrounds": ("striped", "checkered"), "background_probs": (0.5, 0.5)},
    "outline": {"style": "outline"},
    "noise": {"noise_std": 40.0},
    "low_contrast": {"min_contrast": 45.0, "max_contrast": 90.0},
}


def caption_vocabulary() -> list[str]:
    """Every word that can occur in a caption or in the zero-shot prompt, in a fixed order.

    Returns:
        `list[str]`: lower-case words without punctuation (the tokenizer splits "." off).
    """
    words: list[str] = []
    texts = list(TRAIN_TEMPLATES) + [ZERO_SHOT_TEMPLATE, "{}"]
    texts += list(SHAPES) + list(COLORS) + list(SIZES) + list(POSITIONS) + list(BACKGROUNDS)
    texts += ["an", "background"]
    for text in texts:
        for word in text.replace("{}", " ").replace(".", " ").split():
            if word.startswith("{"):
                continue
            if word not in words:
                words.append(word)
    return words


def _polar_polygon(r, a, points: int, inner: float):
    """Inside test for a star-shaped polygon with `points` tips at radius 1 and notches at `inner`.

    A regular n-gon is the case `inner = cos(pi / n)` (the notch is the edge midpoint).
    """
    half = np.pi / points
    phi = np.mod(a, 2 * half)
    phi = np.minimum(phi, 2 * half - phi)  # fold onto [0, half] by symmetry
    dx, dy = inner * np.cos(half) - 1.0, inner * np.sin(half)
    # Distance along the ray at angle phi to the edge from (1, 0) to the notch.
    boundary = dy / (dy * np.cos(phi) - dx * np.sin(phi))
    return r <= boundary


def _shape_mask(shape: int, u, v):
    """Boolean inside test of shape `shape` in local coordinates (units of the shape radius)."""
    name = SHAPES[shape]
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.78
    if name == "diamond":
        return np.abs(u) / 0.6 + np.abs(v) <= 1.0
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if name == "arrow":
        shaft = (u >= -0.95) & (u <= 0.1) & (np.abs(v) <= 0.2)
        head = (u >= 0.0) & (np.abs(v) <= 0.65 * (0.95 - u) / 0.95)
        return shaft | head
    if name == "heart":
        x, y = 1.15 * u, -1.15 * v + 0.1
        return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0
    r, a = np.sqrt(u * u + v * v), np.arctan2(v, u)
    if name == "triangle":
        return _polar_polygon(r, a, 3, np.cos(np.pi / 3))
    if name == "hexagon":
        return _polar_polygon(r, a, 6, np.cos(np.pi / 6))
    if name == "star":
        return _polar_polygon(r, a, 5, 0.42)
    raise ValueError(f"Unknown shape id {shape}: expected an index into SHAPES (0..{len(SHAPES) - 1}).")


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, found {value!r}.")


def generate_corpus(
    n: int,
    seed: int | Sequence[int],
    *,
    shapes: Sequence[int] | None = None,
    templates: Sequence[str] = TRAIN_TEMPLATES,
    backgrounds: Sequence[str] = PRETRAIN_BACKGROUNDS,
    background_probs: Sequence[float] | None = (0.5, 0.4, 0.1),
    style: str = "filled",
    size_ranges: Sequence[tuple[float, float]] = ((0.24, 0.32), (0.36, 0.44)),
    min_contrast: float = 110.0,
    max_contrast: float | None = None,
    noise_std: float = 3.0,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Render `n` captioned shape images.

    Args:
        n (`int`):
            Number of images.
        seed (`int` or sequence of `int`):
            Seed of `np.random.default_rng`; the same seed gives identical images and captions.
        shapes (sequence of `int`, *optional*):
            Shape id (index into `SHAPES`) of each image. Defaults to uniform random shapes.
        templates (sequence of `str`, *optional*, defaults to `TRAIN_TEMPLATES`):
            Caption templates with `{shape}`, `{color}`, `{size}`, `{position}`, `{background}` fields;
            each image gets one at random.
        backgrounds (sequence of `str`, *optional*, defaults to `PRETRAIN_BACKGROUNDS`):
            Background kinds to draw from, each in `BACKGROUNDS`.
        background_probs (sequence of `float`, *optional*, defaults to `(0.5, 0.4, 0.1)`):
            Probability of each background kind; `None` for uniform.
        style (`str`, *optional*, defaults to `"filled"`):
            `"filled"` shapes or `"outline"` shapes (a band 25 % of the radius wide).
        size_ranges (sequence of `(float, float)`, *optional*):
            Radius ranges, as fractions of the image side, for the `"small"` and `"large"` sizes.
        min_contrast (`float`, *optional*, defaults to `110.0`):
            Minimum Euclidean RGB distance between the shape colour and the mean background colour.
        max_contrast (`float`, *optional*):
            Maximum of that distance, to make low-contrast images. Defaults to no maximum.
        noise_std (`float`, *optional*, defaults to `3.0`):
            Standard deviation of Gaussian pixel noise, in 0–255 units.

    Returns:
        `tuple`: `images` (`np.ndarray` of `uint8`, shape `(n, 32, 32, 3)`), `captions` (`list[str]`)
        and `shape_ids` (`np.ndarray` of `int64`, shape `(n,)`).

    Example:

    ```python
    >>> images, captions, shape_ids = generate_corpus(4, seed=0)
    >>> images.shape
    (4, 32, 32, 3)
    ```
    """
    if n < 0:
        raise ValueError(f"`n` must be a non-negative number of images, found {n}.")
    _check_choice("style", style, STYLES)
    for kind in backgrounds:
        _check_choice("backgrounds", kind, BACKGROUNDS)
    if background_probs is not None and len(background_probs) != len(backgrounds):
        raise ValueError(
            f"`background_probs` must have one probability per background ({len(backgrounds)}), "
            f"found {len(background_probs)}: pass as many as `backgrounds` or None for uniform."
        )
    if max_contrast is not None and max_contrast <= min_contrast:
        raise ValueError(f"`max_contrast` ({max_contrast}) must be above `min_contrast` ({min_contrast}).")
    rng = np.random.default_rng(seed)

    # --- per-image parameters, all drawn up front so rendering order cannot change them ---
    if shapes is None:
        shape_ids = rng.integers(0, len(SHAPES), size=n)
    else:
        shape_ids = np.asarray(shapes, dtype=np.int64)
        if shape_ids.shape != (n,) or (n and (shape_ids.min() < 0 or shape_ids.max() >= len(SHAPES))):
            raise ValueError(
                f"`shapes` must hold {n} ids in [0, {len(SHAPES)}), found shape {shape_ids.shape} "
                f"with range [{shape_ids.min() if n else '-'}, {shape_ids.max() if n else '-'}]."
            )
    shape_ids = shape_ids.astype(np.int64)
    size_ids = rng.integers(0, len(SIZES), size=n)
    lows = np.array([r[0] for r in size_ranges])[size_ids]
    highs = np.array([r[1] for r in size_ranges])[size_ids]
    radius = rng.uniform(lows, highs)
    # Keep most of the shape inside the frame: big shapes barely move, small ones roam.
    margin = np.maximum(0.5 - 0.75 * radius, 0.0)
    center = 0.5 + rng.uniform(-1.0, 1.0, size=(n, 2)) * margin[:, None]
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    probs = None if background_probs is None else np.asarray(background_probs, dtype=float)
    if probs is not None:
        probs = probs / probs.sum()
    bg_kind = rng.choice(len(backgrounds), size=n, p=probs)
    bg_color = rng.uniform(0.0, 255.0, size=(n, 3))
    # Second background colour (gradient end, stripe/check colour): a clearly different colour.
    bg_color2 = np.clip(bg_color + rng.uniform(-60.0, 60.0, size=(n, 3)), 0.0, 255.0)
    stripe_freq = rng.uniform(3.0, 6.0, size=n)  # stripes / checks per image side
    bg_angle = rng.uniform(0.0, 2 * np.pi, size=n)
    palette = np.array(list(COLORS.values()), dtype=float)
    color_ids = rng.integers(0, len(palette), size=n)
    color = np.clip(palette[color_ids] + rng.uniform(-20.0, 20.0, size=(n, 3)), 0.0, 255.0)
    # Resample colours that are too close to (or, if asked, too far from) the background.
    bg_mean = (bg_color + bg_color2) / 2
    is_two_tone = np.isin(np.asarray(backgrounds)[bg_kind], ["gradient", "striped", "checkered"])
    bg_mean = np.where(is_two_tone[:, None], bg_mean, bg_color)
    for _ in range(1000):
        dist = np.linalg.norm(color - bg_mean, axis=1)
        bad = dist < min_contrast
        if max_contrast is not None:
            bad |= dist > max_contrast
        if not bad.any():
            break
        k = int(bad.sum())
        if max_contrast is None:
            color_ids[bad] = rng.integers(0, len(palette), size=k)
            color[bad] = np.clip(palette[color_ids[bad]] + rng.uniform(-20.0, 20.0, size=(k, 3)), 0, 255)
        else:
            # Low contrast: move the background towards the shape colour instead (keeps colour names).
            direction = rng.normal(size=(k, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            target = rng.uniform(min_contrast, max_contrast, size=(k, 1))
            new_bg = np.clip(color[bad] + direction * target, 0, 255)
            shift = new_bg - bg_mean[bad]
            bg_color[bad] += shift
            bg_color2[bad] = np.clip(bg_color2[bad] + shift, 0, 255)
            bg_mean[bad] = new_bg
    else:
        raise ValueError(
            f"Could not satisfy the colour contrast constraints (min {min_contrast}, max {max_contrast}): "
            "widen the contrast range."
        )
    template_ids = rng.integers(0, len(templates), size=n)

    # --- rendering, in fixed-size chunks to bound memory; float32 keeps it fast ---
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    fine = IMAGE_SIZE * _SUPERSAMPLE
    grid = ((np.arange(fine) + 0.5) / fine).astype(np.float32)  # sample positions in [0, 1]
    gy, gx = np.meshgrid(grid, grid, indexing="ij")  # (S, S)
    pix = ((np.arange(IMAGE_SIZE) + 0.5) / IMAGE_SIZE).astype(np.float32)
    py, px = np.meshgrid(pix, pix, indexing="ij")  # (32, 32)
    f32 = np.float32
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        b = sl.stop - sl.start
        cover = np.empty((b, IMAGE_SIZE, IMAGE_SIZE), dtype=f32)
        ids = shape_ids[sl]
        for k in np.unique(ids):
            rows = np.nonzero(ids == k)[0] + sl.start
            # Local shape coordinates: translate, rotate by -angle, scale by the radius.
            cos = np.cos(angle[rows]).astype(f32)[:, None, None]
            sin = np.sin(angle[rows]).astype(f32)[:, None, None]
            inv_rad = (1.0 / radius[rows]).astype(f32)[:, None, None]
            dx = gx[None] - center[rows, 0].astype(f32)[:, None, None]
            dy = gy[None] - center[rows, 1].astype(f32)[:, None, None]
            u = (cos * dx + sin * dy) * inv_rad  # (B_k, S, S)
            v = (cos * dy - sin * dx) * inv_rad
            inside = _shape_mask(int(k), u, v)
            if style == "outline":
                inside &= ~_shape_mask(int(k), u * f32(1 / 0.75), v * f32(1 / 0.75))
            cover[rows - sl.start] = inside.reshape(-1, IMAGE_SIZE, _SUPERSAMPLE, IMAGE_SIZE, _SUPERSAMPLE).sum(
                axis=(2, 4), dtype=f32
            ) * f32(1 / _SUPERSAMPLE**2)

        # Backgrounds: a mix t in [0, 1] between the two background colours, per pixel.
        kinds = np.asarray(backgrounds)[bg_kind[sl]]
        bc, bc2 = bg_color[sl].astype(f32)[:, None, None, :], bg_color2[sl].astype(f32)[:, None, None, :]
        ba = bg_angle[sl].astype(f32)[:, None, None]
        t = np.zeros((b, IMAGE_SIZE, IMAGE_SIZE), dtype=f32)
        two_tone = kinds != "plain"
        if two_tone.any():
            along = np.cos(ba) * (px[None] - 0.5) + np.sin(ba) * (py[None] - 0.5)  # (B, 32, 32)
            freq = stripe_freq[sl].astype(f32)[:, None, None]
            grad = kinds == "gradient"
            t[grad] = (along[grad] + 0.71) / 1.42
            striped = kinds == "striped"
            t[striped] = np.floor(along[striped] * freq[striped] * 2) % 2
            checks = kinds == "checkered"
            if checks.any():
                across = -np.sin(ba[checks]) * (px[None] - 0.5) + np.cos(ba[checks]) * (py[None] - 0.5)
                f = freq[checks]
                t[checks] = (np.floor(along[checks] * f * 2) + np.floor(across * f * 2)) % 2
        bg = bc + (bc2 - bc) * t[..., None]  # (B, 32, 32, 3)
        noisy = kinds == "noisy"
        if noisy.any():
            shape = (int(noisy.sum()), IMAGE_SIZE, IMAGE_SIZE, 3)
            bg[noisy] += rng.standard_normal(size=shape, dtype=f32) * f32(12.0)

        img = bg + (color[sl].astype(f32)[:, None, None, :] - bg) * cover[..., None]
        if noise_std > 0:
            img += rng.standard_normal(size=img.shape, dtype=f32) * f32(noise_std)
        images[sl] = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    color_names = list(COLORS)
    captions = []
    for i in range(n):
        cx, cy = center[i] - 0.5
        if max(abs(cx), abs(cy)) < 0.08:
            position = POSITIONS[0]
        elif abs(cx) >= abs(cy):
            position = POSITIONS[1] if cx < 0 else POSITIONS[2]
        else:
            position = POSITIONS[3] if cy < 0 else POSITIONS[4]
        captions.append(
            templates[template_ids[i]].format(
                shape=SHAPES[shape_ids[i]],
                color=color_names[color_ids[i]],
                size=SIZES[size_ids[i]],
                position=position,
                background=backgrounds[bg_kind[i]],
            )
        )
    # "a orange" -> "an orange", "a arrow" -> "an arrow".
    captions = [_ARTICLE.sub(r"\1an \2", caption) for caption in captions]
    return images, captions, shape_ids


def make_demo_task(
    seed: int = 2025,
    train_per_class: int = 64,
    test_size: int = 1000,
    shift: str = "smaller",
):
    """Build the demo classification task: a held-out set of shape images, optionally domain-shifted.

    The demo CLIP was pretrained on images from seed 0: big filled shapes (radius 0.24–0.44 of the
    side) on plain, gradient and lightly noisy backgrounds. The task draws from different seeds and,
    by default, with a moderate scale shift (`"smaller"`: radius 0.20–0.30), so that zero-shot CLIP
    is decent but not perfect and learned prompts have room to help.

    Args:
        seed (`int`, *optional*, defaults to `2025`):
            Seed of the task; the train and test splits use `[seed, 0]` and `[seed, 1]`.
        train_per_class (`int`, *optional*, defaults to `64`):
            Training images per class (few-shot sampling happens downstream).
        test_size (`int`, *optional*, defaults to `1000`):
            Test images, classes drawn uniformly.
        shift (`str`, *optional*, defaults to `"smaller"`):
            Domain shift from the pretraining images, a key of `DEMO_SHIFTS`: `"none"` (same
            distribution), `"smaller"` (shapes at radius 0.20–0.30 of the side instead of 0.24–0.44),
            `"texture"` (striped / checkered backgrounds), `"outline"` (outlined
            shapes), `"noise"` (pixel noise σ 40), `"low_contrast"` (shape 45–90 RGB units from the
            background).

    Returns:
        `datasets.DatasetDict`: splits `train` and `test` with features `image` (`datasets.Image`)
        and `label` (`datasets.ClassLabel` over `SHAPES`).

    Example:

    ```python
    >>> task = make_demo_task(train_per_class=2, test_size=10)
    >>> task["train"].features["label"].names[:3]
    ['circle', 'square', 'triangle']
    ```
    """
    import datasets
    from PIL import Image

    if shift not in DEMO_SHIFTS:
        raise ValueError(f"`shift` must be one of {list(DEMO_SHIFTS)}, found {shift!r}.")
    if train_per_class < 1 or test_size < 1:
        raise ValueError(
            f"`train_per_class` and `test_size` must be positive, found {train_per_class} and {test_size}."
        )
    kwargs = DEMO_SHIFTS[shift]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(SHAPES))}
    )
    train_shapes = np.repeat(np.arange(len(SHAPES)), train_per_class)
    splits = {}
    for name, split_seed, shapes, size in (
        ("train", [seed, 0], train_shapes, len(train_shapes)),
        ("test", [seed, 1], None, test_size),
    ):
        images, _, labels = generate_corpus(size, split_seed, shapes=shapes, **kwargs)
        splits[name] = datasets.Dataset.from_dict(
            {"image": [Image.fromarray(im) for im in images], "label": labels.tolist()}, features=features
        )
    return datasets.DatasetDict(splits)
