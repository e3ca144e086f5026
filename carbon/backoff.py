"""Exponential backoff, the one used by both packages (``carbon`` never imports ``scheduler``).

The n-th delay (counting from 0) is ``c = min(cap, base * 2**n)``. With ``jitter`` (the default,
for clients that many replicas run at once: watches, API calls) the delay is drawn from
``U(c/2, c)``, never below ``floor``; without it the delay is ``c`` itself (the carbon cache's
per-provider back-off, whose schedule the policy states and tests pin).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff: ``c = min(cap, base * 2**attempts)``, jittered to ``U(c/2, c)``."""

    base: float = 0.5
    cap: float = 30.0
    floor: float = 0.05
    attempts: int = 0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def ceiling(self) -> float:
        """The un-jittered delay for the current attempt."""
        return min(self.cap, self.base * (2.0**self.attempts))

    def next_delay(self) -> float:
        """The delay before the next try; counts one more attempt."""
        ceiling = self.ceiling()
        self.attempts += 1
        if not self.jitter:
            return max(self.floor, ceiling)
        return max(self.floor, self.rng.uniform(ceiling / 2.0, ceiling))

    def reset(self) -> None:
        self.attempts = 0

    async def sleep(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
