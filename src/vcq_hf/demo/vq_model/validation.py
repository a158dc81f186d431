"""Range checks for numbers in configs and constructors: one message format, NaN and inf always rejected.

`value < minimum` is False for NaN, so a plain comparison lets NaN through every bound; these helpers check
`math.isfinite` first. Each raises a `ValueError` that names the value and the allowed range, and each has a
`validator` form for `huggingface_hub.dataclasses.validated_field` (the `@strict` config fields).
"""

import math
from collections.abc import Callable
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


__all__ = ["check_number", "number_validator", "optional_number_validator"]
