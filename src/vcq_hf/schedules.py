"""Codebook-size schedules K_t and the entropy-cliff arithmetic of VCQ.

A VCQ tokenizer gives image position t (0-based) a codebook of size K_t, growing monotonically from K_min to K_max.
All positions share ONE codebook of K_max entries; position t may only use its first K_t entries.

The "entropy cliff": with N training images, the first t tokens can identify an image uniquely once their joint
capacity reaches log2 N bits, i.e. at the smallest t with sum_{i=1..t} log2 K_i >= log2 N. For a constant codebook
this is ceil(log2 N / log2 K): 2 of 256 positions for ImageNet (N = 1,281,167) with K = 16384.

Run `python -m vcq_hf.schedules --help` for a report of cliff positions and capacities per schedule kind.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass


SCHEDULE_KINDS: tuple[str, ...] = ("constant", "linear", "log", "cosine")

# Tolerance for comparing sums of log2 values with log2 N (the sums are exact for powers of two).
_BITS_TOLERANCE = 1e-9


def _ramp_fraction(position: int, ramp_length: int) -> float:
    """Fraction of the ramp completed at 0-based `position`: min(position / (ramp_length - 1), 1).

    The ramp reaches 1 at the 1-based position `ramp_length`. A ramp of length 1 is already complete at the first
    position (the schedule is then constant K_max).
    """
    if ramp_length <= 1:
        return 1.0
    return min(position / (ramp_length - 1), 1.0)


def linear_size(fraction: float, k_min: int, k_max: int) -> float:
    """Linear interpolation in K: K = K_min + f * (K_max - K_min)."""
    return k_min + fraction * (k_max - k_min)


def log_size(fraction: float, k_min: int, k_max: int) -> float:
    """Linear interpolation in log2 K: log2 K = log2 K_min + f * (log2 K_max - log2 K_min)."""
    return 2.0 ** (math.log2(k_min) + fraction * (math.log2(k_max) - math.log2(k_min)))


def cosine_size(fraction: float, k_min: int, k_max: int) -> float:
    """Cosine easing in K: K = K_min + (K_max - K_min) * (1 - cos(pi * f)) / 2 (slow start, slow finish)."""
    return k_min + (k_max - k_min) * (1.0 - math.cos(math.pi * fraction)) / 2.0


_INTERPOLATORS = {"linear": linear_size, "log": log_size, "cosine": cosine_size}


def validate_codebook_sizes(
    sizes: Sequence[int],
    num_tokens: int | None = None,
    k_min: int | None = None,
    k_max: int | None = None,
    name: str = "codebook_sizes",
) -> tuple[int, ...]:
    """Check an explicit per-position schedule and return it as a tuple of Python ints.

    Rules: one entry per position (`num_tokens` if given), every entry an integer >= 1, monotone non-decreasing,
    and, when given, every entry in [k_min, k_max].

    Raises:
        `ValueError`: naming the offending value and the allowed range.
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        try:
            sizes = list(sizes)  # numpy arrays, tensors, generators
        except TypeError as err:
            raise ValueError(f"{name} must be a sequence of integers, got {type(sizes).__name__}.") from err
    if len(sizes) == 0:
        raise ValueError(f"{name} must not be empty.")
    if num_tokens is not None and len(sizes) != num_tokens:
        raise ValueError(f"{name} has {len(sizes)} entries but num_tokens is {num_tokens}; they must be equal.")
    result = []
    for position, size in enumerate(sizes):
        if isinstance(size, bool) or not float(size).is_integer():
            raise ValueError(f"{name}[{position}] = {size!r} is not an integer.")
        size = int(size)
        if size < 1:
            raise ValueError(f"{name}[{position}] = {size} is out of range: codebook sizes must be >= 1.")
        if k_min is not None and size < k_min:
            raise ValueError(
                f"{name}[{position}] = {size} is below k_min = {k_min}; allowed range [{k_min}, {k_max}]."
            )
        if k_max is not None and size > k_max:
            raise ValueError(
                f"{name}[{position}] = {size} is above k_max = {k_max}; allowed range [{k_min}, {k_max}]."
            )
        if result and size < result[-1]:
            raise ValueError(
                f"{name} must be monotone non-decreasing, but {name}[{position}] = {size} < "
                f"{name}[{position - 1}] = {result[-1]}."
            )
        result.append(size)
    return tuple(result)


def codebook_sizes(
    num_tokens: int,
    k_min: int,
    k_max: int,
    kind: str | Sequence[int] = "log",
    ramp_length: int | None = None,
) -> tuple[int, ...]:
    """Per-position codebook sizes K_0 .. K_{T-1} of a VCQ schedule.

    With f_t = min(t / (R - 1), 1) for 0-based position t and ramp length R:

    - `"constant"`: K_t = K_max (the paper's uniform-codebook baseline; `k_min` is ignored),
    - `"linear"`:   K_t = round(K_min + f_t (K_max - K_min)),
    - `"log"`:      K_t = round(2 ** (log2 K_min + f_t (log2 K_max - log2 K_min))) (log2 K_t linear in t),
    - `"cosine"`:   K_t = round(K_min + (K_max - K_min) (1 - cos(pi f_t)) / 2),
    - a sequence of ints: an explicit schedule, validated (length `num_tokens`, monotone, entries in [k_min, k_max]).

    Every ramp starts at K_min and reaches K_max at the 1-based position R (`ramp_length`, default T) and stays there.

    Args:
        num_tokens (`int`): number of image tokens T, >= 1.
        k_min (`int`): size at the first position, in [1, k_max].
        k_max (`int`): size of the shared codebook, >= 1.
        kind (`str` or `Sequence[int]`, *optional*, defaults to `"log"`): one of `SCHEDULE_KINDS` or explicit sizes.
        ramp_length (`int`, *optional*): 1-based position at which K_max is reached, in [1, num_tokens].

    Returns:
        `tuple[int, ...]`: T monotone non-decreasing sizes.

    Example:
        >>> codebook_sizes(8, 2, 256, "log")
        (2, 4, 8, 16, 32, 64, 128, 256)
        >>> codebook_sizes(4, 2, 256, "constant")
        (256, 256, 256, 256)
    """
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
        raise ValueError(f"num_tokens = {num_tokens!r} is out of range: it must be an integer >= 1.")
    if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
        raise ValueError(f"k_max = {k_max!r} is out of range: it must be an integer >= 1.")
    if isinstance(k_min, bool) or not isinstance(k_min, int) or k_min < 1:
        raise ValueError(f"k_min = {k_min!r} is out of range: it must be an integer in [1, k_max = {k_max}].")
    if k_min > k_max:
        raise ValueError(f"k_min = {k_min} is out of range: it must be in [1, k_max = {k_max}].")
    if ramp_length is None:
        ramp_length = num_tokens
    if isinstance(ramp_length, bool) or not isinstance(ramp_length, int) or not 1 <= ramp_length <= num_tokens:
        raise ValueError(
            f"ramp_length = {ramp_length!r} is out of range: it must be in [1, num_tokens = {num_tokens}]."
        )

    if not isinstance(kind, str):
        return validate_codebook_sizes(kind, num_tokens=num_tokens, k_min=k_min, k_max=k_max)
    if kind == "constant":
        return (k_max,) * num_tokens
    if kind not in _INTERPOLATORS:
        raise ValueError(f"Unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS} or a list of sizes.")
    interpolate = _INTERPOLATORS[kind]
    sizes = []
    for position in range(num_tokens):
        size = round(interpolate(_ramp_fraction(position, ramp_length), k_min, k_max))
        size = min(max(size, k_min), k_max)
        if sizes:
            size = max(size, sizes[-1])  # guard monotonicity against rounding
        sizes.append(size)
    return tuple(sizes)


def capacity_bits(codebook_sizes: Sequence[int]) -> float:
    """Total capacity of a code sequence in bits: sum_t log2 K_t."""
    return float(sum(math.log2(size) for size in codebook_sizes))


def cumulative_capacity_bits(codebook_sizes: Sequence[int]) -> list[float]:
    """Capacity of the first t tokens, for t = 1..T: C_t = sum_{i=1..t} log2 K_i."""
    total, result = 0.0, []
    for size in codebook_sizes:
        total += math.log2(size)
        result.append(total)
    return result


def cliff_position(num_samples: int, codebook_sizes: Sequence[int]) -> int | None:
    """The entropy cliff t*: the number of leading tokens whose joint capacity first reaches log2 N.

    t* = min { t >= 1 : sum_{i=1..t} log2 K_i >= log2 N } (positions counted from 1). For a constant schedule this is
    ceil(log2 N / log2 K). After t* tokens, an AR model trained on N images can only memorise.

    Args:
        num_samples (`int`): N, the number of training images, >= 1.
        codebook_sizes (`Sequence[int]`): the schedule K_1 .. K_T.

    Returns:
        `int` or `None`: t* in [1, T], or `None` when the whole sequence holds fewer than log2 N bits.

    Example:
        >>> cliff_position(1_281_167, [16384] * 256)  # ImageNet, uniform codebook
        2
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples = {num_samples!r} is out of range: it must be an integer >= 1.")
    sizes = validate_codebook_sizes(codebook_sizes)
    target = math.log2(num_samples)
    for position, bits in enumerate(cumulative_capacity_bits(sizes), start=1):
        if bits >= target - _BITS_TOLERANCE:
            return position
    return None


@dataclass(frozen=True)
class ScheduleReportRow:
    """One row of `schedule_report`."""

    kind: str
    first_sizes: tuple[int, ...]
    cliff_position: int | None
    capacity_bits: float
    lookup_cost_ratio: float  # T * K_max / sum_t K_t: ideal speed-up of the grouped quantizer lookup


def schedule_report(
    num_samples: int,
    num_tokens: int,
    k_max: int,
    k_min: int = 2,
    kinds: Sequence[str] = SCHEDULE_KINDS,
    ramp_length: int | None = None,
) -> list[ScheduleReportRow]:
    """Cliff position and capacity of each schedule kind for N samples, T tokens and a codebook of K_max entries."""
    rows = []
    for kind in kinds:
        sizes = codebook_sizes(num_tokens, k_min, k_max, kind, ramp_length)
        rows.append(
            ScheduleReportRow(
                kind=kind,
                first_sizes=sizes[:6],
                cliff_position=cliff_position(num_samples, sizes),
                capacity_bits=capacity_bits(sizes),
                lookup_cost_ratio=num_tokens * k_max / sum(sizes),
            )
        )
    return rows


def format_schedule_report(rows: Sequence[ScheduleReportRow], num_samples: int, num_tokens: int) -> str:
    """Render `schedule_report` rows as a Markdown table."""
    lines = [
        f"N = {num_samples:,} samples (log2 N = {math.log2(num_samples):.2f} bits), T = {num_tokens} tokens",
        "",
        "| schedule | K_1..K_6 | cliff t* | capacity (bits) | T*K_max / sum K_t |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cliff = "never" if row.cliff_position is None else f"{row.cliff_position} / {num_tokens}"
        sizes = ", ".join(str(size) for size in row.first_sizes)
        lines.append(f"| {row.kind} | {sizes} | {cliff} | {row.capacity_bits:,.1f} | {row.lookup_cost_ratio:.2f} |")
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vcq schedules` / `python -m vcq_hf.schedules`."""
    parser.add_argument("--num-samples", type=int, default=1_281_167, help="N training images (default: ImageNet).")
    parser.add_argument("--num-tokens", type=int, default=256, help="T tokens per image.")
    parser.add_argument("--k-max", type=int, default=16384, help="K_max, the shared codebook size.")
    parser.add_argument("--k-min", type=int, default=2, help="K_min, the first position's codebook size.")
    parser.add_argument("--ramp-length", type=int, default=None, help="1-based position where K_max is reached.")
    parser.add_argument("--kinds", nargs="+", default=list(SCHEDULE_KINDS), choices=SCHEDULE_KINDS)


def run_cli(args: argparse.Namespace) -> None:
    rows = schedule_report(args.num_samples, args.num_tokens, args.k_max, args.k_min, args.kinds, args.ramp_length)
    print(format_schedule_report(rows, args.num_samples, args.num_tokens))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vcq_hf.schedules",
        description="Entropy-cliff position and capacity of each VCQ codebook-size schedule.",
    )
    add_cli_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_cli(args)
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
