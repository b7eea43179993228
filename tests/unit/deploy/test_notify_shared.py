"""A read shared by long-poll waiters (``deploy.notify.Shared``): read again only after a poke of its
topic or once it is older than its age limit, and never reused across a poke that came mid-read."""

from __future__ import annotations

import asyncio
import threading

from conveyor.deploy.notify import Notifier, Shared
from store_world import Clock




async def test_one_read_serves_every_waiter_until_a_poke_or_its_age() -> None:
    notifier, clock = Notifier(), Clock(100.0)
    notifier.bind(asyncio.get_running_loop())
    shared: Shared[int] = Shared(notifier, "routing", max_age=1.0, clock=clock)
    reads = iter(range(1, 100))
    assert shared.cached() is None
    assert shared.get(lambda: next(reads)) == 1
    assert shared.get(lambda: next(reads)) == 1 and shared.cached() == 1 and shared.reads == 1
    notifier.poke("desired")  # another topic: still fresh
    assert shared.get(lambda: next(reads)) == 1
    notifier.poke("routing")
    assert shared.cached() is None
    assert shared.get(lambda: next(reads)) == 2
    clock.t += 0.99
    assert shared.get(lambda: next(reads)) == 2
    clock.t += 0.02  # older than max_age: changes no poke announces (another replica, the clock) are seen
    assert shared.get(lambda: next(reads)) == 3 and shared.reads == 3


async def test_a_read_that_a_poke_overtook_is_not_reused() -> None:
    """The change committed (and was poked) while the value was being read: the next reader must
    read again, or it could keep a table without the change for up to max_age."""
    notifier = Notifier()
    notifier.bind(asyncio.get_running_loop())
    shared: Shared[str] = Shared(notifier, "routing", max_age=60.0)

    def read_then_change() -> str:
        notifier.poke("routing")  # on the loop's thread: counted at once
        return "before the change"

    assert shared.get(read_then_change) == "before the change"
    assert shared.get(lambda: "after") == "after"


async def test_concurrent_readers_wait_for_the_one_read() -> None:
    notifier = Notifier()
    notifier.bind(asyncio.get_running_loop())
    shared: Shared[int] = Shared(notifier, "routing", max_age=60.0)
    gate, calls = threading.Event(), []

    def slow() -> int:
        calls.append(1)
        gate.wait(5)
        return 7

    async def reader() -> int:
        return await asyncio.to_thread(shared.get, slow)

    tasks = [asyncio.create_task(reader()) for _ in range(5)]
    await asyncio.sleep(0.2)
    gate.set()
    assert await asyncio.gather(*tasks) == [7] * 5
    assert len(calls) == 1
