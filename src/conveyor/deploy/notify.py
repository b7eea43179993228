"""In-process wake-ups for long-polls and the orchestrator.

Why not only polling the database: a rollback must reach the routers in well
under a second, so whoever changes routing-relevant state pokes the topic and
every waiting long-poll re-reads at once. Waits still time out (``recheck``) so
a change made by another control-plane replica sharing the database is seen
within that period even though it cannot poke us.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


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
        """The topic's poke count, to hand to :meth:`wait` (read it before reading the state the wait
        is about); readable from any thread. A value read before a poke is stale after it (:class:`Shared`)."""
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


class Shared(Generic[T]):
    """One read shared by every concurrent reader: the value is read again only when its topic was
    poked since it was read, or when it is older than ``max_age`` seconds (changes made by another
    replica, or by the clock alone, as a host going lost). One reader reads at a time; the others
    wait for it and take its value.

    Why: every long-poll of a topic re-reads when it wakes. With 10 routers, one poke cost 10
    computations of the same routing table (each over every host's report), and the 1 s re-checks
    10 more per second; with 500 agents, 500 reads of the desired-state counter a second.

    A value read across a poke is never reused: the topic's generation is taken *before* the read,
    so a read that began before a change committed (and its poke) is stored under the old
    generation and ignored by readers who come after the poke.
    """

    def __init__(self, notifier: Notifier, topic: str, max_age: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.topic = topic
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        #: (value, the topic's generation before it was read, when it was read): one tuple, swapped whole
        self._entry: tuple[T, int, float] | None = None
        self.reads = 0

    def _fresh(self, generation: int, now: float) -> T | None:
        entry = self._entry
        if entry is not None and entry[1] == generation and now - entry[2] < self.max_age:
            return entry[0]
        return None

    def cached(self) -> T | None:
        """The value if it is fresh, else None (never blocks: callable on the event loop)."""
        return self._fresh(self.notifier.generation(self.topic), self.clock())

    def get(self, read: Callable[[], T]) -> T:
        """The shared value, reading it with ``read`` if it is stale (blocking: call from a worker thread)."""
        value = self._fresh(self.notifier.generation(self.topic), self.clock())
        if value is not None:
            return value
        with self._lock:
            generation, now = self.notifier.generation(self.topic), self.clock()
            value = self._fresh(generation, now)  # another reader may have read it while this one waited
            if value is None:
                value = read()
                self.reads += 1
                self._entry = (value, generation, now)
            return value
