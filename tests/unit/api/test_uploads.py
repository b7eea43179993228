"""Upload checks run a few at a time: each holds memory and disk while it unpacks an archive."""

from __future__ import annotations

import asyncio
import threading

from conveyor.api.uploads import CheckSlots


async def test_no_more_checks_run_at_once_than_the_limit() -> None:
    slots = CheckSlots(limit=2)
    release = threading.Event()
    started = threading.Semaphore(0)

    def check(n: int) -> int:
        started.release()
        assert release.wait(30), "never released"
        return n

    tasks = [asyncio.create_task(slots.run(check, n)) for n in range(6)]
    for _ in range(2):  # two start...
        assert await asyncio.to_thread(started.acquire, True, 30)
    await asyncio.sleep(0.2)  # ...and the others stay queued while those two hold their slots
    assert slots.running == 2 and not started.acquire(blocking=False)
    release.set()
    assert sorted(await asyncio.gather(*tasks)) == list(range(6))
    assert slots.most == 2 and slots.running == 0
