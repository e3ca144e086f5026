"""asyncio helpers shared by both packages (``carbon`` never imports ``scheduler``).

:func:`cancel_all` stops background tasks reliably. On Python 3.11, ``asyncio.wait_for`` can
swallow a cancellation that arrives just as the awaited event fires or times out
(CPython gh-86296, fixed in 3.12); a loop that sleeps with ``wait_for(event.wait(), t)`` then
carries on and a plain ``task.cancel(); await task`` waits forever. Cancelling again until the
task is done closes that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("lowcarb.aio")


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], *, grace_s: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until every one is done, re-cancelling every 50 ms.

    Gives up (with a warning naming the tasks) after ``grace_s``; exceptions of the tasks are
    retrieved so asyncio does not log them as never retrieved.
    """
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
        if pending and loop.time() > deadline:
            names = ", ".join(sorted(t.get_name() for t in pending))
            log.warning("tasks still running %.0f s after cancel: %s", grace_s, names)
            break
    for task in tasks:
        if task.done() and not task.cancelled():
            with contextlib.suppress(BaseException):
                task.exception()
