"""The OpenAPI document, made to say what the API really answers.

FastAPI documents each operation's success and its request-validation 422, but
not what every endpoint shares: bearer authentication (401, and 429 after repeated
failed sign-ins), the role checks' 403 (a viewer's write, a deployer outside its
scope, a join token outside its host's endpoints), 404 for unknown names and ids in the path, 409 for requests that
contradict the current state, and the one error body of ``server.py``
(``{"detail": ...}``: a sentence for our errors, a list of problems for request
validation). Rather than repeat that on every route, it is added here from
facts about each route (its method, its path parameters, its body), so a new route is documented like the others by default.
``tests/unit/api/test_api_schema.py`` runs schemathesis against a real server
and fails on any status code, content type or body this document does not allow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "description": "what is wrong and what to do: a sentence, or (request validation) a list of problems",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}],
        }
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}

_DESCRIPTIONS = {
    "400": "a malformed request: a body that is not JSON, a digest that is not one",
    "401": "missing, invalid, expired or revoked token (the detail says which); for a webhook, a missing or wrong signature",
    "403": "the token may not do this: a viewer's write, a deployer outside its scope, a host's join token "
           "outside its host's endpoints, a non-admin managing tokens; or a web request without its CSRF token",
    "404": "no such app, environment, deployment, build or image",
    "409": "the request contradicts the current state",
    "413": "the upload (or webhook body) is too large",
    "415": "unsupported Content-Type",
    "422": "invalid input (the detail says what to fix)",
    "429": "too many failed sign-ins from this address: retry after the Retry-After header's seconds",
    "503": "too many routers are registered: retry once silent ones expire",
}

#: Extra statuses of particular operations, beyond what the rules below derive.
EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/api/v1/apps/{app}/builds"): ("413", "415"),
    ("get", "/api/v1/dora"): ("404",),  # an unknown team or app
    ("get", "/api/v1/images/{digest}/manifest"): ("400",),  # not a digest
    ("get", "/api/v1/blobs/{digest}"): ("400",),
    ("get", "/api/v1/routing"): ("503",),  # the router registry is full
}
#: Operations that take no token (their own credential), with every error status they answer: the push
#: webhook is authenticated by its signature (401 for a missing or wrong one, or an unknown app).
PUBLIC: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/api/v1/hooks/{app}"): ("400", "401", "409", "413", "422"),
}
#: Operations whose success is not JSON: (media type, description).
CONTENT: dict[tuple[str, str], tuple[str, str]] = {
    ("get", "/api/v1/builds/{build_id}/log"):
        ("text/plain", "the build's output (streamed while it runs when follow=true)"),
    ("get", "/api/v1/blobs/{digest}"): ("application/octet-stream", "the layer's bytes (verify them by digest)"),
}
#: Path parameters the handlers check themselves, stated in the document.
PATH_PATTERNS = {"digest": r"^sha256:[0-9a-f]{64}$"}


def _routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str, APIRoute]]:
    """(method, path, route) of every documented route, through included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            if route.include_in_schema:
                for method in route.methods:
                    yield method.lower(), prefix + route.path_format, route
            continue
        included = getattr(route, "original_router", None)  # app.include_router(...) (FastAPI ≥ 0.160)
        if included is not None:
            yield from _routes(included.routes, prefix + route.include_context.prefix)


def statuses_of(method: str, path: str, has_body: bool = False) -> list[str]:
    """The error statuses an operation may answer (pure: the rules, tested directly)."""
    # Every operation checks a credential (401, and 429 after repeated failures from one address) and
    # a role (403: join tokens reach only their host's endpoints, so even reads can be refused).
    out = ["401", "403", "422", "429"]
    if has_body:
        out.append("400")  # the body is not valid JSON
    if "{" in path or method != "get":
        out.append("404")
    if method != "get":
        out.append("409")
    out.extend(EXTRA.get((method, path), ()))
    return sorted(set(out))


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with the shared error responses, security and text bodies."""
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas.setdefault("ValidationError", _VALIDATION_ERROR)
    spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for method, path, route in _routes(app.routes):
        op = spec["paths"].get(path, {}).get(method)
        if op is None:
            continue
        public = PUBLIC.get((method, path))
        op["security"] = [] if public is not None else [{"bearer": []}]
        responses = op.setdefault("responses", {})
        for status in public if public is not None else statuses_of(method, path, "requestBody" in op):
            responses[status] = {"description": _DESCRIPTIONS[status], "content": {"application/json": {"schema": _ERROR_REF}}}
        if (method, path) in CONTENT:
            media, description = CONTENT[(method, path)]
            ok = next(s for s in responses if s.startswith("2"))
            responses[ok] = {"description": description, "content": {media: {"schema": {"type": "string"}}}}
        for param in op.get("parameters", []):
            if param.get("in") == "path" and param["name"] in PATH_PATTERNS:
                param["schema"]["pattern"] = PATH_PATTERNS[param["name"]]
    return spec


def install(app: FastAPI) -> None:
    """Serve :func:`document` as the app's OpenAPI document (computed once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            allowed = allowed_methods(openapi(), request.url.path)
            if allowed:
                return JSONResponse(
                    {"detail": f"{request.method} is not allowed on {request.url.path}: use {', '.join(allowed)}"},
                    status_code=405, headers={"Allow": ", ".join(allowed)})
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, http_error)


#: The methods an OpenAPI path item may list.
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})


def allowed_methods(doc: dict[str, Any], path: str) -> list[str]:
    """The methods the document lists for ``path`` (HEAD with GET), over every template it matches.

    Why from the document: Starlette's 405 names the methods of the one route it tried last
    (``/apps`` answered ``Allow: POST`` though GET is served too, as GET and POST are two
    routes), so a client told "no" was told less than what works. A template matches when
    each parameter's segment matches the parameter's documented pattern (``/images/gc`` is
    not ``/images/{digest}``).
    """
    methods: set[str] = set()
    for template, item in doc.get("paths", {}).items():
        m = _template_regex(template).fullmatch(path)
        if m is None:
            continue
        for method, operation in item.items():
            if method in _HTTP_METHODS and _parameters_match(operation, m.groupdict()):
                methods.add(method.upper())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _parameters_match(operation: dict[str, Any], values: dict[str, str]) -> bool:
    for p in operation.get("parameters", []):
        pattern = p.get("schema", {}).get("pattern") if p.get("in") == "path" else None
        if pattern and p.get("name") in values and not re.search(pattern, values[p["name"]]):
            return False
    return True


@cache
def _template_regex(template: str) -> re.Pattern[str]:
    """``/apps/{app}/logs`` as a regular expression: each parameter one named path segment."""
    parts = re.split(r"\{([^/{}]+)\}", template)
    return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part.split(':')[0]}>[^/]+)"
                              for i, part in enumerate(parts)))


_VALIDATION_ERROR: dict[str, Any] = {
    "title": "ValidationError",
    "type": "object",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
}
