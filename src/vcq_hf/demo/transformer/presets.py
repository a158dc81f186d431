"""Named configurations ("presets") reached through `Config.from_preset(name, **overrides)`, and validation of
`from_pretrained(path, **overrides)`.

Each config class that mixes in `PresetMixin` defines a class attribute `presets`: a dict from preset name to the
keyword arguments of its constructor. `from_preset` returns a real config object, so a model built from a preset
round-trips through `save_pretrained` / `from_pretrained` like any other.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar


class PresetMixin:
    """Adds `from_preset(name, **overrides)` and `list_presets()` to a config class with a `presets` dict."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def list_presets(cls) -> list[str]:
        """Names of the presets of this config class, sorted."""
        return sorted(cls.presets)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any):
        """Build the config named `name`, with keyword `overrides` applied on top (validated like any config).

        Raises:
            `ValueError`: if `name` is not a preset of this class; the message lists the known names.
        """
        if name not in cls.presets:
            close = difflib.get_close_matches(str(name), cls.presets, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"Unknown {cls.__name__} preset {name!r}; known presets: {', '.join(cls.list_presets())}.{hint}"
            )
        kwargs = dict(cls.presets[name])
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """Build a config from a saved dict, with keyword overrides applied *before* construction.

        transformers' `from_dict` sets overrides as attributes after `__init__`, so `from_pretrained(path,
        num_classes=3)` would skip the cross-field validation and keep stale derived fields. Here every override that
        names a config field is merged into the dict first (derived fields it invalidates are dropped, see
        `_fields_derived_from`), so the result is validated exactly like `Config(**fields)`.
        """
        from transformers import PreTrainedConfig  # its own fields (dtype, id2label, ...) stay transformers' business

        base = {field.name for field in dataclasses.fields(PreTrainedConfig)}
        names = {field.name for field in dataclasses.fields(cls)} - base | set(getattr(cls, "attribute_map", {}))
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in names}
        if overrides:
            config_dict = dict(config_dict)
            for key in overrides:
                for derived in cls._fields_derived_from(key):
                    if derived not in overrides:
                        config_dict.pop(derived, None)
            config_dict.update(overrides)
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def _fields_derived_from(cls, name: str) -> tuple[str, ...]:
        """Stored fields that are derived from field `name` and must be re-derived when it is overridden."""
        return ()
