"""Range checks for numbers in configs and constructors: one message format, NaN and inf always rejected.

`value < minimum` is False for NaN, so a plain comparison lets NaN through every bound; these helpers check
`math.isfinite` first. Each raises a `ValueError` that names the value and the allowed range, and each has a
`validator` form for `huggingface_hub.dataclasses.validated_field` (the `@strict` config fields).

Also the one owner of "which weights file is unreadable": `explain_unreadable_weights` turns the libraries' anonymous
safetensors errors into a `CorruptWeightsError` naming the file. It lives here, beside the model files, because the
models' `from_pretrained` uses it and remote code copies only the model files' same-folder imports.
"""

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _interval(minimum: float | None, maximum: float | None, exclusive_minimum: bool, exclusive_maximum: bool) -> str:
    low = "-inf" if minimum is None else f"{minimum:g}" if isinstance(minimum, float) else str(minimum)
    high = "inf" if maximum is None else f"{maximum:g}" if isinstance(maximum, float) else str(maximum)
    left = "(" if exclusive_minimum or minimum is None else "["
    right = ")" if exclusive_maximum or maximum is None else "]"
    return f"{left}{low}, {high}{right}"


def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    integer: bool = False,
) -> None:
    """Raise a `ValueError` unless `value` is a finite real number (an int if `integer`) in the given interval.

    Example:
        >>> check_number("layer_norm_eps", float("nan"), minimum=0.0, exclusive_minimum=True)
        Traceback (most recent call last):
        ...
        ValueError: layer_norm_eps = nan is out of range: it must be a finite number in (0, inf).
    """
    kind = "an integer" if integer else "a finite number"
    interval = _interval(minimum, maximum, exclusive_minimum, exclusive_maximum)
    bad_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if bad_type:
        raise ValueError(f"{name} = {value!r} is not {kind}: it must be {kind} in {interval}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} = {value!r} is out of range: it must be {kind} in {interval}.")
    too_low = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    too_high = maximum is not None and (value >= maximum if exclusive_maximum else value > maximum)
    if too_low or too_high:
        raise ValueError(f"{name} = {value!r} is out of range: it must be {kind} in {interval}.")


def number_validator(name: str, **bounds: Any) -> Callable[[Any], None]:
    """`check_number(name, value, **bounds)` as a one-argument validator for a `@strict` field."""

    def validator(value: Any) -> None:
        check_number(name, value, **bounds)

    validator.__name__ = f"check_{name}"
    return validator


def optional_number_validator(name: str, **bounds: Any) -> Callable[[Any], None]:
    """Like `number_validator`, but `None` passes (for optional fields)."""

    def validator(value: Any) -> None:
        if value is not None:
            check_number(name, value, **bounds)

    validator.__name__ = f"check_{name}"
    return validator


class CorruptWeightsError(OSError):
    """A weights file cannot be read (truncated or corrupt); the message names the file."""


def unreadable_safetensors(path: str | os.PathLike) -> list[tuple[Path, str]]:
    """`(file, reason)` for each `.safetensors` file at `path` (a file, or a folder and its direct subfolders) whose
    header cannot be read or whose data does not cover what the header promises (a truncated copy)."""
    from safetensors import safe_open

    path = Path(path)
    files = [path] if path.is_file() else [*sorted(path.glob("*.safetensors")), *sorted(path.glob("*/*.safetensors"))]
    bad = []
    for file in files:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as err:  # SafetensorError and OSError alike: report each unreadable file
            bad.append((file, str(err)))
    return bad


@contextlib.contextmanager
def explain_unreadable_weights(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an error of the block as `CorruptWeightsError` naming the file when a `.safetensors` file at the
    local `path` is unreadable (the libraries' own errors do not say which file); other errors pass unchanged."""
    try:
        yield
    except Exception as err:
        if isinstance(err, CorruptWeightsError) or not Path(path).exists():
            raise
        bad = unreadable_safetensors(path)
        if not bad:
            raise
        file, reason = bad[0]
        raise CorruptWeightsError(
            f"{file} cannot be read ({reason}): the file is truncated or corrupt. Copy or download it again."
        ) from err


__all__ = [
    "CorruptWeightsError",
    "check_number",
    "explain_unreadable_weights",
    "number_validator",
    "optional_number_validator",
    "unreadable_safetensors",
]
