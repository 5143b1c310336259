"""The statuses every route may answer, added to each operation of /openapi.json.

Routes document their own errors (kit/schemas.error_responses); the ones below come from the
plumbing around every route (body limits, the JSON body check, the database, the error handler),
so they are added here once, and routes added later are covered too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from memory_layer.kit.schemas import ErrorResponse

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}

# Answered to any request, whatever the route.
EVERY_ROUTE = {
    413: "The request body is larger than the route's limit (`payload_too_large`).",
    500: "An unexpected error (`internal_error`); the request may be retried.",
    503: "The database is unreachable or overloaded (`database_unavailable`, with Retry-After); "
    "retry, writes with the same client_message_id.",
}
# Answered to a request whose JSON body cannot be read as the route's schema.
WITH_A_BODY = {
    400: "The body could not be read at all (`malformed_body`).",
    422: "The body is not valid JSON for this route (`validation_error`): broken syntax, invalid "
    "UTF-8, a repeated key, a non-finite number, nesting deeper than 64 levels, or a field the "
    "schema refuses.",
}

# Answered to a request whose path parameter the route's path cannot take (a control character
# in a conversation id, say): no route matches, and the router answers 404 before any route runs.
WITH_PATH_PARAMETERS = {
    404: "No route matches the path (`not_found`): a path parameter this route cannot take, or "
    "what the route names does not exist where the route says so.",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _json_text_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of the JSON a string parameter carries (`contentMediaType: application/json`
    with a `contentSchema`, possibly as the non-null branch of an anyOf), or None."""
    for branch in [schema, *schema.get("anyOf", [])]:
        if branch.get("contentMediaType") == "application/json" and "contentSchema" in branch:
            content_schema: dict[str, Any] = branch["contentSchema"]
            return content_schema
    return None


def declare_json_parameters(document: dict[str, Any]) -> dict[str, Any]:
    """A query parameter given as JSON text (GET /v1/memory/search's `metadata`) is declared
    with `content: application/json` and the schema of the JSON, as OpenAPI writes a parameter
    serialised as JSON, instead of as a plain string: clients then send JSON, and a generated
    client encodes an object."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                inner = _json_text_schema(parameter.get("schema", {}))
                if inner is not None:
                    del parameter["schema"]
                    parameter["content"] = {"application/json": {"schema": inner}}
    return document


def complete_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Add the plumbing's statuses to every operation, and make every 422 an ErrorResponse."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(
        "ErrorResponse", ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            statuses = dict(EVERY_ROUTE)
            if "{" in path:
                statuses.update(WITH_PATH_PARAMETERS)
            if "requestBody" in operation:
                statuses.update(WITH_A_BODY)
            for status, description in statuses.items():
                responses.setdefault(str(status), _error(description))
            invalid = responses.get("422")
            if invalid is not None:
                schema = invalid.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref", "").endswith("/HTTPValidationError"):
                    invalid["content"]["application/json"]["schema"] = ERROR_REF
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        return complete_responses(declare_json_parameters(generate()))

    app.openapi = openapi  # type: ignore[method-assign]
