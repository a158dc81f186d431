"""Sampling settings of `VCQPipeline`: the documented defaults, their names and their checks, in pure Python.

`VCQPipeline` owns sampling: it takes each setting from the call, else from the prior's `generation_config` (so a
checkpoint carries the guidance it was evaluated with), else from `SAMPLING_DEFAULTS` below
(`VCQPipeline.resolve_sampling_settings`). This module holds only what that needs without importing torch, so the
CLI can offer the same choices and reject a bad value before it loads a model.
"""

from typing import Any

from .validation import check_number


GUIDANCE_SCHEDULES: tuple[str, ...] = ("constant", "linear")

# The one documented default of each setting, used when neither the call nor the checkpoint's generation_config
# gives it. Guidance 2.0: the scale the bundled demo and the README are evaluated at.
DEFAULT_GUIDANCE_SCALE: float = 2.0
SAMPLING_DEFAULTS: dict[str, Any] = {
    "guidance_scale": DEFAULT_GUIDANCE_SCALE,
    "guidance_schedule": "constant",
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "do_sample": True,
}


def check_sampling_settings(
    guidance_scale: float | None = None,
    guidance_schedule: str | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    do_sample: bool | None = None,
) -> None:
    """Check the given sampling settings (`None` = not given); every error names the value and the allowed range.

    Ranges: `guidance_scale` a finite number >= 0 (1 = no guidance, 0 = the unconditional model); `guidance_schedule`
    one of `GUIDANCE_SCHEDULES`; `temperature` a finite number > 0; `top_k` an integer >= 1; `top_p` a number in
    (0, 1] (1 = off); `do_sample` a bool. NaN and infinities are refused (`vcq_hf.validation.check_number`).

    Raises:
        `ValueError`: for the first bad setting.

    Example:
        >>> check_sampling_settings(guidance_scale=4.0, top_k=100)
        >>> check_sampling_settings(guidance_scale=float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: guidance_scale = nan is out of range: it must be a finite number in [0, inf).
    """
    if guidance_scale is not None:
        check_number("guidance_scale", guidance_scale, minimum=0.0)
    if guidance_schedule is not None and guidance_schedule not in GUIDANCE_SCHEDULES:
        raise ValueError(
            f"guidance_schedule = {guidance_schedule!r} is not supported; expected one of {GUIDANCE_SCHEDULES}."
        )
    if temperature is not None:
        check_number("temperature", temperature, minimum=0.0, exclusive_minimum=True)
    if top_k is not None:
        check_number("top_k", top_k, minimum=1, integer=True)
    if top_p is not None:
        check_number("top_p", top_p, minimum=0.0, maximum=1.0, exclusive_minimum=True)
    if do_sample is not None and not isinstance(do_sample, bool):
        raise ValueError(f"do_sample = {do_sample!r} must be True or False.")


def guidance_scales(guidance_scale: float, num_positions: int, schedule: str = "constant") -> list[float]:
    """Guidance scale used at each image position.

    `"constant"` uses `guidance_scale` everywhere. `"linear"` ramps it over the positions, as the linear CFG
    schedules used with LlamaGen-style AR samplers: position t (0-based) of T gets `1 + (s - 1) * (t + 1) / T`, so
    the last position uses the full scale `s` and the first one almost none.

    Args:
        guidance_scale (`float`): the scale `s`, finite and >= 0 (1 = no guidance).
        num_positions (`int`): number of image positions T, >= 1.
        schedule (`str`, *optional*, defaults to `"constant"`): one of `GUIDANCE_SCHEDULES`.

    Returns:
        `list[float]`: T scales.

    Example:
        >>> guidance_scales(4.0, 3, "linear")
        [2.0, 3.0, 4.0]
    """
    check_sampling_settings(guidance_scale=guidance_scale, guidance_schedule=schedule)
    if schedule == "constant":
        return [float(guidance_scale)] * num_positions
    return [1.0 + (guidance_scale - 1.0) * (t + 1) / num_positions for t in range(num_positions)]


__all__ = [
    "DEFAULT_GUIDANCE_SCALE",
    "GUIDANCE_SCHEDULES",
    "SAMPLING_DEFAULTS",
    "check_sampling_settings",
    "guidance_scales",
]
