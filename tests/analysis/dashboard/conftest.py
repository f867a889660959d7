from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from hpsearch.analysis.dashboard import create_app, open_readonly_store


@pytest.fixture
def client(store, db_url: str) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The dashboard over a read-only store on the test's database (the `store` fixture created the schema)."""
    readonly = open_readonly_store(db_url)
    with TestClient(create_app(readonly)) as test_client:
        yield test_client
    readonly.engine.dispose()
