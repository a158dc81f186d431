"""The vcq_hf library logger, with the verbosity API of `transformers.utils.logging` / `diffusers.utils.logging`.

Every module logs through `get_logger(__name__)`, so all records of the package go through one root logger,
`"vcq_hf"`; the model files use `transformers.utils.logging.get_logger(__name__)`, which names the same standard
`logging` loggers, so they are children of that root too. Its level is, in order of precedence: what
`set_verbosity(...)` (or `set_verbosity_info()` etc.) last set, the environment variable `VCQ_HF_VERBOSITY`
(`debug`, `info`, `warning`, `error`, `critical`), else `warning`. One stderr handler is attached to the root on first
use (`disable_default_handler()` removes it, e.g. when the application configures logging itself); records do not
propagate to the Python root logger while it is attached, so they are not printed twice.

    >>> from vcq_hf.utils import logging
    >>> logging.set_verbosity_info()
    >>> logging.get_verbosity() == logging.INFO
    True
    >>> logging.set_verbosity_warning()
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from logging import CRITICAL, DEBUG, ERROR, INFO, WARNING


__all__ = [
    "CRITICAL",
    "DEBUG",
    "ERROR",
    "INFO",
    "WARNING",
    "disable_default_handler",
    "enable_default_handler",
    "get_logger",
    "get_verbosity",
    "set_verbosity",
    "set_verbosity_debug",
    "set_verbosity_error",
    "set_verbosity_info",
    "set_verbosity_warning",
]

LIBRARY_NAME = "vcq_hf"
VERBOSITY_ENV = "VCQ_HF_VERBOSITY"
LOG_LEVELS: dict[str, int] = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR, "critical": CRITICAL}

_lock = threading.Lock()
_default_handler: logging.Handler | None = None


def _level_from_env() -> int:
    value = os.environ.get(VERBOSITY_ENV)
    if not value:
        return WARNING
    level = LOG_LEVELS.get(value.strip().lower())
    if level is None:
        raise ValueError(f"{VERBOSITY_ENV}={value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}.")
    return level


def _root() -> logging.Logger:
    """The library root logger, set up (handler, level from the environment) on first call."""
    global _default_handler
    root = logging.getLogger(LIBRARY_NAME)
    with _lock:
        if _default_handler is None:
            _default_handler = logging.StreamHandler(sys.stderr)
            _default_handler.setFormatter(logging.Formatter("[%(levelname)s|%(name)s] %(message)s"))
            root.addHandler(_default_handler)
            root.setLevel(_level_from_env())
            root.propagate = False
    return root


def get_logger(name: str | None = None) -> logging.Logger:
    """The logger `name` (a module's `__name__`, under "vcq_hf"), or the library root logger when `None`."""
    _root()
    return logging.getLogger(name or LIBRARY_NAME)


def get_verbosity() -> int:
    """The library root logger's level (`logging.WARNING` unless set)."""
    return _root().getEffectiveLevel()


def set_verbosity(verbosity: int | str) -> None:
    """Set the library root logger's level: a `logging` level (`vcq_hf.utils.logging.INFO`) or its name ("info")."""
    if isinstance(verbosity, str):
        level = LOG_LEVELS.get(verbosity.strip().lower())
        if level is None:
            raise ValueError(f"verbosity {verbosity!r} is not a log level; use one of {', '.join(LOG_LEVELS)}.")
        verbosity = level
    if isinstance(verbosity, bool) or not isinstance(verbosity, int) or verbosity not in LOG_LEVELS.values():
        raise ValueError(f"verbosity {verbosity!r} is not a log level; use one of {sorted(LOG_LEVELS.values())}.")
    _root().setLevel(verbosity)


def set_verbosity_debug() -> None:
    set_verbosity(DEBUG)


def set_verbosity_info() -> None:
    set_verbosity(INFO)


def set_verbosity_warning() -> None:
    set_verbosity(WARNING)


def set_verbosity_error() -> None:
    set_verbosity(ERROR)


def disable_default_handler() -> None:
    """Remove the stderr handler; records then propagate to the handlers the application configured."""
    root = _root()
    if _default_handler is not None and _default_handler in root.handlers:
        root.removeHandler(_default_handler)
    root.propagate = True


def enable_default_handler() -> None:
    """Attach the stderr handler again (after `disable_default_handler`)."""
    root = _root()
    if _default_handler is not None and _default_handler not in root.handlers:
        root.addHandler(_default_handler)
    root.propagate = False
