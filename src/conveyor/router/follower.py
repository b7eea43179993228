"""Follow the control plane's routing table by long-poll, forever, never crashing.

Level-triggered: each poll says "I hold version V"; the control plane answers
at once with a different version, or after ``wait`` seconds with the same one.
Whatever comes back is the whole table, applied atomically by the callback,
so a missed poll loses nothing and killing the router at any line is safe
(it restarts from the state file). Errors (connection refused, 5xx, garbage,
bad token) are logged with what to fix and retried with capped exponential
backoff and jitter; the router keeps serving its last table meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from conveyor.domain.wire import API_PREFIX, RoutingTable

log = logging.getLogger("conveyor.router.follower")


def next_backoff(previous: float, maximum: float, base: float = 0.25) -> float:
    """The delay before the next attempt after a failure (doubling, capped)."""
    return min(maximum, previous * 2 if previous > 0 else base)


def jittered(delay: float, rng: Callable[[], float] = random.random) -> float:
    return delay * (0.5 + rng() / 2)


@dataclass
class FollowerStatus:
    polls: int = 0
    failures: int = 0
    last_error: str = ""
    last_success: float = 0.0


class Follower:
    """Long-polls ``GET {cp}/api/v1/routing`` and hands new tables to ``apply``."""

    def __init__(
        self,
        control_plane: str,
        token: str | None,
        router_id: str,
        admin_url: str | None,
        version: Callable[[], int],
        apply: Callable[[RoutingTable], object],
        wait: float = 30.0,
        backoff_max: float = 10.0,
    ) -> None:
        self.url = control_plane.rstrip("/") + API_PREFIX + "/routing"
        self.token = token
        self.router_id = router_id
        self.admin_url = admin_url
        self.version = version
        self.apply = apply
        self.wait = wait
        self.backoff_max = backoff_max
        self.status = FollowerStatus()

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        delay = 0.0
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.wait + 15, connect=5)) as client:
            while True:
                try:
                    await self.poll_once(client)
                    delay = 0.0
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - never crash: keep the last table
                    delay = next_backoff(delay, self.backoff_max)
                    self.status.failures += 1
                    self.status.last_error = str(e) or type(e).__name__
                    log.warning("routing table poll failed (%s); keeping table v%d, retrying in %.1fs", self.status.last_error, self.version(), delay)
                    await asyncio.sleep(jittered(delay))

    async def poll_once(self, client: httpx.AsyncClient) -> bool:
        """One long-poll; True when a new table was applied."""
        params: dict[str, str | int | float] = {"after": self.version(), "wait": self.wait, "router": self.router_id}
        if self.admin_url:
            params["admin"] = self.admin_url
        r = await client.get(self.url, params=params)
        self.status.polls += 1
        if r.status_code in (401, 403):
            raise RuntimeError(f"control plane refused the token (HTTP {r.status_code}); pass --token or set CONVEYOR_TOKEN")
        if r.status_code != 200:
            raise RuntimeError(f"control plane answered HTTP {r.status_code} to {self.url}: {r.text[:200]}")
        try:
            table = RoutingTable.model_validate_json(r.content)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"control plane sent something that is not a RoutingTable: {str(e).splitlines()[0]}") from e
        self.status.last_success = time.time()
        if table.version == self.version():
            return False
        result = self.apply(table)
        if asyncio.iscoroutine(result):
            await result
        return True
