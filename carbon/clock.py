"""The wall clock, read in one place: epoch seconds now, optionally moved by ``LOWCARB_NOW``.

Everything that needs the date or time takes a ``clock`` (no arguments, epoch seconds); tests
pass their own, and the default is :func:`wall`. Intervals and timeouts use ``time.monotonic``,
which no date setting moves.

``LOWCARB_NOW`` (an ISO 8601 date-time such as ``2026-11-28T12:15:00Z``, naive meaning UTC, or
epoch seconds) makes the process run as if the wall clock read that instant at its first
reading; the clock keeps ticking from there. A command can so be run "as of" a moment:
``LOWCARB_NOW=2026-11-28T12:15:00Z lowcarb gates plan`` shows what the gate controller would
have decided then, and tests pin a command to the time their recorded fixtures were taken.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

ENV = "LOWCARB_NOW"

Clock = Callable[[], float]


class ClockError(ValueError):
    """``LOWCARB_NOW`` does not name an instant."""


def parse_instant(text: str) -> float:
    """Epoch seconds of an ISO 8601 date-time (naive means UTC) or of a number of epoch seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ClockError(
            f"{ENV}={text!r} is not an instant; write an ISO 8601 date-time such as "
            "2026-11-28T12:15:00Z, or epoch seconds, or unset it to use the system clock"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_offset: float | None = None  # seconds added to the system clock; None: LOWCARB_NOW not read yet


def offset() -> float:
    """Seconds :func:`wall` adds to the system clock: 0 unless pinned or ``LOWCARB_NOW`` is set.

    Raises ``ClockError`` when ``LOWCARB_NOW`` is set but names no instant.
    """
    global _offset
    if _offset is None:
        text = os.environ.get(ENV, "")
        _offset = parse_instant(text) - time.time() if text.strip() else 0.0
    return _offset


def pin(instant: float) -> None:
    """Run this process as if the wall clock read ``instant`` (epoch seconds) now; it ticks on."""
    global _offset
    _offset = instant - time.time()


def reset() -> None:
    """Forget any pin; the next reading follows ``LOWCARB_NOW`` again (or the system clock)."""
    global _offset
    _offset = None


def wall() -> float:
    """Epoch seconds now: the system clock, moved by ``LOWCARB_NOW`` or :func:`pin`."""
    off = offset() if _offset is None else _offset  # before reading the time: never behind
    return time.time() + off
