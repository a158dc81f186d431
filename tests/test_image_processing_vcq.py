"""Tests of VCQImageProcessor: modes, sizes, input kinds, batches, postprocessing, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from vcq_hf import VCQImageProcessor


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "images"


def make_processor(image_size: int = 16) -> VCQImageProcessor:
    return VCQImageProcessor(image_size=image_size)


def pixels(processor: VCQImageProcessor, images, **kwargs) -> torch.Tensor:
    return processor(images, return_tensors="pt", **kwargs).pixel_values


def to_unit(value: float) -> float:
    """[0, 255] -> [-1, 1]."""
    return value / 127.5 - 1.0


def fashion_image() -> Image.Image:
    return Image.open(FIXTURES / "fashion_00.png")


# ------------------------------------------------------------------------------------------------------ PIL modes


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"])
def test_every_mode_gives_rgb_in_range(mode):
    source = Image.open(FIXTURES / "emoji_02.png")  # RGBA, transparent corners
    if mode == "I;16":
        image = Image.fromarray(np.asarray(source.convert("L")).astype(np.uint16) * 257)
        assert image.mode == "I;16"
    elif mode == "F":
        image = Image.fromarray(np.asarray(source.convert("L")).astype(np.float32) / 255.0)
    else:
        image = source.convert(mode)
    assert image.mode == mode
    out = pixels(make_processor(16), image)
    assert out.shape == (1, 3, 16, 16) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_alpha_is_composited_on_white():
    processor = make_processor(4)
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert torch.equal(pixels(processor, transparent), torch.ones(1, 3, 4, 4))
    half_red = Image.new("RGBA", (4, 4), (255, 0, 0, 128))
    out = pixels(processor, half_red)[0, :, 0, 0]
    blended = 255 - 128 * 255 / 255  # 0 * a + 255 * (1 - a) with a = 128/255
    torch.testing.assert_close(out, torch.tensor([1.0, to_unit(blended), to_unit(blended)]), atol=1 / 127.5, rtol=0)
    la = Image.new("LA", (4, 4), (0, 0))
    assert torch.equal(pixels(processor, la), torch.ones(1, 3, 4, 4))
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    palette.info["transparency"] = 0
    assert torch.equal(pixels(processor, palette), torch.ones(1, 3, 4, 4))
    black = VCQImageProcessor(image_size=4, background_color=(0, 0, 0))
    assert torch.equal(pixels(black, transparent), -torch.ones(1, 3, 4, 4))


def test_exact_values_of_common_modes():
    processor = make_processor(4)
    gray = pixels(processor, Image.new("L", (4, 4), 51))
    assert torch.allclose(gray, torch.full((1, 3, 4, 4), to_unit(51)))
    cyan = pixels(processor, Image.new("CMYK", (4, 4), (255, 0, 0, 0)))[0, :, 0, 0]
    assert cyan.tolist() == [-1.0, 1.0, 1.0]
    sixteen = Image.fromarray(np.array([[0, 65535], [128 * 257, 65535]], dtype=np.uint16))
    assert sixteen.mode == "I;16"
    out = pixels(make_processor(2), sixteen)[0, 0]
    torch.testing.assert_close(out, torch.tensor([[-1.0, 1.0], [to_unit(128), 1.0]]))
    rgb = pixels(processor, Image.new("RGB", (4, 4), (255, 0, 51)))[0, :, 0, 0]
    torch.testing.assert_close(rgb, torch.tensor([1.0, -1.0, to_unit(51)]))


# ------------------------------------------------------------------------------------------------- resize / crop


@pytest.mark.parametrize("size", [(96, 32), (32, 96)])
def test_resize_shorter_side_then_center_crop(size):
    """Three equal stripes along the long side: only the middle (green) one survives the center crop."""
    long_side = max(size)
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    for index, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        part = slice(index * long_side // 3, (index + 1) * long_side // 3)
        if size[0] > size[1]:
            array[:, part] = colour
        else:
            array[part, :] = colour
    out = pixels(make_processor(16), Image.fromarray(array))
    assert out.shape == (1, 3, 16, 16)
    interior = out[0, :, 2:-2, 2:-2]  # away from the resampling blur at the stripe edges
    assert torch.allclose(interior[1], torch.ones_like(interior[1]))
    assert torch.allclose(interior[0], -torch.ones_like(interior[0]))


def test_sizes_up_and_down_and_override():
    processor = make_processor(16)
    for width, height in [(8, 8), (28, 28), (5, 40), (300, 17), (16, 16)]:
        assert pixels(processor, Image.new("RGB", (width, height))).shape == (1, 3, 16, 16)
    assert pixels(processor, Image.new("RGB", (20, 20)), image_size=7).shape == (1, 3, 7, 7)
    image = fashion_image()
    expected = torch.from_numpy(np.asarray(image) / 127.5 - 1).float()
    torch.testing.assert_close(pixels(make_processor(28), image)[0, 0], expected)  # no resampling at native size


# ------------------------------------------------------------------------------------------ numpy / torch / batch


def test_numpy_and_torch_inputs_match_pil():
    processor = make_processor(16)
    emoji = Image.open(FIXTURES / "emoji_03.png")  # RGBA
    expected = pixels(processor, emoji)
    rgba = np.array(emoji)  # (H, W, 4) uint8
    assert torch.equal(pixels(processor, rgba), expected)
    assert torch.equal(pixels(processor, np.moveaxis(rgba, -1, 0)), expected)  # (4, H, W)
    assert torch.equal(pixels(processor, rgba.astype(np.float32) / 255.0), expected)
    assert torch.equal(pixels(processor, torch.from_numpy(rgba).permute(2, 0, 1)), expected)  # (4, H, W) uint8
    assert torch.equal(pixels(processor, torch.from_numpy(rgba).permute(2, 0, 1).float() / 255), expected)

    gray = fashion_image()
    expected = pixels(processor, gray)
    array = np.array(gray)
    assert torch.equal(pixels(processor, array), expected)  # (H, W)
    assert torch.equal(pixels(processor, array[..., None]), expected)  # (H, W, 1)
    assert torch.equal(pixels(processor, array[None]), pixels(processor, [array]))  # (1, H, W) is one image
    assert torch.equal(pixels(processor, array.astype(np.uint16) * 257), expected)
    assert torch.equal(pixels(processor, torch.from_numpy(array)), expected)
    assert torch.equal(pixels(processor, array.astype(np.int64)), expected)


def test_batches_of_mixed_images():
    processor = make_processor(16)
    images = [Image.open(path) for path in sorted(FIXTURES.glob("*.png"))]
    assert {image.mode for image in images} == {"L", "RGBA"}
    out = processor(images, return_tensors="pt").pixel_values
    assert out.shape == (32, 3, 16, 16)
    for index in (0, 13, 31):
        assert torch.equal(out[index : index + 1], pixels(processor, images[index]))
    mixed = [images[0], np.asarray(images[20]), torch.from_numpy(np.asarray(images[5]).copy())]
    assert pixels(processor, mixed).shape == (3, 3, 16, 16)
    stacked = np.stack([np.asarray(Image.open(FIXTURES / f"fashion_0{i}.png")) for i in range(4)])[..., None]
    assert pixels(processor, stacked).shape == (4, 3, 16, 16)  # (B, H, W, 1)
    assert pixels(processor, torch.rand(5, 3, 20, 24)).shape == (5, 3, 16, 16)  # (B, C, H, W)
    assert pixels(processor, [[images[0], images[1]], [images[2]]]).shape == (3, 3, 16, 16)


def test_return_tensors():
    processor = make_processor(8)
    images = [Image.new("RGB", (8, 8)), Image.new("L", (9, 12))]
    as_list = processor(images).pixel_values
    assert isinstance(as_list, list) and len(as_list) == 2 and as_list[0].shape == (3, 8, 8)
    as_numpy = processor(images, return_tensors="np").pixel_values
    assert isinstance(as_numpy, np.ndarray) and as_numpy.shape == (2, 3, 8, 8) and as_numpy.dtype == np.float32
    as_torch = processor(images, return_tensors="pt").pixel_values
    assert isinstance(as_torch, torch.Tensor) and torch.equal(as_torch, torch.from_numpy(as_numpy))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.full((8, 8, 3), 1.5, dtype=np.float32), r"must hold values in \[0, 1\]"),
        (np.full((8, 8, 3), -0.5, dtype=np.float64), r"must hold values in \[0, 1\]"),
        (np.full((8, 8), np.nan, dtype=np.float32), r"must hold values in \[0, 1\]"),
        (np.full((8, 8), 300, dtype=np.int32), r"must hold values in \[0, 255\]"),
        (np.zeros((8, 8, 5), dtype=np.uint8), r"Expected an image array of shape"),
        (np.zeros((2, 8, 8, 3, 1), dtype=np.uint8), r"Expected an image array of shape"),
        (np.zeros((8, 8, 3), dtype=np.complex64), r"Unsupported image arrays dtype"),
        ("image.png", r"Unsupported images of type str"),
        ([], r"empty batch"),
        ([None], r"Unsupported images of type NoneType"),
    ],
)
def test_bad_inputs(images, message):
    with pytest.raises(ValueError, match=message):
        make_processor(8)(images, return_tensors="pt")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"image_size = 0 is out of range"):
        VCQImageProcessor(image_size=0)
    with pytest.raises(ValueError, match=r"resample = 17 is not a PIL resampling filter"):
        VCQImageProcessor(resample=17)
    with pytest.raises(ValueError, match=r"background_color = \(255, 255\) must be three integers"):
        VCQImageProcessor(background_color=(255, 255))
    with pytest.raises(ValueError, match=r"Unexpected arguments \['size'\]"):
        make_processor(8)(Image.new("RGB", (8, 8)), size=4)


# ------------------------------------------------------------------------------------------------- postprocessing


def test_postprocess_output_types_and_round_trip():
    processor = make_processor(16)
    images = [Image.open(FIXTURES / name) for name in ("emoji_00.png", "fashion_03.png", "digit_07.png")]
    pixel_values = pixels(processor, images)

    pil = processor.postprocess(pixel_values, output_type="pil")
    assert len(pil) == 3 and all(image.mode == "RGB" and image.size == (16, 16) for image in pil)
    assert torch.equal(pixels(processor, pil), pixel_values)  # 8-bit values survive exactly

    array = processor.postprocess(pixel_values, output_type="np")
    assert array.shape == (3, 16, 16, 3) and array.dtype == np.float32 and 0 <= array.min() <= array.max() <= 1
    assert torch.equal(pixels(processor, list(array)), pixel_values)

    tensor = processor.postprocess(pixel_values, output_type="pt")
    assert tensor.shape == (3, 3, 16, 16) and torch.allclose(tensor * 2 - 1, pixel_values)
    assert torch.equal(pixels(processor, tensor), pixel_values)

    single = processor.postprocess(pixel_values[0], output_type="pil")
    assert len(single) == 1 and np.array_equal(np.asarray(single[0]), np.asarray(pil[0]))
    assert processor.postprocess(pixel_values.numpy(), output_type="np").shape == (3, 16, 16, 3)


def test_postprocess_clamps_and_handles_one_channel():
    processor = make_processor(4)
    sample = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5]).view(1, 1, 1, 5)
    assert processor.postprocess(sample, output_type="pt").flatten().tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    (gray,) = processor.postprocess(sample, output_type="pil")
    assert gray.mode == "L" and np.asarray(gray).tolist() == [[0, 0, 128, 255, 255]]


def test_postprocess_rejects_bad_input():
    processor = make_processor(4)
    with pytest.raises(ValueError, match="output_type = 'latent' is not supported"):
        processor.postprocess(torch.zeros(1, 3, 4, 4), output_type="latent")
    with pytest.raises(ValueError, match=r"Expected sample of shape .*got \(1, 2, 4, 4\)"):
        processor.postprocess(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="floating point"):
        processor.postprocess(torch.zeros(1, 3, 4, 4, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path):
    processor = VCQImageProcessor(image_size=24, resample=Image.Resampling.BILINEAR, background_color=(0, 10, 20))
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_size"] == 24 and saved["resample"] == 2 and saved["background_color"] == [0, 10, 20]
    assert saved["image_processor_type"] == "VCQImageProcessor"
    for reloaded in (VCQImageProcessor.from_pretrained(tmp_path), AutoImageProcessor.from_pretrained(tmp_path)):
        assert type(reloaded) is VCQImageProcessor
        assert (reloaded.image_size, reloaded.resample, reloaded.background_color) == (24, 2, [0, 10, 20])
        image = Image.open(FIXTURES / "emoji_05.png")
        assert torch.equal(pixels(reloaded, image), pixels(processor, image))
    # Saving the reloaded processor writes the same file again.
    VCQImageProcessor.from_pretrained(tmp_path).save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "preprocessor_config.json").read_text()) == saved
