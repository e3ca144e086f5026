"""Test-only crash points on the bind path: ``LOWCARB_CRASH_AT=<step>[:<n>]``.

With the variable set, the process kills itself with SIGKILL (as ``kill -9`` would: no cleanup,
no flush) the ``n``-th time (default 1) a bind reaches ``step``: ``before-binding`` (intent
committed, Binding not sent), ``after-binding`` (Binding created, placement row not written),
``after-commit`` (placement row committed). The kill -9 tests use it to crash ``lowcarb serve``
at an exact point; never set it in production. Unset, each step costs one comparison.
"""

from __future__ import annotations

import os
import signal
from typing import Final, Literal

Step = Literal["before-binding", "after-binding", "after-commit"]
STEPS: Final = ("before-binding", "after-binding", "after-commit")
ENV: Final = "LOWCARB_CRASH_AT"


class CrashPoints:
    """Parsed once from the environment (tests set it per process)."""

    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get(ENV, "") if spec is None else spec
        step, _, count = spec.partition(":")
        if step and step not in STEPS:
            raise ValueError(f"{ENV}={spec!r}: the step must be one of {', '.join(STEPS)}")
        self.step = step
        self.left = int(count) if count else 1

    def wants(self, step: Step) -> bool:
        """True when reaching ``step`` now will crash (the caller may finish a write first)."""
        return step == self.step and self.left == 1

    def reach(self, step: Step) -> None:
        if step != self.step:
            return
        self.left -= 1
        if self.left <= 0:
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
