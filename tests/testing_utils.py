"""Shared test helpers: the `slow` gate and small utilities."""

from __future__ import annotations

import os

import pytest


RUN_SLOW = os.environ.get("RUN_SLOW", "0").lower() in {"1", "true", "yes"}

slow = pytest.mark.skipif(not RUN_SLOW, reason="slow test: set RUN_SLOW=1 to run")
