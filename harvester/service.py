"""What the daemon shows the outside: `GET /health` (JSON) and `GET /metrics`
(Prometheus text), served by the standard library's HTTP server in a thread.

Metrics live in a registry of their own, not prometheus-client's global one,
so two daemons in one test process (or a library user's own metrics) never
collide. Counters and histograms are updated as harvests happen; gauges that
describe the present (health, next run, index lag) are read at scrape time
from the daemon and the store, so they are never stale.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harvester.harvest import SourceResult
from harvester.store import Store

log = logging.getLogger(__name__)

PAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HARVEST_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600)


def iso_to_epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Metrics:
    """The daemon's Prometheus series, labelled by source."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.harvested = Counter("pan_harvester_records_harvested", "Records new or updated in the store.",
                                 ["source"], registry=r)
        self.deleted = Counter("pan_harvester_records_deleted", "Records marked deleted (by the server or "
                               "because a full sweep no longer lists them).", ["source"], registry=r)
        self.kept_aside = Counter("pan_harvester_records_kept_aside", "Malformed records or pages kept "
                                  "aside for inspection.", ["source"], registry=r)
        self.retries = Counter("pan_harvester_http_retries", "HTTP requests retried (timeouts, 429, 5xx, "
                               "broken connections).", ["source"], registry=r)
        self.harvests = Counter("pan_harvester_harvests", "Harvests finished, by outcome.",
                                ["source", "status"], registry=r)
        self.index_sync_failures = Counter("pan_harvester_index_sync_failures",
                                           "Index syncs after a harvest that failed.", registry=r)
        self.page_seconds = Histogram("pan_harvester_page_seconds", "Time from asking for a page to "
                                      "having it committed.", ["source"], buckets=PAGE_BUCKETS, registry=r)
        self.harvest_seconds = Histogram("pan_harvester_harvest_seconds", "Duration of a harvest.",
                                         ["source"], buckets=HARVEST_BUCKETS, registry=r)

    def declare(self, source: str) -> None:
        """Make a source's series exist (at zero) before its first harvest."""
        for counter in (self.harvested, self.deleted, self.kept_aside, self.retries):
            counter.labels(source)
        self.page_seconds.labels(source)
        self.harvest_seconds.labels(source)

    def observe(self, result: SourceResult) -> None:
        s = result.source
        self.harvested.labels(s).inc(result.records)
        self.deleted.labels(s).inc(result.deleted)
        self.kept_aside.labels(s).inc(result.kept_aside)
        self.harvests.labels(s, result.status).inc()
        if result.status != "skipped":
            self.harvest_seconds.labels(s).observe(result.seconds)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Gauges read at scrape time: per source health, last success, next run,
    running harvests, and how far the index is behind the store."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], db_path: Path, index_name: Callable[[], str]
                 ) -> None:
        self._snapshot = snapshot
        self._db_path = db_path
        self._index_name = index_name
        self._store: Store | None = None
        self._lock = threading.Lock()  # scrapes may come in parallel; the Store is one connection

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: the registry must not scrape the store at registration

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        healthy = GaugeMetricFamily("pan_harvester_source_healthy",
                                    "1 when the last decisive harvest of the source succeeded.", labels=["source"])
        running = GaugeMetricFamily("pan_harvester_harvest_running", "Harvests of the source running or "
                                    "waiting for its lock.", labels=["source"])
        success = GaugeMetricFamily("pan_harvester_last_success_timestamp_seconds",
                                    "When the last successful harvest of the source finished.", labels=["source"])
        next_run = GaugeMetricFamily("pan_harvester_next_run_timestamp_seconds",
                                     "When the next scheduled harvest of the source is due.", labels=["source"])
        for name, view in sorted(snap["sources"].items()):
            healthy.add_metric([name], 1.0 if view["healthy"] else 0.0)
            running.add_metric([name], float(len(view["running"])))
            if (at := iso_to_epoch(view["last_success"])) is not None:
                success.add_metric([name], at)
            if (at := iso_to_epoch(view["next_run"])) is not None:
                next_run.add_metric([name], at)
        yield from (healthy, running, success, next_run)
        yield from self._index_lag(list(snap["sources"]))

    def _index_lag(self, sources: list[str]) -> Iterator[Metric]:
        name = self._index_name()
        lag = GaugeMetricFamily("pan_harvester_index_lag", "Changes in the store the index has not taken "
                                "yet (records written after the index position).", labels=["index", "source"])
        if not self._db_path.exists():
            return
        with self._lock:
            if self._store is None:
                self._store = Store(self._db_path)
            store = self._store
            position = store.index_position(name)
            rows = store.count_changes_by_source(position)
        for source in sources:
            lag.add_metric([name, source], float(rows.get(source, 0)))
        yield lag

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def split_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9464' -> ('127.0.0.1', 9464); '[::1]:9464' -> ('::1', 9464)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class StatusServer:
    """`/health` and `/metrics` on HOST:PORT (port 0 picks a free one)."""

    def __init__(self, listen: str, health: Callable[[], tuple[int, dict[str, Any]]],
                 metrics: Callable[[], bytes]) -> None:
        host, port = split_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self._httpd = Server((host, port), _handler(health, metrics))
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="status-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def start(self) -> str:
        self._thread.start()
        return self.address

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(health: Callable[[], tuple[int, dict[str, Any]]], metrics: Callable[[], bytes]
             ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pan-harvester"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/health":
                code, body = health()
                self._send(code, "application/json", json.dumps(body, indent=2, default=str).encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics())
            elif path == "/":
                self._send(200, "text/plain; charset=utf-8", b"pan-harvester: see /health and /metrics\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # Monitoring scrapes every few seconds; access lines would drown the journal.
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
