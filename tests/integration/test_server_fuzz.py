"""Fuzzing the HTTP API from its own OpenAPI schema (schemathesis): no input gives a 500, and every
answer matches the schema (documented status code, content type and body), for every operation."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import color_index, color_service

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from itr.server import create_app  # noqa: E402
from itr.server.guard import RequestGuard  # noqa: E402

# Hypothesis drives schemathesis' strategies directly: its pytest plugin (from_fixture/parametrize)
# does not support the pytest version used here.
EXAMPLES = 200


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    svc = color_service(color_index(tmp_path_factory.mktemp("fuzz")), refresh_seconds=0)
    # schemathesis' ASGI client names the host "testserver"; the Host guard has its own tests.
    yield create_app(svc, guard=RequestGuard(allowed_hosts=("testserver",)))
    svc.close()


def _operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [r.ok() for r in schema.get_all_operations()]


def test_every_operation_is_fuzzed(app: Any) -> None:
    labels = {op.label for op in _operations(app)}
    assert {"GET /api/search", "POST /api/search/image", "POST /api/items", "DELETE /api/items/{item_id}",
            "GET /api/items/{item_id}/thumbnail", "GET /api/items/{item_id}/similar"} <= labels


@pytest.mark.parametrize("label", ["GET /api/health", "GET /api/info", "GET /api/search", "POST /api/search/image",
                                   "GET /api/items/{item_id}/similar", "GET /api/items/{item_id}/thumbnail",
                                   "GET /api/items/{item_id}", "POST /api/items", "DELETE /api/items/{item_id}"])
def test_api_fuzz(app: Any, label: str) -> None:
    op = next(o for o in _operations(app) if o.label == label)

    @given(case=op.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    def check(case: Any) -> None:
        # Every check but "schema-valid data is accepted": bytes the schema allows as a file are not
        # necessarily an image, and an item needs an image or a caption; those are 400s by design.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    check()
