"""Named configurations ("presets") reached through `Config.from_preset(name, **overrides)`.

Each config class that mixes in `PresetMixin` defines a class attribute `presets`: a dict from preset name to the
keyword arguments of its constructor. `from_preset` returns a real config object, so a model built from a preset
round-trips through `save_pretrained` / `from_pretrained` like any other.
"""

from __future__ import annotations

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
