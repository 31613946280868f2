"""HTTP done once: one session per host, retries, Retry-After, politeness.

Every request the harvester sends goes through `HTTPClient.get`. Per host it
keeps one `requests.Session` (keep-alive, gzip), lets one request run at a time
and spaces requests by the host's delay, so sources that share a host (a
facility and DataCite's provider, two sets of one server) never hammer it in
parallel. Retries, with jittered exponential backoff, cover connection errors,
timeouts, bodies cut short, 429 and 5xx; a server's `Retry-After` (seconds or
an HTTP date, capped) takes precedence over the backoff. 401, 403, 404 and 410
stop at once: retrying will not change them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from harvester import __version__
from harvester.config import HTTPSettings
from harvester.errors import FatalHTTPError, Interrupted, TransientHTTPError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 509, 520, 521, 522, 523, 524})
_TRANSIENT_EXC = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass
class Response:
    url: str
    status: int
    content: bytes
    headers: Mapping[str, str]


def parse_retry_after(value: str | None, *, now: datetime | None = None,
                      cap: float = 900.0) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date
    (RFC 9110 §10.2.3). None when absent or unreadable; never negative; capped,
    because a server asking for a day would stall a whole harvest run."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), cap)


@dataclass
class _Host:
    session: requests.Session
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_allowed: float = 0.0


class HTTPClient:
    """Thread-safe: share one client between every harvest of a process."""

    def __init__(self, settings: HTTPSettings | None = None, *, contact: str | None = None,
                 user_agent: str | None = None, stop: threading.Event | None = None,
                 host_delays: Mapping[str, float] | None = None,
                 on_retry: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings or HTTPSettings()
        self.stop = stop or threading.Event()
        self.on_retry = on_retry
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()
        self._host_delays = dict(host_delays or {})
        self.headers = {
            "User-Agent": user_agent or f"pan-harvester/{__version__}",
            "Accept-Encoding": "gzip, deflate",
            "Accept": "text/xml, application/xml;q=0.9, */*;q=0.1",
        }
        if contact:
            # RFC 9110 §10.1.2: who to write to about this robot.
            self.headers["From"] = contact
        self.requests_sent = 0

    def set_host_delay(self, url: str, delay: float) -> None:
        self._host_delays[urlsplit(url).netloc] = delay

    def _host(self, netloc: str) -> _Host:
        with self._hosts_lock:
            host = self._hosts.get(netloc)
            if host is None:
                session = requests.Session()
                session.headers.update(self.headers)
                # Retries are ours (they honour Retry-After and the stop event);
                # urllib3's own would hide them.
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                host = self._hosts[netloc] = _Host(session)
            return host

    def close(self) -> None:
        with self._hosts_lock:
            for host in self._hosts.values():
                host.session.close()
            self._hosts.clear()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.stop.wait(seconds):
            raise Interrupted("stopped while waiting to retry")

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff * (2 ** attempt), self.settings.backoff_max)
        return base * random.uniform(0.5, 1.5)

    def get(self, url: str, params: Mapping[str, str] | None = None) -> Response:
        """GET with retries. Returns a 2xx response, or raises FatalHTTPError /
        TransientHTTPError (retries exhausted) / Interrupted."""
        netloc = urlsplit(url).netloc
        host = self._host(netloc)
        delay = self._host_delays.get(netloc, self.settings.delay)
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        last_problem = ""
        for attempt in range(self.settings.retries + 1):
            if self.stop.is_set():
                raise Interrupted("stopped before the request")
            wait: float | None = None
            with host.lock:  # one request at a time per host
                self._sleep(host.next_allowed - time.monotonic())
                try:
                    resp = host.session.get(url, params=params, timeout=timeout)
                    content = resp.content  # read the body inside the try: it may be cut short
                except _TRANSIENT_EXC as exc:
                    resp = None
                    last_problem = f"{type(exc).__name__}: {exc}"
                finally:
                    self.requests_sent += 1
                    host.next_allowed = time.monotonic() + delay
            if resp is not None:
                status = resp.status_code
                full_url = resp.url
                if 200 <= status < 300:
                    return Response(full_url, status, content, resp.headers)
                # Any other 4xx (400, 401, 403, 404, 410, 451...) is about the request: not retried.
                if 400 <= status < 500 and status not in RETRY_STATUS:
                    raise FatalHTTPError(f"HTTP {status} {resp.reason} from {full_url}: not retried",
                                         url=full_url, status=status)
                last_problem = f"HTTP {status} {resp.reason}"
                wait = parse_retry_after(resp.headers.get("Retry-After"),
                                         cap=self.settings.retry_after_max)
            if attempt == self.settings.retries:
                break
            if wait is None:
                wait = self._backoff(attempt)
            log.warning("%s from %s; retry %d/%d in %.1fs", last_problem, netloc, attempt + 1,
                        self.settings.retries, wait)
            if self.on_retry:
                self.on_retry(netloc, last_problem)
            self._sleep(wait)
        raise TransientHTTPError(
            f"{last_problem} from {url} after {self.settings.retries + 1} attempts", url=url)
