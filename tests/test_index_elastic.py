"""What only the real Elasticsearch can show: the shipped mapping on the server-core
distribution, refusals, and the server being down or restarted in the middle of a sync."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest

from harvester.errors import IndexError_
from harvester.index import load_mapping
from harvester.index.actions import doc_id
from harvester.index.elastic import ElasticBackend
from harvester.index.query import SearchQuery
from harvester.index.sync import rebuild, sync
from harvester.store import Store
from tests.conftest_index import (CORPUS, FACILITIES, Dataset, es_port, es_script, fill, oai_record,
                                  unique_alias)
from tests.helpers import closed_port
from tests.recordgen import make_records

pytestmark = pytest.mark.elasticsearch


def _sync(store: Store, backend: Any, panet: Any, tagger: Any, **kw: Any):
    return sync(store, backend, facilities=FACILITIES, tagger=tagger, ontology=panet, **kw)


def test_the_shipped_mapping_works_on_the_server_core(es_backend: ElasticBackend) -> None:
    name = es_backend.ensure()
    mapping = es_backend.es.indices.get_mapping(index=name)[name]["mappings"]
    assert mapping["_meta"]["mapping_version"] == 1
    assert mapping["dynamic"] == "strict"
    tokens = es_backend.es.indices.analyze(index=name, analyzer="pan_shingles",
                                           text="Small angle X-ray scattering")["tokens"]
    assert [t["token"] for t in tokens][:2] == ["small angle", "small angle x"]
    assert es_backend.es.indices.get_alias(name=es_backend.alias).body == {name: {"aliases": {es_backend.alias: {}}}}
    assert es_backend.ensure() == name  # created once, then found


def test_writes_never_create_an_index_behind_our_back(es_backend: ElasticBackend) -> None:
    action = {"_op_type": "index", "_id": "x:1", "_version": 1, "_version_type": "external_gte",
              "_source": {"id": "x:1", "title": "t"}}
    [result] = es_backend.write([action])
    assert result.outcome == "failed"
    assert not es_backend.es.indices.exists(index=es_backend.alias)


def test_an_index_squatting_the_alias_name_is_reported(es_backend: ElasticBackend) -> None:
    es_backend.es.indices.create(index=es_backend.alias)
    try:
        with pytest.raises(IndexError_, match="is an index, not an alias"):
            es_backend.ensure()
    finally:
        es_backend.es.indices.delete(index=es_backend.alias)


def test_a_new_mapping_version_needs_a_rebuild_which_swaps_to_it(
        index_store: Store, es_backend: ElasticBackend, panet: Any, panet_tagger: Any) -> None:
    fill(index_store)
    _sync(index_store, es_backend, panet, panet_tagger)
    v2 = copy.deepcopy(load_mapping())
    v2["mappings"]["_meta"]["mapping_version"] = 2
    newer = ElasticBackend(es_backend.url, es_backend.alias, mapping=v2, swap_grace=0.1)
    try:
        with pytest.raises(IndexError_, match="index rebuild"):
            _sync(index_store, newer, panet, panet_tagger)
        report = rebuild(index_store, newer, facilities=FACILITIES, tagger=panet_tagger, ontology=panet)
        assert f"{es_backend.alias}-v2-" in report.index == newer.current()
        assert newer.count() == len(CORPUS)
        assert _sync(index_store, newer, panet, panet_tagger).handled == 0
    finally:
        newer.close()


def test_a_document_elasticsearch_refuses_is_recorded_and_the_rest_goes_in(
        index_store: Store, es_backend: ElasticBackend, panet: Any, panet_tagger: Any) -> None:
    fill(index_store, CORPUS[:3])
    # A pid longer than Lucene's 32766-byte term limit: refused by the keyword field.
    huge = Dataset("oai:esrf:huge", "esrf", title="Huge identifier")
    payload = huge.payload().replace(huge.doi.encode(), b"10.5555/" + b"x" * 33000)
    index_store.upsert_record("esrf", huge.identifier, huge.datestamp, deleted=False,
                              raw=oai_record(huge.identifier, huge.datestamp, payload))
    fill(index_store, CORPUS[3:5])
    report = _sync(index_store, es_backend, panet, panet_tagger)
    assert (report.indexed, report.failed) == (5, 1)
    assert report.position == index_store.max_seq()
    [(source, identifier, _seq, error, _attempts)] = index_store.index_failures(es_backend.alias)
    assert (source, identifier) == ("esrf", "oai:esrf:huge")
    assert "immense" in error or "max_bytes_length" in error or "too large" in error.lower()
    assert es_backend.count() == 5


def test_elasticsearch_down_loses_nothing_and_the_next_sync_catches_up(
        index_store: Store, es_url: str, panet: Any, panet_tagger: Any) -> None:
    fill(index_store)
    alias = unique_alias()
    down = ElasticBackend(f"http://127.0.0.1:{closed_port()}", alias, request_timeout=2)
    with pytest.raises(IndexError_) as caught:
        _sync(index_store, down, panet, panet_tagger)
    down.close()
    message = str(caught.value)
    assert "unreachable" in message
    assert f"behind the record store by {len(CORPUS)} change(s)" in message
    assert "nothing is lost" in message and "index sync" in message
    assert caught.value.report.behind == len(CORPUS)  # type: ignore[attr-defined]
    assert index_store.index_position(alias) == 0
    assert len(list(index_store.iter_records())) == len(CORPUS)
    up = ElasticBackend(es_url, alias)
    try:
        report = _sync(index_store, up, panet, panet_tagger)
        assert (report.indexed, report.behind) == (len(CORPUS), 0)
        assert up.count() == len(CORPUS)
    finally:
        for name in up.indexes():
            up.drop_index(name)
        up.close()


def test_a_rebuild_against_a_dead_server_changes_nothing(index_store: Store, panet: Any) -> None:
    fill(index_store)
    down = ElasticBackend(f"http://127.0.0.1:{closed_port()}", unique_alias(), request_timeout=2)
    with pytest.raises(IndexError_, match="behind the record store by 7"):
        rebuild(index_store, down, facilities=FACILITIES, ontology=panet)
    down.close()


@pytest.mark.timeout(300)
def test_elasticsearch_stopped_and_restarted_in_the_middle_of_a_sync(
        index_store: Store, es_url: str, panet: Any, panet_tagger: Any) -> None:
    """The real server is stopped (SIGTERM) between two bulk requests and started again."""
    port = es_port(es_url)
    if es_script("status", port=port).returncode != 0:
        message = f"{es_url} is not managed by scripts/elasticsearch (PAN_ES_PORT={port}): cannot restart it"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    n = 1500
    for r in make_records(n, seed=9, deleted_every=50):
        index_store.upsert_record("esrf", r.identifier, r.datestamp, deleted=r.deleted,
                                  raw=None if r.deleted else oai_record(r.identifier, r.datestamp,
                                                                        r.metadata_xml))
    backend = ElasticBackend(es_url, unique_alias(), request_timeout=10)
    stopped: list[int] = []

    def stop_once(report: Any) -> None:
        if not stopped and report.handled >= 400:
            stopped.append(report.position)
            result = es_script("stop", port=port)
            assert result.returncode == 0, result.stderr

    try:
        with pytest.raises(IndexError_) as caught:
            _sync(index_store, backend, panet, panet_tagger, chunk_size=200, on_progress=stop_once)
        report = caught.value.report  # type: ignore[attr-defined]
        assert stopped and 400 <= report.position < index_store.max_seq()
        assert report.position == index_store.index_position(backend.alias) == stopped[0]
        assert report.behind == index_store.count_changes_since(report.position) > 0
        assert "behind the record store" in str(caught.value)
    finally:
        started = es_script("start", port=port)
        assert started.returncode == 0, started.stderr
    try:
        report = _sync(index_store, backend, panet, panet_tagger, chunk_size=200)
        assert report.behind == 0 and report.failed == 0
        assert index_store.index_position(backend.alias) == index_store.max_seq()
        live = [r for r in index_store.iter_records()]
        assert backend.count() == len(live) == n - n // 50
        # Spot checks: the first, the last, and a deleted one.
        assert backend.get(doc_id("esrf", live[0].identifier)) is not None
        assert backend.get(doc_id("esrf", live[-1].identifier)) is not None
        assert backend.get(doc_id("esrf", make_records(50, seed=9, deleted_every=50)[49].identifier)) is None
        assert backend.search(SearchQuery(size=0)).total == len(live)
    finally:
        for name in backend.indexes():
            backend.drop_index(name)
        backend.close()
