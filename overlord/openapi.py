"""The OpenAPI document: which operations need a token, and the error answers each can give.

Worked out once from the routes themselves rather than written on each of them: an
operation that depends on :func:`overlord.auth.deps.authenticate` needs a bearer token and
can answer 401, 403 and 429; one with a path parameter can answer 404; every API operation
can answer 503 (database unreachable, too much queued work, no repository) and every API
write 409 (a conflicting change, ``IntegrityError``). A route whose own errors go beyond
these (a credential in the body, a name in the body that may not exist) lists them with
:func:`error_responses`. ``/health``, ``/metrics`` and enrolment need no token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

from fleetcore.wire import API_PREFIX
from overlord.auth.deps import authenticate, device_caller

ERROR_SCHEMA = "ErrorBody"
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DESCRIPTIONS = {
    401: "no valid credential",
    403: "the credential lacks the right for this",
    404: "no such resource",
    409: "conflicts with the current state or a concurrent change; retry",
    429: "over the request rate; retry later",
    503: "database unreachable or too much work queued; retry after Retry-After",
}
_AUTHENTICATORS: frozenset[Callable[..., Any]] = frozenset({authenticate, device_caller})


class ErrorBody(BaseModel):
    """The body of every error answer but 422 (``overlord.errors.error_body``)."""

    detail: str = Field(description="what went wrong, in one sentence")
    hint: str | None = Field(default=None, description="what to do about it")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's own error answers, with the shared error model."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


def install(app: FastAPI) -> None:
    """Make ``app.openapi`` build the document with security and error answers filled in."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            components.setdefault("schemas", {})[ERROR_SCHEMA] = ErrorBody.model_json_schema()
            # Included routers are resolved lazily; this yields each route with its prefix.
            for route in iter_route_contexts(app.routes):
                path, methods = route.path_format, route.methods
                documented = isinstance(route.original_route, APIRoute) and route.include_in_schema
                if documented and path and methods:
                    _document(schema["paths"][path], path, methods, route.dependant)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(
    path_item: dict[str, Any], path: str, methods: set[str], dependant: Dependant
) -> None:
    needs_token = any(call in _AUTHENTICATORS for call in _calls(dependant))
    api = path.startswith(API_PREFIX + "/")
    codes: set[int] = set()
    if needs_token:
        codes |= {401, 403, 429}
    if dependant.path_params:
        codes.add(404)
    if api:
        codes.add(503)
    for method in methods:
        operation = path_item[method.lower()]
        if needs_token:
            operation["security"] = [{"bearer": []}]
        api_write = api and method in _WRITES
        responses = operation.setdefault("responses", {})
        for code in sorted(codes | ({409} if api_write else set())):
            responses.setdefault(str(code), _error_response(code))


def _error_response(code: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": _DESCRIPTIONS[code],
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}
        },
    }
    if code == 503:
        answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return answer


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)
