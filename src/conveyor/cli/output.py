"""Human output (Rich) and machine output (--json), one place for both.

Human output goes to stdout for results and stderr for progress, so that
``conveyor deploy ... --json | jq`` gets exactly one JSON document on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # messages are grep-able: never wrapped


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    out.print(t)


def ago(ts: float | None) -> str:
    if not ts:
        return ""
    d = max(0.0, time.time() - ts)
    if d < 60:
        return f"{d:.0f}s ago"
    if d < 3600:
        return f"{d / 60:.0f}m ago"
    if d < 86400:
        return f"{d / 3600:.1f}h ago"
    return f"{d / 86400:.1f}d ago"


def short(digest: str | None) -> str:
    return digest[7:19] if digest and digest.startswith("sha256:") else (digest or "")


STATE_STYLE = {
    "succeeded": "green",
    "ready": "green",
    "live": "green",
    "passed": "green",
    "failed": "red",
    "rolled_back": "red",
    "crashloop": "red",
    "crashed": "red",
    "unhealthy": "yellow",
    "starting": "yellow",
    "releasing": "yellow",
    "pending": "yellow",
    "queued": "cyan",
    "canary": "magenta",
    "paused": "yellow",
    "online": "green",
    "lost": "red",
}


def styled(state: str | None) -> str:
    if not state:
        return ""
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state
