"""``conveyor agent``: parse the command line, build an :class:`Agent`, run it until SIGTERM/SIGINT.

No logic lives here beyond turning flags into an :class:`AgentConfig` and an
image provider; errors in the flags are reported with what to fix and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from conveyor import logfile
from conveyor.agent.agent import Agent, AgentConfig
from conveyor.agent.images import DirectoryImageProvider, ImageCacheProvider, ImageError, ImageProvider
from conveyor.agent.join import JoinError, join_credential
from conveyor.domain.limits import LimitError, parse_size
from conveyor.domain.placement import SelectorError, parse_label

log = logging.getLogger("conveyor.agent")


def _default_data_dir() -> Path:
    try:
        from platformdirs import user_data_dir

        return Path(user_data_dir("conveyor")) / "agent"
    except Exception:  # noqa: BLE001 - platformdirs is a nicety
        return Path.home() / ".local" / "share" / "conveyor" / "agent"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conveyor agent", description="Run the Conveyor host agent (one per host).")
    p.add_argument("--control-plane", default=None, metavar="URL", help="control plane base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--join", nargs=2, default=None, metavar=("URL", "TOKEN"),
                   help="join the control plane at URL with a one-time join token (`conveyor hosts join-token`): "
                        "the agent trades it for its own credential, kept in DATA_DIR/credential (0600) and used "
                        "from then on, so restarting with the same flags is fine")
    p.add_argument("--token", default=None, help="API token (default: $CONVEYOR_TOKEN); visible in `ps`: prefer --token-file")
    p.add_argument("--token-file", type=Path, default=None, metavar="PATH",
                   help="read the API token (the host's join token: `conveyor hosts join-token HOST`) from this file")
    p.add_argument("--host", default=None, metavar="NAME", help="this host's name (default: the hostname)")
    p.add_argument("--address", default="127.0.0.1", metavar="IP", help="IP the routers use to reach this host's instances")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR", help="logs, image cache and agent-state.json")
    p.add_argument("--stop-grace", type=float, default=10.0, metavar="SECONDS", help="SIGTERM-to-SIGKILL grace when stopping an instance")
    p.add_argument(
        "--image-map",
        type=Path,
        default=None,
        metavar="FILE",
        help="run images from local directories instead of fetching them: JSON {digest: directory} (tests, local dev)",
    )
    p.add_argument(
        "--log-max-bytes",
        default=None,
        metavar="SIZE",
        help="most bytes of output kept per instance, e.g. 8M (default: $CONVEYOR_LOG_MAX_BYTES or 8M); older output rotates away",
    )
    p.add_argument("--hide", action="append", default=[], metavar="DIR",
                   help="a directory instances must not see (repeatable); the agent's data dir always is")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run instances without bubblewrap (they can read everything the agent can): said loudly")
    p.add_argument("--no-limits", action="store_true", help="do not put instances in cgroups (no memory/cpu/pids limits)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a label of this host, repeatable (e.g. --label role=web --label zone=a): environments "
                        "pick hosts by them ([env.NAME] hosts = \"role=web\")")
    p.add_argument("--capacity", type=int, default=None, metavar="N",
                   help="most instances (of every app) this host runs; default: no limit")
    p.add_argument("--memory", default=None, metavar="SIZE",
                   help="memory this host offers to instances' limits, e.g. 8G: placement counts each instance's "
                        "[limits] memory against it; default: not counted")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AgentConfig:
    if args.join is not None:
        if args.control_plane and args.control_plane != args.join[0]:
            parser.error(f"--join names control plane {args.join[0]!r} but --control-plane says {args.control_plane!r}: give one")
        if args.token or args.token_file:
            parser.error("--join brings its own credential: drop --token/--token-file")
        args.control_plane = args.join[0]
    if not args.control_plane:
        parser.error("give the control plane: --join URL TOKEN (a new host), or --control-plane URL --token-file PATH")
    token = args.token or os.environ.get("CONVEYOR_TOKEN") or None
    if args.join is not None:
        token = "pending-join"  # replaced in main() by the host's own credential, once the data dir is ours
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip() or None
        except OSError as exc:
            parser.error(f"--token-file {args.token_file}: {exc.strerror}")
    if not token:
        parser.error("no API token: pass --token-file PATH (or --token TOKEN, or set CONVEYOR_TOKEN)")
    if not args.control_plane.startswith(("http://", "https://")):
        parser.error(f"--control-plane must be an http:// or https:// URL, got {args.control_plane!r}")
    if args.stop_grace < 0:
        parser.error(f"--stop-grace must be >= 0 seconds, got {args.stop_grace}")
    try:
        socket.inet_aton(args.address)
    except OSError:
        parser.error(f"--address must be an IPv4 address, got {args.address!r}")
    try:
        log_max_bytes = logfile.parse_size(args.log_max_bytes) if args.log_max_bytes else logfile.default_max_bytes()
    except ValueError as exc:
        parser.error(f"--log-max-bytes (or ${logfile.MAX_BYTES_ENV}): {exc}")
    labels: dict[str, str] = {}
    for text in args.label:
        try:
            key, value = parse_label(text)
        except SelectorError as exc:
            parser.error(f"--label: {exc}")
        if key in labels and labels[key] != value:
            parser.error(f"--label: {key} is given twice ({labels[key]!r} and {value!r}): give each key once")
        labels[key] = value
    if args.capacity is not None and args.capacity < 0:
        parser.error(f"--capacity must be 0 or more instances, got {args.capacity}")
    memory = None
    if args.memory is not None:
        try:
            memory = parse_size(args.memory, "--memory")
        except LimitError as exc:
            parser.error(str(exc))
    return AgentConfig(
        labels=labels,
        capacity=args.capacity,
        memory=memory,
        log_max_bytes=log_max_bytes,
        control_plane=args.control_plane,
        token=token,
        host=args.host or socket.gethostname(),
        data_dir=(args.data_dir or _default_data_dir()).resolve(),
        address=args.address,
        stop_grace=args.stop_grace,
    )


async def _run(agent: Agent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)
    agent.load()
    iso = agent.config.isolation
    if iso is not None and iso.warning:
        print(f"conveyor agent: WARNING: {iso.warning}", file=sys.stderr, flush=True)
    if iso is not None and iso.cgroups.missing():
        print(f"conveyor agent: WARNING: no cgroup controller for {', '.join(iso.cgroups.missing())}: "
              "those limits are not enforced on this host", file=sys.stderr, flush=True)
    print(
        f"conveyor agent: host {agent.config.host} address {agent.config.address} "
        f"control plane {agent.config.control_plane} data {agent.config.data_dir} "
        f"(adopted {agent.adopted} running instance(s))",
        flush=True,
    )
    await agent.run()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args, parser)
    logging.basicConfig(level=args.log_level, format="%(asctime)s agent %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe and poll is noise
    images: ImageProvider
    if args.image_map is not None:
        try:
            images = DirectoryImageProvider.from_file(args.image_map)
        except ImageError as exc:
            parser.error(str(exc))
    # Images are unpacked readable (0644/0755) so that sandboxed instances, which run as other
    # users, can read their own; the data dir itself is 0700, so nobody else reaches them.
    os.umask(0o022)
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if config.data_dir.stat().st_mode & 0o077:
            config.data_dir.chmod(0o700)
        lock = _lock_data_dir(config.data_dir)
        if lock is not None:
            from conveyor.agent.cgroups import Cgroups
            from conveyor.agent.sandbox import Isolation

            config.isolation = Isolation(config.data_dir, hide=[str(Path(h).resolve()) for h in args.hide],
                                         sandbox=not args.no_sandbox, cgroups=None if not args.no_limits else Cgroups({}))
    except OSError as exc:
        print(f"conveyor agent: cannot use data directory {config.data_dir}: {exc}", file=sys.stderr)
        return 2
    if lock is None:
        print(
            f"conveyor agent: another agent is already running with data directory {config.data_dir}; "
            "stop it or pass another --data-dir",
            file=sys.stderr,
        )
        return 2
    if args.join is not None:
        try:
            config.token = join_credential(config, args.join[1])
        except JoinError as exc:
            print(f"conveyor agent: {exc}", file=sys.stderr)
            os.close(lock)
            return exc.code
    if args.image_map is None:
        images = ImageCacheProvider(config.control_plane, config.token, config.data_dir / "images")
    try:
        asyncio.run(_run(Agent(config, images)))
    finally:
        close = getattr(images, "close", None)
        if callable(close):
            close()
        os.close(lock)
    return 0


def _lock_data_dir(data_dir: Path) -> int | None:
    """Hold an exclusive lock on ``data_dir/agent.lock`` for the agent's life; ``None`` if taken.

    Two agents on one data directory would each adopt and stop the other's
    instances. The kernel drops the lock when the agent dies, even by SIGKILL;
    instances do not inherit it (their file descriptors are closed at spawn).
    """
    fd = os.open(data_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


if __name__ == "__main__":
    raise SystemExit(main())
