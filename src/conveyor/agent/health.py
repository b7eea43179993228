"""HTTP health probes: one GET, 2xx or a short reason why not.

Readiness and liveness are the same probe (``GET http://<address>:<port><path>``);
the supervisor decides what a result means (see :mod:`conveyor.agent.policy`).
Probes use a fresh connection each time (``Connection: close``), so a listener
that stopped accepting cannot hide behind a kept-alive socket.
"""

from __future__ import annotations

import httpx


def probe_host(address: str) -> str:
    """Where to probe an instance: the address routers use, or loopback for a wildcard."""
    return "127.0.0.1" if address in ("", "0.0.0.0") else address  # noqa: S104 - comparing, not binding


async def probe(client: httpx.AsyncClient, url: str, timeout: float) -> str | None:
    """``None`` when ``GET url`` answers 2xx within ``timeout`` seconds, else a one-line reason."""
    try:
        response = await client.get(url, timeout=timeout, headers={"Connection": "close"})
    except httpx.ConnectError:
        return "connection refused"
    except httpx.TimeoutException:
        return f"no answer within {timeout:g}s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"
