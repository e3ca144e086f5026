"""cancel_all stops a loop even when a cancellation is swallowed (the 3.11 wait_for race)."""

from __future__ import annotations

import asyncio

from carbon.aio import cancel_all


async def test_a_task_that_swallows_one_cancel_is_still_stopped() -> None:
    swallowed = 0

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 0:  # what wait_for does when the event fires at the same time
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all([task]), timeout=5)
    assert task.cancelled()
    assert swallowed == 1


async def test_failed_and_finished_tasks_are_fine() -> None:
    async def boom() -> None:
        raise RuntimeError("bug")

    failed = asyncio.create_task(boom())
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await cancel_all([failed, finished])
    assert failed.done() and finished.done()


async def test_gives_up_after_the_grace_period() -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all([task], grace_s=0.2), timeout=5)
    assert not task.done()
    stop.set()
    task.cancel()
    await task
