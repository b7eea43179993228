"""The OpenAPI document is the contract: schemathesis checks a real server against it.

Every operation, with an admin and with a viewer token, gets generated requests (valid ones and,
for the negative checks, invalid ones); a run fails on a server error, a status code or content
type the document does not list, a body that breaks its schema, a schema-valid request refused
or an invalid one accepted. Bounded: a fixed number of examples per operation, long-polls asked
to wait at most a moment and streams not followed, so the whole run takes a minute or two.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from api_server import Server

pytestmark = pytest.mark.integration
#: examples per operation and mode (admin); the viewer, refused every write, gets half as many
EXAMPLES = int(os.environ.get("CONVEYOR_SCHEMA_EXAMPLES", "6"))
VIEWER = "viewer-token"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, positive_data_acceptance]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("schema"), viewer_token=VIEWER)
    s.start()
    try:
        s.api.post("/apps", json={"name": "hello"})
        yield s
    finally:
        s.stop()


#: Checks that cannot hold for an operation, and why.
EXCLUDED = {
    # the report's "host" must equal the URL's {host}: a rule between two fields JSON Schema cannot state
    ("PUT", "/api/v1/agents/{host}/status", GenerationMode.POSITIVE): [positive_data_acceptance],
    # a token is scoped to an app or a team, not both, and an admin token to neither: rules between fields
    ("POST", "/api/v1/tokens", GenerationMode.POSITIVE): [positive_data_acceptance],
    # min <= max: a rule between two fields
    ("PUT", "/api/v1/apps/{app}/autoscale", GenerationMode.POSITIVE): [positive_data_acceptance],
    # a freeze window's end must come after its start, its date exist and its time zone be known:
    # rules a pattern cannot state (the document states the window's form)
    ("POST", "/api/v1/apps/{app}/freezes", GenerationMode.POSITIVE): [positive_data_acceptance],
}


def _check(case: schemathesis.Case, running: Server, bearer: str, mode: GenerationMode,
           session: requests.Session) -> None:
    if case.query:  # bounded: a long-poll answers at once, no stream is followed (invalid values stay invalid)
        if _number_in(case.query.get("wait"), 0, 60):
            case.query["wait"] = 0
        if case.query.get("follow") in (True, "true", "True", "1", 1):
            case.query["follow"] = "false"
    excluded = EXCLUDED.get((case.operation.method.upper(), case.operation.path, mode), [])
    case.call_and_validate(base_url=running.url, session=session, headers={"Authorization": f"Bearer {bearer}"},
                           checks=[c for c in CHECKS if c not in excluded], timeout=30)


def _number_in(value: object, low: float, high: float) -> bool:
    try:
        return low <= float(value) <= high  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _run_every_operation(running: Server, bearer: str, examples: int = EXAMPLES) -> list[str]:
    """Generated requests for every operation, valid and invalid; the failures, one line each."""
    schema = schemathesis.openapi.from_url(f"{running.url}/api/v1/openapi.json")
    # the token is ours to send (admin or viewer); FastAPI ignores query parameters it does not know
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    failures: list[str] = []
    operations = 0
    session = requests.Session()  # keep-alive: the run measures the API, not connection set-up
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
            def run(case: schemathesis.Case) -> None:
                _check(case, running, bearer, mode, session)

            try:
                run()
            except Unsatisfiable:
                continue  # nothing to make invalid (no parameters, no body): no negative case exists
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, reported together below
                first = str(exc).strip().splitlines()
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {' | '.join(first[:6])}")
                if os.environ.get("CONVEYOR_SCHEMA_REPORT"):
                    with open(os.environ["CONVEYOR_SCHEMA_REPORT"], "a") as report:
                        report.write(f"===== {op.method.upper()} {op.path} ({mode.value})\n{exc}\n")
    assert operations >= 30, f"only {operations} operations in the document"
    return failures


def test_the_api_keeps_its_contract_with_an_admin_token(running: Server) -> None:
    failures = _run_every_operation(running, running.token)
    assert not failures, "\n".join(failures)


def test_the_api_keeps_its_contract_with_a_viewer_token(running: Server) -> None:
    failures = _run_every_operation(running, VIEWER, max(2, EXAMPLES // 2))
    assert not failures, "\n".join(failures)


#: The methods a client may try on any path of the document.
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")


def test_a_method_the_document_does_not_list_gets_405_with_the_documented_allow(running: Server) -> None:
    """Every path of the document, every method it does not list for that path: 405, and an ``Allow``
    header naming exactly the documented methods (HEAD rides along with GET), so a client told "no"
    is told what would work. (schemathesis found 4 ``Allow`` mismatches before this held.)"""
    document = running.api.get("/openapi.json").json()
    assert len(document["paths"]) >= 20
    wrong: list[str] = []
    paths = document["paths"]
    for path, item in paths.items():
        # a concrete URL for the path: every {parameter} filled with a value the route accepts
        concrete = path.replace("{app}", "hello").replace("{host}", "h1").replace("{name}", "web")
        concrete = "".join(part if not part.startswith("{") else "1" for part in _split_params(concrete))
        documented = {m.upper() for m in item if m.upper() in METHODS}
        # another template the same URL fits (/config/unset is also /config/{key}) serves its own methods
        # there: those are not wrong methods of this path, and Allow names them too
        elsewhere = {m.upper() for other, o_item in paths.items() if other != path and _fits(concrete, other)
                     for m in o_item if m.upper() in METHODS}
        # /images/gc has /images/{digest}'s shape but not its pattern (sha256:…): Allow leaves GET out,
        # though Starlette routes a GET there to the digest's handler (a 400: not a digest)
        allow_elsewhere = set() if path == "/api/v1/images/gc" else elsewhere
        for method in METHODS:
            if method in documented or method in elsewhere:
                continue
            r = httpx.request(method, running.url + concrete, headers={"Authorization": f"Bearer {running.token}"},
                              timeout=10)
            allowed = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()} - {"HEAD"}
            expected = documented | allow_elsewhere
            if r.status_code != 405 or allowed != expected:
                wrong.append(f"{method} {path}: {r.status_code}, Allow {sorted(allowed)} (documented {sorted(expected)})")
    assert not wrong, "\n".join(wrong)


def _fits(url: str, template: str) -> bool:
    """Whether ``url`` has ``template``'s shape: the same segments, a {parameter} standing for any one."""
    a, b = url.split("/"), template.split("/")
    return len(a) == len(b) and all(t.startswith("{") or u == t for u, t in zip(a, b, strict=True))


def _split_params(url: str) -> list[str]:
    """``url`` cut around each ``{parameter}``, the parameters kept as their own pieces."""
    import re

    return re.split(r"(\{[^}]+\})", url)
