"""Schemathesis over every operation of the app's OpenAPI, behind an API token.

The receiver-only run (test_schemathesis_receiver.py) has no token; here the JSON
API, ``/metrics`` and the dashboard want one. Fuzzed requests carrying the token
must never get a 5xx; requests without it (or with a wrong one) must get 401 and
no data. Bounded: a few examples per operation and mode, derandomized.
"""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from receiver_support import app_for, fresh_clock, tracked_store
from schemathesis.generation import GenerationMode

from klingmon.testing import AppServer

EXAMPLES = 12
TOKEN = "api-token-7f3c9a2e51d04b8e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Operations open to anyone: Kling's callbacks (token in the URL) and the probes.
PUBLIC = ("/callbacks/", "/healthz", "/readyz")
#: Dashboard routes (not in the OpenAPI schema) that must want the token too.
DASHBOARD = [
    ("GET", "/"),
    ("GET", "/batches/b"),
    ("GET", "/tasks/1"),
    ("GET", "/events"),
    ("GET", "/files/1"),
    ("POST", "/actions/retry/b"),
    ("POST", "/actions/download/b"),
]
#: Strings of the stored tasks: a refused request must not carry any of them.
DATA = ("kt-0", "km-0", "kt-1", "km-1")


def _fuzz(operation: Any, mode: GenerationMode, base: str, failures: list[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        with requests.Session() as session:
            response = case.call(base_url=base, session=session, headers=AUTH)
        if response.status_code >= 500:
            failures.append(
                f"{operation.method.upper()} {operation.path}: {response.status_code}"
            )

    try:
        check()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # no negative data without inputs


def test_fuzzed_requests_with_token_never_get_a_server_error(tmp_path):
    """Every generated request to every operation, token attached, is below 500."""
    clock = fresh_clock()
    failures: list[str] = []
    with tracked_store(tmp_path, clock, n=2) as store:
        app = app_for(store, clock, confirm=False, api_token=TOKEN)
        schema = schemathesis.openapi.from_dict(app.openapi())
        operations = [result.ok() for result in schema.get_all_operations()]
        paths = {op.path for op in operations}
        assert {"/api/batches", "/metrics", "/healthz", "/readyz"} <= paths, paths
        with AppServer(app) as server:
            for operation in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    _fuzz(operation, mode, server.url, failures)
    assert not failures, failures[:10]


def test_requests_without_the_token_get_401_and_no_data(tmp_path):
    """Guards the API token: protected operations refuse a missing or wrong token."""
    clock = fresh_clock()
    with tracked_store(tmp_path, clock, n=2) as store:
        app = app_for(store, clock, confirm=False, api_token=TOKEN)
        schema = schemathesis.openapi.from_dict(app.openapi())
        protected = [
            ("GET", op.path.replace("{ref}", "1"))
            for op in (result.ok() for result in schema.get_all_operations())
            if not op.path.startswith(PUBLIC)
        ]
        assert len(protected) >= 6, protected
        with AppServer(app) as server, requests.Session() as session:
            ok = session.get(f"{server.url}/api/batches/b/tasks", headers=AUTH)
            assert ok.status_code == 200
            assert "kt-0" in ok.text  # the token does open the data
            for method, path in protected + DASHBOARD:
                for headers in ({}, {"Authorization": "Bearer wrong"}):
                    response = session.request(
                        method,
                        server.url + path,
                        headers=headers,
                        allow_redirects=False,
                    )
                    where = f"{method} {path} {headers}"
                    assert response.status_code in (401, 403), where
                    assert not any(d in response.text for d in DATA), where
