"""Patch-seam measure of decoded images: do reconstructions have block edges on the tokenizer's patch grid?

A decoder that predicts each p x p patch on its own draws a step at every patch border. `seam_ratio` compares the
mean absolute difference between neighbouring pixels that straddle a patch border with the same mean over
neighbours inside a patch. Natural images have no preferred grid, so their ratio is close to 1 (not exactly: image
content such as centred objects can favour some columns); what matters is the ratio of reconstructions relative to
the ratio of the real images they reconstruct (`relative_seam_ratio`). A blocky decoder gives a clearly higher
value; a decoder that blurs across borders gives a lower one.

    >>> import torch
    >>> ramp = torch.arange(16.0)
    >>> smooth = (ramp[:, None] + ramp[None, :]).view(1, 1, 16, 16)  # steps of 1 everywhere
    >>> round(seam_ratio(smooth, patch_size=4), 3)
    1.0
    >>> block = ramp // 4  # index of the 4-pixel patch
    >>> blocky = smooth + 3 * (block[:, None] + block[None, :])  # plus a step of 3 at every patch border
    >>> round(seam_ratio(blocky, patch_size=4), 3)
    4.0
"""

from __future__ import annotations

import math

import torch


def _check_images(images: torch.Tensor, patch_size: int, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (batch_size, channels, height, width), got {got}.")
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 2:
        raise ValueError(f"patch_size = {patch_size!r} is out of range: it must be an integer >= 2.")
    height, width = images.shape[-2:]
    if height <= patch_size or width <= patch_size:
        raise ValueError(
            f"{name} of size {height}x{width} have no patch border for patch_size = {patch_size}: both sides must be "
            f"> patch_size."
        )
    images = images.detach().double()
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contain NaN or infinite values.")
    return images


def seam_statistics(images: torch.Tensor, patch_size: int) -> tuple[float, float]:
    """Mean |difference| of neighbouring pixels across patch borders and inside patches, over all channels.

    Args:
        images (`torch.Tensor` of shape `(batch_size, channels, height, width)`): any value range.
        patch_size (`int`): side of the patch grid, starting at pixel (0, 0).

    Returns:
        `tuple[float, float]`: (mean over border pairs, mean over inside pairs), horizontal and vertical together.
    """
    images = _check_images(images, patch_size, "images")
    border_sum, border_count, inside_sum, inside_count = 0.0, 0, 0.0, 0
    for dim in (-1, -2):
        steps = images.diff(dim=dim).abs()  # step between pixel i and i + 1 along `dim`
        across = (torch.arange(steps.shape[dim]) + 1) % patch_size == 0  # pixel i + 1 starts a new patch
        border = steps.index_select(dim, across.nonzero().flatten())
        inside = steps.index_select(dim, (~across).nonzero().flatten())
        border_sum, border_count = border_sum + border.sum().item(), border_count + border.numel()
        inside_sum, inside_count = inside_sum + inside.sum().item(), inside_count + inside.numel()
    return border_sum / border_count, inside_sum / inside_count


def seam_ratio(images: torch.Tensor, patch_size: int) -> float:
    """Mean |gradient| across patch borders divided by mean |gradient| inside patches (1 = no preferred grid).

    Raises:
        `ValueError`: on a bad shape or patch size, non-finite values, or images with no variation inside patches.
    """
    border, inside = seam_statistics(images, patch_size)
    if inside == 0.0:
        raise ValueError("The images are constant inside every patch: the seam ratio is undefined.")
    return border / inside


def relative_seam_ratio(reconstructions: torch.Tensor, references: torch.Tensor, patch_size: int) -> float:
    """`seam_ratio(reconstructions) / seam_ratio(references)`: 1 means reconstructions have the references' seams.

    The issue target of the tokenizer is <= 1.1.
    """
    _check_images(reconstructions, patch_size, "reconstructions")
    value = seam_ratio(reconstructions, patch_size) / seam_ratio(references, patch_size)
    if not math.isfinite(value):
        raise ValueError(f"relative seam ratio is {value}; the reference images have no border gradient.")
    return value


__all__ = ["relative_seam_ratio", "seam_ratio", "seam_statistics"]
