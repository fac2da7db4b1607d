"""Schemathesis against the receiver's OpenAPI schema: no input gives a 5xx.

The schema's operations are driven through Schemathesis' Python API with Hypothesis
directly (its pytest loader does not work with pytest 9), positive and negative
data, a bounded number of examples per operation.
"""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from receiver_support import app_for, fresh_clock, tracked_store, url
from schemathesis.generation import GenerationMode

from klingmon.testing import AppServer

EXAMPLES = 30
CALLBACK = "/callbacks/kling/{token}"


def _run(
    operation: Any,
    mode: GenerationMode,
    base: str,
    failures: list[str],
    seen: list[int],
) -> None:
    real_token = url(0).rsplit("/", 1)[1]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        params = case.path_parameters
        if operation.path == CALLBACK:
            # Aim some of the fuzz at a real task and its token, to get past the
            # lookup and token checks into validation and the lifecycle rules.
            body = case.body
            if isinstance(body, dict) and len(str(body)) % 2:
                body["task_id"] = "kt-0"
                body["task_info"] = {"external_task_id": "km-0"}
                if params and len(str(params)) % 2:
                    params["token"] = real_token
        with requests.Session() as session:
            response = case.call(base_url=base, session=session)
        seen.append(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{operation.method.upper()} {operation.path}: {response.status_code}"
            )

    try:
        check()
    except Unsatisfiable:
        # No negative data exists for an operation without inputs (/healthz).
        assert mode is GenerationMode.NEGATIVE


def test_no_generated_request_gets_a_server_error(tmp_path):
    """Every generated request to every operation is answered below 500."""
    clock = fresh_clock()
    failures: list[str] = []
    seen: list[int] = []
    with tracked_store(tmp_path, clock, n=3) as store:
        app = app_for(store, clock, confirm=False)
        schema = schemathesis.openapi.from_dict(app.openapi())
        with AppServer(app) as server:
            operations = [result.ok() for result in schema.get_all_operations()]
            assert len(operations) >= 8
            for operation in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    _run(operation, mode, server.url, failures, seen)
    assert not failures, failures[:10]
    assert len(seen) >= 200
    assert {200, 403, 404, 422} <= set(seen), sorted(set(seen))
