"""Requests generated from /openapi.json, for every operation it lists, against `memory-layer serve`.

The operations are read from the served document when the test runs, so routes added later are
covered without touching this file. For each one, hypothesis (fixed seed, bounded examples)
draws schema-valid requests and schema-invalid ones (schemathesis' generators), and every answer
must hold:
- never a 5xx;
- its status, content type, headers and body are those the document gives for the operation;
- a schema-invalid request is refused with a 4xx (schemathesis' negative_data_rejection);
- a schema-valid request is not refused, except with a status that speaks of rights or state
  (401, 403, 404, 409, 429) or one of the refusals the schema cannot express (SEMANTIC below,
  each listed in docs/api.md).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi import checks as openapi_checks
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.contract.served import ADMIN, Served, bound_key, own_database, serve_env, serving
from tests.fixtures.database import DatabaseServer

TENANT = "contract-tenant"
# Per operation and per mode (valid, invalid): 25 in `make test` (15 before; about three minutes
# on a busy 2-core machine); MEMORY_TEST_CONTRACT_EXAMPLES=100 for a deeper run.
EXAMPLES = int(os.environ.get("MEMORY_TEST_CONTRACT_EXAMPLES", "25"))
SEED = 20261123

# Refusals of schema-valid requests that depend on more than the request's shape: the error code
# of each, as the service answers it.
SEMANTIC = {
    "invalid_cursor",  # a cursor not handed out by the service (an opaque, signed token)
    "invalid_created_at",  # created_at later than the server's clock (plus 5 minutes of skew)
    "content_too_long",  # longer than MEMORY_MAX_CONTENT_CHARS (a setting, not the schema)
    "metadata_too_large",  # larger than MEMORY_MAX_METADATA_BYTES as JSON
    "invalid_metadata",  # NUL in a nested string of metadata (keys are in the schema)
    "payload_too_large",  # the body limit, derived from the two settings above
    "tenant_required",  # an admin key names no tenant where one is needed (message_ids)
    "invalid_expires_at",  # an expires_at already past (the clock, not the schema)
    "invalid_scopes",  # the admin scope on a key bound to a tenant (a rule across two fields)
    "invalid_state",  # NUL in a nested string of a conversation state (keys and values, any depth)
    "invalid_data",  # NUL in a nested string of an event's data (keys and values, any depth)
    "invalid_run_times",  # finished_at with a status that is not final, or before started_at
    "invalid_parameters",  # NUL in a nested string of a run's parameters
    "parameters_too_large",  # a run's parameters past MEMORY_MAX_METADATA_BYTES
    "invalid_output",  # NUL in a nested string of a task output
    "output_too_large",  # a task output past MEMORY_MAX_TASK_OUTPUT_BYTES
    "embedding_dimension_mismatch",  # a client vector of another length than the column's
    "invalid_embedding",  # a client vector of zeros (no direction for cosine)
    "invalid_channel_name",  # a reserved channel name (admin, audit, ...): a list, not a pattern
    "unknown_channel",  # a channel the tenant did not register (the tenant's state)
    "ttl_violation",  # a TTL past the channel's ttl_sec (the tenant's channels)
    "encryption_required",  # personal data on a channel that takes it only encrypted
    "pii_rejected",  # personal data on a channel (or tenant) that refuses it
}
# Refusals of schema-valid requests whose validation_error message is a rule across fields.
SEMANTIC_MESSAGES = (
    "nothing to change",  # PATCH with every field null
    "since must not be after until",
    "send ttl_seconds or expires_at, not both",
    "must not contain NUL",  # NUL nested in a metadata filter's values (any depth)
    "must be in the future",  # a key's expires_at already past (the clock, not the schema)
    "finished_at must not be before started_at",
    "the database driver stores those two instants",  # 0001-01-01T00:00:00Z, 9999-12-31T23:59:59.999999Z
    "send embedding and embedding_model together",
    "send either query or vector",
    "a search by vector is vector-only",
    "embedding_model goes with vector",
)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_: Any, value: Any) -> bytes:
    """POST /v1/import bodies: the generated line, as one NDJSON line."""
    return json.dumps(value).encode() + b"\n"


# 412: If-Match / If-None-Match against a state the generator cannot know; 423: a lock another
# example holds.
ANSWERS_OF_STATE = {401, 403, 404, 409, 412, 423, 429}
CHECKS = [
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    unbreakable: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def served(db_server: DatabaseServer) -> Iterator[tuple[Served, str]]:
    database_url = own_database(db_server, "contract")
    tenant_key = bound_key(database_url, TENANT)
    with serving(serve_env(database_url)) as served:
        yield served, tenant_key


def _key_for(path: str, tenant_key: str) -> str:
    # Admin routes with the admin key, every other route as a client would call it: with a key
    # bound to its tenant (tenant_id then optional, as the document says).
    return ADMIN if path.startswith("/v1/admin/") else tenant_key


def _own_tenant(case: Any) -> None:
    """A valid request names the key's own tenant, or none: another tenant is a documented 403."""
    if case.query and "tenant_id" in case.query:
        case.query["tenant_id"] = TENANT
    if isinstance(case.body, dict) and case.body.get("tenant_id") is not None:
        case.body["tenant_id"] = TENANT


def _no_waiting(case: Any) -> None:
    """Waits (a held lock's `wait_seconds`, an events long poll) are tested in tests/locks and
    tests/events; here they would only make each example last its whole wait."""
    if case.query and "wait_seconds" in case.query:
        case.query["wait_seconds"] = 0
    if isinstance(case.body, dict) and "wait_seconds" in case.body:
        case.body["wait_seconds"] = 0


def _refused_for_a_reason(response: Response) -> bool:
    if response.status_code in ANSWERS_OF_STATE:
        return True
    try:
        body: Any = response.json()
    except ValueError:
        return False
    if body.get("error") in SEMANTIC:
        return True
    return body.get("error") == "validation_error" and any(
        message in str(body.get("detail")) for message in SEMANTIC_MESSAGES
    )


def _property(
    operation: Any, mode: GenerationMode, served: Served, key: str, tally: Tally,
    session: requests.Session,
) -> Callable[[], None]:
    """The property of one operation in one mode, as a hypothesis test."""
    label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
    checks = CHECKS if mode is GenerationMode.POSITIVE else [
        *CHECKS, openapi_checks.negative_data_rejection
    ]

    @settings(
        max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        if mode is GenerationMode.POSITIVE:
            _own_tenant(case)
            _no_waiting(case)
        # An invalid request without a key stays without one (its 401 is the refusal).
        sent_key = mode is GenerationMode.POSITIVE or "X-API-Key" in (case.headers or {})
        headers = {"X-API-Key": key} if sent_key else {}
        if case.headers:
            case.headers.pop("X-API-Key", None)
        response = case.call(base_url=served.url, session=session, headers=headers, timeout=30)
        tally.requests[mode.value] += 1
        tally.statuses[response.status_code] += 1
        where = f"{label} -> {response.status_code} {response.text[:300]}\n{case.as_curl_command()}"
        assert response.status_code < 500, where
        if mode is GenerationMode.POSITIVE and response.status_code >= 400:
            assert _refused_for_a_reason(response), f"valid request refused: {where}"
        case.validate_response(response, checks=checks, headers=headers)

    def run() -> None:
        try:
            check()
        except Unsatisfiable:
            # No request can break this operation's schema (no parameters, no body).
            tally.unbreakable.append(label)
        except Exception as exc:  # collect every operation's failure, then fail once
            tally.failures.append(f"{label}: {str(exc)[:1500]}")
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup
            tally.failures.append(f"{label}: {str(group)[:1500]}")

    return run


def test_every_operation_keeps_the_contract(served: tuple[Served, str]) -> None:
    server, tenant_key = served
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    assert isinstance(schema, OpenApiSchema)
    schema.config.seed = SEED
    tally = Tally()
    operations = sum(1 for _ in schema.get_all_operations())
    session = requests.Session()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        key = _key_for(operation.path, tenant_key)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _property(operation, mode, server, key, tally, session)()
    print(f"\n{operations} operations, requests: {dict(tally.requests)}, statuses: "
          f"{dict(sorted(tally.statuses.items()))}")
    assert operations >= 20
    assert not tally.failures, "\n\n".join(tally.failures)
    # Both kinds of request reached the service for every operation.
    assert tally.requests["positive"] >= operations
    assert tally.requests["negative"] >= operations - len(tally.unbreakable)
