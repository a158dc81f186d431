"""Image processor of the VCQ tokenizer: any image -> RGB, shorter side resized, center-cropped, scaled to [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor
from transformers.image_processing_base import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .configuration_vcq_vq import VCQVQConfig


_OUTPUT_TYPES = ("pil", "np", "pt")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def _composite_on_background(image: Image.Image, background_color: tuple[int, int, int]) -> Image.Image:
    """Alpha-composite an RGBA image onto an opaque background and return it as RGB."""
    background = Image.new("RGBA", image.size, (*background_color, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def _array_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """uint8 stays; uint16 is scaled by 255/65535; floats must be in [0, 1]; other integers must be in [0, 255]."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (not np.isfinite(array).all() or array.min() < -1e-3 or array.max() > 1.0 + 1e-3):
            raise ValueError(
                f"Floating point {what} must hold values in [0, 1] (got min {array.min():.4g}, max {array.max():.4g}); "
                "pass uint8 data for [0, 255] images."
            )
        return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"Integer {what} of dtype {array.dtype} must hold values in [0, 255] (got min {array.min()}, max "
                f"{array.max()}); pass uint16 data for 16-bit images."
            )
        return array.astype(np.uint8)
    raise ValueError(f"Unsupported {what} dtype {array.dtype}.")


class VCQImageProcessor(BaseImageProcessor):
    r"""Turns images of any kind into the `pixel_values` the VCQ tokenizer expects, and its output back into images.

    Preprocessing, per image: convert to RGB (modes `1`, `L`, `P`, `CMYK`, `YCbCr`, ...; `I;16`/`I` 16-bit data is
    scaled to 8 bits; images with alpha — `RGBA`, `LA`, `PA`, `P` with transparency — are composited onto
    `background_color`), resize so that the shorter side equals `image_size` (aspect ratio kept), center-crop to
    `image_size x image_size`, and map [0, 255] to [-1, 1].

    Args:
        image_size (`int`, *optional*, defaults to 32): side of the square output images.
        resample (`int`, *optional*, defaults to `PIL.Image.Resampling.BICUBIC`): PIL resampling filter.
        background_color (`tuple[int, int, int]`, *optional*, defaults to `(255, 255, 255)`): RGB colour that
            transparent pixels are composited onto (white).

    Inputs may be PIL images, numpy arrays and torch tensors, single or in lists, or stacked 4D batches:
    - numpy arrays are `(H, W)`, `(H, W, C)` or `(C, H, W)` (channels-last preferred when ambiguous); torch tensors
      are `(H, W)`, `(C, H, W)` or `(H, W, C)` (channels-first preferred); C in {1, 3, 4} (4 = RGBA);
    - uint8 data is in [0, 255], uint16 in [0, 65535], floating point data in [0, 1] (as `postprocess(...,
      output_type="np"|"pt")` returns).

    Example:

    ```python
    >>> from PIL import Image
    >>> from vcq_hf import VCQImageProcessor
    >>> processor = VCQImageProcessor(image_size=32)
    >>> pixel_values = processor(Image.new("LA", (40, 64)), return_tensors="pt").pixel_values
    >>> pixel_values.shape, float(pixel_values.min()) >= -1.0
    (torch.Size([1, 3, 32, 32]), True)
    >>> images = processor.postprocess(pixel_values, output_type="pil")

    ```
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        image_size: int = 32,
        resample: int = Image.Resampling.BICUBIC,
        background_color: Sequence[int] = (255, 255, 255),
        **kwargs: Any,
    ):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size = {image_size!r} is out of range: it must be an integer >= 1.")
        valid_filters = [int(member) for member in Image.Resampling]
        if int(resample) not in valid_filters:
            raise ValueError(
                f"resample = {resample!r} is not a PIL resampling filter; expected one of {valid_filters}."
            )
        background_color = tuple(int(value) for value in background_color)
        if len(background_color) != 3 or not all(0 <= value <= 255 for value in background_color):
            raise ValueError(f"background_color = {background_color} must be three integers in [0, 255] (RGB).")
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        self.image_size = image_size
        self.resample = int(resample)
        self.background_color = list(background_color)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_valid_kwargs_names", None)
        return output

    # ----------------------------------------------------------------------------------------------- preprocessing

    def to_rgb(self, image: Image.Image | np.ndarray | torch.Tensor) -> Image.Image:
        """Convert one image (PIL, numpy or torch) to an RGB PIL image, compositing any alpha onto the background."""
        background = tuple(self.background_color)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu()
            if image.dim() == 3 and image.shape[0] in (1, 3, 4):
                image = image.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
            image = image.numpy()
        if isinstance(image, np.ndarray):
            return self._array_to_rgb(image, background)
        if not isinstance(image, Image.Image):
            raise ValueError(
                f"Unsupported image type {type(image).__name__}; expected a PIL image, a numpy array or a torch tensor."
            )
        mode = image.mode
        if mode in _SIXTEEN_BIT_MODES or mode == "I":
            array = np.asarray(image).astype(np.int64)
            if mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
                raise ValueError(f"Mode 'I' image values must be in [0, 65535], got [{array.min()}, {array.max()}].")
            sixteen_bit = mode != "I" or (array.size > 0 and array.max() > 255)
            scale = 255.0 / 65535.0 if sixteen_bit else 1.0
            return Image.fromarray(np.round(array * scale).astype(np.uint8), mode="L").convert("RGB")
        if mode == "F":
            return self._array_to_rgb(np.asarray(image, dtype=np.float32), background)
        if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
            return _composite_on_background(image.convert("RGBA"), background)
        if mode == "RGB":
            return image
        return image.convert("RGB")

    def _array_to_rgb(self, array: np.ndarray, background: tuple[int, int, int]) -> Image.Image:
        if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
            array = np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ValueError(
                f"Expected an image array of shape (H, W), (H, W, C) or (C, H, W) with C in {{1, 3, 4}}, "
                f"got {array.shape}."
            )
        array = np.ascontiguousarray(_array_to_uint8(array, "image arrays"))
        if array.ndim == 2:
            return Image.fromarray(array, mode="L").convert("RGB")
        if array.shape[-1] == 4:
            return _composite_on_background(Image.fromarray(array, mode="RGBA"), background)
        return Image.fromarray(array, mode="RGB")

    def resize_and_crop(self, image: Image.Image, image_size: int | None = None) -> Image.Image:
        """Resize so that the shorter side equals `image_size` (keeping the aspect ratio), then center-crop a square."""
        image_size = self.image_size if image_size is None else image_size
        width, height = image.size
        if width < 1 or height < 1:
            raise ValueError(f"Cannot process an empty image of size {width}x{height}.")
        scale = image_size / min(width, height)
        new_width, new_height = max(image_size, round(width * scale)), max(image_size, round(height * scale))
        if (new_width, new_height) != (width, height):
            image = image.resize((new_width, new_height), resample=self.resample)
        left, top = (new_width - image_size) // 2, (new_height - image_size) // 2
        return image.crop((left, top, left + image_size, top + image_size))

    def _flatten(self, images: Any) -> list[Any]:
        if isinstance(images, Image.Image):
            return [images]
        if isinstance(images, (np.ndarray, torch.Tensor)):
            return list(images) if images.ndim == 4 else [images]
        if isinstance(images, (list, tuple)):
            flat = []
            for image in images:
                flat.extend(self._flatten(image))
            return flat
        raise ValueError(
            f"Unsupported images of type {type(images).__name__}; expected PIL images, numpy arrays, torch tensors "
            "or lists of them."
        )

    def preprocess(
        self,
        images: Any,
        image_size: int | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        r"""Preprocess an image or a batch of images.

        Args:
            images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them): the images; a 4D array or
                tensor is a batch.
            image_size (`int`, *optional*): overrides `self.image_size` for this call.
            return_tensors (`str`, *optional*): `"pt"` for a torch tensor, `"np"` for a numpy array; a list of
                `(3, H, W)` float32 arrays when not given.

        Returns:
            [`BatchFeature`]: with `pixel_values` of shape `(batch_size, 3, image_size, image_size)` in [-1, 1].

        Raises:
            `ValueError`: on an unsupported input type, shape, dtype or value range, or an empty batch.
        """
        if kwargs:
            raise ValueError(f"Unexpected arguments {sorted(kwargs)}; VCQImageProcessor takes image_size only.")
        image_size = self.image_size if image_size is None else image_size
        flat = self._flatten(images)
        if not flat:
            raise ValueError("No images to process: got an empty batch.")
        pixel_values = []
        for image in flat:
            rgb = self.resize_and_crop(self.to_rgb(image), image_size)
            array = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0  # (H, W, 3) in [-1, 1]
            pixel_values.append(array.transpose(2, 0, 1))  # (3, H, W)
        if return_tensors is not None:
            pixel_values = np.stack(pixel_values)  # (B, 3, H, W)
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        """Same as [`~VCQImageProcessor.preprocess`]."""
        return self.preprocess(images, **kwargs)

    # ---------------------------------------------------------------------------------------------- postprocessing

    def postprocess(
        self, sample: torch.Tensor | np.ndarray, output_type: str = "pil"
    ) -> list[Image.Image] | np.ndarray | torch.Tensor:
        r"""Turn model output in [-1, 1] into images.

        Args:
            sample (`torch.Tensor` or `np.ndarray` of shape `(batch_size, channels, height, width)` or
                `(channels, height, width)`): images in [-1, 1] (values outside are clamped), channels 1 or 3.
            output_type (`str`, *optional*, defaults to `"pil"`): `"pil"` for a list of PIL images (RGB, or L for one
                channel), `"np"` for a float32 array `(batch_size, height, width, channels)` in [0, 1], `"pt"` for a
                float tensor `(batch_size, channels, height, width)` in [0, 1].

        Returns:
            `list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor` as chosen by `output_type`.
        """
        if output_type not in _OUTPUT_TYPES:
            raise ValueError(f"output_type = {output_type!r} is not supported; expected one of {_OUTPUT_TYPES}.")
        if isinstance(sample, np.ndarray):
            sample = torch.from_numpy(sample)
        if not isinstance(sample, torch.Tensor) or not sample.is_floating_point():
            raise ValueError(f"sample must be a floating point torch tensor or numpy array, got {type(sample)}.")
        if sample.dim() == 3:
            sample = sample.unsqueeze(0)
        if sample.dim() != 4 or sample.shape[1] not in (1, 3):
            raise ValueError(
                f"Expected sample of shape (batch_size, 1 or 3, height, width), got {tuple(sample.shape)}."
            )
        images = ((sample.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)  # (B, C, H, W) in [0, 1]
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
        if output_type == "np":
            return array
        uint8 = np.round(array * 255.0).astype(np.uint8)
        if uint8.shape[-1] == 1:
            return [Image.fromarray(image[..., 0], mode="L") for image in uint8]
        return [Image.fromarray(image, mode="RGB") for image in uint8]


VCQImageProcessor.register_for_auto_class("AutoImageProcessor")
# The tokenizer's folders (model_type "vcq_vq") resolve to this processor through AutoImageProcessor.
AutoImageProcessor.register(VCQVQConfig, image_processor_classes={"pil": VCQImageProcessor}, exist_ok=True)


__all__ = ["VCQImageProcessor"]
