"""``conveyor router``: parse flags into a RouterConfig and run (no logic here).

Also ``python -m conveyor.router``. The lead's CLI forwards its arguments to
:func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys

from conveyor.router.config import RouterConfig, parse_hostport


def build_parser() -> argparse.ArgumentParser:
    d = RouterConfig()
    p = argparse.ArgumentParser(prog="conveyor router", description="Conveyor's HTTP router (the data plane).")
    p.add_argument("--listen", default="127.0.0.1:7780", help="HOST:PORT for user traffic (default %(default)s)")
    p.add_argument(
        "--listen-tls",
        default=None,
        metavar="HOST:PORT",
        help="also serve HTTPS here: TLS terminated by the router, certificates from the routing table, picked by SNI",
    )
    p.add_argument("--tls-handshake-timeout", type=float, default=d.tls_handshake_timeout, help="seconds a TLS handshake may take")
    p.add_argument("--admin", default="127.0.0.1:7781", help="HOST:PORT for /metrics, /metrics.json, /table, /healthz; 'off' to disable")
    p.add_argument("--control-plane", default=None, metavar="URL", help="control plane base URL to follow the routing table from")
    p.add_argument("--token", default=None, help="control-plane API token (default: $CONVEYOR_TOKEN); visible in `ps`: prefer --token-file")
    p.add_argument("--token-file", default=None, metavar="PATH", help="read the token (a router join token: `conveyor hosts join-token HOST --router`) from this file")
    p.add_argument("--state-file", default=None, metavar="PATH", help="where each applied table is saved; the router starts from it")
    p.add_argument("--table-file", default=None, metavar="PATH", help="a static RoutingTable JSON to serve (no control plane needed)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the port with SO_REUSEPORT (default 1)")
    p.add_argument("--router-id", default=None, help="this router's name for the control plane (default router-<hostname>)")
    p.add_argument("--no-metrics", action="store_true", help="do not record request metrics (for benchmarks)")
    p.add_argument("--max-head-bytes", type=int, default=d.max_head_bytes, help="request line + headers limit (431/414)")
    p.add_argument("--max-headers", type=int, default=d.max_headers, help="request header count limit (431)")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="request body limit, 0 = unlimited (413)")
    p.add_argument("--head-timeout", type=float, default=d.head_timeout, help="seconds to receive a request head (slowloris)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout, help="seconds an idle client keep-alive connection stays open")
    p.add_argument("--connect-timeout", type=float, default=d.connect_timeout, help="upstream connect timeout, seconds")
    p.add_argument("--upstream-timeout", type=float, default=d.upstream_timeout, help="seconds of upstream silence before 504")
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout, help="seconds in-flight requests to a removed instance may take")
    p.add_argument("--shutdown-timeout", type=float, default=d.shutdown_timeout, help="seconds to finish in-flight requests on SIGTERM")
    p.add_argument("--poll-wait", type=float, default=d.poll_wait, help="long-poll wait sent to the control plane, seconds")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default), ERROR")
    p.add_argument(
        "--pure-python",
        action="store_true",
        help="run the request path from its Python sources even when the compiled (mypyc) build is installed: "
        "about half the throughput; to rule the build out when chasing a bug",
    )
    # Internal: used by the multi-worker supervisor for its children.
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--advertise-admin", default=None, help=argparse.SUPPRESS)
    return p


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            return open(args.token_file).read().strip() or None  # noqa: SIM115 - tiny file
        except OSError as exc:
            raise ValueError(f"--token-file {args.token_file}: {exc.strerror}") from None
    return args.token or os.environ.get("CONVEYOR_TOKEN") or None


def config_from_args(args: argparse.Namespace) -> RouterConfig:
    """Validate the flags; raises ValueError with a message saying what to fix."""
    listen = parse_hostport(args.listen, "--listen")
    admin = None if str(args.admin).lower() in ("off", "none", "") else parse_hostport(args.admin, "--admin")
    listen_tls = parse_hostport(args.listen_tls, "--listen-tls") if args.listen_tls else None
    if listen_tls is not None and args.workers > 1 and listen_tls[1] == 0:
        raise ValueError("--listen-tls needs a fixed port (not 0) with --workers > 1: the workers share it")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    for flag in ("head_timeout", "tls_handshake_timeout", "idle_timeout", "connect_timeout", "upstream_timeout", "drain_timeout", "poll_wait"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.max_head_bytes < 1024 or args.max_headers < 1 or args.max_body_bytes < 0:
        raise ValueError("--max-head-bytes must be >= 1024, --max-headers >= 1 and --max-body-bytes >= 0")
    if args.control_plane and not args.control_plane.startswith(("http://", "https://")):
        raise ValueError(f"--control-plane must be an http(s) URL, got {args.control_plane!r}")
    return RouterConfig(
        listen=listen,
        listen_tls=listen_tls,
        admin=admin,
        router_id=args.router_id or f"router-{os.uname().nodename}",
        control_plane=args.control_plane,
        token=_token(args),
        state_file=args.state_file,
        table_file=args.table_file,
        workers=args.workers,
        reuse_port=args.reuse_port or args.workers > 1,
        metrics=not args.no_metrics,
        max_head_bytes=args.max_head_bytes,
        max_headers=args.max_headers,
        max_body_bytes=args.max_body_bytes,
        head_timeout=args.head_timeout,
        tls_handshake_timeout=args.tls_handshake_timeout,
        idle_timeout=args.idle_timeout,
        connect_timeout=args.connect_timeout,
        upstream_timeout=args.upstream_timeout,
        drain_timeout=args.drain_timeout,
        shutdown_timeout=args.shutdown_timeout,
        poll_wait=args.poll_wait,
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.print_usage(sys.stderr)
        print(f"conveyor router: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.pure_python:
        from conveyor.router.native import prefer_sources

        prefer_sources()
    from conveyor.router.server import install_loop, serve

    install_loop()
    if config.workers > 1:
        from conveyor.router.workers import supervise

        return asyncio.run(supervise(config, argv))
    freeze_startup_objects()
    return asyncio.run(serve(config, advertise_admin=args.advertise_admin))


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, classes, pydantic schemas: ~40,000 objects that
    live as long as the process) out of the garbage collector's reach.

    Why: a router opening thousands of connections a second triggers a full collection every
    few thousand connections, and each walked all of them (~30 ms, measured under wrk with new
    TLS connections: ~10 µs per connection). Frozen, a full collection walks only what the
    connections themselves allocated.
    """
    gc.collect()
    gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
