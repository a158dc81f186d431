"""A small BN-CNN classifier for Fashion-MNIST, used as the domain feature extractor ("FID-FMNIST-CNN").

Trained by `examples/train_fmnist_classifier.py` on the official Fashion-MNIST training split; the weights ship as
`fmnist_cnn.safetensors` next to this file. Its 96-d penultimate activations are the features for FID/KID/PR and
its logits feed the Inception Score analogue.

Also holds a reader for the IDX files of the original data set (the Debian package `dataset-fashion-mnist` installs
them under `/usr/share/datasets/fashion-mnist`), so the classifier can be trained and checked without network.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn


FASHION_MNIST_DIR_ENV = "VCQ_FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_CNN_WEIGHTS = Path(__file__).with_name("fmnist_cnn.safetensors")

# Mean and standard deviation of the Fashion-MNIST training pixels in [0, 1].
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path) -> np.ndarray:
    """Read one (optionally gzipped) IDX file into a numpy array (uint8 data only, as in (Fashion-)MNIST)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise OSError(f"{path} is not an IDX file (bad magic number).")
    if data[2] != 0x08:
        raise OSError(f"{path} holds IDX type {data[2]:#x}; only unsigned bytes (0x08) are supported.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise OSError(f"{path}: header says shape {shape} but holds {array.size} values.")
    return array.reshape(shape)


def load_fashion_mnist_arrays(split: str = "train", data_dir: str | os.PathLike | None = None):
    """Load the original Fashion-MNIST IDX files as arrays.

    Args:
        split (`str`, *optional*, defaults to `"train"`): `"train"` (60,000 images) or `"test"` (10,000).
        data_dir (`str` or `os.PathLike`, *optional*): folder with the four `*-idx*-ubyte.gz` files; defaults to
            `$VCQ_FASHION_MNIST_DIR` or `/usr/share/datasets/fashion-mnist`.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: images `(N, 28, 28)` uint8 and labels `(N,)` int64.
    """
    if split not in _IDX_FILES:
        raise ValueError(f"split = {split!r} is not supported; expected one of {sorted(_IDX_FILES)}.")
    folder = Path(data_dir or os.environ.get(FASHION_MNIST_DIR_ENV, DEFAULT_FASHION_MNIST_DIR))
    image_file, label_file = (folder / name for name in _IDX_FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST file {path} not found; install the Debian package dataset-fashion-mnist or set "
                f"{FASHION_MNIST_DIR_ENV}."
            )
    images = _read_idx(image_file)
    labels = _read_idx(label_file).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise OSError(f"{image_file} has {images.shape[0]} images but {label_file} has {labels.shape[0]} labels.")
    return images, labels


class FashionMNISTCNN(nn.Module):
    """Three 3x3 conv blocks with batch norm, then a 96-d hidden layer and a 10-way classifier (~358k parameters).

    Input `(B, 1, 28, 28)` float, normalised as `(x - FMNIST_MEAN) / FMNIST_STD` for x in [0, 1].

    Args:
        num_classes (`int`, *optional*, defaults to 10): number of output classes.
        feature_dim (`int`, *optional*, defaults to 96): width of the penultimate (feature) layer.
        dropout (`float`, *optional*, defaults to 0.3): dropout before the classifier (training only).
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = 96, dropout: float = 0.3):
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False),  # (B, 32, 28, 28)
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Conv2d(64, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.hidden = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features_and_logits(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the penultimate features `(B, feature_dim)` and the logits `(B, num_classes)`."""
        features = self.hidden(self.conv(pixel_values))
        return features, self.classifier(self.dropout(features))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits `(B, num_classes)`."""
        return self.features_and_logits(pixel_values)[1]
