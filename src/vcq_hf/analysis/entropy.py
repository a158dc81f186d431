"""Entropy-cliff analyzer: the empirical per-position conditional entropy of a set of code sequences.

For N code sequences of length T (the tokenised training set), position t carries

    H_t = H(x_t | x_<t) = H(x_<=t) - H(x_<t)      (bits, plug-in estimator on the empirical distribution).

Once the first t tokens identify every training image uniquely, H(x_<=t) = log2 N and every later H_t is 0: an AR
model trained on these codes can only memorise from there on. VCQ predicts where that "cliff" lies from the codebook
schedule alone (`vcq_hf.schedules.cliff_position`); this module measures it.

Positions are 0-based: `conditional_entropy[t]` is H(x_t | x_0..x_{t-1}), conditioned on a prefix of t tokens. The
observed cliff is the first t with H_t below a threshold (default 0.05 bits), i.e. the number of leading tokens
after which the next token is (nearly) determined; it is directly comparable with `cliff_position(N, K)`, the
number of leading tokens whose capacity reaches log2 N.

The computation is incremental: every sequence carries the integer id of its prefix; at step t the pair
(prefix id, x_t) is relabelled into the new prefix id with one sort (`np.unique`, or counting when the key range is
small), and the joint entropy is read from the counts of the new ids. Time O(N T log N), memory O(N) (a few int64
arrays of length N; the code matrix itself is read one column at a time, and may be a memory map). Sequences whose
prefix is already unique are dropped from later steps (they stay unique), so past the cliff only duplicates cost.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..schedules import cliff_position, validate_codebook_sizes


DEFAULT_CLIFF_THRESHOLD = 0.05


def _as_code_matrix(codes) -> np.ndarray:
    """(N, T) non-negative integer codes as a numpy array (tensors are moved to CPU; no copy for numpy input)."""
    try:
        import torch

        if isinstance(codes, torch.Tensor):
            codes = codes.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D (N, T) integer array, got shape {codes.shape}.")
    if codes.shape[0] < 1 or codes.shape[1] < 1:
        raise ValueError(f"codes must hold at least one sequence of at least one token, got shape {codes.shape}.")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}.")
    lowest = int(codes.min())
    if lowest < 0:
        raise ValueError(f"codes must be non-negative, got a minimum of {lowest}.")
    return codes


def _entropy_bits(counts: np.ndarray, num_samples: int) -> float:
    """Plug-in entropy in bits of a distribution given by positive integer counts summing to num_samples."""
    counts = counts.astype(np.float64)
    return float(math.log2(num_samples) - (counts * np.log2(counts)).sum() / num_samples)


@dataclass
class EntropyProfile:
    """Result of `analyze_entropy`.

    Attributes:
        conditional_entropy (`np.ndarray` of shape `(T,)`): H(x_t | x_<t) in bits.
        joint_entropy (`np.ndarray` of shape `(T,)`): H(x_<=t) in bits (at most log2 N).
        distinct_prefixes (`np.ndarray` of shape `(T,)`): number of distinct prefixes x_<=t in the set.
        num_sequences (`int`): N, the number of code sequences analysed.
        num_samples (`int`): the N used for the predicted cliff (defaults to `num_sequences`).
        codebook_sizes (`tuple[int, ...]` or `None`): the schedule K_t, when known.
        threshold (`float`): entropy threshold (bits) of the observed cliff.
        observed_cliff (`int` or `None`): first t with H_t < threshold (number of leading tokens), `None` if none.
        predicted_cliff (`int` or `None`): `cliff_position(num_samples, codebook_sizes)`, `None` when unknown or
            beyond T.
        unique_at (`int` or `None`): number of leading tokens after which every sequence is unique, if ever.
    """

    conditional_entropy: np.ndarray
    joint_entropy: np.ndarray
    distinct_prefixes: np.ndarray
    num_sequences: int
    num_samples: int
    codebook_sizes: tuple[int, ...] | None = None
    threshold: float = DEFAULT_CLIFF_THRESHOLD
    observed_cliff: int | None = None
    predicted_cliff: int | None = None
    unique_at: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.conditional_entropy.shape[0])

    def to_dict(self) -> dict:
        """JSON-ready summary (lists of floats/ints)."""
        return {
            "num_sequences": self.num_sequences,
            "num_samples": self.num_samples,
            "num_tokens": self.num_tokens,
            "threshold_bits": self.threshold,
            "observed_cliff": self.observed_cliff,
            "predicted_cliff": self.predicted_cliff,
            "unique_at": self.unique_at,
            "codebook_sizes": list(self.codebook_sizes) if self.codebook_sizes is not None else None,
            "conditional_entropy_bits": [float(x) for x in self.conditional_entropy],
            "joint_entropy_bits": [float(x) for x in self.joint_entropy],
            "distinct_prefixes": [int(x) for x in self.distinct_prefixes],
            **self.extra,
        }

    def format_table(self, max_rows: int | None = 40) -> str:
        """Markdown table t | K_t | log2 K_t | H_t | H(x_<=t) | distinct prefixes (first `max_rows` positions)."""
        header = "| t | K_t | log2 K_t | H(x_t given x_<t) | H(x_<=t) | distinct prefixes |"
        lines = [header, "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        rows = range(self.num_tokens if max_rows is None else min(max_rows, self.num_tokens))
        for t in rows:
            size = self.codebook_sizes[t] if self.codebook_sizes is not None else None
            size_text = "-" if size is None else str(size)
            log_text = "-" if size is None else f"{math.log2(size):.3f}"
            lines.append(
                f"| {t} | {size_text} | {log_text} | {self.conditional_entropy[t]:.4f} | {self.joint_entropy[t]:.4f} "
                f"| {int(self.distinct_prefixes[t])} |"
            )
        if len(rows) < self.num_tokens:
            lines.append(f"| ... ({self.num_tokens - len(rows)} more positions) | | | | | |")
        return "\n".join(lines)

    def summary(self) -> str:
        """One paragraph: N, log2 N, observed and predicted cliff."""
        return (
            f"N = {self.num_sequences:,} sequences of T = {self.num_tokens} tokens (log2 N = "
            f"{math.log2(self.num_sequences):.2f} bits); observed cliff (first t with H_t < {self.threshold:g} bits): "
            f"{self.observed_cliff}; predicted cliff (capacity >= log2 {self.num_samples:,}): {self.predicted_cliff}; "
            f"all prefixes unique after: {self.unique_at} tokens."
        )


def _relabel(prefix_ids: np.ndarray, column: np.ndarray, num_prefixes: int) -> tuple[np.ndarray, np.ndarray]:
    """New prefix ids for the pairs (prefix id, code) and the count of each new id (ids in sorted key order)."""
    radix = int(column.max()) + 1
    key_range = num_prefixes * radix
    if key_range >= 2**62:
        raise ValueError(f"codes up to {radix - 1} with {num_prefixes} prefixes overflow the int64 prefix key.")
    keys = prefix_ids * radix + column  # (A,) int64, one key per (prefix, x_t) pair
    if key_range <= max(4 * keys.shape[0], 1 << 16):
        # Dense key range: counting instead of sorting, O(A + range).
        all_counts = np.bincount(keys, minlength=key_range)
        present = all_counts > 0
        return (np.cumsum(present) - 1)[keys], all_counts[present]
    _, new_ids, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return new_ids.reshape(-1).astype(np.int64, copy=False), counts


def _prefix_entropy_profile(codes: np.ndarray, prune_unique: bool) -> tuple[np.ndarray, np.ndarray]:
    """Joint entropies H(x_<=t) and distinct-prefix counts for t = 0..T-1, by incremental prefix relabelling.

    With `prune_unique`, a sequence whose prefix is already unique (a group of one) is dropped from later steps: it
    stays a group of one, adds one distinct prefix and nothing to sum c log2 c. Only sequences that still share
    their prefix are relabelled, so the cost after the cliff is proportional to the duplicates that remain.
    """
    num_sequences, num_tokens = codes.shape
    log2_n = math.log2(num_sequences)
    joint = np.full(num_tokens, log2_n)
    distinct = np.full(num_tokens, num_sequences, dtype=np.int64)
    active = None  # row indices still sharing a prefix; None = all rows
    prefix_ids = np.zeros(num_sequences, dtype=np.int64)
    num_prefixes = 1
    settled = 0  # sequences already in a group of one (only counted when pruning)
    for t in range(num_tokens):
        column = np.asarray(codes[:, t] if active is None else codes[active, t], dtype=np.int64)
        new_ids, counts = _relabel(prefix_ids, column, num_prefixes)
        shared = counts > 1
        # H(x_<=t) = log2 N - (1/N) sum_groups c log2 c; groups of one contribute 0.
        joint[t] = log2_n - float((counts[shared] * np.log2(counts[shared])).sum()) / num_sequences
        distinct[t] = settled + counts.shape[0]
        if not prune_unique:
            prefix_ids, num_prefixes = new_ids, counts.shape[0]
            continue
        settled += int(counts.shape[0] - shared.sum())
        keep = shared[new_ids]
        if not keep.any():
            break  # every prefix is unique: the defaults (log2 N, N) hold for all later positions
        compact = np.cumsum(shared) - 1
        prefix_ids, num_prefixes = compact[new_ids[keep]], int(shared.sum())
        if not keep.all():
            rows = np.nonzero(keep)[0]
            active = rows if active is None else active[rows]
    return joint, distinct


def analyze_entropy(
    codes,
    codebook_sizes: Sequence[int] | None = None,
    num_samples: int | None = None,
    threshold: float = DEFAULT_CLIFF_THRESHOLD,
    prune_unique: bool = True,
) -> EntropyProfile:
    """Per-position conditional entropy, distinct prefixes and observed/predicted entropy cliff of a code set.

    Args:
        codes (`np.ndarray` or `torch.Tensor` of shape `(N, T)`): non-negative integer codes (a memory-mapped `.npy`
            works and is read column by column).
        codebook_sizes (`Sequence[int]`, *optional*): the schedule K_t (length T); enables the predicted cliff and
            the capacity curve. Codes are checked to satisfy `codes[:, t] < K_t`.
        num_samples (`int`, *optional*): N for the predicted cliff (e.g. the number of training images when the
            codes include flipped copies); defaults to the number of sequences.
        threshold (`float`, *optional*, defaults to 0.05): bits below which H_t counts as the cliff.
        prune_unique (`bool`, *optional*, defaults to `True`): drop a sequence from later steps once its prefix is
            unique (it can only stay unique), so work after the cliff scales with the remaining duplicates. The
            result is identical either way; `False` relabels all N sequences at every position.

    Returns:
        `EntropyProfile`.

    Example:
        >>> import numpy as np
        >>> codes = np.array([[0, 0], [1, 1], [2, 0], [3, 1]])  # x_1 = x_0 mod 2 is determined by x_0
        >>> analyze_entropy(codes).conditional_entropy.tolist()
        [2.0, 0.0]
    """
    codes = _as_code_matrix(codes)
    num_sequences, num_tokens = codes.shape
    if not threshold > 0:
        raise ValueError(f"threshold = {threshold} is out of range: it must be > 0 bits.")
    sizes = None
    if codebook_sizes is not None:
        sizes = validate_codebook_sizes(codebook_sizes, num_image_tokens=num_tokens)
        column_max = codes.max(axis=0)
        bad = np.nonzero(column_max >= np.asarray(sizes))[0]
        if bad.size:
            t = int(bad[0])
            raise ValueError(f"codes[:, {t}] holds {int(column_max[t])} but K_{t} = {sizes[t]}; codes must be < K_t.")
    if num_samples is None:
        num_samples = num_sequences
    elif isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples = {num_samples!r} is out of range: it must be an integer >= 1.")

    joint, distinct = _prefix_entropy_profile(codes, prune_unique)
    conditional = np.diff(joint, prepend=0.0)
    conditional[np.abs(conditional) < 1e-12] = 0.0  # exact zeros where the joint entropy is unchanged
    below = np.nonzero(conditional < threshold)[0]
    unique = np.nonzero(distinct == num_sequences)[0]
    return EntropyProfile(
        conditional_entropy=conditional,
        joint_entropy=joint,
        distinct_prefixes=distinct,
        num_sequences=num_sequences,
        num_samples=num_samples,
        codebook_sizes=sizes,
        threshold=threshold,
        observed_cliff=int(below[0]) if below.size else None,
        predicted_cliff=cliff_position(num_samples, sizes) if sizes is not None else None,
        unique_at=int(unique[0]) + 1 if unique.size else None,
    )


def per_position_entropy(codes) -> np.ndarray:
    """Empirical conditional entropy H(x_t | x_<t) in bits for each position t of an (N, T) code set.

    Plug-in estimator, computed as H(x_<=t) - H(x_<t) by incremental prefix relabelling in O(N T log N) time and
    O(N) memory. See `analyze_entropy` for distinct-prefix counts and the cliff positions.

    Args:
        codes (`np.ndarray` or `torch.Tensor` of shape `(N, T)`): non-negative integer codes.

    Returns:
        `np.ndarray` of shape `(T,)`, float64, in bits.
    """
    return analyze_entropy(codes).conditional_entropy


def plot_entropy_profile(profile: EntropyProfile, path: str | os.PathLike | None = None, title: str | None = None):
    """Plot H_t and log2 K_t against t with the observed and predicted cliffs marked; save a PNG if `path` is given.

    Returns:
        `matplotlib.figure.Figure`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    positions = np.arange(profile.num_tokens)
    figure, axis = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    if profile.codebook_sizes is not None:
        axis.step(
            positions,
            np.log2(np.asarray(profile.codebook_sizes, dtype=np.float64)),
            where="mid",
            color="tab:gray",
            label=r"capacity $\log_2 K_t$",
        )
    axis.plot(
        positions,
        profile.conditional_entropy,
        marker="o",
        markersize=3,
        color="tab:blue",
        label=r"$H(x_t \mid x_{<t})$ (plug-in)",
    )
    axis.axhline(profile.threshold, color="tab:blue", linestyle=":", linewidth=0.8)
    if profile.predicted_cliff is not None:
        axis.axvline(
            profile.predicted_cliff,
            color="tab:red",
            linestyle="--",
            label=f"predicted cliff t* = {profile.predicted_cliff}",
        )
    if profile.observed_cliff is not None:
        axis.axvline(
            profile.observed_cliff,
            color="tab:green",
            linestyle="-.",
            label=f"observed cliff (H < {profile.threshold:g} bit) t = {profile.observed_cliff}",
        )
    axis.set_xlabel("position t (number of conditioning tokens)")
    axis.set_ylabel("bits")
    axis.set_xlim(-0.5, profile.num_tokens - 0.5)
    axis.set_ylim(bottom=0)
    axis.set_title(
        title or f"Entropy cliff: N = {profile.num_sequences:,}, log2 N = {math.log2(profile.num_sequences):.1f}"
    )
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path)
        plt.close(figure)
    return figure
