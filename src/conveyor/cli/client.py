"""The CLI's only way to the platform: a thin httpx client of the HTTP API.

Errors become :class:`CliError` with an exit code that means something
(see ``ExitCode``) and the API's own sentence about what to fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum
from typing import Any

import httpx

from conveyor.config import ClientConfig, load_client_config
from conveyor.domain.wire import API_PREFIX, deployment_fingerprint


#: Deployment end states that changed the routing table (deploy --wait then waits for the routers).
ROUTED_END = frozenset({"succeeded", "rolled_back"})
#: How long deploy --wait waits for routers to apply the final table before warning.
ROUTERS_WAIT = 10.0

class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the operation ran and failed: deployment failed or rolled back, build or tests failed
    USAGE = 2  # bad arguments or bad input (invalid manifest, rejected payload)
    NOT_FOUND = 3  # unknown app, environment, image or deployment
    CONFLICT = 4  # the request contradicts the current state (e.g. nothing to roll back to)
    UNAVAILABLE = 5  # the control plane cannot be reached, or refused our credentials


class CliError(Exception):
    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


_STATUS_CODES = {
    400: ExitCode.USAGE,
    401: ExitCode.UNAVAILABLE,
    403: ExitCode.UNAVAILABLE,
    404: ExitCode.NOT_FOUND,
    409: ExitCode.CONFLICT,
    413: ExitCode.USAGE,
    422: ExitCode.USAGE,
}


def _validation_message(d: dict[str, Any]) -> str:
    """``{"loc": ["body", "strategy"], "msg": "Input should be ..."}`` → ``strategy: input should be ...``."""
    loc = [str(x) for x in d.get("loc", []) if x not in ("body", "query", "path")]
    msg = str(d.get("msg", "invalid"))
    msg = msg[:1].lower() + msg[1:]
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def credentials_hint(config: ClientConfig) -> str:
    """How to get credentials, naming where this CLI looked (issue 17: every such message says it)."""
    where = f"the client config {config.source}" if config.source else "CONVEYOR_TOKEN"
    if not config.token:
        return (f"No token configured ({where} has none): run `conveyor up` on this machine (it saves one), "
                "or after `make demo` export CONVEYOR_CONFIG=$PWD/.demo/client.json, "
                "or set CONVEYOR_URL and CONVEYOR_TOKEN. `conveyor context` shows what the CLI uses.")
    return (f"The control plane at {config.url} refused the token from {config.token_source}: "
            "set CONVEYOR_TOKEN to a token it accepts (`conveyor up` prints the admin token). "
            "`conveyor context` shows what the CLI uses.")


class Api:
    def __init__(self, config: ClientConfig | None = None, timeout: float = 30.0) -> None:
        self.config = config or load_client_config()
        headers = {"User-Agent": "conveyor-cli"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        self.http = httpx.Client(base_url=self.config.url + API_PREFIX, headers=headers, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach the control plane at {self.config.url} (from {self.config.url_source}; "
                f"{exc.__class__.__name__}): is `conveyor up` running? Set CONVEYOR_URL, or CONVEYOR_CONFIG to "
                "another client config (after `make demo`: $PWD/.demo/client.json); `conveyor context` shows what the CLI uses.",
                ExitCode.UNAVAILABLE,
            ) from None
        return self._result(resp)

    def _result(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            if isinstance(detail, list):  # FastAPI validation errors, phrased for a person
                detail = "; ".join(_validation_message(d) for d in detail if isinstance(d, dict))
            if resp.status_code == 401:
                detail = f"{detail}. {credentials_hint(self.config)}"
            raise CliError(str(detail), _STATUS_CODES.get(resp.status_code, ExitCode.FAILED))
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def stream_lines(self, path: str, **params: Any) -> Iterator[str]:
        """Lines of a streaming text endpoint (logs, build output), until it ends."""
        try:
            with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(10.0, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._result(resp)
                yield from resp.iter_lines()
        except httpx.TransportError as exc:
            raise CliError(f"lost the connection to {self.config.url}: {exc}", ExitCode.UNAVAILABLE) from None

    def routers_synced(self, wait: float = ROUTERS_WAIT) -> dict[str, Any]:
        """Wait (up to ``wait`` s) until every live router holds the current routing table.

        A deployment ends when its routing change is committed; routers apply it
        milliseconds later. Waiting here means a request sent after ``deploy
        --wait`` returns reaches what the deployment says is live.
        """
        return self.get("/routers", params={"wait": wait}, timeout=httpx.Timeout(10.0, read=wait + 10.0))  # type: ignore[no-any-return]

    def wait_deployment(self, dep_id: int, on_change: Any = None, timeout: float | None = None) -> dict[str, Any]:
        """Follow a deployment until it ends; ``on_change(dep)`` is called on every change."""
        import time

        from conveyor.domain.deploy_machine import TERMINAL

        seen: str | None = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            dep = self.get(f"/deployments/{dep_id}", params={"wait": 20, **({"seen": seen} if seen else {})},
                           timeout=httpx.Timeout(10.0, read=40.0))
            fp = fingerprint(dep)
            if fp != seen and on_change is not None:
                on_change(dep)
            seen = fp
            if dep["state"] in TERMINAL or dep["state"] == "paused":  # paused waits for a human: stop here
                if dep["state"] in ROUTED_END:
                    dep["routers"] = self.routers_synced()
                return dep  # type: ignore[no-any-return]
            if deadline is not None and time.monotonic() > deadline:
                raise CliError(f"deployment {dep_id} still {dep['state']} after {timeout:g}s", ExitCode.FAILED)


def fingerprint(dep: dict[str, Any]) -> str:
    return deployment_fingerprint(dep["state"], len(dep.get("verdicts", [])), dep.get("progress", {}))
