"""Templates, formatting filters and the static files of the web UI.

Why server-rendered Jinja with a little vanilla JavaScript: the pages must work
from a wheel with no build step and nothing fetched from the network, and each
page is a view of data the JSON API already serves. Formatting (relative times,
short digests, sizes) lives here so every page says things the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"

#: Deployment states → (icon, tone). The icon and the word carry the meaning; the colour only repeats it.
STATE_LOOK: dict[str, tuple[str, str]] = {
    "queued": ("◷", "muted"),
    "starting": ("▶", "busy"),
    "releasing": ("▶", "busy"),
    "canary": ("▶", "busy"),
    "rolling": ("▶", "busy"),
    "baking": ("▶", "busy"),
    "paused": ("❚❚", "warn"),
    "succeeded": ("✓", "good"),
    "failed": ("✕", "bad"),
    "rolled_back": ("↶", "bad"),
    "cancelled": ("–", "muted"),
    # instances, releases, tests, builds
    "ready": ("✓", "good"),
    "running": ("▶", "busy"),
    "pending": ("◷", "muted"),
    "crashloop": ("✕", "bad"),
    "stopped": ("–", "muted"),
    "live": ("●", "good"),
    "superseded": ("○", "muted"),
    "passed": ("✓", "good"),
    "none": ("–", "muted"),
    "healthy": ("✓", "good"),
    "degraded": ("▲", "warn"),
    "down": ("✕", "bad"),
    "idle": ("○", "muted"),
    "offline": ("✕", "bad"),
    "online": ("✓", "good"),
    "pass": ("✓", "good"),
    "fail": ("✕", "bad"),
    "inconclusive": ("?", "warn"),
    "continue": ("…", "busy"),
    "elite": ("★", "good"),
    "high": ("▲", "good"),
    "medium": ("■", "warn"),
    "low": ("▼", "bad"),
}


def reltime(ts: float | None, now: float | None = None) -> str:
    """'3 min ago' / 'in 5 s'; '—' for no time."""
    if ts is None:
        return "—"
    delta = (now if now is not None else time.time()) - float(ts)
    future = delta < 0
    d = abs(delta)
    if d < 5:
        return "just now"
    if d < 60:
        s = f"{d:.0f} s"
    elif d < 3600:
        s = f"{d / 60:.0f} min"
    elif d < 86400:
        s = f"{d / 3600:.0f} h"
    else:
        s = f"{d / 86400:.0f} d"
    return f"in {s}" if future else f"{s} ago"


def abstime(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """A human duration: '850 ms', '12 s', '4 min 3 s', '2 h 5 min', '3 d 4 h'."""
    if seconds is None:
        return "—"
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "—"
    return digest.split(":", 1)[-1][:n]


def size(n: int | None) -> str:
    if n is None:
        return "—"
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} GiB"


def author(commit: dict[str, Any] | None) -> str:
    """The author's name without the e-mail address."""
    if not commit or not commit.get("author"):
        return "—"
    return str(commit["author"]).split("<", 1)[0].strip() or str(commit["author"])


def first_line(text: str | None, n: int = 72) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= n else line[: n - 1] + "…"


def look(state: str | None) -> tuple[str, str]:
    return STATE_LOOK.get(state or "", ("•", "muted"))


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        reltime=reltime, abstime=abstime, duration=duration, short=short, size=size, author=author,
        first_line=first_line, tojson_attr=lambda v: json.dumps(v, separators=(",", ":")),
    )
    env.globals["look"] = look
    return env


ENV = _env()


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """Render a page. ``user`` and ``csrf`` come from the session (see ``conveyor.web.session``)."""
    ctx.setdefault("request", request)
    ctx.setdefault("user", getattr(request.state, "web_user", None))
    ctx.setdefault("csrf", getattr(request.state, "web_csrf", ""))
    ctx.setdefault("now", time.time())
    html = ENV.get_template(template).render(**ctx)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


#: No framing by other sites, no inline scripts from anywhere but us, no network but our own origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

static_router = APIRouter(include_in_schema=False)
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".ico": "image/x-icon"}


@static_router.get("/static/{name}")
def static(name: str) -> FileResponse:
    """Our CSS and JS (flat directory; names are checked so nothing outside it is served)."""
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES or not path.is_file():
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(path, media_type=_STATIC_TYPES[path.suffix], headers={"Cache-Control": "max-age=300"})
