"""The control plane's process-wide state: database, notifier, background loops.

One instance per ``conveyor server`` process, created by the app factory and
reached from request handlers through ``request.app.state.cp``; the services
take it as their first argument. It holds no deployment state of its own:
everything that matters is in SQL.

``clock`` and ``started_at`` are the control plane's one clock: the rules that
depend on time (is a host lost? is a router live?) take ``now`` from it, and
the orchestrator is given the same start time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from conveyor.config import ServerSettings
from conveyor.deploy.notify import Notifier, Shared
from conveyor.deploy.orchestrator import Orchestrator
from conveyor.store.sealing import Sealer
from conveyor.store.web_sessions import SessionStore

log = logging.getLogger("conveyor.server")


@dataclass
class RouterInfo:
    """A router that long-polls us: where to scrape it and what table it holds."""

    id: str
    admin_url: str | None
    version: int
    last_seen: float


#: A router that long-polled within this many seconds counts as live (it re-polls at least
#: every ``--poll-wait``, at most 60 s, and at once after each new table).
ROUTER_LIVE_WINDOW = 70.0
#: At most this many routers are registered at once (each needs its own router join token;
#: the bound keeps the scraper's work finite whatever happens).
MAX_ROUTERS = 64


@dataclass(frozen=True)
class RouterSync:
    """Do the live routers hold the current routing table? (What ``deploy --wait`` waits for.)"""

    table_version: int
    #: (router id, table version it holds, seconds since it last polled), live routers only
    routers: tuple[tuple[str, int, float], ...]

    @property
    def behind(self) -> list[str]:
        return [rid for rid, version, _ in self.routers if version < self.table_version]

    @property
    def synced(self) -> bool:
        return not self.behind


def router_sync(routers: dict[str, RouterInfo], table_version: int, now: float, window: float = ROUTER_LIVE_WINDOW) -> RouterSync:
    """Pure: which live routers hold ``table_version`` (or newer)."""
    live = tuple(
        (r.id, r.version, round(now - r.last_seen, 3)) for r in sorted(routers.values(), key=lambda r: r.id) if now - r.last_seen <= window
    )
    return RouterSync(table_version, live)


@dataclass
class ControlPlane:
    settings: ServerSettings
    engine: Engine
    notifier: Notifier = field(default_factory=Notifier)
    routers: dict[str, RouterInfo] = field(default_factory=dict)
    viewer_tokens: set[str] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    orchestrator: Orchestrator | None = None
    builds: object | None = None  # conveyor.build.queue.BuildQueue, set at start-up
    scraper: object | None = None  # conveyor.deploy.scraper.Scraper, set at start-up
    artifacts: Any = None  # conveyor.build.store.ArtifactStore
    #: the time, for every time-dependent rule of the services (the orchestrator gets the same start)
    clock: Callable[[], float] = time.time
    #: when this control plane started, on ``clock`` (hosts get a grace period from it)
    started_at: float = field(init=False)
    #: web session id -> token, in SQL (survives a restart)
    sessions: SessionStore = field(init=False)
    #: conveyor.services.auth.Authenticator (its failure limiter and token cache), made on first use
    auth: Any = None
    _sealer: Sealer | None = field(default=None, init=False, repr=False)
    _shared: dict[str, Shared[Any]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.started_at = self.clock()
        self.sessions = SessionStore(self.engine, lambda: [self.settings.admin_token, *self.viewer_tokens])

    def sealer(self) -> Sealer:
        """The key ring that seals secrets at rest (config secrets, certificate keys): one instance, made
        on first use from ``CONVEYOR_SECRETS_KEY`` or ``secrets.key`` in the data dir, so a rotation is
        seen by everything that seals. A platform that never seals anything never creates the key file."""
        if self._sealer is None:
            self._sealer = Sealer.for_data_dir(self.settings.data_dir)
        return self._sealer

    def shared(self, name: str, topic: str) -> Shared[Any]:
        """The read called ``name``, shared by the long-polls of ``topic`` (``deploy.notify.Shared``)."""
        found = self._shared.get(name)
        return found if found is not None else self._shared.setdefault(name, Shared(self.notifier, topic))

    def saw_router(self, router_id: str, admin_url: str | None, version: int) -> bool:
        """Record a router's poll; False when the registration is refused (too many routers).

        Registrations expire: a router silent for ``ROUTER_LIVE_WINDOW`` is forgotten, so
        neither the scraper nor ``deploy --wait`` keeps a dead one.
        """
        now = self.clock()
        for rid, r in list(self.routers.items()):
            if now - r.last_seen > ROUTER_LIVE_WINDOW:
                del self.routers[rid]
        info = self.routers.get(router_id)
        if info is None:
            if len(self.routers) >= MAX_ROUTERS:
                log.warning("router %s not registered: %d routers are registered already", router_id, MAX_ROUTERS)
                return False
            self.routers[router_id] = RouterInfo(router_id, admin_url, version, now)
            self.notifier.poke("routers")
        else:
            info.admin_url = admin_url or info.admin_url
            if info.version != version:
                self.notifier.poke("routers")  # someone may wait for this router to catch up
            info.version = version
            info.last_seen = now
        return True
