"""Settings read from the environment when the code location loads (never at import time)."""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def sensor_interval_s() -> int:
    """IMAGERY_SENSOR_INTERVAL_S: the sensor's minimum interval (default 30 s)."""
    return _int("IMAGERY_SENSOR_INTERVAL_S", 30)
