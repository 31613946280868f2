"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import os

import pytest

# No test reaches outside this machine: PaNET comes from ../shared/ontology, never
# from purl.org (subprocesses inherit this too).
os.environ["PAN_HARVESTER_ONTOLOGY_AUTOFETCH"] = "false"

# Elasticsearch and index fixtures (the real server started by .ci/run or scripts/elasticsearch).
pytest_plugins = ["tests.conftest_index"]

from tests.oaiserver import OAIServer  # noqa: E402 (after the environment above)
from tests.recordgen import FakeRecord, make_records, sample_records  # noqa: E402

# --- OAI-PMH servers on 127.0.0.1 (tests/oaiserver.py) ---------------------------


@pytest.fixture
def oai_server() -> Iterator[Callable[..., OAIServer]]:
    """Factory: ``oai_server(records=..., page_size=..., ...)`` -> a started OAIServer.

    Every server it made is stopped at teardown. Without records it serves
    `make_records(100)`.
    """
    started: list[OAIServer] = []

    def start(records: list[FakeRecord] | None = None, **opts: Any) -> OAIServer:
        server = OAIServer(make_records(100) if records is None else records, **opts).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def records_100() -> list[FakeRecord]:
    return make_records(100)


@pytest.fixture
def records_1k() -> list[FakeRecord]:
    """1000 generated records, every 10th deleted (a fresh list; records are frozen)."""
    return make_records(1000, deleted_every=10)


@pytest.fixture
def samples() -> list[FakeRecord]:
    """The real sample files of ../shared/samples as records, payload bytes untouched."""
    return sample_records()
