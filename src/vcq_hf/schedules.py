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
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass


SCHEDULE_KINDS: tuple[str, ...] = ("constant", "linear", "log", "cosine")

# The schedule kind of every default in vcq_hf: `codebook_sizes`, `CodebookSchedule.from_kind`, `VCQVQConfig` and the
# tokenizer and prior presets. The one place to change it. Linear since study v2 (docs/reproduction.md, "Default
# schedule"): best VCQ arm at N = 5k over two seeds and best VCQ tokenizer; log won only at N = 1k (one seed).
DEFAULT_SCHEDULE: str = "linear"

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
    num_image_tokens: int | None = None,
    k_min: int | None = None,
    k_max: int | None = None,
    name: str = "codebook_sizes",
) -> tuple[int, ...]:
    """Check an explicit per-position schedule and return it as a tuple of Python ints.

    Rules: one entry per position (`num_image_tokens` if given), every entry an integer >= 1, monotone non-decreasing,
    and, when given, every entry in [k_min, k_max].

    Raises:
        `ValueError`: naming the offending value and the allowed range.
    """
    if isinstance(sizes, CodebookSchedule) and k_min is None and k_max is None:
        if num_image_tokens is not None and len(sizes) != num_image_tokens:
            raise ValueError(
                f"{name} has {len(sizes)} entries but num_image_tokens is {num_image_tokens}; they must be equal."
            )
        return sizes.sizes  # validated when it was built
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        try:
            sizes = list(sizes)  # numpy arrays, tensors, generators
        except TypeError as err:
            raise ValueError(f"{name} must be a sequence of integers, got {type(sizes).__name__}.") from err
    if len(sizes) == 0:
        raise ValueError(f"{name} must not be empty.")
    if num_image_tokens is not None and len(sizes) != num_image_tokens:
        raise ValueError(
            f"{name} has {len(sizes)} entries but num_image_tokens is {num_image_tokens}; they must be equal."
        )
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
    num_image_tokens: int,
    k_min: int,
    k_max: int,
    kind: str | Sequence[int] = DEFAULT_SCHEDULE,
    ramp_length: int | None = None,
) -> tuple[int, ...]:
    """Per-position codebook sizes K_0 .. K_{T-1} of a VCQ schedule.

    With f_t = min(t / (R - 1), 1) for 0-based position t and ramp length R:

    - `"constant"`: K_t = K_max (the paper's uniform-codebook baseline; `k_min` is ignored),
    - `"linear"`:   K_t = round(K_min + f_t (K_max - K_min)),
    - `"log"`:      K_t = round(2 ** (log2 K_min + f_t (log2 K_max - log2 K_min))) (log2 K_t linear in t),
    - `"cosine"`:   K_t = round(K_min + (K_max - K_min) (1 - cos(pi f_t)) / 2),
    - a sequence of ints: an explicit schedule, validated (length `num_image_tokens`, monotone, entries in [k_min, k_max]).

    Every ramp starts at K_min and reaches K_max at the 1-based position R (`ramp_length`, default T) and stays there.

    Args:
        num_image_tokens (`int`): number of image tokens T, >= 1.
        k_min (`int`): size at the first position, in [1, k_max].
        k_max (`int`): size of the shared codebook, >= 1.
        kind (`str` or `Sequence[int]`, *optional*, defaults to `DEFAULT_SCHEDULE`): one of `SCHEDULE_KINDS` or explicit sizes.
        ramp_length (`int`, *optional*): 1-based position at which K_max is reached, in [1, num_image_tokens].

    Returns:
        `tuple[int, ...]`: T monotone non-decreasing sizes.

    Example:
        >>> codebook_sizes(8, 2, 256, "log")
        (2, 4, 8, 16, 32, 64, 128, 256)
        >>> codebook_sizes(4, 2, 256, "constant")
        (256, 256, 256, 256)
    """
    if isinstance(num_image_tokens, bool) or not isinstance(num_image_tokens, int) or num_image_tokens < 1:
        raise ValueError(f"num_image_tokens = {num_image_tokens!r} is out of range: it must be an integer >= 1.")
    if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < 1:
        raise ValueError(f"k_max = {k_max!r} is out of range: it must be an integer >= 1.")
    if isinstance(k_min, bool) or not isinstance(k_min, int) or k_min < 1:
        raise ValueError(f"k_min = {k_min!r} is out of range: it must be an integer in [1, k_max = {k_max}].")
    if k_min > k_max:
        raise ValueError(f"k_min = {k_min} is out of range: it must be in [1, k_max = {k_max}].")
    if ramp_length is None:
        ramp_length = num_image_tokens
    if isinstance(ramp_length, bool) or not isinstance(ramp_length, int) or not 1 <= ramp_length <= num_image_tokens:
        raise ValueError(
            f"ramp_length = {ramp_length!r} is out of range: it must be in [1, num_image_tokens = {num_image_tokens}]."
        )

    if not isinstance(kind, str):
        return validate_codebook_sizes(kind, num_image_tokens=num_image_tokens, k_min=k_min, k_max=k_max)
    if kind == "constant":
        return (k_max,) * num_image_tokens
    if kind not in _INTERPOLATORS:
        raise ValueError(f"Unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS} or a list of sizes.")
    interpolate = _INTERPOLATORS[kind]
    sizes = []
    for position in range(num_image_tokens):
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
    sizes = validate_codebook_sizes(codebook_sizes)  # free for a CodebookSchedule
    target = math.log2(num_samples)
    for position, bits in enumerate(cumulative_capacity_bits(sizes), start=1):
        if bits >= target - _BITS_TOLERANCE:
            return position
    return None


class CodebookSchedule(Sequence):
    """The codebook-size schedule K_0 .. K_{T-1} of a VCQ model as one immutable, validated value.

    Validated once, when it is built; everything downstream asks it instead of re-checking a list: the configs build
    it (`config.codebook_schedule`), and the quantizer, `VCQMask`, the models' input checks and the masked loss
    consume it. It behaves as a read-only sequence of ints (`len`, indexing, iteration, `==` with a list or tuple),
    so it can be passed wherever a plain list of sizes was accepted. Tensors derived from it (the limits per device,
    the `[0, K_t)` masks) are built once per device and cached; never modify them in place.

    Args:
        sizes (`Sequence[int]`): K_t per position: non-empty, integers >= 1, monotone non-decreasing.
        k_min (`int`, *optional*): if given, every entry must be >= k_min.
        k_max (`int`, *optional*): if given, every entry must be <= k_max.
        name (`str`, *optional*, defaults to `"codebook_sizes"`): the name used in error messages.

    Example:
        >>> schedule = CodebookSchedule.from_kind(8, 2, 256, "log")
        >>> schedule
        CodebookSchedule([2, 4, 8, 16, 32, 64, 128, 256])
        >>> schedule.num_image_tokens, schedule.k_min, schedule.k_max, schedule[2]
        (8, 2, 256, 8)
        >>> schedule.cliff_position(1000), schedule == [2, 4, 8, 16, 32, 64, 128, 256]
        (4, True)
    """

    __slots__ = ("_sizes", "_hash", "_cache")

    def __init__(
        self,
        sizes: Sequence[int],
        k_min: int | None = None,
        k_max: int | None = None,
        name: str = "codebook_sizes",
    ):
        if isinstance(sizes, CodebookSchedule):
            validated = sizes._sizes
            if (k_min is not None and validated[0] < k_min) or (k_max is not None and validated[-1] > k_max):
                validated = validate_codebook_sizes(validated, k_min=k_min, k_max=k_max, name=name)
        else:
            validated = validate_codebook_sizes(sizes, k_min=k_min, k_max=k_max, name=name)
        object.__setattr__(self, "_sizes", validated)
        object.__setattr__(self, "_hash", hash(validated))
        object.__setattr__(self, "_cache", {})

    @classmethod
    def coerce(cls, sizes: Sequence[int] | CodebookSchedule, name: str = "codebook_sizes") -> CodebookSchedule:
        """`sizes` itself if it already is a `CodebookSchedule` (no second validation), else a validated new one."""
        return sizes if isinstance(sizes, cls) else cls(sizes, name=name)

    @staticmethod
    def cached(sizes: Sequence[int] | CodebookSchedule) -> CodebookSchedule:
        """The shared schedule object for these sizes: validated the first time a process sees them, then reused
        (with its cached tensors) by every config, model and processor that asks. This is what
        `config.codebook_schedule` returns."""
        if isinstance(sizes, CodebookSchedule):
            return sizes
        try:
            key = tuple(sizes)
            hash(key)
        except TypeError:
            return CodebookSchedule(sizes)  # not a sequence of hashables: let validation name the problem
        return _cached_schedule(key)

    @classmethod
    def from_kind(
        cls,
        num_image_tokens: int,
        k_min: int,
        k_max: int,
        kind: str | Sequence[int] = DEFAULT_SCHEDULE,
        ramp_length: int | None = None,
    ) -> CodebookSchedule:
        """The schedule of `codebook_sizes(num_image_tokens, k_min, k_max, kind, ramp_length)`."""
        return cls(codebook_sizes(num_image_tokens, k_min, k_max, kind, ramp_length))

    # -- immutable value
    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"CodebookSchedule is immutable; build a new one instead of setting {name!r}.")

    def __reduce__(self):
        return (CodebookSchedule, (list(self._sizes),))

    def __len__(self) -> int:
        return len(self._sizes)

    def __getitem__(self, index):
        return self._sizes[index]

    def __iter__(self):
        return iter(self._sizes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CodebookSchedule):
            return self._sizes == other._sizes
        if isinstance(other, (list, tuple)):
            return self._sizes == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        sizes = self._sizes
        shown = ", ".join(str(size) for size in sizes[:8]) + (f", ... (T={len(sizes)})" if len(sizes) > 8 else "")
        return f"CodebookSchedule([{shown}])"

    # -- plain values
    @property
    def sizes(self) -> tuple[int, ...]:
        """K_t per position as a tuple of Python ints."""
        return self._sizes

    @property
    def num_image_tokens(self) -> int:
        """T, the number of image positions."""
        return len(self._sizes)

    @property
    def k_min(self) -> int:
        """K_0, the smallest codebook size."""
        return self._sizes[0]

    @property
    def k_max(self) -> int:
        """K_{T-1}, the largest codebook size (the shared codebook of the tokenizer has this many entries)."""
        return self._sizes[-1]

    def to_list(self) -> list[int]:
        """The sizes as a JSON-ready list (the stored form in `config.json`)."""
        return list(self._sizes)

    def require_equal(self, other: Sequence[int], name: str, other_name: str, hint: str = "") -> None:
        """Raise a `ValueError` naming both schedules unless `other` holds the same sizes (the one place where two
        components' schedules are compared: tokenizer vs prior, tokenizer vs a code set)."""
        if self == other or (not isinstance(other, (list, tuple, CodebookSchedule)) and self._sizes == tuple(other)):
            return
        other = list(other)
        raise ValueError(
            f"{name} = {list(self._sizes)} (T = {len(self._sizes)}) but {other_name} = {other} (T = {len(other)}): "
            f"the codebook-size schedules must be equal.{' ' + hint if hint else ''}"
        )

    # -- entropy-cliff arithmetic
    def capacity_bits(self) -> float:
        """Total capacity in bits: sum_t log2 K_t."""
        return capacity_bits(self._sizes)

    def cumulative_capacity_bits(self) -> list[float]:
        """Capacity of the first t tokens, t = 1..T."""
        return cumulative_capacity_bits(self._sizes)

    def cliff_position(self, num_samples: int) -> int | None:
        """The entropy cliff t* for N = `num_samples` training images (see `cliff_position`)."""
        return cliff_position(num_samples, self)

    def lookup_cost_ratio(self) -> float:
        """T * K_max / sum_t K_t: ideal speed-up of the grouped quantizer lookup over the naive one."""
        return len(self._sizes) * self._sizes[-1] / sum(self._sizes)

    # -- cached tensors (torch is imported only here, so the pure maths stays light)
    def _cached(self, key: tuple, build):
        value = self._cache.get(key)
        if value is None:
            value = build()
            self._cache[key] = value
        return value

    def limits(self, device=None):
        """K_t for t in [0, T) as a `(T,)` int64 tensor on `device`, built once per device (do not modify it)."""
        import torch

        device = torch.device("cpu") if device is None else torch.device(device)
        return self._cached(("limits", device), lambda: torch.tensor(self._sizes, dtype=torch.long, device=device))

    def outside_mask(self, vocab_size: int, device=None):
        """`(T, vocab_size)` bool tensor, True where id j is not allowed at position t (j >= K_t).

        Built once per (vocab_size, device); slice it by position (`[start:end]`), never modify it in place.
        """
        import torch

        device = torch.device("cpu") if device is None else torch.device(device)

        def build():
            vocab = torch.arange(vocab_size, device=device)
            return vocab[None, :] >= self.limits(device)[:, None]

        return self._cached(("outside", vocab_size, device), build)

    def check_codes(
        self,
        codes,
        first_position: int = 0,
        name: str = "codes",
        column_offset: int = 0,
        ignore_index: int | None = None,
    ) -> None:
        """Check that `codes[:, j]` is a valid code at image position `first_position + j`: in `[0, K_t)`.

        Args:
            codes (`torch.Tensor` of shape `(batch_size, n)`): integer codes; `first_position + n <= T`.
            first_position (`int`, *optional*, defaults to 0): image position of column 0.
            name (`str`, *optional*, defaults to `"codes"`): the tensor's name in the error message.
            column_offset (`int`, *optional*, defaults to 0): added to the column in the message (e.g. 1 when the
                codes follow a class token in `input_ids`).
            ignore_index (`int`, *optional*): a value allowed anywhere (e.g. -100 in labels).

        Raises:
            `ValueError`: naming the first bad entry (row, column, value, position and its range) and the count.
        """
        limits = self.limits(codes.device)[first_position : first_position + codes.shape[-1]]
        bad = (codes < 0) | (codes >= limits)
        if ignore_index is not None:
            bad &= codes != ignore_index
        if bool(bad.any()):
            row, column = (int(index) for index in bad.nonzero()[0])
            position = first_position + column
            allowed = f"[0, K_{position}) = [0, {self._sizes[position]})"
            if ignore_index is not None:
                allowed += f" (or {ignore_index} to ignore)"
            raise ValueError(
                f"{name}[{row}, {column_offset + column}] = {int(codes[row, column])} is not a valid image code at "
                f"image position {position}: allowed range {allowed}. {int(bad.sum())} invalid code(s) in all."
            )


@functools.lru_cache(maxsize=128)
def _cached_schedule(sizes: tuple) -> CodebookSchedule:
    return CodebookSchedule(sizes)


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
    num_image_tokens: int,
    k_max: int,
    k_min: int = 2,
    kinds: Sequence[str] = SCHEDULE_KINDS,
    ramp_length: int | None = None,
) -> list[ScheduleReportRow]:
    """Cliff position and capacity of each schedule kind for N samples, T tokens and a codebook of K_max entries."""
    rows = []
    for kind in kinds:
        sizes = codebook_sizes(num_image_tokens, k_min, k_max, kind, ramp_length)
        rows.append(
            ScheduleReportRow(
                kind=kind,
                first_sizes=sizes[:6],
                cliff_position=cliff_position(num_samples, sizes),
                capacity_bits=capacity_bits(sizes),
                lookup_cost_ratio=num_image_tokens * k_max / sum(sizes),
            )
        )
    return rows


def format_schedule_report(rows: Sequence[ScheduleReportRow], num_samples: int, num_image_tokens: int) -> str:
    """Render `schedule_report` rows as a Markdown table."""
    lines = [
        f"N = {num_samples:,} samples (log2 N = {math.log2(num_samples):.2f} bits), T = {num_image_tokens} tokens",
        "",
        "| schedule | K_1..K_6 | cliff t* | capacity (bits) | T*K_max / sum K_t |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cliff = "never" if row.cliff_position is None else f"{row.cliff_position} / {num_image_tokens}"
        sizes = ", ".join(str(size) for size in row.first_sizes)
        lines.append(f"| {row.kind} | {sizes} | {cliff} | {row.capacity_bits:,.1f} | {row.lookup_cost_ratio:.2f} |")
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vcq schedules` / `python -m vcq_hf.schedules`."""
    parser.add_argument("--num-samples", type=int, default=1_281_167, help="N training images (default: ImageNet).")
    parser.add_argument("--num-image-tokens", "--num-tokens", type=int, default=256, help="T tokens per image.")
    parser.add_argument("--k-max", type=int, default=16384, help="K_max, the shared codebook size.")
    parser.add_argument("--k-min", type=int, default=2, help="K_min, the first position's codebook size.")
    parser.add_argument("--ramp-length", type=int, default=None, help="1-based position where K_max is reached.")
    parser.add_argument("--kinds", nargs="+", default=list(SCHEDULE_KINDS), choices=SCHEDULE_KINDS)


def run_cli(args: argparse.Namespace) -> None:
    rows = schedule_report(
        args.num_samples, args.num_image_tokens, args.k_max, args.k_min, args.kinds, args.ramp_length
    )
    print(format_schedule_report(rows, args.num_samples, args.num_image_tokens))


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
