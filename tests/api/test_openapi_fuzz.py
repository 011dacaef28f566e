"""Schemathesis over the live OpenAPI document: every answer of every route is documented.

The app is the real one (an SQLite registry, the local store, a real API key), in-process.
Hypothesis makes the requests in a worker thread; each is sent on the test's event loop through
httpx, and schemathesis checks the answer: no 5xx, and no status the route does not document.
Generation is derandomized and bounded: the same cases on every run, in a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.api.helpers import start, uploaded
from tests.conftest import Caller

#: Routes left out: the event stream never ends by itself.
SKIPPED = {"GET /api/v1/events"}
EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def operations(document: dict[str, Any]) -> Iterator[Any]:
    schema = schemathesis.openapi.from_dict(document)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label not in SKIPPED:
            yield operation


def httpx_arguments(case: Any) -> dict[str, Any]:
    """A schemathesis case as the arguments of ``httpx.AsyncClient.request``."""
    kwargs = case.as_transport_kwargs(base_url="")
    arguments = {
        key: kwargs[key] for key in ("method", "url", "params", "headers") if key in kwargs
    }
    if kwargs.get("cookies"):
        cookies = "; ".join(f"{name}={value}" for name, value in kwargs["cookies"].items())
        arguments["headers"] = {**arguments.get("headers", {}), "Cookie": cookies}
    if "json" in kwargs:
        arguments["json"] = kwargs["json"]
    elif isinstance(kwargs.get("data"), bytes | str):
        arguments["content"] = kwargs["data"]
    elif "data" in kwargs:
        arguments["data"] = kwargs["data"]
    return arguments


async def fuzz(
    http: httpx.AsyncClient,
    operation: Any,
    auth: dict[str, str],
    send: Callable[[httpx.AsyncClient, dict[str, Any]], Any] | None = None,
    file_ids: tuple[str, ...] = (),
) -> list[str]:
    """Run the operation's cases; answer what each failed check said (empty: all passed)."""
    loop = asyncio.get_running_loop()
    failures: list[str] = []

    async def request(arguments: dict[str, Any]) -> httpx.Response:
        if send is not None:
            return await send(http, arguments)
        return await http.request(**arguments)

    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(generation_mode=mode) for mode in modes]
    if "{file_id}" in operation.path:
        # Files that exist, so that the answers past "no such file" are reached too.
        strategies += [
            operation.as_strategy(generation_mode=mode, path_parameters={"file_id": file_id})
            for mode in modes
            for file_id in file_ids
        ]
    strategy = st.one_of(strategies)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        arguments = httpx_arguments(case)
        arguments["headers"] = {**arguments.get("headers", {}), **auth}
        try:
            response = asyncio.run_coroutine_threadsafe(request(arguments), loop).result(30)
        except httpx.InvalidURL:
            return  # httpx will not send it (e.g. a query over 64 KiB): nothing to check
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup):
            failures.append(f"{operation.label}: {response.status_code} {response.text[:200]}")

    await asyncio.to_thread(run)
    return failures


async def test_every_answer_of_every_route_is_documented(alice: Caller) -> None:
    document = (await alice.get("/openapi.json")).json()
    pending = (await start(alice, b"abc"))["id"]
    parts = (await start(alice, b"abc", multipart=True))["id"]
    whole = (await uploaded(alice, b"abc"))["id"]
    failures: list[str] = []
    count = 0
    for operation in operations(document):
        count += 1
        failures += await fuzz(alice.http, operation, alice.auth, file_ids=(pending, parts, whole))
    assert count > 25
    assert failures == [], "\n".join(sorted(set(failures)))


async def test_an_undocumented_status_is_caught(app: FastAPI, alice: Caller) -> None:
    """The check has teeth: the same run fails when a route answers a status it does not
    document (here a 418 made up in front of ``GET /api/v1/files/{file_id}``)."""
    document = (await alice.get("/openapi.json")).json()
    operation = next(op for op in operations(document) if op.label == "GET /api/v1/files/{file_id}")

    async def teapot(http: httpx.AsyncClient, arguments: dict[str, Any]) -> httpx.Response:
        response = await http.request(**arguments)
        response.status_code = 418
        return response

    failures = await fuzz(alice.http, operation, alice.auth, send=teapot)
    assert failures and all("418" in failure for failure in failures)
