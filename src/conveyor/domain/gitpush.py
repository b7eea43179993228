"""`git push conveyor main`: what a push asks for and what Conveyor does with it. Pure.

Why a module of its own: the pre-receive hook, the control plane's git endpoint and the
tests all ask the same questions — is this ref name acceptable, does this update deploy,
is this smart-HTTP path one we serve, which push options are known — and the answers
must not drift. Data in, decisions out; the hook (``conveyor.cli.githook``) and the CGI
runner (``conveyor.services.gitremote``) do the I/O.

The policy (also in docs/ARCHITECTURE.md, "git push"):

* an update of ``refs/heads/<deploy branch>`` (the app's setting, default ``main``) is
  built, tested and shipped; the ref moves only if all of that succeeded;
* deleting the deploy branch is refused (the running release would have no branch);
* other branches and tags are stored, not deployed (for review environments later);
* any other ref (``refs/pull/…``, ``refs/notes/…``, ``HEAD``) is refused, as is a ref
  name git itself would refuse or one longer than 200 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

#: An object id: SHA-1 (40 hex) or SHA-256 (64 hex) repositories.
_OID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
MAX_REF_LENGTH = 200
#: A push of more ref updates than this is refused (one deploy branch, a few others).
MAX_UPDATES = 100
#: Commits counted per push for lead time (a first push of a long history counts its newest ones).
MAX_COMMITS = 1000
DEFAULT_BRANCH = "main"
#: Push options Conveyor understands (`git push -o detach`).
PUSH_OPTIONS = ("detach",)
#: Paths of the smart HTTP protocol under ``/git/APP.git/`` (nothing of the "dumb" protocol:
#: no raw objects, no HEAD or config file is served).
SERVICES = ("git-upload-pack", "git-receive-pack")

Action = Literal["deploy", "store", "reject"]


class PushError(ValueError):
    """A push (or one of its parts) Conveyor refuses; the message says what to do instead."""


@dataclass(frozen=True)
class RefUpdate:
    """One line of the pre-receive hook's input: ``<old> <new> <ref>``."""

    old: str
    new: str
    ref: str

    @property
    def created(self) -> bool:
        return set(self.old) == {"0"}

    @property
    def deleted(self) -> bool:
        return set(self.new) == {"0"}

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


@dataclass(frozen=True)
class Decision:
    update: RefUpdate
    action: Action
    reason: str


_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` is not an acceptable full ref name (git's check-ref-format rules, stricter), else None."""
    if not ref.startswith("refs/"):
        return f"{ref[:80]!r} is not a full ref name (refs/heads/… or refs/tags/…)"
    if len(ref) > MAX_REF_LENGTH:
        return f"ref names are limited to {MAX_REF_LENGTH} characters"
    if not ref.isascii() or _BAD_REF_CHARS.search(ref):
        return f"{ref[:80]!r} has a character ref names may not have (space, control, ~^:?*[\\ or non-ASCII)"
    if ".." in ref or "@{" in ref or "//" in ref or ref.endswith(("/", ".", ".lock")) or ref == "refs/":
        return f"{ref[:80]!r} is not a valid ref name"
    if any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        return f"{ref[:80]!r} is not a valid ref name (a component starts with '.' or ends with '.lock')"
    return None


#: A deploy branch: words of letters, digits and '_' joined by single '.', '-' or '/' (a subset of
#: what git allows, stated in the API's schema too).
BRANCH_PATTERN = r"^[A-Za-z0-9_]+([./-][A-Za-z0-9_]+)*$"
_BRANCH = re.compile(BRANCH_PATTERN)


def branch_problem(branch: str) -> str | None:
    """Why ``branch`` cannot be an app's deploy branch (a short name, e.g. ``main``), else None."""
    if len(branch) > 180 or not _BRANCH.match(branch) or branch.startswith("refs/"):
        return (f"deploy branch {branch[:80]!r} is invalid: give a short branch name (letters, digits and '_', "
                "joined by single '.', '-' or '/'), such as main or release/2026")
    return None


def parse_updates(text: str) -> list[RefUpdate]:
    """The pre-receive hook's standard input → updates; :class:`PushError` on anything malformed."""
    out: list[RefUpdate] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 3:
            raise PushError(f"ref update line {n} is malformed (expected '<old> <new> <ref>')")
        old, new, ref = parts
        if not _OID.match(old) or not _OID.match(new) or len(old) != len(new):
            raise PushError(f"ref update line {n} has an invalid object id")
        problem = ref_problem(ref)
        if problem:
            raise PushError(problem)
        out.append(RefUpdate(old, new, ref))
    if len(out) > MAX_UPDATES:
        raise PushError(f"a push may update at most {MAX_UPDATES} refs; push fewer at a time")
    return out


def decide(update: RefUpdate, deploy_branch: str) -> Decision:
    """What Conveyor does with one ref update (see the module's docstring)."""
    if update.branch == deploy_branch:
        if update.deleted:
            return Decision(update, "reject", f"the deploy branch {deploy_branch!r} cannot be deleted")
        return Decision(update, "deploy", f"{deploy_branch} is the deploy branch")
    if update.branch is not None or update.ref.startswith("refs/tags/"):
        return Decision(update, "store", f"stored, not deployed (the deploy branch is {deploy_branch})")
    return Decision(update, "reject", f"{update.ref}: only branches (refs/heads/…) and tags (refs/tags/…) "
                                      "may be pushed")


def plan(updates: list[RefUpdate], deploy_branch: str) -> list[Decision]:
    return [decide(u, deploy_branch) for u in updates]


def push_options(env: Mapping[str, str]) -> set[str]:
    """The push options git gave the hook (``GIT_PUSH_OPTION_COUNT``/``_<i>``); unknown ones refused."""
    raw = env.get("GIT_PUSH_OPTION_COUNT", "0")
    count = int(raw) if raw.isdigit() else 0
    options = {env.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(min(count, 50))}
    unknown = sorted(o for o in options if o not in PUSH_OPTIONS)
    if unknown:
        raise PushError(f"unknown push option {unknown[0][:40]!r}: Conveyor knows "
                        + ", ".join(f"-o {o}" for o in PUSH_OPTIONS))
    return options


@dataclass(frozen=True)
class Route:
    """A smart-HTTP request Conveyor serves: the app, the git service and whether it writes."""

    app: str
    service: str  # git-upload-pack | git-receive-pack
    advertisement: bool  # GET info/refs?service=… (else POST of the service itself)

    @property
    def writes(self) -> bool:
        return self.service == "git-receive-pack"


def route(method: str, path: str, query_service: str | None) -> Route | str:
    """``path`` is what follows ``/git/``: ``APP.git/info/refs`` or ``APP.git/git-receive-pack`` …
    Returns the route, or why it is not served (a sentence; the caller answers 404 or 405)."""
    from conveyor.domain.manifest import APP_NAME_RE

    repo, _, rest = path.partition("/")
    if not repo.endswith(".git") or not APP_NAME_RE.match(repo[:-4]):
        return "not a Conveyor git remote: use API_URL/git/APP.git (`conveyor git-remote APP` prints it)"
    app = repo[:-4]
    if rest == "info/refs":
        if method != "GET":
            return "method not allowed"
        if query_service not in SERVICES:
            return "only git's smart HTTP protocol is served (git 1.6.6 or newer)"
        return Route(app, query_service, True)
    if rest in SERVICES:
        if method != "POST":
            return "method not allowed"
        return Route(app, rest, False)
    return f"{rest[:60]!r} is not served: only git's smart HTTP protocol is"
