"""One contract, two backends: every test here runs on the embedded index and on the
real Elasticsearch (`index_backend` is parametrised), and must get the same answers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from harvester.errors import IndexError_
from harvester.index import IndexBackend
from harvester.index.actions import doc_id, index_action
from harvester.index.query import SearchQuery, resolve_techniques
from harvester.index.sync import rebuild, sync
from harvester.pipeline import to_document
from harvester.store import Store
from tests.conftest_index import (ARPES, CORPUS, FACILITIES, SANS, SAXS, XRD, Dataset, fill,
                                  oai_record, put, tombstone)
from tests.recordgen import make_records


def _sync(store: Store, backend: IndexBackend, panet: Any, tagger: Any, **kw: Any):
    return sync(store, backend, facilities=FACILITIES, tagger=tagger, ontology=panet, **kw)


def _ids(result) -> list[str]:
    return [h["id"] for h in result.hits]


def _key(source: str, n: int) -> str:
    return doc_id(source, f"oai:{source}:{n}")


@pytest.fixture
def indexed(index_store: Store, index_backend: IndexBackend, panet: Any, panet_tagger: Any) -> IndexBackend:
    fill(index_store)
    report = _sync(index_store, index_backend, panet, panet_tagger)
    assert report.indexed == len(CORPUS)
    return index_backend


def search(backend: IndexBackend, **kw: Any):
    return backend.search(SearchQuery(size=kw.pop("size", 100), **kw))


# --- index -> search -----------------------------------------------------------------


def test_sync_creates_the_index_on_first_use_and_writes_everything(
        index_store: Store, index_backend: IndexBackend, panet: Any, panet_tagger: Any) -> None:
    assert index_backend.current() is None
    fill(index_store)
    report = _sync(index_store, index_backend, panet, panet_tagger)
    assert (report.indexed, report.deleted, report.failed, report.unparsable) == (len(CORPUS), 0, 0, 0)
    assert report.position == index_store.max_seq() == index_store.index_position(index_backend.alias)
    assert report.behind == 0
    assert report.index == index_backend.current()
    assert report.index.startswith(f"{index_backend.alias}-v1-")
    assert index_backend.count() == len(CORPUS)
    body = index_backend.get(_key("esrf", 1))
    assert body["title"] == "Lysozyme in solution"
    assert body["facility"] == "ESRF" and body["publication_year"] == 2019
    assert body["creators"][0]["orcid"] == "0000-0002-1825-0097"
    assert "PaNET01124" in body["technique_ids"]  # small angle scattering, an ancestor of SAXS
    # A second sync has nothing to do.
    again = _sync(index_store, index_backend, panet, panet_tagger)
    assert again.handled == 0 and index_backend.count() == len(CORPUS)


def test_without_query_every_document_newest_year_first(indexed: IndexBackend) -> None:
    result = search(indexed)
    assert result.total == len(CORPUS)
    # publication year descending, no year last, ties by id: the same order in both backends
    assert _ids(result) == [_key("esrf", 3), _key("hzb", 6), _key("desy", 4), _key("ill", 2),
                            _key("esrf", 1), _key("ill", 5), _key("esrf", 7)]
    assert _ids(search(indexed, size=2, offset=2)) == [_key("desy", 4), _key("ill", 2)]


def test_hits_carry_pid_title_facility_and_techniques(indexed: IndexBackend) -> None:
    [hit] = search(indexed, text="lysozyme").hits
    assert hit["pid"] == "10.5555/1"
    assert hit["title"] == "Lysozyme in solution"
    assert hit["facility"] == "ESRF"
    assert hit["techniques"] == [{"id": SAXS, "label": "small angle x-ray scattering"}]
    assert hit["publication_year"] == 2019 and hit["instruments"] == ["ID02"]


def test_a_technique_matches_its_descendants(indexed: IndexBackend, panet: Any) -> None:
    def by_technique(*names: str) -> set[str]:
        return set(_ids(search(indexed, technique_iris=resolve_techniques(names, panet))))

    small_angle = {_key("esrf", 1), _key("ill", 2), _key("esrf", 3)}
    assert by_technique("small angle scattering") == small_angle
    assert by_technique("SAS") == small_angle
    assert by_technique("SAXS") == {_key("esrf", 1), _key("esrf", 3)}  # GISAXS is a kind of SAXS
    assert by_technique("GISAXS") == {_key("esrf", 3)}
    assert by_technique("http://purl.org/pan-science/PaNET/" + SANS) == {_key("ill", 2)}
    assert by_technique("x-ray diffraction") == {_key("desy", 4)}
    assert by_technique("SAXS", ARPES) == {_key("esrf", 1), _key("esrf", 3), _key("hzb", 6)}
    assert search(indexed, technique_iris=frozenset()).total == 0


def test_free_text_small_angle_scattering_finds_saxs_sans_gisaxs(indexed: IndexBackend) -> None:
    found = set(_ids(search(indexed, text="small angle scattering")))
    assert found == {_key("esrf", 1), _key("ill", 2), _key("esrf", 3)}
    # Synonyms of the techniques and their ancestors are indexed too.
    assert set(_ids(search(indexed, text="SAXS"))) == {_key("esrf", 1), _key("esrf", 3)}
    assert set(_ids(search(indexed, text="SANS"))) == {_key("ill", 2)}


@pytest.mark.parametrize("text, expected", [
    ("zeolites", {("desy", 4)}),
    ("ZEOLITES powder", {("desy", 4)}),
    ("zeolites lysozyme", set()),  # every word must match
    ('"band structure"', {("hzb", 6)}),
    ('"structure band"', set()),
    ("topological insulator", {("hzb", 6)}),  # a keyword
    ("ID02", {("esrf", 1)}),  # an instrument
    ("Doe", {(s, n) for s, n in [("esrf", 1), ("ill", 2), ("esrf", 3), ("desy", 4), ("ill", 5),
                                 ("hzb", 6), ("esrf", 7)]}),  # a creator
    ("Müller's", {("esrf", 7)}),
    # words anywhere: the SAS documents carry "x-ray" and "small angle diffraction" (a synonym)
    ("x-ray diffraction", {("desy", 4), ("esrf", 1), ("esrf", 3)}),
    ('"patterns of zeolites"', {("desy", 4)}),
    ('"zeolites of patterns"', set()),
    ("nothing-like-this", set()),
])
def test_free_text(indexed: IndexBackend, text: str, expected: set) -> None:
    result = search(indexed, text=text)
    assert set(_ids(result)) == {_key(s, n) for s, n in expected}
    assert result.total == len(expected)


def test_filters_combine(indexed: IndexBackend, panet: Any) -> None:
    assert set(_ids(search(indexed, facilities=("esrf",)))) == {_key("esrf", n) for n in (1, 3, 7)}
    assert set(_ids(search(indexed, facilities=("ILL", "hzb")))) == {_key("ill", 2), _key("ill", 5),
                                                                     _key("hzb", 6)}
    assert set(_ids(search(indexed, year_from=2020, year_to=2020))) == {_key("ill", 2), _key("desy", 4)}
    assert set(_ids(search(indexed, year_from=2020))) == {_key("ill", 2), _key("desy", 4), _key("esrf", 3),
                                                          _key("hzb", 6)}
    assert set(_ids(search(indexed, year_to=2019))) == {_key("esrf", 1), _key("ill", 5)}
    sas = resolve_techniques(["small angle scattering"], panet)
    assert _ids(search(indexed, text="scattering", facilities=("ESRF",), technique_iris=sas,
                       year_from=2021)) == [_key("esrf", 3)]


# --- stats -----------------------------------------------------------------------------


def test_stats_per_dimension(indexed: IndexBackend, panet: Any, panet_tagger: Any) -> None:
    stats = indexed.stats(("facility", "year", "licence", "instrument", "technique", "source", "access"))
    assert stats["total"] == len(CORPUS)
    assert stats["facility"] == [{"key": "ESRF", "count": 3}, {"key": "ILL", "count": 2},
                                 {"key": "DESY", "count": 1}, {"key": "HZB", "count": 1}]
    assert stats["year"] == [{"key": 2018, "count": 1}, {"key": 2019, "count": 1},
                             {"key": 2020, "count": 2}, {"key": 2021, "count": 2}]
    assert stats["licence"] == [{"key": "CC-BY-4.0", "count": 4}, {"key": "CC0-1.0", "count": 1}]
    assert stats["instrument"] == [{"key": k, "count": 1} for k in sorted(["ID02", "D22", "ID10", "P02.1"])]
    assert stats["source"][0] == {"key": "esrf", "count": 3}
    # Techniques: the tags of each document (facility-implied ones included), with labels.
    expected: Counter[tuple[str, str]] = Counter()
    for ds in CORPUS:
        rec = index_store_record(ds)
        doc = to_document(rec, facility=FACILITIES[ds.source], tagger=panet_tagger)
        expected.update({(t.id, t.label) for t in doc.techniques})
    assert {(b["key"], b["label"]): b["count"] for b in stats["technique"]} == dict(expected)
    assert {"key": SAXS, "count": 1, "label": "small angle x-ray scattering"} in stats["technique"]


def index_store_record(ds: Dataset):
    from harvester.store import StoredRecord

    return StoredRecord(ds.source, ds.identifier, ds.datestamp, False, (), "oai_datacite", ds.record(), 1)


def test_stats_with_a_filter_and_a_limit(indexed: IndexBackend) -> None:
    stats = indexed.stats(("year",), SearchQuery(facilities=("ESRF",)), limit=1, with_completeness=False)
    assert stats == {"total": 3, "year": [{"key": 2019, "count": 1}]}  # top bucket by count, ties by key


def test_completeness_per_facility(indexed: IndexBackend) -> None:
    rows = {r["key"]: r for r in indexed.stats(())["completeness"]}
    assert set(rows) == {"ESRF", "ILL", "DESY", "HZB"}
    esrf = rows["ESRF"]
    assert esrf["count"] == 3
    assert esrf["licence"] == 1.0
    assert esrf["orcid"] == pytest.approx(2 / 3, abs=1e-3)
    assert esrf["ror"] == pytest.approx(1 / 3, abs=1e-3)
    assert esrf["abstract"] == pytest.approx(2 / 3, abs=1e-3)  # the bare-URL abstract does not count
    assert esrf["instrument"] == pytest.approx(2 / 3, abs=1e-3)
    assert esrf["technique"] == pytest.approx(2 / 3, abs=1e-3)
    ill = rows["ILL"]
    assert (ill["count"], ill["licence"], ill["orcid"], ill["abstract"], ill["technique"]) == (2, 0.5, 0.0, 0.5, 0.5)
    assert rows["HZB"]["ror"] == 1.0 and rows["DESY"]["licence"] == 0.0


def test_search_and_stats_before_the_first_sync_say_so(index_backend: IndexBackend) -> None:
    with pytest.raises(IndexError_, match="index sync"):
        index_backend.search(SearchQuery())
    with pytest.raises(IndexError_, match="index sync"):
        index_backend.stats()


# --- updates and deletions --------------------------------------------------------------


def test_a_newer_datestamp_replaces_the_document(indexed: IndexBackend, index_store: Store, panet: Any,
                                                 panet_tagger: Any) -> None:
    newer = Dataset("oai:esrf:1", "esrf", datestamp="2024-06-01T00:00:00Z", title="Lysozyme crystals",
                    year=2022, techniques=(XRD,))
    assert put(index_store, newer)
    report = _sync(index_store, indexed, panet, panet_tagger)
    assert (report.indexed, report.handled) == (1, 1)
    assert indexed.count() == len(CORPUS)
    assert indexed.get(_key("esrf", 1))["title"] == "Lysozyme crystals"
    assert search(indexed, text="solution").total == 0
    xrd = resolve_techniques(["x-ray diffraction"], panet)
    assert set(_ids(search(indexed, technique_iris=xrd))) == {_key("esrf", 1), _key("desy", 4)}

    def write_directly(dataset: Dataset) -> str:
        doc = to_document(index_store_record(dataset), facility="ESRF", tagger=panet_tagger)
        [result] = indexed.write([index_action(doc, panet, source="esrf", identifier="oai:esrf:1",
                                               datestamp=dataset.datestamp)])
        return result.outcome

    # An older copy (the store would not even keep it) is ignored by the index too.
    older = Dataset("oai:esrf:1", "esrf", datestamp="2023-01-01T00:00:00Z", title="Old title")
    assert not put(index_store, older)
    assert write_directly(older) == "stale"
    indexed.refresh()
    assert indexed.get(_key("esrf", 1))["title"] == "Lysozyme crystals"
    # The same version again is accepted (external_gte): a corrected record without a new datestamp.
    same = Dataset("oai:esrf:1", "esrf", datestamp=newer.datestamp, title="Lysozyme crystals, corrected")
    assert write_directly(same) == "ok"
    indexed.refresh()
    assert indexed.get(_key("esrf", 1))["title"] == "Lysozyme crystals, corrected"


def test_a_tombstone_deletes_and_a_late_copy_does_not_resurrect(
        indexed: IndexBackend, index_store: Store, panet: Any, panet_tagger: Any) -> None:
    assert tombstone(index_store, "ill", "oai:ill:2", "2024-06-01T00:00:00Z")
    assert tombstone(index_store, "ill", "oai:ill:99", "2024-06-01T00:00:00Z")  # never indexed
    report = _sync(index_store, indexed, panet, panet_tagger)
    assert (report.deleted, report.indexed, report.failed) == (2, 0, 0)
    assert indexed.count() == len(CORPUS) - 1
    assert indexed.get(_key("ill", 2)) is None
    assert search(indexed, text="polymer").total == 0
    assert {"key": "ILL", "count": 1} in indexed.stats(("facility",))["facility"]
    late = CORPUS[1]  # the live copy, datestamp older than the tombstone
    doc = to_document(index_store_record(late), facility="ILL", tagger=panet_tagger)
    [result] = indexed.write([index_action(doc, panet, source="ill", identifier=late.identifier,
                                           datestamp=late.datestamp)])
    assert result.outcome == "stale"
    indexed.refresh()
    assert indexed.get(_key("ill", 2)) is None
    # A record that comes back with a newer datestamp is indexed again.
    assert put(index_store, Dataset("oai:ill:2", "ill", datestamp="2024-07-01T00:00:00Z", title="Back"))
    assert _sync(index_store, indexed, panet, panet_tagger).indexed == 1
    assert indexed.get(_key("ill", 2))["title"] == "Back"


# --- failures ---------------------------------------------------------------------------


def test_an_unparsable_record_is_kept_aside_and_the_sync_goes_on(
        index_store: Store, index_backend: IndexBackend, panet: Any, panet_tagger: Any) -> None:
    fill(index_store, CORPUS[:2])
    index_store.upsert_record("esrf", "oai:esrf:bad", "2024-01-02T00:00:00Z", deleted=False,
                              raw=oai_record("oai:esrf:bad", "2024-01-02T00:00:00Z", b"<resource/>"))
    fill(index_store, CORPUS[2:4])
    report = _sync(index_store, index_backend, panet, panet_tagger)
    assert (report.indexed, report.unparsable) == (4, 1)
    assert report.position == index_store.max_seq()  # moved past it: it is recorded
    [(source, identifier, _seq, error, attempts)] = index_store.index_failures(index_backend.alias)
    assert (source, identifier, attempts) == ("esrf", "oai:esrf:bad", 1)
    assert error.startswith("unparsable:") and "title" in error
    # Every later sync tries it again (a parser fix would bring it in)...
    report = _sync(index_store, index_backend, panet, panet_tagger)
    assert (report.retried, report.unparsable) == (1, 1)
    assert index_store.index_failures(index_backend.alias)[0][4] == 2
    # ...and a corrected record clears it.
    put(index_store, Dataset("oai:esrf:bad", "esrf", datestamp="2024-01-03T00:00:00Z", title="Fixed"))
    report = _sync(index_store, index_backend, panet, panet_tagger)
    assert (report.indexed, report.unparsable) == (1, 0)
    assert index_store.index_failures(index_backend.alias) == []
    assert index_backend.count() == 5


def test_recorded_failures_are_retried_until_they_go_through(
        indexed: IndexBackend, index_store: Store, panet: Any, panet_tagger: Any) -> None:
    rec = index_store.get_record("hzb", "oai:hzb:6")
    index_store.add_index_failure(indexed.alias, "hzb", "oai:hzb:6", rec.seq, "es_rejected_execution")
    report = _sync(index_store, indexed, panet, panet_tagger)
    assert (report.retried, report.indexed, report.failed) == (1, 1, 0)
    assert index_store.index_failures(indexed.alias) == []


def test_a_document_the_index_refuses_fails_alone(indexed: IndexBackend) -> None:
    good = {"_op_type": "index", "_id": "x:1", "_version": 1, "_version_type": "external_gte",
            "_source": {"id": "x:1", "title": "fine", "facility": "X"}}
    bad = {"_op_type": "index", "_id": "x:2", "_version": 1, "_version_type": "external_gte",
           "_source": {"id": "x:2", "title": "not fine", "colour": "red"}}
    results = list(indexed.write([good, bad, {**good, "_id": "x:3", "_source": {"id": "x:3"}}]))
    assert [r.outcome for r in results] == ["ok", "failed", "ok"]
    assert "strict_dynamic_mapping" in results[1].error
    indexed.refresh()
    assert indexed.count() == len(CORPUS) + 2


# --- rebuild -------------------------------------------------------------------------


def test_rebuild_swaps_the_alias_and_drops_the_old_index(indexed: IndexBackend, index_store: Store,
                                                        panet: Any, panet_tagger: Any) -> None:
    old = indexed.current()
    assert tombstone(index_store, "desy", "oai:desy:4", "2024-06-01T00:00:00Z")
    report = rebuild(index_store, indexed, facilities=FACILITIES, tagger=panet_tagger, ontology=panet)
    assert report.mode == "rebuild"
    assert report.indexed == len(CORPUS) - 1
    assert report.replaced == [old]
    assert indexed.current() == report.index != old
    assert indexed.indexes() == [report.index]
    assert indexed.count() == len(CORPUS) - 1
    assert report.position == index_store.max_seq() == index_store.index_position(indexed.alias)
    assert search(indexed, text="zeolites").total == 0


def test_a_rebuild_clears_leftovers_of_an_interrupted_one(indexed: IndexBackend, index_store: Store) -> None:
    leftover = indexed.create_index()  # as if a rebuild had died before its swap
    old = indexed.current()
    assert set(indexed.indexes()) == {old, leftover}
    report = rebuild(index_store, indexed, facilities=FACILITIES)
    assert set(report.replaced) == {old, leftover}
    assert indexed.indexes() == [report.index]
    assert indexed.count() == len(CORPUS)


def test_searches_keep_answering_during_a_rebuild(index_store: Store, index_backend: IndexBackend,
                                                  panet: Any, panet_tagger: Any) -> None:
    n = 400
    for r in make_records(n, seed=5):
        index_store.upsert_record("esrf", r.identifier, r.datestamp, deleted=False,
                                  raw=oai_record(r.identifier, r.datestamp, r.metadata_xml))
    _sync(index_store, index_backend, panet, panet_tagger)
    expected_sas = index_backend.search(SearchQuery(text="small angle scattering", size=0)).total
    assert expected_sas > 0
    seen: list[tuple[float, int, int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                total = index_backend.search(SearchQuery(size=5)).total
                sas = index_backend.search(SearchQuery(text="small angle scattering", size=0,
                                                       facets=("facility",))).total
                seen.append((time.monotonic(), total, sas))
            except BaseException as exc:  # noqa: BLE001 - any failure is the test's finding
                errors.append(exc)
                return

    thread = threading.Thread(target=searcher)
    thread.start()
    try:
        started = time.monotonic()
        for _ in range(2):
            report = rebuild(index_store, index_backend, facilities=FACILITIES, tagger=panet_tagger,
                             ontology=panet, chunk_size=100)
            assert report.indexed == n and len(report.replaced) == 1
        finished = time.monotonic()
    finally:
        stop.set()
        thread.join(30)
    assert errors == []
    during = [s for s in seen if started <= s[0] <= finished]
    assert len(during) >= 5, "the searcher barely ran during the rebuilds"
    assert {(total, sas) for _, total, sas in seen} == {(n, expected_sas)}
    assert len(index_backend.indexes()) == 1


def test_rebuild_of_an_empty_store_publishes_an_empty_index(index_store: Store, index_backend: IndexBackend) -> None:
    report = rebuild(index_store, index_backend)
    assert report.handled == 0 and report.replaced == []
    assert index_backend.count() == 0
    assert index_backend.stats() == {"total": 0, "facility": [], "technique": [], "year": [], "completeness": []}
