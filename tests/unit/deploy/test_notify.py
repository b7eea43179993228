"""The in-process wake-ups (``deploy/notify.Notifier``): a poke that arrives while a waiter reads
its state, before it waits, is not lost."""

from __future__ import annotations

import asyncio
import time

from conveyor.deploy.notify import Notifier


def test_a_poke_between_the_read_and_the_wait_wakes_the_waiter_at_once() -> None:
    async def main() -> tuple[bool, float, bool, float]:
        n = Notifier()
        n.bind(asyncio.get_running_loop())
        seen = n.generation("routing")
        n.poke("routing")  # no one waits yet: the state the caller just read is already stale
        t = time.monotonic()
        woke = await n.wait("routing", 2.0, since=seen)
        late = time.monotonic() - t
        # without `since` (or with the current generation) the same poke is gone: it waits it out
        t = time.monotonic()
        timed_out = await n.wait("routing", 0.1, since=n.generation("routing"))
        return woke, late, timed_out, time.monotonic() - t

    woke, late, timed_out, waited = asyncio.run(main())
    assert woke and late < 0.05
    assert timed_out is False and waited >= 0.09


def test_a_poke_while_waiting_wakes_and_other_topics_do_not() -> None:
    async def main() -> tuple[bool, bool]:
        n = Notifier()
        n.bind(asyncio.get_running_loop())
        seen = n.generation("desired")
        asyncio.get_running_loop().call_later(0.02, n.poke, "routing")
        other = await n.wait("desired", 0.1, since=seen)
        asyncio.get_running_loop().call_later(0.02, n.poke, "desired")
        mine = await n.wait("desired", 2.0, since=n.generation("desired"))
        return other, mine

    assert asyncio.run(main()) == (False, True)
