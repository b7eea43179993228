"""The router's settings: listen addresses, timeouts and limits, in one frozen value.

Why one dataclass: the CLI fills it (``main.py`` has no logic of its own), the
tests build it directly with tiny timeouts, and every component reads the same
numbers, so a limit is defined once with its default and its reason.
"""

from __future__ import annotations

from dataclasses import dataclass


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (or ``":PORT"``) as a tuple; a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} must be HOST:PORT with a port 0-65535, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


@dataclass(frozen=True)
class RouterConfig:
    """Everything the data plane needs to know besides the routing table."""

    listen: tuple[str, int] = ("127.0.0.1", 7780)
    listen_tls: tuple[str, int] | None = None  # HTTPS listener (TLS terminated here), beside the plain one
    admin: tuple[str, int] | None = ("127.0.0.1", 7781)
    router_id: str = "router"
    control_plane: str | None = None
    token: str | None = None
    state_file: str | None = None
    table_file: str | None = None
    workers: int = 1
    reuse_port: bool = False
    metrics: bool = True

    # Limits (the client gets 431 / 413 beyond them).
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body_bytes: int = 0  # 0 = unlimited (bodies are streamed, never buffered)

    # Timeouts, in seconds.
    head_timeout: float = 10.0  # first byte of a request to its last header line (slowloris)
    tls_handshake_timeout: float = 10.0  # TCP accept to the end of the TLS handshake (a ClientHello that never ends)
    idle_timeout: float = 60.0  # client keep-alive connection with no request in progress
    connect_timeout: float = 3.0  # upstream TCP connect
    upstream_timeout: float = 60.0  # upstream silent for this long while we wait on it -> 504
    upstream_idle_timeout: float = 30.0  # pooled idle upstream connections are closed after this
    drain_timeout: float = 30.0  # in-flight requests to a removed instance are cut after this
    shutdown_timeout: float = 20.0  # SIGTERM: wait this long for in-flight requests
    eject_base: float = 1.0  # passive ejection after a connect failure: base backoff
    eject_max: float = 30.0  # ... doubling per consecutive failure up to this

    # Control-plane follower.
    poll_wait: float = 30.0
    backoff_max: float = 10.0
