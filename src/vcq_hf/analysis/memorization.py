"""Memorisation measures for an AR prior over code sequences: does the prior learn the distribution, or the list?

Three views, each comparing what the prior does on its own training codes with what it does on held-out codes:

1. **Generalisation gap of the prior's likelihood** (`prior_nll`, `generalization_gap`). The negative
   log-likelihood in bits of each code sequence, per position t (`-log2 p(x_t | class, x_<t)`) and summed over the T
   positions (bits/image). A prior that memorises its N training sequences scores about log2 N bits/image on them and
   far more on held-out codes; a prior that generalises scores about the same on both. The gap per position shows
   *where* the prior memorises: VCQ's claim is that past the uniform codebook's entropy cliff the uniform prior can
   only memorise, so its gap should sit at those positions.
2. **Copies among generated codes** (`copy_statistics`). For each generated sequence, the longest prefix it shares
   with any training sequence, and whether it reproduces one exactly (copy rate). Run it on held-out test codes too:
   that is the rate at which *real* new images share prefixes with the training set, the reference a generalising
   prior should match.
3. **Nearest training image in feature space** (`nearest_neighbors`, `nearest_training_distances`). Distances from
   each sample to its nearest training image (e.g. FMNIST-CNN or EfficientNet-Lite0 features), against the same
   distances of held-out real images: samples much closer to the training set than new real images are copies.

Positions are 0-based as in `entropy.py`: `bits_per_position[t]` is the NLL of x_t given the class and x_0..x_{t-1}.
Likelihoods use the prior's softmax restricted to `[0, K_t)` at position t, the distribution `VCQMask` samples from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .entropy import _as_code_matrix


LN2 = math.log(2.0)


# ----------------------------------------------------------------------------------------- 1. likelihood and gap
def code_log_likelihood_bits(logits, codes, codebook_sizes: Sequence[int] | None = None) -> np.ndarray:
    """Per-position negative log-likelihood in bits of `codes` under next-token `logits`.

    Args:
        logits (`torch.Tensor` or `np.ndarray` of shape `(N, T, V)`): `logits[:, t]` scores the token at position t
            (already shifted: the prediction made after the class token and x_<t).
        codes (`np.ndarray` or `torch.Tensor` of shape `(N, T)`): the code sequences, `codes[:, t] < K_t`.
        codebook_sizes (`Sequence[int]`, *optional*): K_t; the softmax at position t then runs over `[0, K_t)` only.

    Returns:
        `np.ndarray` of shape `(N, T)`, float64: `-log2 p(x_t | ...)` (`inf` where a code has probability 0).

    Example:
        >>> import numpy as np
        >>> code_log_likelihood_bits(np.zeros((1, 2, 8)), np.array([[1, 3]]), codebook_sizes=[2, 8]).tolist()
        [[1.0, 3.0]]
    """
    import torch

    logits = torch.as_tensor(logits).double()
    codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes).long()
    if logits.dim() != 3 or codes.dim() != 2 or logits.shape[:2] != codes.shape:
        raise ValueError(
            f"logits must have shape (N, T, V) and codes (N, T) with the same N, T; got {tuple(logits.shape)} and "
            f"{tuple(codes.shape)}."
        )
    vocab = logits.shape[-1]
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= vocab):
        raise ValueError(
            f"codes must lie in [0, {vocab}) (the logits' vocabulary), got [{int(codes.min())}, {int(codes.max())}]."
        )
    if codebook_sizes is not None:
        limits = torch.as_tensor(list(codebook_sizes), dtype=torch.long)
        if limits.shape != (codes.shape[1],):
            raise ValueError(f"codebook_sizes has {len(limits)} entries for {codes.shape[1]} positions.")
        if int(limits.max()) > vocab:
            raise ValueError(f"codebook_sizes reach {int(limits.max())} but the logits have only {vocab} entries.")
        outside = torch.arange(vocab)[None, :] >= limits[:, None]  # (T, V)
        logits = logits.masked_fill(outside[None], -math.inf)
    log_probs = torch.log_softmax(logits, dim=-1)  # (N, T, V)
    picked = log_probs.gather(-1, codes[..., None])[..., 0]  # (N, T)
    return (-picked / LN2).numpy()


@dataclass
class PriorNLL:
    """Negative log-likelihood of a set of code sequences under a prior.

    Attributes:
        bits (`np.ndarray` of shape `(N, T)`): `-log2 p(x_t | class, x_<t)` of every sequence and position.
        conditioning (`str`): `"class"` (each sequence's own class token) or `"null"` (the unconditional token).
    """

    bits: np.ndarray
    conditioning: str = "class"

    @property
    def num_sequences(self) -> int:
        return int(self.bits.shape[0])

    @property
    def bits_per_position(self) -> np.ndarray:
        """Mean NLL per position, `(T,)` bits."""
        return self.bits.mean(axis=0)

    @property
    def bits_per_image(self) -> np.ndarray:
        """NLL of each sequence summed over positions, `(N,)` bits."""
        return self.bits.sum(axis=1)

    @property
    def mean_bits_per_image(self) -> float:
        return float(self.bits_per_image.mean())

    def to_dict(self) -> dict:
        return {
            "num_sequences": self.num_sequences,
            "conditioning": self.conditioning,
            "mean_bits_per_image": self.mean_bits_per_image,
            "std_bits_per_image": float(self.bits_per_image.std()),
            "bits_per_position": self.bits_per_position.tolist(),
        }


def prior_nll(
    model,
    codes,
    labels=None,
    batch_size: int = 256,
    mask_to_codebook: bool = True,
) -> PriorNLL:
    """NLL in bits of code sequences under a `VCQForCausalLM` prior, per sequence and position.

    Args:
        model ([`VCQForCausalLM`]): the prior (put in eval mode here, so no class dropout is applied).
        codes (`np.ndarray` or `torch.LongTensor` of shape `(N, T)`): full code sequences, `codes[:, t] < K_t`.
        labels (`np.ndarray` or `Sequence[int]` of shape `(N,)`, *optional*): class labels; `None` conditions every
            sequence on the null (unconditional) class token.
        batch_size (`int`, *optional*, defaults to 256): sequences per forward pass.
        mask_to_codebook (`bool`, *optional*, defaults to `True`): softmax over `[0, K_t)` at position t (what
            `VCQMask` samples from); `False` uses the whole vocabulary.

    Returns:
        [`PriorNLL`]: bits `(N, T)`.
    """
    import torch

    codes = _as_code_matrix(codes)
    config = model.config
    if codes.shape[1] != config.num_image_tokens:
        raise ValueError(f"codes have {codes.shape[1]} positions but the prior has T = {config.num_image_tokens}.")
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size} must be >= 1.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (codes.shape[0],):
            raise ValueError(f"labels have shape {labels.shape}; expected ({codes.shape[0]},).")
    model.eval()
    device = next(model.parameters()).device
    sizes = list(config.codebook_sizes) if mask_to_codebook else None
    chunks = []
    with torch.no_grad():
        for start in range(0, codes.shape[0], batch_size):
            batch = torch.as_tensor(np.asarray(codes[start : start + batch_size]), dtype=torch.long, device=device)
            if labels is None:
                prompt = torch.full((batch.shape[0], 1), config.null_class_token_id, dtype=torch.long, device=device)
                input_ids = torch.cat([prompt, batch], dim=1)  # (B, 1 + T)
                model.check_input_ids(input_ids)
            else:
                input_ids = model.build_input_ids(labels[start : start + batch_size].tolist(), batch)
            logits = model(input_ids=input_ids[:, :-1]).logits  # (B, T, V): position t predicts x_t
            chunks.append(code_log_likelihood_bits(logits.float().cpu(), batch.cpu(), sizes))
    return PriorNLL(np.concatenate(chunks), conditioning="null" if labels is None else "class")


@dataclass
class GeneralizationGap:
    """Train vs held-out NLL of one prior: the memorisation gap, per position and per image.

    Attributes:
        train ([`PriorNLL`]), test ([`PriorNLL`]): NLL on the training and the held-out codes.
        num_train_images (`int`): N of the prior's training set (for the memorisation reference log2 N).
    """

    train: PriorNLL
    test: PriorNLL
    num_train_images: int

    @property
    def gap_per_position(self) -> np.ndarray:
        """Held-out minus training NLL per position, `(T,)` bits."""
        return self.test.bits_per_position - self.train.bits_per_position

    @property
    def gap_bits_per_image(self) -> float:
        return self.test.mean_bits_per_image - self.train.mean_bits_per_image

    @property
    def memorization_bits(self) -> float:
        """log2 N: what a prior that stores exactly its N training sequences (uniformly) pays per training image."""
        return math.log2(self.num_train_images)

    def to_dict(self) -> dict:
        return {
            "train": self.train.to_dict(),
            "test": self.test.to_dict(),
            "gap_bits_per_image": self.gap_bits_per_image,
            "gap_per_position": self.gap_per_position.tolist(),
            "num_train_images": self.num_train_images,
            "memorization_bits": self.memorization_bits,
        }

    def summary(self) -> str:
        return (
            f"NLL (bits/image): train {self.train.mean_bits_per_image:.2f} on {self.train.num_sequences} sequences, "
            f"held-out {self.test.mean_bits_per_image:.2f} on {self.test.num_sequences}; gap "
            f"{self.gap_bits_per_image:+.2f}; memorising the {self.num_train_images} training images costs log2 N = "
            f"{self.memorization_bits:.2f}"
        )

    def format_table(self, max_rows: int = 40) -> str:
        lines = ["| t | train bits | held-out bits | gap |", "| ---: | ---: | ---: | ---: |"]
        for t, (a, b) in enumerate(zip(self.train.bits_per_position, self.test.bits_per_position)):
            if t >= max_rows:
                lines.append(f"| ... | ({len(self.gap_per_position) - max_rows} more) | | |")
                break
            lines.append(f"| {t} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
        return "\n".join(lines)


def generalization_gap(
    model,
    train_codes,
    test_codes,
    train_labels=None,
    test_labels=None,
    num_train_images: int | None = None,
    batch_size: int = 256,
) -> GeneralizationGap:
    """[`prior_nll`] on the training and the held-out codes (pass both label sets, or neither for the null class).

    Args:
        num_train_images (`int`, *optional*): N of the prior's training set (defaults to `len(train_codes)`; pass it
            when `train_codes` is a subsample).
    """
    if (train_labels is None) != (test_labels is None):
        raise ValueError("Pass labels for both the training and the held-out codes, or for neither.")
    train = prior_nll(model, train_codes, train_labels, batch_size=batch_size)
    test = prior_nll(model, test_codes, test_labels, batch_size=batch_size)
    num_train_images = train.num_sequences if num_train_images is None else int(num_train_images)
    if num_train_images < 1:
        raise ValueError(f"num_train_images = {num_train_images} must be >= 1.")
    return GeneralizationGap(train, test, num_train_images)


def plot_generalization_gap(gap: GeneralizationGap, path, title: str | None = None) -> None:
    """Per-position train and held-out NLL (top) and their difference (bottom) to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = np.arange(len(gap.gap_per_position))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), dpi=120, sharex=True)
    top.plot(positions, gap.train.bits_per_position, marker="o", ms=3, label="training codes")
    top.plot(positions, gap.test.bits_per_position, marker="o", ms=3, label="held-out codes")
    top.set_ylabel("NLL (bits)")
    top.legend()
    top.set_title(title or gap.summary().split(";")[0])
    bottom.bar(positions, gap.gap_per_position, color="tab:red")
    bottom.axhline(0, color="black", lw=0.6)
    bottom.set_xlabel("position t (0-based)")
    bottom.set_ylabel("held-out - train (bits)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# ------------------------------------------------------------------------------------------- 2. copies among codes
@dataclass
class CopyStatistics:
    """Longest prefix of each query sequence shared with any reference (training) sequence.

    Attributes:
        shared_prefix (`np.ndarray` of shape `(M,)`): for each query, the largest t such that its first t tokens equal
            the first t tokens of some training sequence (T means an exact copy).
        num_tokens (`int`): T.
        num_reference (`int`): number of training sequences searched.
    """

    shared_prefix: np.ndarray
    num_tokens: int
    num_reference: int

    @property
    def copy_rate(self) -> float:
        """Fraction of queries equal to a training sequence."""
        return float(np.mean(self.shared_prefix == self.num_tokens))

    @property
    def mean_shared_prefix(self) -> float:
        return float(self.shared_prefix.mean())

    @property
    def prefix_match_rate(self) -> np.ndarray:
        """`(T + 1,)`: entry t is the fraction of queries whose first t tokens occur in the training set."""
        counts = np.bincount(self.shared_prefix, minlength=self.num_tokens + 1)
        return counts[::-1].cumsum()[::-1] / len(self.shared_prefix)

    def to_dict(self) -> dict:
        return {
            "num_queries": int(len(self.shared_prefix)),
            "num_reference": self.num_reference,
            "num_tokens": self.num_tokens,
            "copy_rate": self.copy_rate,
            "mean_shared_prefix": self.mean_shared_prefix,
            "median_shared_prefix": float(np.median(self.shared_prefix)),
            "prefix_match_rate": self.prefix_match_rate.tolist(),
        }


def copy_statistics(queries, reference) -> CopyStatistics:
    """Exact longest shared prefix of each query sequence with any reference sequence, and the copy rate.

    Every (query or reference) row carries the integer id of its prefix; step t relabels the pairs
    (prefix id, x_t) into new dense ids with one `np.unique` (as in `entropy.py`), so equal prefixes get equal ids. A query's prefix of
    length t+1 occurs in the reference set iff its id is among the reference rows' ids. Exact (no hashing), time
    O((M + N) T log(M + N)).

    Args:
        queries (`np.ndarray` of shape `(M, T)`): e.g. generated codes, or held-out codes for the reference rate.
        reference (`np.ndarray` of shape `(N, T)`): the prior's training codes.

    Returns:
        [`CopyStatistics`].

    Example:
        >>> import numpy as np
        >>> train = np.array([[0, 1, 2], [0, 1, 3], [5, 5, 5]])
        >>> copy_statistics(np.array([[0, 1, 3], [0, 2, 2], [4, 0, 0]]), train).shared_prefix.tolist()
        [3, 1, 0]
    """
    queries = _as_code_matrix(queries)
    reference = _as_code_matrix(reference)
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(
            f"queries have {queries.shape[1]} positions but the reference sequences {reference.shape[1]}."
        )
    num_queries, num_tokens = queries.shape
    ids = np.zeros(num_queries + len(reference), dtype=np.int64)
    shared = np.zeros(num_queries, dtype=np.int64)
    alive = np.ones(num_queries, dtype=bool)  # queries whose prefix so far occurs in the reference set
    base = int(max(queries.max(), reference.max())) + 1
    for t in range(num_tokens):
        column = np.concatenate([queries[:, t], reference[:, t]]).astype(np.int64)
        _, ids = np.unique(ids * base + column, return_inverse=True)  # ids < M + N, so the key fits in int64
        ids = ids.reshape(-1)
        found = np.isin(ids[:num_queries], ids[num_queries:])
        alive &= found
        shared += alive
        if not alive.any():
            break
    return CopyStatistics(shared, num_tokens, len(reference))


# -------------------------------------------------------------------------------- 3. nearest neighbours in features
def nearest_neighbors(queries, reference, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query vector to its nearest reference vector, and that vector's index.

    Args:
        queries (`np.ndarray` of shape `(M, D)`), reference (`np.ndarray` of shape `(N, D)`): feature vectors.
        batch_size (`int`, *optional*, defaults to 1024): queries per distance block (memory `batch_size x N`).

    Returns:
        `(distances (M,) float64, indices (M,) int64)`; distances are computed in float32.
    """
    import torch

    queries = np.asarray(queries, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if queries.ndim != 2 or reference.ndim != 2 or queries.shape[1] != reference.shape[1]:
        raise ValueError(
            f"queries and reference must be (M, D) and (N, D) with the same D, got {queries.shape} and "
            f"{reference.shape}."
        )
    if len(reference) == 0 or len(queries) == 0:
        raise ValueError(f"need at least one query and one reference vector, got {len(queries)} and {len(reference)}.")
    if not (np.isfinite(queries).all() and np.isfinite(reference).all()):
        raise ValueError("features must be finite (found NaN or inf).")
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size} must be >= 1.")
    ref = torch.from_numpy(reference)
    distances, indices = [], []
    for start in range(0, len(queries), batch_size):
        block = torch.cdist(torch.from_numpy(queries[start : start + batch_size]), ref)  # (B, N)
        value, index = block.min(dim=1)
        distances.append(value.double().numpy())
        indices.append(index.numpy())
    return np.concatenate(distances), np.concatenate(indices).astype(np.int64)


@dataclass
class NearestTrainingDistances:
    """Nearest-training-image distances of samples, beside those of held-out real images (the reference).

    Attributes:
        sample_distances (`np.ndarray` of shape `(M,)`), sample_indices (`np.ndarray` of shape `(M,)`): per sample.
        heldout_distances (`np.ndarray` of shape `(R,)` or `None`): per held-out real image.
        feature_name (`str`): the feature space.
    """

    sample_distances: np.ndarray
    sample_indices: np.ndarray
    heldout_distances: np.ndarray | None
    feature_name: str = "features"

    def close_rate(self, quantile: float = 0.01) -> float | None:
        """Fraction of samples nearer to the training set than the `quantile` of held-out real images' distances
        (about `quantile` for a sampler that draws new images like the real ones; more means copies)."""
        if self.heldout_distances is None:
            return None
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile = {quantile} is out of range: it must be in (0, 1).")
        return float(np.mean(self.sample_distances < np.quantile(self.heldout_distances, quantile)))

    def to_dict(self) -> dict:
        result = {
            "feature_name": self.feature_name,
            "num_samples": int(len(self.sample_distances)),
            "sample_median": float(np.median(self.sample_distances)),
            "sample_mean": float(self.sample_distances.mean()),
            "distinct_nearest_training_images": int(len(np.unique(self.sample_indices))),
        }
        if self.heldout_distances is not None:
            heldout_median = float(np.median(self.heldout_distances))
            result.update(
                num_heldout=int(len(self.heldout_distances)),
                heldout_median=heldout_median,
                heldout_mean=float(self.heldout_distances.mean()),
                median_ratio=result["sample_median"] / heldout_median if heldout_median > 0 else math.inf,
                close_rate_q01=self.close_rate(0.01),
                close_rate_q05=self.close_rate(0.05),
            )
        return result


def nearest_training_distances(
    sample_features,
    train_features,
    heldout_features=None,
    feature_name: str = "features",
    batch_size: int = 1024,
) -> NearestTrainingDistances:
    """[`nearest_neighbors`] of samples in the training features, and of held-out real images as the reference.

    A sample closer to its nearest training image than held-out real images are to theirs is a likely copy:
    `median_ratio` well below 1 and `close_rate_q01` well above 0.01 indicate memorisation.
    """
    distances, indices = nearest_neighbors(sample_features, train_features, batch_size=batch_size)
    heldout = None
    if heldout_features is not None:
        heldout, _ = nearest_neighbors(heldout_features, train_features, batch_size=batch_size)
    return NearestTrainingDistances(distances, indices, heldout, feature_name)
