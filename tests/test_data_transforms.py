import io

import numpy as np
import pytest
import torch
from datasets import Dataset, Image
from PIL import Image as PILImage
from transformers import AutoImageProcessor

from nlprompt_hf.data import RandomResizedCropFlip, add_sample_index, load_image, to_rgb
from nlprompt_hf.data.batches import PixelTransform, training_view
from nlprompt_hf.data.transforms import processor_output_size
from tests.tiny_clip import make_images


def test_grayscale_palette_cmyk_become_rgb():
    for mode in ("L", "1", "P", "CMYK", "YCbCr"):
        out = to_rgb(PILImage.new(mode, (5, 4)))
        assert out.mode == "RGB" and out.size == (5, 4)
    gray = np.asarray(to_rgb(PILImage.new("L", (2, 2), 77)))
    assert gray.shape == (2, 2, 3) and np.all(gray == 77)


def test_rgba_is_composited_on_white():
    rgba = PILImage.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    out = np.asarray(to_rgb(rgba))
    assert out[0, 0].tolist() == [255, 255, 255]  # transparent -> white, not black
    assert out[0, 1].tolist() == [10, 20, 30]


def test_palette_with_transparency():
    p = PILImage.new("P", (2, 2), 0)
    p.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0
    out = np.asarray(to_rgb(p))
    assert out[0, 0].tolist() == [200, 0, 0] and out[1, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16_bit_is_scaled_not_clipped(mode):
    values = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    image = (
        PILImage.fromarray(values)
        if mode == "I;16"
        else PILImage.fromarray(values.astype(np.int32), mode="I")
    )
    assert image.mode == mode
    out = np.asarray(to_rgb(image))[..., 0]
    assert out.tolist() == [[0, 64], [128, 255]]


def test_16_bit_png_roundtrip(tmp_path):
    values = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000).astype(np.uint16)
    path = tmp_path / "deep.png"
    PILImage.fromarray(values).save(path)
    out = np.asarray(load_image(str(path)))[..., 0]
    np.testing.assert_allclose(out, np.rint(values / 257.0), atol=1)
    assert out.max() > 200 and len(np.unique(out)) == 16  # the full range survives


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        load_image(str(bad))
    with pytest.raises(ValueError, match=r"broken\.jpg.*row 3"):
        load_image({"path": str(bad), "bytes": None}, row=3)


def test_truncated_file_is_named(tmp_path):
    buf = io.BytesIO()
    make_images([0], seed=0)[0].resize((64, 64)).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match=r"cut\.png"):
        load_image(str(path))


def test_bytes_without_path_name_the_row():
    with pytest.raises(ValueError, match="row 7"):
        load_image({"path": None, "bytes": b"\x00\x01garbage"}, row=7)


def test_random_resized_crop_flip_is_seeded_and_sized():
    image = make_images([1], seed=0)[0].resize((50, 40))
    a = [np.asarray(RandomResizedCropFlip((16, 16), seed=0)(image)) for _ in range(2)]
    aug = RandomResizedCropFlip((16, 16), seed=0)
    seq = [np.asarray(aug(image)) for _ in range(5)]
    other = np.asarray(RandomResizedCropFlip((16, 16), seed=1)(image))
    assert a[0].shape == (16, 16, 3)
    assert np.array_equal(a[0], a[1]) and np.array_equal(seq[0], a[0])
    assert not all(np.array_equal(seq[0], s) for s in seq[1:])  # crops vary along the sequence
    assert not np.array_equal(other, a[0])
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCropFlip((8, 8), scale=(0.0, 1.0))


def _pixels(dataset, processor, **kwargs):
    return training_view(add_sample_index(dataset), PixelTransform(processor, **kwargs))


def test_pixel_view_uses_checkpoint_processor(tiny_clip_dir, tiny_image_dataset):
    processor = AutoImageProcessor.from_pretrained(tiny_clip_dir, backend="pil")
    assert processor_output_size(processor) == (32, 32)
    train = tiny_image_dataset["train"]
    plain = _pixels(train, processor)
    batch = plain[:4]
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["labels"].tolist() == train["label"][:4]
    expected = processor(images=[im.convert("RGB") for im in train[:4]["image"]], return_tensors="pt")[
        "pixel_values"
    ]
    torch.testing.assert_close(batch["pixel_values"], expected)
    view = _pixels(train, processor, augment=True, seed=0)
    augmented = view[:4]["pixel_values"]
    assert augmented.shape == (4, 3, 32, 32) and not torch.equal(augmented, expected)
    # the view of a sample depends only on (seed, epoch, sample_idx): reproducible after a resume
    torch.testing.assert_close(view[:4]["pixel_values"], augmented, rtol=0, atol=0)
    view.format["format_kwargs"]["transform"].epoch = 1
    assert not torch.equal(view[:4]["pixel_values"], augmented)


def test_mixed_modes_through_dataset(tiny_clip_dir, tmp_path):
    processor = AutoImageProcessor.from_pretrained(tiny_clip_dir, backend="pil")
    rgb = make_images([0], seed=0)[0]
    deep = PILImage.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    images = [rgb.convert("L"), rgb.convert("RGBA"), rgb.convert("P"), deep]
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        image.save(paths[-1])
    ds = Dataset.from_dict({"image": paths, "label": [0, 0, 0, 0]}).cast_column("image", Image())
    pixels = _pixels(ds, processor)[:]["pixel_values"]
    assert pixels.shape == (4, 3, 32, 32) and torch.isfinite(pixels).all()
    # the 16-bit copy of the grayscale image gives the same pixels as the 8-bit grayscale image
    torch.testing.assert_close(pixels[3], pixels[0], atol=0.05, rtol=0)


def test_true_labels_never_reach_training_batches(tiny_clip_dir, tiny_image_dataset):
    from nlprompt_hf.data import add_sample_index, inject_label_noise

    processor = AutoImageProcessor.from_pretrained(tiny_clip_dir, backend="pil")
    train = add_sample_index(
        inject_label_noise(tiny_image_dataset["train"], rate=0.5, kind="symmetric", seed=0)
    )
    batch = _pixels(train, processor, augment=True, seed=0)[:8]
    assert set(batch) == {"pixel_values", "labels", "sample_idx"}
    assert batch["labels"].tolist() == train["label"][:8]  # the noisy labels
