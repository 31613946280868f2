"""The harvest against real OAI-PMH servers on 127.0.0.1, with faults injected.

Every test checks the one property that matters: the store ends up holding
exactly the server's records (identifiers and count), each once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from harvester.harvest import Harvester, HarvestRequest
from harvester.locks import source_lock
from harvester.store import Store
from tests.helpers import REPO, harvest, settings_for
from tests.oaiserver import (
    DAY,
    BrokenPage,
    BrokenRecord,
    DropConnection,
    EmptyPageWithToken,
    ErrorCode,
    ExpiredToken,
    IllegalChars,
    LoopToken,
    OAIServer,
    PaddedToken,
    Slow,
    Status,
    http_date,
)
from tests.recordgen import make_records, sample_records


def stored(settings, name="lab", include_deleted=False):
    with Store(settings.db_path) as store:
        return {r.identifier: r for r in store.iter_records(name, include_deleted=include_deleted)}


def live_ids(server: OAIServer) -> set[str]:
    return {r.identifier for r in server.records if not r.deleted}


def list_requests(server: OAIServer, verb="ListRecords"):
    return [r for r in server.requests if r.verb == verb]


def first_pages(server: OAIServer):
    """The list requests that started a window (not resumed by token)."""
    return [r for r in list_requests(server) if "resumptionToken" not in r.params]


@pytest.fixture
def server():
    with OAIServer(make_records(1050, seed=1), page_size=100) as srv:
        yield srv


@pytest.fixture
def lab(tmp_path, server):
    settings, _ = settings_for(tmp_path, {"lab": {"url": server.url}})
    return settings


def test_paging_brings_every_record_exactly_once(server, lab):
    result = harvest(lab)
    assert result.status == "ok", result.error
    assert set(stored(lab)) == live_ids(server)
    assert result.new == len(server.records) and result.pages == 11
    # gzip was asked for and used (the server only compresses on request).
    assert all(r.status == 200 for r in server.requests)
    with Store(lab.db_path) as store:
        assert store.checkpoints("lab") == []  # complete: nothing left to resume
        assert store.get_watermark("lab", "", "oai_datacite") is not None


def test_sets_are_harvested_each_and_records_stored_once(tmp_path):
    records = make_records(400, seed=2, sets=("pub", "raw_inv"))
    with OAIServer(records, page_size=50) as srv:
        settings, _ = settings_for(tmp_path, {"lab": {"url": srv.url, "sets": ["pub", "raw_inv"]}})
        result = harvest(settings)
        assert result.status == "ok", result.error
        got = stored(settings)
        assert set(got) == live_ids(srv)
        assert {r.params.get("set") for r in list_requests(srv) if "set" in r.params} == {"pub", "raw_inv"}
        multi = [r for r in records if len(r.sets) > 1]
        assert multi, "the generator puts some records in two sets"
        assert result.new == len(records)  # the second set's copy of a record changes nothing
        assert result.unchanged == sum(len(r.sets) for r in records) - len(records)


def test_deleted_records_become_tombstones(tmp_path):
    records = make_records(300, seed=3, deleted_every=7)
    with OAIServer(records, page_size=100) as srv:
        settings, _ = settings_for(tmp_path, {"lab": {"url": srv.url}})
        assert harvest(settings).status == "ok"
        all_rows = stored(settings, include_deleted=True)
        dead = {i for i, r in all_rows.items() if r.deleted}
        assert dead == {r.identifier for r in records if r.deleted} and dead
        assert all(all_rows[i].raw is None for i in dead)
        # A record deleted later on the server is tombstoned by the next incremental harvest.
        victim = next(r.identifier for r in records if not r.deleted)
        srv.advance(3600)
        srv.delete(victim)
        assert harvest(settings).deleted == 1
        assert stored(settings, include_deleted=True)[victim].deleted


@pytest.mark.parametrize("fault", [
    Status(503, retry_after="1", page=3),
    Status(503, retry_after=lambda: http_date(2), page=3),  # an HTTP date, computed when it fires
    Status(429, page=2),
    Status(500, page=5, times=2),
    DropConnection(page=4),
    DropConnection(mid_body=True, page=6),
], ids=["503-seconds", "503-http-date", "429", "500-twice", "drop", "drop-mid-body"])
def test_transient_faults_lose_nothing(server, lab, fault):
    server.faults.append(fault)
    result = harvest(lab)
    assert result.status == "ok", result.error
    assert fault.fired == fault.times
    assert set(stored(lab)) == live_ids(server)
    if isinstance(fault, Status) and fault.retry_after:
        # The server's Retry-After (1 s; a date 1-2 s ahead) was honoured rather than
        # the tiny test backoff (0.01 s): the retry came that much after the refusal.
        refused = next(i for i, r in enumerate(server.requests) if r.fault is fault)
        assert server.requests[refused + 1].at - server.requests[refused].at >= 0.9


def test_forbidden_stops_at_once(server, lab):
    server.faults.append(Status(403, verb=None))
    result = harvest(lab)
    assert result.status == "failed" and "403" in result.error
    assert len(server.requests) == 1  # not retried


def test_illegal_characters_are_repaired_and_counted(server, lab):
    fault = IllegalChars(page=2)
    server.faults.append(fault)
    result = harvest(lab)
    assert result.status == "ok", result.error
    assert result.repaired >= 4
    got = stored(lab)
    assert set(got) == live_ids(server)
    damaged = got[fault.hits[0]]
    assert "\ufffd" in damaged.raw.decode()
    etree.fromstring(damaged.raw)  # stored XML is well-formed


def test_expired_token_restarts_the_window(server, lab):
    server.faults.append(ExpiredToken(page=6))
    result = harvest(lab)
    assert result.status == "ok", result.error
    assert set(stored(lab)) == live_ids(server)
    fresh_starts = [r for r in list_requests(server) if "resumptionToken" not in r.params]
    assert len(fresh_starts) == 2  # the first request and the restart


def test_broken_page_is_kept_aside_and_fails_with_checkpoint_intact(server, lab):
    server.faults.append(BrokenPage(page=4))
    result = harvest(lab)
    assert result.status == "failed" and "PageError" in result.error
    with Store(lab.db_path) as store:
        aside = store.kept_aside("lab", kind="page")
        assert len(aside) == 1 and "resumptionToken" in aside[0]["url"]
        (cp,) = store.checkpoints("lab")
        assert cp.pages == 3 and cp.token
        assert store.source_state("lab")["last_error"]
    assert len(stored(lab)) == 300
    # The next run resumes where the checkpoint stands and completes.
    before = len(server.requests)
    result = harvest(lab)
    assert result.status == "ok", result.error
    assert set(stored(lab)) == live_ids(server)
    assert "resumptionToken" in server.requests[before].params or server.requests[before].verb == "Identify"
    assert result.pages == 8


@pytest.mark.parametrize("kind", ["no_header_identifier", "empty_metadata"])
def test_malformed_record_is_kept_aside_rest_of_page_goes_on(server, lab, kind):
    fault = BrokenRecord(page=2, kind=kind)
    server.faults.append(fault)
    result = harvest(lab)
    assert result.status == "ok", result.error
    assert result.kept_aside == 1
    bad = fault.hits[0]
    assert set(stored(lab)) == live_ids(server) - {bad}
    with Store(lab.db_path) as store:
        (aside,) = store.kept_aside("lab", kind="record")
        assert aside["reason"] and aside["url"]


@pytest.mark.parametrize("repeat", ["token", "page"])
def test_a_looping_server_is_detected(server, lab, repeat):
    server.faults.append(LoopToken(repeat=repeat, page=3, times=None))
    result = harvest(lab)
    assert result.status == "failed" and "LoopError" in result.error
    assert len(server.requests) < 20


def test_empty_page_with_token_is_legal(server, lab):
    server.faults.append(EmptyPageWithToken(page=3))
    result = harvest(lab)
    assert result.status == "ok", result.error
    assert set(stored(lab)) == live_ids(server)
    assert result.pages == 12


def test_padded_tokens_are_trimmed_and_a_blank_one_ends_the_list(server, lab):
    server.faults.append(PaddedToken(times=None))
    result = harvest(lab)
    assert result.status == "ok", result.error
    assert set(stored(lab)) == live_ids(server)
    sent = [r.params["resumptionToken"] for r in list_requests(server) if "resumptionToken" in r.params]
    assert sent and all(t == t.strip() for t in sent)
    # The last page's token is only whitespace: the end, not one more request.
    assert len(list_requests(server)) == result.pages == 11
    assert all(r.status == 200 and r.oai_error is None for r in list_requests(server))


def test_an_error_code_outside_the_protocol_keeps_its_name(server, lab):
    server.faults.append(ErrorCode("tooBusy", page=4))
    result = harvest(lab)
    assert result.status == "failed"
    assert result.error.startswith("OAIError: tooBusy: the repository is busy"), result.error
    with Store(lab.db_path) as store:
        (cp,) = store.checkpoints("lab")
        assert cp.pages == 3 and cp.token
    result = harvest(lab)  # the busy spell is over: resumes at page 4
    assert result.status == "ok", result.error
    assert set(stored(lab)) == live_ids(server) and result.pages == 8


def test_incremental_uses_the_servers_clock_and_costs_two_requests(server, lab):
    server.now = "2031-05-05T10:00:00Z"  # far from the test machine's clock
    assert harvest(lab).status == "ok"
    with Store(lab.db_path) as store:
        assert store.get_watermark("lab", "", "oai_datacite") == "2031-05-05T10:00:00Z"
    server.advance(60)
    before = len(server.requests)
    result = harvest(lab)
    assert result.status == "ok" and result.new == result.updated == 0
    new_requests = server.requests[before:]
    assert len(new_requests) <= 2
    assert new_requests[-1].params["from"] == "2031-05-05T10:00:00Z"
    assert new_requests[-1].oai_error == "noRecordsMatch"
    # Nothing changed up to the empty answer's own date, so the watermark moves to it.
    with Store(lab.db_path) as store:
        assert store.get_watermark("lab", "", "oai_datacite") == "2031-05-05T10:01:00Z"
    # A change on the server is picked up by the next incremental harvest.
    changed = server.records[10].identifier
    server.advance(60)
    server.update(changed, metadata_xml=server.records[10].metadata_xml.replace(b"<titles>", b"<titles> "))
    result = harvest(lab)
    assert (result.new, result.updated) == (0, 1)
    assert stored(lab)[changed].datestamp == "2031-05-05T10:02:00Z"


def test_day_granularity_server(tmp_path):
    with OAIServer(make_records(120, seed=5), page_size=50, granularity=DAY) as srv:
        settings, _ = settings_for(tmp_path, {"lab": {"url": srv.url}})
        srv.now = "2030-01-02T12:00:00Z"
        assert harvest(settings).status == "ok"
        srv.advance(days=1)
        assert harvest(settings).status == "ok"
        assert first_pages(srv)[-1].params["from"] == "2030-01-02"
        assert harvest(settings, request=HarvestRequest(from_="2020-01-01T05:00:00Z")).status == "ok"
        assert first_pages(srv)[-1].params["from"] == "2020-01-01"
        assert set(stored(settings)) == live_ids(srv)


def test_newest_datestamp_wins_and_window_harvest_keeps_watermark(server, lab):
    assert harvest(lab).status == "ok"
    with Store(lab.db_path) as store:
        watermark = store.get_watermark("lab", "", "oai_datacite")
        target = server.records[0]
        # An older copy of a record never overwrites a newer one.
        assert not store.upsert_record("lab", target.identifier, "2000-01-01T00:00:00Z", deleted=True, raw=None)
    result = harvest(lab, request=HarvestRequest(from_="2020-01-01", until="2020-01-10"))
    assert result.status == "ok"
    params = first_pages(server)[-1].params
    assert (params["from"], params["until"]) == ("2020-01-01T00:00:00Z", "2020-01-10T23:59:59Z")
    with Store(lab.db_path) as store:
        assert store.get_watermark("lab", "", "oai_datacite") == watermark


def test_full_harvest_sweeps_away_records_a_server_without_deletions_dropped(tmp_path):
    records = make_records(200, seed=6)
    with OAIServer(records, page_size=100, deleted_record="no") as srv:
        settings, _ = settings_for(tmp_path, {"lab": {"url": srv.url}})
        assert harvest(settings).status == "ok"
        gone = srv.records.pop(17).identifier
        result = harvest(settings, request=HarvestRequest(full=True))
        assert result.status == "ok" and result.vanished == 1
        assert stored(settings, include_deleted=True)[gone].deleted
        assert set(stored(settings)) == live_ids(srv)


def test_real_sample_records_are_stored_intact(tmp_path):
    samples = [r for r in sample_records() if r.identifier]
    with OAIServer(samples, page_size=3) as srv:
        settings, _ = settings_for(tmp_path, {"lab": {"url": srv.url}})
        assert harvest(settings).status == "ok"
        got = stored(settings)
        assert set(got) == {r.identifier for r in samples}
        for rec in samples:
            metadata = etree.fromstring(got[rec.identifier].raw).find(
                "{http://www.openarchives.org/OAI/2.0/}metadata")
            payload = metadata[0]
            original = etree.fromstring(b"<w xmlns='http://www.openarchives.org/OAI/2.0/' "
                                        b"xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'>"
                                        + rec.metadata_xml + b"</w>")[0]
            assert etree.tostring(payload, method="c14n") == etree.tostring(original, method="c14n"), \
                rec.identifier


def test_a_record_with_a_huge_text_node_is_harvested_and_mapped(tmp_path):
    """libxml2 refuses a text node over 10 MB by default (a table pasted into an
    abstract); the page would fail on every run and stop its source for good."""
    from dataclasses import replace

    from harvester.records import parse_record

    records = make_records(30, seed=4)
    big = "123.4 567.8 " * 1_000_000  # 12 MB of a pasted data table
    target = records[12]
    abstract = b'descriptionType="Abstract">'
    assert abstract in target.metadata_xml
    records[12] = replace(target, metadata_xml=target.metadata_xml.replace(abstract, abstract + big.encode(), 1))
    with OAIServer(records, page_size=10) as srv:
        settings, _ = settings_for(tmp_path, {"lab": {"url": srv.url}})
        result = harvest(settings)
    assert result.status == "ok" and result.kept_aside == 0, result.error
    got = stored(settings)
    assert set(got) == {r.identifier for r in records if not r.deleted}
    doc = parse_record(got[target.identifier].raw, source="lab")
    assert doc.title and len(doc.summary) > 10_000_000 and doc.summary.startswith("123.4 567.8 123.4")


def test_stopped_while_waiting_for_the_lock_is_interrupted_not_failed(server, lab):
    harvester = Harvester(lab, lock_wait=None)
    try:
        with source_lock(lab.data_dir, "lab", purpose="a manual harvest"):
            threading.Timer(0.3, harvester.stop.set).start()
            result = harvester.harvest_source(lab.sources["lab"])
    finally:
        harvester.http.close()
    assert result.status == "interrupted", result
    assert "waiting for the lock" in result.error
    assert server.requests == []


def test_sources_in_parallel_one_down(tmp_path, server):
    with OAIServer(make_records(200, seed=7), page_size=50) as other:
        settings, _ = settings_for(tmp_path, {
            "lab": {"url": server.url}, "other": {"url": other.url},
            "down": {"url": "http://127.0.0.1:9/oai"},
        })
        harvester = Harvester(settings)
        results = {r.source: r for r in harvester.harvest_many(settings.enabled_sources())}
        harvester.http.close()
        assert results["lab"].status == results["other"].status == "ok"
        assert results["down"].status == "failed" and "attempts" in results["down"].error
        assert set(stored(settings, "other")) == live_ids(other)
        assert set(stored(settings, "lab")) == live_ids(server)


def _pages_committed(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT COALESCE(SUM(pages), 0) FROM checkpoints").fetchone()
            return row[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_halfway_then_resume(tmp_path, server):
    server.faults.append(Slow(seconds=0.15, times=None))
    settings, cfg = settings_for(tmp_path, {"lab": {"url": server.url}})
    cmd = [sys.executable, "-m", "harvester", "--config", str(cfg), "--data-dir", str(settings.data_dir),
           "harvest", "lab", "--no-index"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "first-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while _pages_committed(settings.db_path) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    halfway = len(stored(settings))
    assert 0 < halfway < len(server.records)
    server.faults.clear()
    before = len(server.requests)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    got = stored(settings)
    assert set(got) == live_ids(server) and len(got) == len(server.records)
    resumed = [r for r in server.requests[before:] if r.verb == "ListRecords"]
    assert "resumptionToken" in resumed[0].params  # resumed, not started over
    with Store(settings.db_path) as store:
        statuses = [r["status"] for r in store.runs("lab")]
        assert statuses == ["ok", "interrupted"]


# --- servers nobody here wrote ------------------------------------------------

from tests.thirdparty import payload_element, serve_with_oai_repo, serve_with_oaipmh  # noqa: E402


def _shape(el: etree._Element) -> list[tuple]:
    """Element content independent of where namespace declarations sit and of
    how characters are escaped: what 'intact' means across re-serialising servers."""
    return [(node.tag, sorted(node.attrib.items()), (node.text or "").strip(), (node.tail or "").strip())
            for node in el.iter() if isinstance(node.tag, str)]


def _payload(raw: bytes) -> etree._Element:
    return etree.fromstring(raw).find("{http://www.openarchives.org/OAI/2.0/}metadata")[0]


@pytest.mark.parametrize("serve, keeps_deletions", [(serve_with_oaipmh, True), (serve_with_oai_repo, False)],
                         ids=["oaipmh-4.0.0", "oai-repo-0.5.2"])
def test_third_party_servers(tmp_path, serve, keeps_deletions):
    records = make_records(730, seed=21, deleted_every=9)
    with serve(records, page_size=100) as url:
        settings, _ = settings_for(tmp_path, {"lab": {"url": url}})
        result = harvest(settings, request=HarvestRequest(full=True))
        assert result.status == "ok", result.error
        alive = {r.identifier for r in records if not r.deleted}
        assert set(stored(settings)) == alive
        dead = {i for i, r in stored(settings, include_deleted=True).items() if r.deleted}
        assert dead == ({r.identifier for r in records if r.deleted} if keeps_deletions else set())
        assert result.pages == (8 if keeps_deletions else 7)
        # An incremental harvest right after finds nothing new and stays cheap.
        again = harvest(settings)
        assert again.status == "ok" and again.new == again.updated == 0


@pytest.mark.parametrize("serve", [serve_with_oaipmh, serve_with_oai_repo], ids=["oaipmh-4.0.0", "oai-repo-0.5.2"])
def test_real_samples_stored_intact_through_third_party_servers(tmp_path, serve):
    samples = [r for r in sample_records() if r.identifier]
    with serve(samples, page_size=2) as url:
        settings, _ = settings_for(tmp_path, {"lab": {"url": url}})
        assert harvest(settings).status == "ok"
        got = stored(settings)
        assert set(got) == {r.identifier for r in samples}
        for rec in samples:
            assert _shape(_payload(got[rec.identifier].raw)) == _shape(payload_element(rec)), rec.identifier


def test_http_manners_user_agent_from_gzip_keep_alive(server, lab):
    assert harvest(lab).status == "ok"
    assert len(server.clients) == len(server.requests) >= 12
    for _, headers in server.clients:
        assert headers["User-Agent"].startswith("pan-harvester/")
        assert headers["From"] == "tests@pan-harvester.invalid"
        assert "gzip" in headers["Accept-Encoding"]
    # Keep-alive: a dozen requests over one connection, not one each.
    assert len({address for address, _ in server.clients}) == 1


def test_one_request_at_a_time_per_host(tmp_path):
    """Two sources on one server harvest in parallel threads, yet the host sees
    one request at a time; a source on another host is not held up by them."""
    with OAIServer(make_records(300, seed=41, sets=("a", "b")), page_size=50) as shared, \
            OAIServer(make_records(300, seed=42), page_size=50) as alone:
        shared.faults.append(Slow(seconds=0.05, times=None))
        alone.faults.append(Slow(seconds=0.05, times=None))
        settings, _ = settings_for(tmp_path, {
            "one": {"url": shared.url, "sets": ["a"]}, "two": {"url": shared.url, "sets": ["b"]},
            "other": {"url": alone.url.replace("127.0.0.1", "localhost")},
        })
        harvester = Harvester(settings)
        results = harvester.harvest_many(settings.enabled_sources())
        harvester.http.close()
        assert {r.status for r in results} == {"ok"}
        assert shared.max_in_flight == 1
        assert len(shared.requests) >= 10  # two Identify, four pages per set
