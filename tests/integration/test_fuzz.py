"""The whole HTTP API fuzzed from its own OpenAPI schema (schemathesis) against a real server,
as an administrator and as a plain user: each operation with generated input, and chains of
operations along the links schemathesis finds between them (an id one answer returns, used
by the next call). No answer may be a 5xx, and every answer must match the schema.

``make test`` runs a few examples an operation (``METERHUB_FUZZ_EXAMPLES``, default 5);
``make fuzz`` runs many and prints how many cases ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error
from schemathesis.generation.stateful.state_machine import APIStateMachine
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from meterhub.db import make_engine
from meterhub.registry.projects import create_project
from meterhub.registry.users import create_user, issue_token
from tests.support import Server

EXAMPLES = int(os.environ.get("METERHUB_FUZZ_EXAMPLES", "5"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
"""No 5xx, and the status, content type, headers and body the schema documents. (Whether
valid-looking data is accepted is left out: a taken port is refused, as it should be.)"""
SESSIONS = 5
"""Sessions of chains tried: one is given up when the server's state (the rows earlier
chains made) changes what a replayed chain draws; a new one starts afresh."""
CASES: dict[str, int] = {}
"""Cases run, by caller and kind."""

_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 5,  # the short run in `make test` tries the same cases each time
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server on SQLite (no collector, no scheduler), and the tokens of an administrator
    and of a user with one project."""
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp / 'fuzz.db'}"
    env = {"METERHUB_COLLECTOR_ENABLED": "false", "METERHUB_SCHEDULER_ENABLED": "false"}
    with Server(url, tmp, **env) as server:
        engine = make_engine(url)
        with engine.begin() as conn:
            project = create_project(conn, "Fuzzed", "UTC", "EUR")
            user = create_user(conn, "plain", "correct horse", project_ids=[project.id])
            tokens = {"admin": server.token, "user": issue_token(conn, user.id)}
        engine.dispose()
        yield server, tokens


@pytest.fixture(scope="module", autouse=True)
def count_cases() -> Iterator[None]:
    """Print how many cases ran once the module is done (``make fuzz`` shows it)."""
    yield
    ran = ", ".join(f"{n} {kind}" for kind, n in sorted(CASES.items()))
    print(f"\nfuzzing ran {sum(CASES.values())} cases ({ran})")


@pytest.fixture(scope="module")
def api_schema(fuzzed: tuple[Server, dict[str, str]]) -> Any:
    server, _ = fuzzed
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


@pytest.mark.parametrize("caller", ["admin", "user"])
def test_each_operation(
    api_schema: Any, caller: str, fuzzed: tuple[Server, dict[str, str]]
) -> None:
    headers = _headers(fuzzed, caller)
    failed: dict[str, str] = {}
    for found in api_schema.get_all_operations():
        operation = found.ok()

        @_SETTINGS
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            CASES[f"as {caller}"] = CASES.get(f"as {caller}", 0) + 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # all failures reported together
            failed[operation.label] = f"{type(exc).__name__}: {exc}"
    assert not failed, "\n\n".join(f"{label}\n{why}" for label, why in failed.items())


@pytest.mark.parametrize("caller", ["admin", "user"])
def test_operations_in_chains(
    api_schema: Any, caller: str, fuzzed: tuple[Server, dict[str, str]]
) -> None:
    headers = _headers(fuzzed, caller)

    class Chains(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            CASES[f"as {caller} in chains"] = CASES.get(f"as {caller} in chains", 0) + 1
            return {"headers": headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    machine: type[APIStateMachine] = Chains
    chains = settings(_SETTINGS, stateful_step_count=6, phases=[Phase.generate], database=None)
    for session in range(SESSIONS):
        try:
            machine.run(settings=settings(chains, derandomize=chains.derandomize and not session))
            return
        except FlakyStrategyDefinition:  # the server's state changed what a replay drew
            continue
    pytest.fail(f"every one of {SESSIONS} sessions of chains was cut short by a changed state")


def _headers(fuzzed: tuple[Server, dict[str, str]], caller: str) -> dict[str, str]:
    return {"Authorization": f"token {fuzzed[1][caller]}"}
