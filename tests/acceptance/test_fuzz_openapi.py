"""Fuzz every operation of ``/openapi.json`` against a running gateway (schemathesis).

The gateway runs as a real ``pushgate serve`` subprocess (with the lab's credentials), so the
synchronous schemathesis calls don't fight the async fixtures' event loop; once per database, as
PostgreSQL refuses input SQLite takes (NUL characters). Checks: no 5xx, the status codes, content
types and bodies the document promises, schema-violating bodies and paths rejected, and the one
error shape of docs/api.md ("Errors") on every 4xx.

Operations are fuzzed in a loop rather than with ``schemathesis.pytest.from_fixture``, which
doesn't work with pytest 9. ``PUSHGATE_FUZZ_EXAMPLES`` (default 25) sets the examples per
operation and mode.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    CheckContext,
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from support.gateway import APP_KEY
from support.lab import Lab, free_port
from support.process import PUSHGATE

AUTH = {"Authorization": f"Bearer {APP_KEY}"}


@pytest.fixture
def fuzz_gateway(lab: Lab, database_url: str, tmp_path: pathlib.Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PUSHGATE_DATABASE_URL": database_url,
        "PUSHGATE_DEFAULT_APP_KEY": APP_KEY,
        "PUSHGATE_SERVER_ACCESS_LOG": "false",
    }
    env.pop("PUSHGATE_CONFIG", None)
    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen(
        [PUSHGATE, "serve", "--config", str(lab.toml), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{(tmp_path / 'gateway.log').read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


@pytest.fixture
def api_schema(fuzz_gateway: str) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_gateway}/openapi.json", timeout=10)


def error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx is ``{"error": {"code", "message", "details"?}}`` and never a 422."""
    if not 400 <= response.status_code < 500:
        return None
    assert response.status_code != 422, "422 for our own validation: use 400"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error shape: {body!r}"
    err = body["error"]
    assert isinstance(err, dict) and set(err) <= {"code", "message", "details"}, f"error keys: {err!r}"
    assert isinstance(err.get("code"), str) and err["code"], f"error.code: {err!r}"
    assert isinstance(err.get("message"), str) and err["message"], f"error.message: {err!r}"
    return True


def negative_data_rejection_except_query(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Schema-violating bodies and paths are rejected.

    A ``413`` counts as a rejection. Not query strings: they are parsed leniently (an unknown
    or repeated parameter is ignored, ``limit=null`` means no limit), so a query-only violation
    may rightly succeed.
    """
    if response.status_code == 413:
        # Refused for its size before its shape was read (a batch of over 1,000 generated
        # publishes passes server.max_body_bytes): a rejection too, which schemathesis's list
        # of rejecting statuses leaves out. ``error_shape`` still checks the answer.
        return None
    meta = case.meta
    if meta is not None and not any(
        meta.is_negative_at(location) for location in (ParameterLocation.BODY, ParameterLocation.PATH)
    ):
        return None
    return negative_data_rejection(ctx, response, case)


#: Not ``positive_data_acceptance``: a schema-valid request may still break a rule the schema can't
#: state (an unknown id, "give at least one filter") and is then rightly a 400 or 404.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection_except_query,
    error_shape,
]

FUZZ = settings(
    max_examples=int(os.environ.get("PUSHGATE_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def nothing_to_make_invalid(operation: Any) -> bool:
    """Whether the operation takes no body and only unconstrained string path parameters: every
    value of those is a valid path segment, so negative generation can only give up
    (``Unsatisfiable``, after ~1 s of rejected attempts each, for eight operations) and sends
    nothing."""
    raw = operation.definition.raw
    params = raw.get("parameters", [])
    return "requestBody" not in raw and all(
        p.get("in") == "path" and p.get("schema") == {"type": "string"} for p in params
    )


def test_openapi_fuzz(api_schema: Any, fuzz_gateway: str) -> None:
    """Positive and negative cases for every operation; all failures are reported together."""
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    with requests.Session() as session:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if mode is GenerationMode.NEGATIVE and nothing_to_make_invalid(operation):
                    continue

                @FUZZ
                @given(case=operation.as_strategy(generation_mode=mode, headers=AUTH))
                def fuzz(case: Case) -> None:
                    case.call_and_validate(
                        base_url=fuzz_gateway,
                        session=session,
                        headers=AUTH,
                        checks=CHECKS,
                        timeout=10,
                    )

                try:
                    fuzz()
                except Unsatisfiable:
                    pass  # nothing to make invalid (no parameters, no body)
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{operation.label} ({mode.value}):\n{exc}")
    assert not failures, "\n\n".join(failures)
