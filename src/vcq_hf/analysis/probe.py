"""Linear probe on the first k tokens: how much class information do the leading codes carry?

For each k in a sweep, a multinomial logistic regression is trained on features of the first k codes of the training
sequences and evaluated on held-out sequences. Features are either one-hot (position t contributes a K_t-way
indicator, so the feature space has sum_{t<k} K_t columns, stored sparse) or the tokenizer's quantized embeddings
(`codebook[x_t]` concatenated over t < k, standardised). k = 0 is the majority-class baseline.

If VCQ's small early codebooks force the coarse, semantic content into the first tokens, the accuracy should rise
quickly with k; with a uniform codebook the first tokens already suffice to index (memorise) the training set.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ProbeResult:
    """Result of `linear_probe`: one entry per k.

    Attributes:
        ks (`list[int]`): numbers of leading tokens probed.
        train_accuracy (`list[float]`), test_accuracy (`list[float]`): accuracies in [0, 1].
        num_features (`list[int]`): feature dimension for each k.
        num_train (`int`), num_test (`int`), num_classes (`int`): sizes.
        feature_kind (`str`): `"onehot"` or `"embedding"`.
        seed (`int`): seed of the split and the solver.
    """

    ks: list[int]
    train_accuracy: list[float]
    test_accuracy: list[float]
    num_features: list[int]
    num_train: int
    num_test: int
    num_classes: int
    feature_kind: str
    seed: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "ks": self.ks,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "num_features": self.num_features,
            "num_train": self.num_train,
            "num_test": self.num_test,
            "num_classes": self.num_classes,
            "feature_kind": self.feature_kind,
            "seed": self.seed,
            **self.extra,
        }

    def format_table(self) -> str:
        lines = ["| k | features | train accuracy | test accuracy |", "| ---: | ---: | ---: | ---: |"]
        for k, dim, train, test in zip(self.ks, self.num_features, self.train_accuracy, self.test_accuracy):
            lines.append(f"| {k} | {dim} | {train:.4f} | {test:.4f} |")
        return "\n".join(lines)


def onehot_features(codes: np.ndarray, k: int, codebook_sizes: Sequence[int]):
    """Sparse one-hot features of the first k codes: `(N, sum_{t<k} K_t)` CSR matrix with k ones per row."""
    from scipy import sparse

    codes = np.asarray(codes)
    num_rows = codes.shape[0]
    if k == 0:
        return sparse.csr_matrix((num_rows, 0), dtype=np.float32)
    sizes = np.asarray(codebook_sizes[:k], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    columns = (codes[:, :k].astype(np.int64) + offsets[None, :]).reshape(-1)
    indptr = np.arange(0, num_rows * k + 1, k, dtype=np.int64)
    data = np.ones(num_rows * k, dtype=np.float32)
    return sparse.csr_matrix((data, columns, indptr), shape=(num_rows, int(sizes.sum())))


def embedding_features(codes: np.ndarray, k: int, codebook: np.ndarray) -> np.ndarray:
    """Dense features of the first k codes: the codebook vectors concatenated, `(N, k * D)` float32."""
    codebook = np.asarray(codebook, dtype=np.float32)
    return codebook[np.asarray(codes)[:, :k]].reshape(len(codes), -1)


def _check_codes(codes, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes)
    labels = np.asarray(labels)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"{name} codes must be a 2-D integer array, got {codes.dtype} {codes.shape}.")
    if labels.shape != (codes.shape[0],):
        raise ValueError(f"{name} labels have shape {labels.shape}; expected ({codes.shape[0]},).")
    if codes.size and codes.min() < 0:
        raise ValueError(f"{name} codes must be non-negative.")
    return codes, labels


def split_train_test(num_rows: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of row indices into (train, test)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction = {test_fraction} is out of range: it must be in (0, 1).")
    order = np.random.default_rng(seed).permutation(num_rows)
    num_test = max(1, int(round(num_rows * test_fraction)))
    if num_test >= num_rows:
        raise ValueError(f"Cannot split {num_rows} rows into a train and a test part.")
    return np.sort(order[num_test:]), np.sort(order[:num_test])


def linear_probe(
    train_codes,
    train_labels,
    test_codes,
    test_labels,
    ks: Sequence[int],
    codebook_sizes: Sequence[int] | None = None,
    codebook: np.ndarray | None = None,
    regularization: float = 1.0,
    max_iter: int = 300,
    seed: int = 0,
) -> ProbeResult:
    """Train and evaluate a linear classifier on the first k tokens, for each k in `ks`.

    Args:
        train_codes (`np.ndarray` of shape `(N_train, T)`), train_labels (`np.ndarray` of shape `(N_train,)`).
        test_codes (`np.ndarray` of shape `(N_test, T)`), test_labels (`np.ndarray` of shape `(N_test,)`).
        ks (`Sequence[int]`): numbers of leading tokens, each in [0, T]; 0 is the majority-class baseline.
        codebook_sizes (`Sequence[int]`, *optional*): K_t for one-hot features; defaults to 1 + the largest code seen
            at each position (train and test).
        codebook (`np.ndarray` of shape `(K_max, D)`, *optional*): use quantized-embedding features instead of
            one-hot (standardised with train statistics).
        regularization (`float`, *optional*, defaults to 1.0): inverse L2 strength `C` of the logistic regression.
        max_iter (`int`, *optional*, defaults to 300): L-BFGS iterations.
        seed (`int`, *optional*, defaults to 0): recorded; the L-BFGS solver itself is deterministic.

    Returns:
        `ProbeResult`.
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
    except ImportError as err:  # pragma: no cover - scikit-learn is in the training/test extras
        raise ImportError("The linear probe needs scikit-learn: pip install scikit-learn.") from err

    train_codes, train_labels = _check_codes(train_codes, train_labels, "train")
    test_codes, test_labels = _check_codes(test_codes, test_labels, "test")
    num_tokens = train_codes.shape[1]
    if test_codes.shape[1] != num_tokens:
        raise ValueError(f"train codes have {num_tokens} tokens but test codes have {test_codes.shape[1]}.")
    ks = [int(k) for k in ks]
    if not ks or any(k < 0 or k > num_tokens for k in ks):
        raise ValueError(f"ks = {ks} must be a non-empty list of integers in [0, {num_tokens}].")
    if codebook is None:
        if codebook_sizes is None:
            codebook_sizes = (np.maximum(train_codes.max(axis=0), test_codes.max(axis=0)) + 1).tolist()
        codebook_sizes = tuple(int(size) for size in codebook_sizes)
        if len(codebook_sizes) != num_tokens or min(codebook_sizes) < 1:
            raise ValueError(f"codebook_sizes must hold {num_tokens} sizes >= 1, got {len(codebook_sizes)} entries.")
        too_large = np.nonzero(np.maximum(train_codes.max(0), test_codes.max(0)) >= np.asarray(codebook_sizes))[0]
        if too_large.size:
            t = int(too_large[0])
            raise ValueError(f"codes at position {t} reach K_{t} = {codebook_sizes[t]}; codes must be < K_t.")
        feature_kind = "onehot"
    else:
        codebook = np.asarray(codebook, dtype=np.float32)
        if codebook.ndim != 2:
            raise ValueError(f"codebook must be (K_max, D), got shape {codebook.shape}.")
        if max(train_codes.max(), test_codes.max()) >= codebook.shape[0]:
            raise ValueError(
                f"codes reach {max(train_codes.max(), test_codes.max())} but the codebook has "
                f"{codebook.shape[0]} entries."
            )
        feature_kind = "embedding"

    classes, train_targets = np.unique(train_labels, return_inverse=True)
    majority = classes[np.bincount(train_targets).argmax()]
    result = ProbeResult([], [], [], [], len(train_labels), len(test_labels), len(classes), feature_kind, seed)
    for k in ks:
        if k == 0 or len(classes) < 2:
            result.ks.append(k)
            result.num_features.append(0)
            result.train_accuracy.append(float((train_labels == majority).mean()))
            result.test_accuracy.append(float((test_labels == majority).mean()))
            continue
        if feature_kind == "onehot":
            x_train = onehot_features(train_codes, k, codebook_sizes)
            x_test = onehot_features(test_codes, k, codebook_sizes)
        else:
            x_train = embedding_features(train_codes, k, codebook)
            x_test = embedding_features(test_codes, k, codebook)
            mean, std = x_train.mean(0), x_train.std(0) + 1e-6
            x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        classifier = LogisticRegression(C=regularization, max_iter=max_iter, tol=1e-4, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(x_train, train_labels)
        result.ks.append(k)
        result.num_features.append(int(x_train.shape[1]))
        result.train_accuracy.append(float(classifier.score(x_train, train_labels)))
        result.test_accuracy.append(float(classifier.score(x_test, test_labels)))
    return result


def default_ks(num_tokens: int, extra: Sequence[int] = ()) -> list[int]:
    """0, 1, 2, 4, ... up to T (and T itself), plus any `extra` values in range, sorted."""
    ks = {0, num_tokens}
    power = 1
    while power < num_tokens:
        ks.add(power)
        power *= 2
    ks.update(k for k in extra if k is not None and 0 <= k <= num_tokens)
    return sorted(ks)


def plot_probe(
    result: ProbeResult,
    path: str | os.PathLike | None = None,
    predicted_cliff: int | None = None,
    title: str | None = None,
):
    """Train/test accuracy against k (symlog x axis), the chance level and the predicted cliff; PNG if `path`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.0), dpi=120)
    axis.plot(result.ks, result.test_accuracy, marker="o", label="test accuracy")
    axis.plot(result.ks, result.train_accuracy, marker=".", linestyle="--", alpha=0.7, label="train accuracy")
    if result.num_classes > 0:
        axis.axhline(1.0 / result.num_classes, color="tab:gray", linestyle=":", label="chance (uniform)")
    if predicted_cliff is not None:
        axis.axvline(predicted_cliff, color="tab:red", linestyle="--", label=f"predicted cliff t* = {predicted_cliff}")
    axis.set_xscale("symlog", linthresh=1)
    axis.set_xlim(min(result.ks) - 0.2, max(result.ks) * 1.15 + 0.2)
    axis.set_xticks(result.ks)
    axis.set_xticklabels([str(k) for k in result.ks])
    axis.minorticks_off()
    axis.set_xlabel("k (leading tokens used)")
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1.02)
    axis.set_title(title or f"Linear probe ({result.feature_kind}) on the first k tokens")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path)
        plt.close(figure)
    return figure


__all__ = [
    "ProbeResult",
    "default_ks",
    "embedding_features",
    "linear_probe",
    "onehot_features",
    "plot_probe",
    "split_train_test",
]
