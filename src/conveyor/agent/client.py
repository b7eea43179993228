"""The agent's side of the control-plane API: desired state, status, logs.

Three calls, each raising :class:`ControlPlaneError` with a message that says
what went wrong (unreachable, token rejected, bad answer), so the agent's
loops can log it once and retry.
"""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from conveyor.domain.wire import API_PREFIX, AgentStatus, DesiredState, LogBatch


class ControlPlaneError(Exception):
    """The control plane could not be reached or gave an unusable answer."""


class ControlPlaneClient:
    """HTTP client for ``/api/v1/agents/{host}/...`` with a bearer token."""

    def __init__(self, base_url: str, token: str | None, host: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url + f"{API_PREFIX}/agents/{host}",
            headers=headers,
            timeout=httpx.Timeout(10.0, connect=2.0),
            transport=transport,
        )

    async def _call(self, method: str, path: str, *, timeout: float, **kwargs: object) -> httpx.Response:
        try:
            response = await self._http.request(method, path, timeout=httpx.Timeout(timeout, connect=2.0), **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ControlPlaneError(f"{method} {self.base_url}{API_PREFIX}/agents/{self.host}{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (401, 403):
            raise ControlPlaneError(
                f"control plane rejected the agent's token ({response.status_code}): pass --token or set CONVEYOR_TOKEN"
            )
        if not 200 <= response.status_code < 300:
            raise ControlPlaneError(f"{method} {path}: control plane answered {response.status_code}: {response.text[:300]}")
        return response

    async def desired(self, after: int, wait: float) -> DesiredState:
        """Long-poll the desired state: returns at once if its version is not ``after``, else within ``wait`` s."""
        response = await self._call("GET", "/desired", params={"after": after, "wait": wait}, timeout=wait + 10.0)
        try:
            return DesiredState.model_validate_json(response.content)
        except ValidationError as exc:
            raise ControlPlaneError(f"control plane sent an invalid desired state: {exc}") from exc

    async def put_status(self, status: AgentStatus, timeout: float = 5.0) -> None:
        await self._call("PUT", "/status", content=status.model_dump_json(), headers={"Content-Type": "application/json"}, timeout=timeout)

    async def post_logs(self, batch: LogBatch, timeout: float = 10.0) -> None:
        await self._call("POST", "/logs", content=batch.model_dump_json(), headers={"Content-Type": "application/json"}, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()
