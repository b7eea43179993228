"""``conveyor init``: write a commented ``conveyor.toml`` for an existing Python web app.

Detection is pure (:func:`detect` takes the project's files as text and returns
a :class:`Guess` with a reason for every choice), so each kind of app is tested
by a direct call; the command only reads the directory and writes the file.

What it recognises, in order: a Procfile ``web:`` line (kept as it is);
Django (``manage.py`` and a ``wsgi.py`` with ``get_wsgi_application``);
FastAPI, Starlette or any ASGI callable (served by uvicorn); Flask or any WSGI
callable (served by gunicorn). Dependencies come from ``requirements.txt`` or
``pyproject.toml``; a server the command needs but the dependencies lack is
reported with the line to add, since the image is built from those files alone.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli import output as o
from conveyor.cli.client import CliError, ExitCode

BIND = "${HOST:-127.0.0.1}:$PORT"


@dataclass(frozen=True)
class Framework:
    """A web framework recognised by the call that makes its app object, and how it is served."""

    pattern: str  # the call, as a regex over a module's text
    kind: str
    label: str
    server: str  # the package that serves it, added to the requirements when missing
    command: str  # the web command, with {module}, {name} and {bind}


#: Tried in order (first match wins); Django and Procfiles are recognised before these.
_FRAMEWORKS = (
    Framework(r"FastAPI\(", "fastapi", "a FastAPI app", "uvicorn",
              "uvicorn {module}:{name} --host ${{HOST:-127.0.0.1}} --port $PORT"),
    Framework(r"(?:Starlette|Quart|Litestar|Sanic)\(", "asgi", "an ASGI app", "uvicorn",
              "uvicorn {module}:{name} --host ${{HOST:-127.0.0.1}} --port $PORT"),
    Framework(r"Flask\(", "flask", "a Flask app", "gunicorn", "gunicorn {module}:{name} --bind {bind}"),
)
HEALTH_PATHS = ("/healthz", "/health", "/_health", "/livez", "/ping", "/status")
_SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", ".tox", "build", "dist", "site-packages"}
_MAX_FILES = 400
_MAX_BYTES = 256 * 1024


@dataclass
class Guess:
    """What ``init`` concluded, each with why; ``web`` is ``None`` when nothing was found."""

    name: str
    kind: str = "unknown"
    web: str | None = None
    health: str = "/"
    test: str | None = None
    deps_file: str | None = None
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _dep_names(files: dict[str, str]) -> tuple[set[str], str | None]:
    """Lower-case distribution names from requirements.txt, else pyproject.toml; and which file."""
    if "requirements.txt" in files:
        names = set()
        for line in files["requirements.txt"].splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line)
            if m and not line.startswith("-"):
                names.add(m.group(1).lower().replace("_", "-"))
        return names, "requirements.txt"
    if "pyproject.toml" in files:
        try:
            doc = tomllib.loads(files["pyproject.toml"])
        except tomllib.TOMLDecodeError:
            return set(), "pyproject.toml"
        deps = list((doc.get("project") or {}).get("dependencies") or [])
        deps += list(((doc.get("tool") or {}).get("poetry") or {}).get("dependencies") or {})
        names = set()
        for d in deps:
            m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", str(d))
            if m:
                names.add(m.group(1).lower().replace("_", "-"))
        names.discard("python")
        return names, "pyproject.toml"
    return set(), None


def _module(path: str) -> str:
    return path[: -len(".py")].replace("/", ".").removesuffix(".__init__")


def _find(files: dict[str, str], pattern: str) -> tuple[str, str] | None:
    """``(module, variable)`` of the first top-level assignment matching ``pattern`` (shallowest file first)."""
    rx = re.compile(r"^(\w+)\s*(?::\s*\w+\s*)?=\s*" + pattern, re.MULTILINE)
    for path in sorted((p for p in files if p.endswith(".py")), key=lambda p: (p.count("/"), p)):
        m = rx.search(files[path])
        if m:
            return _module(path), m.group(1)
    return None


def _health(files: dict[str, str]) -> tuple[str, str]:
    for path in HEALTH_PATHS:
        rx = re.compile(r"""["']""" + re.escape(path) + r"""/?["']""")
        for name, text in files.items():
            if name.endswith(".py") and rx.search(text):
                return path, f"health check {path}: a route of that name is in {name}"
    return "/", ("health check /: no /healthz-like route found, so readiness is a 2xx on / "
                 "(add a cheap /healthz route and set [health] path)")


def _tests(files: dict[str, str], deps: set[str], kind: str) -> tuple[str | None, str]:
    if kind == "django":
        return "python manage.py test", "tests: Django's runner (python manage.py test)"
    has_tests = any(re.search(r"(^|/)(test_[^/]*|[^/]*_test)\.py$", p) for p in files)
    if has_tests or "pytest" in deps:
        why = "test files found" if has_tests else "pytest is a dependency"
        warn = "" if "pytest" in deps else " (pytest is not in your dependencies: add it, or the test step fails)"
        return "python -m pytest -q", f"tests: python -m pytest -q ({why}){warn}"
    return None, "tests: none found; add a [test] command so that a broken image cannot be deployed"


def detect(files: dict[str, str], name: str) -> Guess:
    """Guess how to run, check and test the app whose files (relative path → text) are given."""
    g = Guess(name=name)
    deps, g.deps_file = _dep_names(files)
    if g.deps_file:
        g.reasons.append(f"dependencies: {g.deps_file} ({len(deps)} package(s)); the build installs them into the image")
    else:
        g.warnings.append("no requirements.txt or pyproject.toml: the image will have no third-party packages")
    need: str | None = None
    procfile = next((ln.split(":", 1)[1].strip() for ln in files.get("Procfile", "").splitlines()
                     if ln.strip().startswith("web:")), None)
    wsgi_py = next((p for p in sorted(files) if p.endswith("wsgi.py") and "get_wsgi_application" in files[p]), None)
    if procfile:
        g.kind, g.web = "procfile", procfile
        g.reasons.append(f"web: the Procfile's web line ({procfile}); make sure it listens on $PORT")
    elif "manage.py" in files and wsgi_py:
        g.kind, need = "django", "gunicorn"
        g.web = f"gunicorn {_module(wsgi_py)}:application --bind {BIND}"
        g.reasons.append(f"web: a Django project (manage.py, {wsgi_py}), served by gunicorn")
    elif framework := next(((f, found) for f in _FRAMEWORKS if (found := _find(files, f.pattern))), None):
        f, (module, name) = framework
        g.kind, need = f.kind, f.server
        g.web = f.command.format(module=module, name=name, bind=BIND)
        g.reasons.append(f"web: {f.label} ({name} in {module}), served by {f.server}")
    else:
        asgi = re.compile(r"^async def (\w+)\(scope, receive, send\)", re.MULTILINE)
        wsgi = re.compile(r"^def (\w+)\(environ, start_response\)", re.MULTILINE)
        for path in sorted((p for p in files if p.endswith(".py")), key=lambda p: (p.count("/"), p)):
            if m := asgi.search(files[path]):
                g.kind, need = "asgi", "uvicorn"
                g.web = f"uvicorn {_module(path)}:{m.group(1)} --host ${{HOST:-127.0.0.1}} --port $PORT"
                g.reasons.append(f"web: an ASGI callable ({m.group(1)} in {path}), served by uvicorn")
                break
            if m := wsgi.search(files[path]):
                g.kind, need = "wsgi", "gunicorn"
                g.web = f"gunicorn {_module(path)}:{m.group(1)} --bind {BIND}"
                g.reasons.append(f"web: a WSGI callable ({m.group(1)} in {path}), served by gunicorn")
                break
    if g.web is None:
        g.warnings.append("no web app found (Flask, Django, FastAPI, a WSGI or ASGI callable, or a Procfile web: line): "
                          "set [run] web to the command that serves it on $PORT")
    if need and need not in deps:
        where = g.deps_file or "requirements.txt"
        g.warnings.append(f"{need} is not in {where}: add a line `{need}` there, or the instances cannot start")
    g.health, why = _health(files)
    g.reasons.append(why)
    g.test, why = _tests(files, deps, g.kind)
    g.reasons.append(why)
    return g


CANARY_DEPLOY = """[deploy]
strategy = "canary"      # steps of traffic, each analysed against the current release; then promoted
steps = [{weight = 20, for = "20s"}, {weight = 50, for = "20s"}]
bake = "30s"             # after 100%: still watched, the previous release kept warm for an instant rollback

[deploy.analysis]
min_requests = 10        # fewer canary requests in a step: the deployment pauses and says so

[deploy.analysis.threshold]
min_requests = 10        # the same for the absolute limits (error rate, p99)
"""

BLUEGREEN_DEPLOY = """[deploy]
strategy = "bluegreen"   # or "canary" (steps of traffic, each analysed) or "rolling"
bake = "2m"              # the previous release stays warm this long: rollback = routing change
"""


def render(g: Guess, strategy: str = "bluegreen") -> str:
    """The ``conveyor.toml`` text for a guess, commented so that a person can check each choice."""
    web = (g.web or "python app.py").replace("\\", "\\\\").replace('"', '\\"')
    todo = "" if g.web else "   # TODO: no web app was found: the command that serves yours on $PORT"
    test = f'command = "{g.test}"' if g.test else '# command = "python -m pytest -q"   # runs against the built image'
    return f"""# Written by `conveyor init`. Check each guess, then: conveyor deploy {g.name} --source . --wait
[app]
name = "{g.name}"

[run]
# Must listen on $HOST:$PORT (both set by the agent; $HOST is 127.0.0.1 on one machine).
web = "{web}"{todo}

[health]
path = "{g.health}"     # readiness: a 2xx here before any traffic
timeout = "2s"

[test]
{test}

{CANARY_DEPLOY if strategy == "canary" else BLUEGREEN_DEPLOY}
[env.production]
instances = 2
"""


def _read_project(root: Path) -> dict[str, str]:
    """The project's text files that detection looks at (bounded in number and size)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if not path.is_file() or path.is_symlink():
            continue
        if path.suffix != ".py" and rel.as_posix() not in ("requirements.txt", "pyproject.toml", "Procfile"):
            continue
        try:
            if path.stat().st_size <= _MAX_BYTES:
                out[rel.as_posix()] = path.read_text(errors="replace")
        except OSError:
            continue
        if len(out) >= _MAX_FILES:
            break
    return out


def register(app: typer.Typer) -> None:
    from conveyor.cli.main import run  # main registers this module: import it only once main is complete

    @app.command()
    def init(
        directory: Annotated[Path, typer.Argument(help="The app's directory.")] = Path("."),
        name: Annotated[str | None, typer.Option("--name", help="The app's name (default: the directory's).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Overwrite an existing conveyor.toml.")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the file instead of writing it.")] = False,
        strategy: Annotated[str, typer.Option("--strategy", help="bluegreen or canary: the [deploy] section to start from.")] = "bluegreen",
        json: Annotated[bool, typer.Option("--json", help="Print the guesses as JSON.")] = False,
    ) -> None:
        """Write a commented conveyor.toml for an existing Python web app (Flask, Django, FastAPI, WSGI/ASGI, Procfile).

        It detects the web command (gunicorn or uvicorn on $PORT), the health-check
        path and the test command, and says what it guessed and why.
        """

        def body() -> None:
            if strategy not in ("bluegreen", "canary"):
                raise CliError(f"--strategy {strategy!r}: use bluegreen or canary (rolling: edit [deploy] afterwards)",
                               ExitCode.USAGE)
            root = directory.resolve()
            if not root.is_dir():
                raise CliError(f"{directory}: not a directory", ExitCode.USAGE)
            target = root / "conveyor.toml"
            if target.exists() and not force and not dry_run:
                raise CliError(f"{target} exists already: edit it, or run `conveyor init --force` to replace it",
                               ExitCode.CONFLICT)
            slug = re.sub(r"[^a-z0-9-]+", "-", (name or root.name).lower()).strip("-")
            slug = (slug if slug[:1].isalpha() else "app-" + slug)[:40].rstrip("-") or "app"
            g = detect(_read_project(root), slug)
            text = render(g, strategy)
            if not dry_run:
                target.write_text(text)
            if json:
                o.emit_json({"file": str(target), "written": not dry_run, "name": g.name, "kind": g.kind, "web": g.web,
                             "health": g.health, "test": g.test, "reasons": g.reasons, "warnings": g.warnings})
                return
            if dry_run:
                sys.stdout.write(text)
            else:
                o.out.print(f"Wrote {target} for [bold]{g.name}[/bold] ({g.kind}). What it guessed:")
            for r in g.reasons:
                o.err.print(f"  • {r}", markup=False)
            for w in g.warnings:
                o.err.print(f"[yellow]  ! {w}[/yellow]")
            o.err.print(f"Next: `conveyor apps create {g.name}`, then `conveyor deploy {g.name} --source {directory} --wait`.")

        run(body)


__all__ = ["Guess", "detect", "register", "render"]
