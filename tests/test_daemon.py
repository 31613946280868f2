"""The daemon: scheduling, operator requests, stops, health and metrics.

The end-to-end tests run `python -m harvester ... run` as a subprocess (real
signals, a real exit) against OAI-PMH servers on loopback in this process, so
the servers' request logs show exactly what the daemon asked for and when.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client.parser import text_string_to_metric_families

from harvester import handoff
from harvester.config import load_settings
from harvester.daemon import (Daemon, _cron_day_of_week, daemon_info, daemon_pid, first_run_time, make_trigger,
                              read_daemon_state)
from harvester.harvest import HarvestRequest
from harvester.store import Store
from tests.conftest_index import PANET_OWL
from tests.helpers import REPO, daemon_config, refused_url, runs, wait_for
from tests.oaiserver import OAIServer, Slow
from tests.recordgen import make_records


# -- helpers --------------------------------------------------------------------

def cli(cfg: Path, data: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harvester", "--config", str(cfg), "--data-dir", str(data),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


class DaemonProcess:
    """`pan-harvester run` as a subprocess, its log in a file."""

    def __init__(self, cfg: Path, data: Path, *names: str, log: Path, env: dict[str, str] | None = None
                 ) -> None:
        self.data, self.log_path = data, log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harvester", "--config", str(cfg), "--data-dir", str(data), "run", *names,
             "--http", "127.0.0.1:0"],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        info = wait_for(self._ready, 20, "the daemon to write daemon.json")
        self.url = f"http://{info['listen']}"

    def _ready(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n{self.log()}")
        info = daemon_info(self.data)
        return info if info and info["pid"] == self.proc.pid and info["listen"] else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        return read_daemon_state(self.data) or {}

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM; seconds until the process was gone."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        self._log.close()
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []

    def start(*args: Any, **kwargs: Any) -> DaemonProcess:
        d = DaemonProcess(*args, **kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def list_requests(server: OAIServer) -> list[Any]:
    return [r for r in list(server.requests) if r.verb == "ListRecords" and r.status == 200]


def assert_chains_never_overlap(server: OAIServer) -> int:
    """Every harvest is a chain of ListRecords: one without a token, then the
    tokens in the order they were handed out, until one without a next token.
    Interleaved chains mean two harvests of the source ran at once. Returns the
    number of chains."""
    chains = 0
    expected: str | None = None  # the token the running chain must send next
    for req in list_requests(server):
        sent = req.params.get("resumptionToken")
        if sent is None:
            assert expected is None, "a new harvest started before the previous one finished"
            chains += 1
        else:
            assert sent == expected, "a page was asked for out of its harvest's order"
        expected = req.token or None
    return chains


def stored_ids(data: Path, source: str) -> list[str]:
    with Store(data / "harvester.sqlite") as store:
        return [r.identifier for r in store.iter_records(source)]


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# -- the whole service, as a subprocess -------------------------------------------------

def test_daemon_schedules_reharvests_stops_mid_page_and_resumes(tmp_path, daemons):
    alpha = OAIServer(make_records(60, seed=1), page_size=10).start()
    beta = OAIServer(make_records(30, seed=2), page_size=10).start()
    gamma = OAIServer(make_records(240, seed=3), page_size=10).start()
    try:
        alpha.faults.append(Slow(0.4, times=None))  # a harvest of alpha takes ~2.5 s
        gamma.faults.append(Slow(0.5, times=None))  # ~12 s: still running when SIGTERM comes
        cfg = daemon_config(tmp_path, {"alpha": {"url": alpha.url}, "beta": {"url": beta.url},
                                      "gamma": {"url": gamma.url}, "down": {"url": refused_url()}})
        data = tmp_path / "data"
        first = daemons(cfg, data, "alpha", "beta", "gamma", "down", log=tmp_path / "daemon1.log")

        # A scheduled harvest of alpha is under way (a page committed, more to come)...
        wait_for(lambda: any(e["kind"] == "scheduled" and e["pages"] >= 1
                             for e in first.state().get("alpha", {}).get("running", [])),
                 10, "alpha's scheduled harvest to commit a page")
        running_run = next(r for r in runs(data, "alpha") if r["status"] == "running")
        # ...when the operator asks for a full reharvest: the daemon takes it and waits its turn.
        asked = time.monotonic()
        done = cli(cfg, data, "reharvest", "alpha", "--full")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"handed to the running daemon (pid {first.proc.pid})" in done.stdout
        assert "ok" in done.stdout and time.monotonic() - asked < 20
        alpha_runs = runs(data, "alpha")
        full = [r for r in alpha_runs if r["mode"] == "full"]
        assert len(full) == 1 and full[0]["status"] == "ok"
        scheduled_then = next(r for r in alpha_runs if r["id"] == running_run["id"])
        assert scheduled_then["status"] == "ok"
        assert scheduled_then["finished_at"] <= full[0]["started_at"]  # one waited for the other
        for before, after in zip(alpha_runs, alpha_runs[1:]):
            if after["status"] != "running":
                assert before["finished_at"] <= after["started_at"]
        assert assert_chains_never_overlap(alpha) >= 2  # the scheduled harvest and the reharvest

        # Scheduled harvests keep coming (every 2 s): beta has run more than once.
        wait_for(lambda: len([r for r in runs(data, "beta") if r["status"] == "ok"]) >= 2, 10,
                 "a second scheduled harvest of beta")

        # Health: the source whose endpoint is down fails, the others stay healthy.
        status, body = first.get("/health")
        health = json.loads(body)
        assert status == 503 and health["status"] == "failing" and health["failing"] == ["down"]
        by_source = {s["source"]: s for s in health["sources"]}
        assert set(by_source) == {"alpha", "beta", "gamma", "down"}
        for s in by_source.values():
            assert {"source", "healthy", "last_success", "last_error", "next_run"} <= set(s)
            assert s["next_run"] is not None
        assert by_source["alpha"]["healthy"] and by_source["alpha"]["last_success"]
        assert by_source["beta"]["healthy"] and by_source["beta"]["last_error"] is None
        assert by_source["gamma"]["healthy"] and by_source["gamma"]["running"]
        assert not by_source["down"]["healthy"] and "Connection" in by_source["down"]["last_error"]
        assert by_source["down"]["last_success"] is None

        # Metrics: per-source series in the Prometheus text format.
        status, body = first.get("/metrics")
        assert status == 200
        samples = metric_samples(body.decode())
        assert samples[("pan_harvester_records_harvested_total", (("source", "alpha"),))] >= 60
        assert samples[("pan_harvester_records_harvested_total", (("source", "beta"),))] == 30
        assert samples[("pan_harvester_page_seconds_count", (("source", "alpha"),))] >= 12
        assert samples[("pan_harvester_source_healthy", (("source", "down"),))] == 0
        assert samples[("pan_harvester_source_healthy", (("source", "beta"),))] == 1
        assert samples[("pan_harvester_harvests_total", (("source", "down"), ("status", "failed")))] >= 1
        for source in ("alpha", "beta", "gamma", "down"):
            for name in ("pan_harvester_records_deleted_total", "pan_harvester_records_kept_aside_total",
                         "pan_harvester_http_retries_total", "pan_harvester_next_run_timestamp_seconds"):
                assert (name, (("source", source),)) in samples, (name, source)
            assert ("pan_harvester_index_lag", (("index", "pan-datasets"), ("source", source))) in samples
        assert samples[("pan_harvester_last_success_timestamp_seconds", (("source", "beta"),))] > 1.7e9

        # SIGTERM while gamma's next page is on its way (the server holds it 0.5 s).
        assert len(stored_ids(data, "gamma")) < 240
        seen = len(list(gamma.requests))
        wait_for(lambda: any(r.verb == "ListRecords" for r in list(gamma.requests)[seen:]), 5,
                 "gamma's next page request", step=0.005)
        took = first.terminate()
        assert first.proc.returncode == 0
        assert took < 5, f"the daemon took {took:.1f}s to stop"
        partial = stored_ids(data, "gamma")
        served = [i for r in list_requests(gamma) for i in r.identifiers]
        # The page in flight was committed before the exit: the store holds exactly what was served.
        assert 0 < len(partial) < 240 and sorted(partial) == sorted(served)
        assert runs(data, "gamma")[-1]["status"] == "interrupted"
        assert daemon_pid(data) is None and read_daemon_state(data) is None

        # Restart: gamma resumes from its checkpoint and ends with every record once.
        served_before = len(list_requests(gamma))
        second = daemons(cfg, data, "alpha", "beta", "gamma", "down", log=tmp_path / "daemon2.log")
        # status shows the daemon's view: next run per source, what runs now.
        shown = cli(cfg, data, "status", "alpha", "gamma", "--json")
        rows = {r["source"]: r for r in json.loads(shown.stdout)}
        assert rows["alpha"]["daemon"]["next_run"] and rows["alpha"]["daemon"]["schedule"] == "every 2s"
        assert rows["gamma"]["daemon"]["running"][0]["kind"] == "scheduled"
        # A restarted daemon remembers which source was failing.
        assert json.loads(second.get("/health")[1])["failing"] == ["down"]
        wait_for(lambda: runs(data, "gamma")[-1]["status"] == "ok", 20, "gamma's harvest to complete")
        resumed = list_requests(gamma)[served_before]
        assert "resumptionToken" in resumed.params, "the restarted daemon began gamma from scratch"
        ids = stored_ids(data, "gamma")
        assert len(ids) == len(gamma.records) == 240
        assert set(ids) == {r.identifier for r in gamma.records}
        served = Counter(i for r in list_requests(gamma) for i in r.identifiers)
        assert set(served.values()) == {1}, "some page of gamma was fetched twice"
        assert assert_chains_never_overlap(gamma) >= 1
        assert second.terminate() < 5 and second.proc.returncode == 0
        logs = first.log() + second.log()
        assert "harvest crashed" not in logs and "raised an exception" not in logs  # no daemon-level fault
    finally:
        for server in (alpha, beta, gamma):
            server.stop()


def test_stop_abandons_a_page_stuck_on_a_slow_server_and_sighup_reloads(tmp_path, daemons):
    with OAIServer(make_records(30, seed=4), page_size=10) as server:
        server.faults.append(Slow(30, page=2))  # page 2 hangs far longer than stop_timeout
        cfg = daemon_config(tmp_path, {"lab": {"url": server.url}}, schedule="every 1h", stop_timeout=1)
        data = tmp_path / "data"
        d = daemons(cfg, data, "lab", log=tmp_path / "daemon.log", env={"PAN_HARVESTER_DAEMON_LOG_FORMAT": "json"})
        wait_for(lambda: len([r for r in list(server.requests) if r.verb == "ListRecords"]) >= 2, 10,
                 "the request for page 2")
        assert d.state()["lab"]["schedule"] == "every 1h"

        # SIGHUP: the configuration is read again and the source rescheduled.
        daemon_config(tmp_path, {"lab": {"url": server.url, "schedule": "every 2h"}}, schedule="every 1h",
                     stop_timeout=1)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: d.state()["lab"]["schedule"] == "every 2h", 5, "the reload")
        assert d.proc.poll() is None

        took = d.terminate()
        assert d.proc.returncode == 0
        assert took < 1 + 3, f"the daemon took {took:.1f}s to stop"
        # Structured logs (daemon.log_format = "json" from the environment): one object per line.
        events = [json.loads(line) for line in d.log().splitlines() if line.strip()]
        assert {"harvest_start", "reload", "reloaded", "stopping", "abandoned"} <= {e.get("event") for e in events}
        start = next(e for e in events if e.get("event") == "harvest_start")
        assert (start["source"], start["kind"], start["level"]) == ("lab", "scheduled", "info")
        # Page 1 and its checkpoint are in; page 2 was never committed.
        assert len(stored_ids(data, "lab")) == 10
        with Store(data / "harvester.sqlite") as store:
            (cp,) = store.checkpoints("lab")
            assert cp.pages == 1 and cp.token

        d2 = daemons(cfg, data, "lab", log=tmp_path / "daemon2.log")
        wait_for(lambda: runs(data, "lab")[-1]["status"] == "ok", 15, "the resumed harvest")
        assert sorted(stored_ids(data, "lab")) == sorted(r.identifier for r in server.records)
        pages = Counter(r.params.get("resumptionToken") for r in list(server.requests) if r.verb == "ListRecords")
        assert pages[None] == 1  # page 1 was not fetched again: the harvest resumed
        assert d2.terminate() < 5


def test_reharvest_without_daemon_runs_here_and_full_finds_vanished_records(tmp_path):
    with OAIServer(make_records(30, seed=5), page_size=10, deleted_record="no") as server:
        cfg = daemon_config(tmp_path, {"lab": {"url": server.url}})
        data = tmp_path / "data"
        first = cli(cfg, data, "reharvest", "lab")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "handed to the running daemon" not in first.stdout
        assert len(stored_ids(data, "lab")) == 30
        gone = [server.records[3].identifier, server.records[17].identifier]
        server.records = [r for r in server.records if r.identifier not in gone]
        full = cli(cfg, data, "reharvest", "lab", "--full", "--json")
        assert full.returncode == 0, full.stdout + full.stderr
        result = json.loads(full.stdout)
        assert result["handled_by"] == "cli" and result["result"]["vanished"] == 2
        with Store(data / "harvester.sqlite") as store:
            assert all(store.get_record("lab", i).deleted for i in gone)
        assert cli(cfg, data, "reharvest", "lab", "--full", "--from", "2024-01-01").returncode == 2
        assert cli(cfg, data, "reharvest", "nope").returncode == 2


# -- in process ------------------------------------------------------------------------

def test_index_failure_never_stops_the_daemon(tmp_path):
    """The real sync path against an Elasticsearch that is not there."""
    from harvester.cli import AppContext
    from harvester.index.sync import sync_after_harvest

    with OAIServer(make_records(20, seed=6), page_size=10) as server:
        cfg = daemon_config(tmp_path, {"lab": {"url": server.url}}, schedule="every 1s",
                           top={"es_url": refused_url().removesuffix("/oai"), "ontology": str(PANET_OWL)})
        app = AppContext(str(cfg), {"data_dir": tmp_path / "data"})
        settings = app.settings
        daemon = Daemon(app.reload, ["lab"], listen="127.0.0.1:0", sync=lambda: sync_after_harvest(app))
        thread = threading.Thread(target=daemon.run, name="daemon-under-test")
        thread.start()
        try:
            wait_for(lambda: len([r for r in runs(settings.data_dir, "lab") if r["status"] == "ok"]) >= 2, 30,
                     "two harvests despite the unreachable index")
            wait_for(lambda: (daemon.metrics.registry.get_sample_value(
                "pan_harvester_index_sync_failures_total") or 0) >= 2, 30, "two failed syncs counted")
            code, health = daemon.health()
            assert code == 200 and health["sources"][0]["healthy"]
            assert "Elasticsearch" in health["index"]["last_error"], health["index"]
            assert read_daemon_state(settings.data_dir)["lab"]["schedule"] == "every 1s"
        finally:
            daemon.request_stop()
            thread.join(15)
        assert not thread.is_alive() and daemon.abandoned == 0
        assert daemon_pid(settings.data_dir) is None
        with Store(settings.db_path) as store:  # the store kept every record for the next sync
            assert store.counts("lab") == (20, 0)


def test_a_broken_configuration_on_reload_keeps_the_running_one(tmp_path):
    cfg = daemon_config(tmp_path, {"lab": {"url": "http://127.0.0.1:9/oai", "schedule": "0 0 1 1 *"}})
    overrides = {"data_dir": tmp_path / "data"}
    daemon = Daemon(lambda: load_settings(cfg, environ={}, overrides=overrides), ["lab"], listen="",
                    poll_interval=0.05)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        wait_for(lambda: read_daemon_state(tmp_path / "data"), 5, "the daemon")
        cfg.write_text(cfg.read_text() + '[sources.lab]\nschedule = "every now and then"\n')
        daemon.request_reload()
        time.sleep(0.3)
        assert thread.is_alive() and daemon.settings.sources["lab"].schedule == "0 0 1 1 *"
        daemon_config(tmp_path, {"lab": {"url": "http://127.0.0.1:9/oai", "schedule": "every 7h"}})
        daemon.request_reload()
        wait_for(lambda: read_daemon_state(tmp_path / "data")["lab"]["schedule"] == "every 7h", 5, "the reload")
    finally:
        daemon.request_stop()
        thread.join(10)


def test_one_daemon_per_data_directory(tmp_path):
    settings = load_settings(daemon_config(tmp_path, {"lab": {"url": "http://127.0.0.1:9/oai",
                                                             "schedule": "0 0 1 1 *"}}),
                             environ={}, overrides={"data_dir": tmp_path / "data"})
    first = Daemon(lambda: settings, ["lab"], listen="")
    thread = threading.Thread(target=first.run)
    thread.start()
    try:
        wait_for(lambda: daemon_pid(settings.data_dir) == os.getpid(), 5, "the first daemon")
        from harvester.errors import LockedError

        with pytest.raises(LockedError, match="already runs"):
            Daemon(lambda: settings, ["lab"], listen="").run()
        state = wait_for(lambda: read_daemon_state(settings.data_dir), 5, "the state file")
        trigger = make_trigger("0 0 1 1 *", 0)
        expected = trigger.get_next_fire_time(None, datetime.now(trigger.timezone))
        assert state["lab"]["next_run"] == expected.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert state["lab"]["running"] == []
    finally:
        first.request_stop()
        thread.join(10)


# -- pure parts ----------------------------------------------------------------------------

@pytest.mark.parametrize("crontab, aps", [
    ("*", "*"), ("1-5", "mon-fri"), ("0", "sun"), ("7", "sun"), ("0-6", "*"), ("0-2", "sun,mon-tue"),
    ("1,3,5", "mon,wed,fri"), ("mon-fri", "mon-fri"), ("*/2", "*/2"), ("6", "sat"),
])
def test_cron_day_of_week_counts_from_sunday(crontab, aps):
    assert _cron_day_of_week(crontab) == aps


def test_triggers_from_schedules():
    interval = make_trigger("every 6h", 300)
    assert isinstance(interval, IntervalTrigger) and interval.interval == timedelta(hours=6)
    assert interval.jitter == 300
    cron = make_trigger("30 3 * * 1-5", 0)
    assert isinstance(cron, CronTrigger) and cron.jitter is None
    # 2025-01-04 is a Saturday: weekdays only means Monday the 6th, 03:30.
    sat = datetime(2025, 1, 4, 12, 0, tzinfo=cron.timezone)
    fire = cron.get_next_fire_time(None, sat)
    assert (fire.weekday(), fire.day, fire.hour, fire.minute) == (0, 6, 3, 30)


def test_first_run_time_continues_the_schedule_across_restarts():
    now = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert first_run_time("every 6h", last_started=None, unfinished=False, jitter=0, now=now) == now
    assert first_run_time("every 6h", last_started="2025-05-01T10:00:00Z", unfinished=False, jitter=0,
                          now=now) == datetime(2025, 5, 1, 16, 0, tzinfo=UTC)
    assert first_run_time("every 6h", last_started="2025-04-30T01:00:00Z", unfinished=False, jitter=0,
                          now=now) == now  # overdue: now
    # An interrupted harvest resumes soon, whatever the schedule; jitter spreads the sources out.
    soon = first_run_time("0 3 * * *", last_started="2025-05-01T03:00:00Z", unfinished=True, jitter=60, now=now)
    assert now <= soon <= now + timedelta(seconds=60)
    assert first_run_time("0 3 * * *", last_started=None, unfinished=False, jitter=60, now=now) is None


def test_handoff_claim_withdraw_and_requeue(tmp_path):
    a = handoff.submit(tmp_path, "ill", HarvestRequest(from_="2025-01-01"))
    b = handoff.submit(tmp_path, "esrf", HarvestRequest(full=True))
    assert handoff.withdraw(tmp_path, b.id)  # nobody had claimed it
    claimed = handoff.claim_pending(tmp_path)
    assert [(r.id, r.source, r.harvest_request()) for r in claimed] == [
        (a.id, "ill", HarvestRequest(from_="2025-01-01"))]
    assert not handoff.withdraw(tmp_path, a.id)  # too late: the daemon has it
    assert handoff.claim_pending(tmp_path) == []
    assert handoff.requeue_claimed(tmp_path) == 1  # a daemon died with it: the next one takes it
    (again,) = handoff.claim_pending(tmp_path)
    handoff.finish(tmp_path, again.id, {"status": "ok"})
    assert handoff.result_of(tmp_path, a.id) == {"status": "ok"}
    assert not handoff.is_claimed(tmp_path, a.id)
    assert sorted(p.name for p in handoff.requests_dir(tmp_path).iterdir()) == [f"{a.id}.result.json"]


def test_a_bad_request_file_is_answered_as_failed_and_the_good_ones_go_on(tmp_path):
    good = handoff.submit(tmp_path, "ill", HarvestRequest())
    folder = handoff.requests_dir(tmp_path)
    # Written by hand, or by an older version that did not check its dates.
    (folder / "20260101T000000000000-aaaaaa.request.json").write_text(
        '{"id": "x", "source": "ill", "from_": "2025-02-30"}')
    (folder / "20260101T000000000000-bbbbbb.request.json").write_text('{"source": ')
    (claimed,) = handoff.claim_pending(tmp_path)
    assert claimed.id == good.id
    bad_date = handoff.result_of(tmp_path, "20260101T000000000000-aaaaaa")
    assert bad_date["status"] == "failed" and "'2025-02-30' is not a date" in bad_date["error"]
    assert handoff.result_of(tmp_path, "20260101T000000000000-bbbbbb")["status"] == "failed"


def test_no_daemon_no_state(tmp_path):
    assert daemon_pid(tmp_path) is None and read_daemon_state(tmp_path) is None
    (tmp_path / "daemon.json").write_text('{"sources": {"x": {}}}')  # left over by a dead daemon
    (tmp_path / "daemon.lock").write_text("12345\n")
    assert read_daemon_state(tmp_path) is None
