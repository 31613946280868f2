"""Building documents ahead of the writes (a builder thread with its own store
connection) and following a harvest while it runs (sync with `until`, and the
follower process of `pan-harvester harvest`): failures surface, nothing is
skipped, and the position never passes a change the index has not confirmed."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harvester.cli import AppContext, main
from harvester.document import Document
from harvester.index import IndexBackend
from harvester.index import follow
from harvester.index.sync import sync, sync_after_harvest
from harvester.store import IncomingRecord, Store
from tests.conftest_index import FACILITIES, PANET_OWL, index_settings, oai_record, unique_alias
from tests.helpers import closed_port, esrf_config
from tests.oaiserver import OAIServer
from tests.recordgen import make_records


def _fill(store: Store, n: int, *, seed: int = 5, deleted_every: int = 0, bad_at: int | None = None) -> None:
    """n generated records of source esrf, one page each 50; record number `bad_at`
    (1-based) is a DataCite resource without a title: unparsable."""
    records = make_records(n, seed=seed, deleted_every=deleted_every)
    page: list[IncomingRecord] = []
    for i, r in enumerate(records, 1):
        payload = b"<resource/>" if i == bad_at else r.metadata_xml
        page.append(IncomingRecord(r.identifier, r.datestamp, r.deleted, (),
                                   None if r.deleted else oai_record(r.identifier, r.datestamp, payload)))
        if len(page) == 50:
            store.commit_page("esrf", "oai_datacite", page, None)
            page = []
    if page:
        store.commit_page("esrf", "oai_datacite", page, None)


def _builders() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "index-builder"]


@pytest.fixture
def ahead(index_backend: IndexBackend) -> IndexBackend:
    """The backend, with the sync building ahead in a thread whatever the backend
    (Elasticsearch does; the embedded index builds in line by default)."""
    index_backend.build_ahead = True  # type: ignore[attr-defined]
    return index_backend


def _indexed(backend: IndexBackend) -> int:
    backend.refresh()
    return backend.count()


class BrokenTagger:
    """The real tagger, except that it breaks on one record the way a bug would
    (not a RecordError): the sync must stop there, in the caller's thread."""

    def __init__(self, tagger: Any, identifier: str) -> None:
        self.tagger, self.identifier = tagger, identifier

    def tag_document(self, doc: Document) -> Document:
        if doc.oai_identifier == self.identifier:
            raise RuntimeError("tagger bug")
        return self.tagger.tag_document(doc)


def test_a_failure_while_building_surfaces_in_the_caller_and_the_position_stays_honest(
        index_store: Store, ahead: IndexBackend, panet: Any, panet_tagger: Any) -> None:
    index_backend = ahead
    _fill(index_store, 400)
    victim = make_records(400, seed=5)[249]
    building: list[bool] = []
    with pytest.raises(RuntimeError, match="tagger bug"):
        sync(index_store, index_backend, facilities=FACILITIES, ontology=panet, chunk_size=50,
             tagger=BrokenTagger(panet_tagger, victim.identifier),
             on_progress=lambda report: building.append(bool(_builders())))
    assert any(building)  # built in the builder thread...
    assert not _builders()  # ...which is gone
    position = index_store.index_position(index_backend.alias)
    victim_seq = index_store.get_record("esrf", victim.identifier).seq
    # Some chunks went in before the failure; the position covers exactly them.
    assert 0 < position < victim_seq
    assert _indexed(index_backend) == position
    # The next sync (the bug fixed) resumes from there.
    report = sync(index_store, index_backend, facilities=FACILITIES, tagger=panet_tagger, ontology=panet,
                  chunk_size=50)
    assert report.indexed == 400 - position and report.behind == 0
    assert _indexed(index_backend) == 400


def test_an_unparsable_record_in_the_middle_is_recorded_and_the_position_never_passes_the_index(
        index_store: Store, ahead: IndexBackend, panet: Any, panet_tagger: Any) -> None:
    index_backend = ahead
    _fill(index_store, 400, bad_at=170)
    bad = make_records(400, seed=5)[169]
    bad_seq = index_store.get_record("esrf", bad.identifier).seq
    seen: list[int] = []
    building: list[bool] = []

    def check(report: Any) -> None:
        # Every change up to the position is in the index, or recorded as a failure.
        position = index_store.index_position(index_backend.alias)
        assert position == report.position
        failed = {(s, i) for s, i, *_ in index_store.index_failures(index_backend.alias)}
        expected_failed = {("esrf", bad.identifier)} if position >= bad_seq else set()
        assert failed & expected_failed == expected_failed
        assert _indexed(index_backend) == position - len(expected_failed)
        seen.append(position)
        building.append(bool(_builders()))

    report = sync(index_store, index_backend, facilities=FACILITIES, tagger=panet_tagger, ontology=panet,
                  chunk_size=50, on_progress=check)
    assert (report.indexed, report.unparsable, report.position) == (399, 1, index_store.max_seq())
    assert seen == sorted(seen) and len(seen) >= 8  # checked at every chunk, never going back
    assert any(building)
    [(_source, identifier, seq, error, _attempts)] = index_store.index_failures(index_backend.alias)
    assert (identifier, seq) == (bad.identifier, bad_seq) and error.startswith("unparsable:")


def test_a_sync_following_an_idle_store_stops_at_once_when_the_writer_fails(
        index_store: Store, ahead: IndexBackend, panet: Any, panet_tagger: Any) -> None:
    _fill(index_store, 120)

    def fail(report: Any) -> None:
        raise RuntimeError("the writer failed")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the writer failed"):
        # The harvest never says it is done: the builder waits for more, and must
        # hear the stop all the same.
        sync(index_store, ahead, facilities=FACILITIES, tagger=panet_tagger, ontology=panet,
             chunk_size=50, on_progress=fail, until=lambda: False, poll=0.01)
    assert time.monotonic() - started < 20
    assert not _builders()
    assert index_store.index_position(ahead.alias) == 50


def _page(records: list[Any]) -> list[IncomingRecord]:
    return [IncomingRecord(r.identifier, r.datestamp, r.deleted, (),
                           None if r.deleted else oai_record(r.identifier, r.datestamp, r.metadata_xml))
            for r in records]


def test_a_sync_goes_on_while_a_harvest_commits_to_the_store(
        index_store: Store, index_backend: IndexBackend, panet: Any, panet_tagger: Any) -> None:
    """The records are read through a connection of their own: a connection in the
    middle of a read cannot write once another one has committed (SQLite WAL), and
    the sync writes its position between chunks. (It used to fail here with
    'database is locked'.)"""
    _fill(index_store, 300)
    committed: list[int] = []
    with Store(index_store.path) as harvest:
        def commit(report: Any) -> None:
            if not committed:
                harvest.commit_page("esrf", "oai_datacite", _page(make_records(50, seed=7, first=1000)), None)
                committed.append(harvest.max_seq())

        report = sync(index_store, index_backend, facilities=FACILITIES, tagger=panet_tagger,
                      ontology=panet, chunk_size=50, on_progress=commit)
    assert committed == [350]
    # What the sync saw is what was committed when it began; the rest comes next time.
    assert (report.indexed, report.position, report.behind) == (300, 300, 50)
    report = sync(index_store, index_backend, facilities=FACILITIES, tagger=panet_tagger, ontology=panet)
    assert (report.indexed, report.position, report.behind) == (50, 350, 0)


@pytest.mark.parametrize("build_ahead", [False, True], ids=["in-line", "ahead"])
def test_a_sync_follows_a_store_while_a_harvest_writes_it(
        index_store: Store, index_backend: IndexBackend, panet: Any, panet_tagger: Any,
        build_ahead: bool) -> None:
    index_backend.build_ahead = build_ahead  # type: ignore[attr-defined]
    records = make_records(600, seed=6, deleted_every=40)
    done, progressed = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def harvest() -> None:
        # A harvest of its own connection, committing pages of 50; halfway, it
        # waits until the sync has written some, so the sync really follows it.
        try:
            with Store(index_store.path) as own:
                for first in range(0, len(records), 50):
                    if first == 300:
                        assert progressed.wait(30), "the sync did not start while the harvest ran"
                    own.commit_page("esrf", "oai_datacite", _page(records[first:first + 50]), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
        finally:
            done.set()

    def on_progress(report: Any) -> None:
        if report.handled:
            progressed.set()

    writer = threading.Thread(target=harvest)
    writer.start()
    try:
        report = sync(index_store, index_backend, facilities=FACILITIES, tagger=panet_tagger,
                      ontology=panet, chunk_size=100, on_progress=on_progress, until=done.is_set,
                      poll=0.01)
    finally:
        done.set()
        writer.join()
    assert not errors
    live = [r for r in records if not r.deleted]
    assert report.position == index_store.max_seq() and report.behind == 0
    assert (report.indexed, report.deleted) == (len(live), len(records) - len(live))
    assert _indexed(index_backend) == len(live)


# --- the follower process of `pan-harvester harvest` --------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in ("PAN_HARVESTER_ES_URL", "PAN_HARVESTER_INDEX_ALIAS", "PAN_HARVESTER_CONFIG",
                "PAN_HARVESTER_ONTOLOGY"):
        monkeypatch.delenv(key, raising=False)
    # Every harvest gets a follower, however small.
    monkeypatch.setattr(follow, "FOLLOW_AFTER", 0)
    return {"PAN_HARVESTER_DATA": str(tmp_path / "data"), "PAN_HARVESTER_ONTOLOGY": str(PANET_OWL)}


@pytest.fixture
def app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AppContext:
    """The CLI's context, as the environment of `env` and an index of its own make it."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PAN_HARVESTER_INDEX_ALIAS", unique_alias())
    return AppContext(None, {})


def _harvest(env: dict[str, str], config: Path) -> Any:
    result = CliRunner().invoke(main, ["-v", "--config", str(config), "harvest", "esrf", "--json"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _drop(es_url: str, alias: str) -> None:
    from harvester.index.elastic import ElasticBackend

    with ElasticBackend(es_url, alias) as es:
        for name in es.indexes():
            es.drop_index(name)


@pytest.mark.parametrize("backend", ["embedded", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def test_harvest_with_the_index_following_it(backend: str, env: dict[str, str], tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    import json

    records = make_records(700, seed=8, deleted_every=25)
    settings = index_settings(backend, request)
    try:
        with OAIServer(records, page_size=50) as server:
            result = _harvest(env, esrf_config(tmp_path, server, **settings))
        assert "index follower started" in result.stderr
        note = json.loads(result.stdout)["index"]
        live = [r for r in records if not r.deleted]
        assert note["ok"] is True and note["behind"] == 0
        assert (note["indexed"], note["deleted"]) == (len(live), len(records) - len(live))
        with Store(tmp_path / "data" / "harvester.sqlite") as store:
            assert store.index_position(settings["index_alias"]) == store.max_seq() == len(records)
        found = CliRunner().invoke(main, ["--config", str(tmp_path / "config.toml"), "search", "--json"],
                                   env=env, catch_exceptions=False)
        assert json.loads(found.stdout)["total"] == len(live)
    finally:
        if backend == "elasticsearch":
            _drop(settings["es_url"], settings["index_alias"])


def test_elasticsearch_down_the_follower_gives_way_and_the_harvest_says_how_far_behind(
        env: dict[str, str], tmp_path: Path) -> None:
    import json

    port = closed_port()
    records = make_records(120, seed=4)
    with OAIServer(records, page_size=40) as server:
        result = _harvest(env, esrf_config(tmp_path, server, es_url=f"http://127.0.0.1:{port}",
                                       index_alias=unique_alias()))
    assert "index follower started" in result.stderr
    note = json.loads(result.stdout)["index"]
    # The follower met the dead server at once; the sync after the harvest says
    # how far behind the index is, counting every record harvested meanwhile.
    assert note["ok"] is False and note["behind"] == len(records)
    assert "nothing is lost" in note["message"]


def test_a_failed_harvest_stops_the_follower(app: AppContext) -> None:
    with Store(app.settings.db_path) as store:
        _fill(store, 60)
    with pytest.raises(KeyError):
        with follow.index_follower(app) as follower:
            assert follower is not None
            deadline = time.monotonic() + 30
            while not follower.running and time.monotonic() < deadline:  # started from a thread
                time.sleep(0.01)
            assert follower.running
            raise KeyError("the harvest broke")
    assert not follower.running
    # Whatever it wrote is confirmed: the next sync completes the rest.
    note = sync_after_harvest(app)
    assert note["ok"] is True and note["behind"] == 0
    with Store(app.settings.db_path) as store:
        assert store.index_position(app.settings.index_alias) == 60


def test_a_follower_that_dies_costs_nothing_but_time(app: AppContext) -> None:
    import os
    import signal

    with Store(app.settings.db_path) as store:
        _fill(store, 80)
    with follow.index_follower(app) as follower:
        assert follower is not None
        deadline = time.monotonic() + 30
        while not follower.running and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(follower._proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        with Store(app.settings.db_path) as store:
            _fill(store, 120, seed=9)  # the harvest goes on
    note = sync_after_harvest(app, follower)
    assert note["ok"] is True and note["behind"] == 0
    with Store(app.settings.db_path) as store:
        assert store.index_position(app.settings.index_alias) == store.max_seq() > 80


def test_a_small_harvest_is_synced_after_it_without_a_follower(app: AppContext) -> None:
    with follow.index_follower(app, start_after=1000) as follower:
        with Store(app.settings.db_path) as store:
            _fill(store, 60)
        time.sleep(0.3)  # the watcher looks every 0.1 s
    assert follower is not None and not follower.started  # 60 changes are not worth a process
    note = sync_after_harvest(app, follower)
    assert note["ok"] is True and (note["indexed"], note["behind"]) == (60, 0)
