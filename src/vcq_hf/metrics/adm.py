"""Export of image samples to the `.npz` format of the ADM evaluator (Dhariwal & Nichol, guided-diffusion).

ImageNet papers (ADM, LlamaGen, VAR, TiTok) report FID/IS/precision/recall computed by guided-diffusion's
`evaluations/evaluator.py` from an `.npz` whose `arr_0` holds the samples as uint8 `(N, H, W, 3)`. This module
writes and reads that format (with `np.savez`, no pickles), optionally with the class labels as `arr_1`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch

from .feature_extractors import to_image_tensor


def images_to_uint8(images) -> np.ndarray:
    """Any image batch accepted by `to_image_tensor` -> uint8 `(N, H, W, 3)` (rounded from [0, 1] x 255)."""
    tensor = to_image_tensor(images)
    return (tensor * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def save_adm_npz(path: str | os.PathLike, images, labels: Iterable[int] | None = None) -> np.ndarray:
    """Write samples as an ADM-evaluator `.npz`: `arr_0` uint8 `(N, H, W, 3)` and, if given, `arr_1` int64 labels.

    Args:
        path (`str` or `os.PathLike`): output file (`.npz`).
        images: a batch accepted by `to_image_tensor` (float `(N, C, H, W)` in [0, 1], uint8 NHWC arrays, PIL list) or
            a list of such batches, concatenated in order.
        labels (`Iterable[int]`, *optional*): class label of each sample.

    Returns:
        `np.ndarray`: the uint8 array written as `arr_0`.
    """
    if isinstance(images, list) and images and not hasattr(images[0], "convert"):
        array = np.concatenate([images_to_uint8(batch) for batch in images])
    else:
        array = images_to_uint8(images)
    arrays = {"arr_0": array}
    if labels is not None:
        labels = np.asarray(list(labels), dtype=np.int64)
        if labels.shape != (array.shape[0],):
            raise ValueError(f"Got {labels.shape[0]} labels for {array.shape[0]} images; they must match.")
        arrays["arr_1"] = labels
    np.savez(path, **arrays)
    return array


def load_adm_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an ADM `.npz`: the uint8 `(N, H, W, 3)` images and the labels (`None` when absent)."""
    with np.load(path, allow_pickle=False) as data:
        if "arr_0" not in data:
            raise ValueError(f"{path} has no 'arr_0' array; keys are {sorted(data.keys())}.")
        images = data["arr_0"]
        labels = data["arr_1"] if "arr_1" in data else None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: arr_0 must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}.")
    return images, labels
