"""In-process wake-ups for long-polls and the orchestrator.

Why not only polling the database: a rollback must reach the routers in well
under a second, so whoever changes routing-relevant state pokes the topic and
every waiting long-poll re-reads at once. Waits still time out (``recheck``) so
a change made by another control-plane replica sharing the database is seen
within that period even though it cannot poke us.
"""

from __future__ import annotations

import asyncio


class Notifier:
    """Broadcast "something changed" per topic (``routing``, ``desired``, ``orchestrator``)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        #: how many times each topic was poked: a waiter that read the state after seeing generation
        #: N and is poked before it waits must not sleep through that poke (see :meth:`wait`)
        self._generations: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _event(self, topic: str) -> asyncio.Event:
        ev = self._events.get(topic)
        if ev is None:
            ev = self._events[topic] = asyncio.Event()
        return ev

    def poke(self, *topics: str) -> None:
        """Wake every waiter of these topics. Safe to call from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._poke_now(topics)
        else:
            loop.call_soon_threadsafe(self._poke_now, topics)

    def generation(self, topic: str) -> int:
        """The topic's poke count, to hand to :meth:`wait` (read it on the event loop, before reading
        the state the wait is about)."""
        return self._generations.get(topic, 0)

    def _poke_now(self, topics: tuple[str, ...]) -> None:
        for topic in topics:
            self._generations[topic] = self._generations.get(topic, 0) + 1
            ev = self._events.pop(topic, None)
            if ev is not None:
                ev.set()

    async def wait(self, topic: str, timeout: float, since: int | None = None) -> bool:
        """Wait until the topic is poked or ``timeout`` passes. True when poked.

        ``since``: the :meth:`generation` read before the caller read its state. A poke that came
        after that (while the state was being read, or a tick ran) returns at once: without it, the
        poke woke nobody and the change waited out the whole timeout (a deployment's readiness, a
        new table: up to a second each under load)."""
        if since is not None and self._generations.get(topic, 0) != since:
            return True
        ev = self._event(topic)
        try:
            await asyncio.wait_for(ev.wait(), timeout)
            return True
        except TimeoutError:
            return False
