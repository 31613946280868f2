"""A real OAI-PMH 2.0 server on 127.0.0.1, with faults injected on purpose.

Tests and benchmarks harvest it over real HTTP (stdlib ``ThreadingHTTPServer``
in a thread, HTTP/1.1 keep-alive, gzip on request)::

    with OAIServer(make_records(1000), page_size=100) as server:
        server.faults.append(Status(503, retry_after="2"))
        harvest(server.url)
        assert [r.status for r in server.requests][:2] == [503, 200]

What it serves: the six verbs over GET and POST (form), selective harvesting
(``from``/``until`` inclusive, checked against ``granularity``; ``set`` with
``a:b`` hierarchy), ``deletedRecord`` no/transient/persistent, stateless
resumption tokens (re-sending one gives the same page again) carrying
``cursor``, ``completeListSize`` and ``expirationDate`` and enforced expiry,
an empty ``resumptionToken`` element on the last page of a multi-page list,
and every OAI error a harvester can meet.

Three things a test controls:

* ``server.now``: the server's clock (an aware UTC datetime). ``responseDate``,
  token expiry and the datestamp `update`/`delete` give come from it, never
  from the machine's clock. It does not move unless a test moves it
  (`advance`). The HTTP ``Date`` header is real time, since a client
  compares a ``Retry-After`` HTTP-date with it (`http_date` builds one).
* ``server.records``: a list of frozen `FakeRecord`; add, replace, delete
  between harvests (or use `add`/`update`/`delete`). Records are served in
  list order, each page cut from the records matching the request.
* ``server.faults``: a queue of `Fault` objects. On each request every fault
  that could apply (right verb, and e.g. a resumed request for
  `ExpiredToken`) counts it; the first whose trigger holds (``nth`` such
  request, ``page`` number, default: the next one) fires, and is removed once
  it has fired ``times`` times (``times=None``: forever). Fired faults are
  appended to ``server.fired``.

``server.requests`` logs every request as ``(verb, params, status)`` (status 0
when the connection was dropped without a complete response); each entry
also carries ``oai_error``, ``identifiers`` served, ``token`` sent back and
the ``fault`` that fired.

Command line, for benchmarks and subprocess tests::

    python -m tests.oaiserver --records 100000 --page-size 500

prints its base URL on one line and serves until killed.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import gzip
import itertools
import re
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape, quoteattr

from tests.recordgen import FORMATS, FakeRecord, make_records

DAY = "YYYY-MM-DD"
SECONDS = "YYYY-MM-DDThh:mm:ssZ"
OAI_NS = "http://www.openarchives.org/OAI/2.0/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
LIST_VERBS = ("ListRecords", "ListIdentifiers")
VERBS = ("Identify", "ListMetadataFormats", "ListSets", "GetRecord", *LIST_VERBS)
_ARGS = {  # verb -> (required, optional); resumptionToken is handled apart
    "Identify": ((), ()),
    "ListMetadataFormats": ((), ("identifier",)),
    "ListSets": ((), ("resumptionToken",)),
    "GetRecord": (("identifier", "metadataPrefix"), ()),
    "ListRecords": (("metadataPrefix",), ("from", "until", "set")),
    "ListIdentifiers": (("metadataPrefix",), ("from", "until", "set")),
}
_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SECONDS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _stamp(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _full(datestamp: str) -> str:
    """A record datestamp at seconds granularity, for comparing as strings."""
    return datestamp + "T00:00:00Z" if len(datestamp) == 10 else datestamp


def http_date(seconds_from_now: float) -> str:
    """A ``Retry-After`` HTTP-date that many seconds after the real clock."""
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return email.utils.format_datetime(when, usegmt=True)


# --- faults -------------------------------------------------------------------


@dataclass
class _Ctx:
    """What a fault may look at: the request and the answer planned for it."""

    verb: str | None
    token: str | None
    outcome: _ListOutcome | _ErrorOutcome | bytes | None

    @property
    def page(self) -> int | None:
        return self.outcome.page if isinstance(self.outcome, _ListOutcome) else None

    @property
    def identifiers(self) -> list[str]:
        """The records on this page that have metadata (a fault can damage those)."""
        if isinstance(self.outcome, _ListOutcome):
            return [r.identifier for r in self.outcome.records if not r.deleted]
        return []


@dataclass(kw_only=True, eq=False)
class Fault:
    """Base of all faults: which requests it applies to and when it fires.

    verb: a verb, a tuple of verbs, or None for any request.
    nth: fire from the nth request this fault applies to (counted from when
         it was queued); None: from the first.
    page: fire only when serving this page of a list (1-based).
    times: how many times it fires before leaving the queue; None: forever.
    """

    verb: str | tuple[str, ...] | None = "ListRecords"
    nth: int | None = None
    page: int | None = None
    times: int | None = 1
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)
    hits: list[str] = field(default_factory=list, init=False)  # identifiers a fault damaged

    def applies(self, ctx: _Ctx) -> bool:
        verbs = (self.verb,) if isinstance(self.verb, str) else self.verb
        return verbs is None or ctx.verb in verbs

    def triggers(self, ctx: _Ctx) -> bool:
        return ((self.nth is None or self.seen >= self.nth)
                and (self.page is None or ctx.page == self.page))


@dataclass(kw_only=False, eq=False)
class Status(Fault):
    """Answer with this HTTP status (and Retry-After, seconds or HTTP-date).

    retry_after may be a callable, called when the fault fires, e.g.
    ``lambda: http_date(1)`` for a date one second after the response.
    """

    code: int = 503
    retry_after: str | Callable[[], str] | None = None
    body: bytes | None = None


@dataclass(kw_only=False, eq=False)
class DropConnection(Fault):
    """Close the socket with no response; mid_body: after the headers and half the body."""

    mid_body: bool = False


@dataclass(kw_only=False, eq=False)
class IllegalChars(Fault):
    """Put characters illegal in XML 1.0 into one record's title on the page.

    identifier: the record to damage (the fault waits for a page holding it);
    None: the first record with metadata on the page. as_refs: write them as
    character references (``&#x0B;``) instead of raw bytes.
    """

    chars: str = "\x0b\x1a\x00\ufffe"
    identifier: str | None = None
    as_refs: bool = False

    def applies(self, ctx: _Ctx) -> bool:
        ids = ctx.identifiers
        return super().applies(ctx) and bool(ids) and (
            self.identifier is None or self.identifier in ids)


@dataclass(kw_only=False, eq=False)
class BrokenPage(Fault):
    """A 200 whose XML is truncated mid-element (Content-Length matches)."""


@dataclass(kw_only=False, eq=False)
class BrokenRecord(Fault):
    """One record of a well-formed page is broken; the others are fine.

    kind: "no_title" (metadata is a bare ``<resource>`` with only an
    identifier), "no_header_identifier" (header without ``<identifier>``), or
    "empty_metadata" (``<metadata/>``). identifier: as for IllegalChars.
    """

    identifier: str | None = None
    kind: str = "no_title"

    def applies(self, ctx: _Ctx) -> bool:
        ids = ctx.identifiers
        return super().applies(ctx) and bool(ids) and (
            self.identifier is None or self.identifier in ids)


@dataclass(kw_only=False, eq=False)
class ExpiredToken(Fault):
    """Answer a resumed request with ``badResumptionToken``."""

    def applies(self, ctx: _Ctx) -> bool:
        return super().applies(ctx) and ctx.token is not None


@dataclass(kw_only=False, eq=False)
class LoopToken(Fault):
    """A resumed list request loops.

    repeat="token": the page asked for, but its token is the one just received.
    repeat="page": the previous page's records again, under a new token that
    leads back to the page asked for.
    """

    repeat: str = "token"

    def applies(self, ctx: _Ctx) -> bool:
        return super().applies(ctx) and ctx.token is not None and isinstance(
            ctx.outcome, _ListOutcome)


@dataclass(kw_only=False, eq=False)
class EmptyPageWithToken(Fault):
    """A list page with no records and a (new) token to the same position: legal."""

    def applies(self, ctx: _Ctx) -> bool:
        return super().applies(ctx) and isinstance(ctx.outcome, _ListOutcome)


@dataclass(kw_only=False, eq=False)
class PaddedToken(Fault):
    """Write the page's resumptionToken with whitespace around it, as an XML
    pretty-printer does; the last page's empty token then holds only
    whitespace. The token is the trimmed text: the server takes no other."""

    pad: str = "\n    "


@dataclass(kw_only=False, eq=False)
class ErrorCode(Fault):
    """Answer with ``<error code="...">``, also a code the protocol does not
    define (servers invent "tooBusy" and the like)."""

    code: str = "tooBusy"
    message: str = "the repository is busy; try again in a minute"


@dataclass(kw_only=False, eq=False)
class Slow(Fault):
    """Delay the response by `seconds`; stream: send the body in pieces over that time."""

    seconds: float = 1.0
    stream: bool = False


# --- what a request gets ------------------------------------------------------


@dataclass
class _ListOutcome:
    verb: str
    args: tuple[str, str | None, str | None, str | None]  # prefix, set, from, until
    matches: list[FakeRecord]
    cursor: int
    page_size: int
    token: str | None  # None: no element; "": the empty last one
    records: list[FakeRecord] = field(default_factory=list)

    @property
    def page(self) -> int:
        return self.cursor // max(self.page_size, 1) + 1


@dataclass
class _ErrorOutcome:
    code: str
    message: str
    echo: bool = True  # badVerb/badArgument answers must not echo the arguments


class Logged(tuple):
    """One request: a ``(verb, params, status)`` tuple with details as attributes.

    status 0: the connection was dropped without a complete response.
    oai_error: the error code answered, if any. identifiers: the records
    served. token: the resumptionToken sent back (None: none, "": the empty
    last one). fault: the fault that fired on it, if any. at: when it was
    answered (time.monotonic()).
    """

    oai_error: str | None
    identifiers: tuple[str, ...]
    token: str | None
    fault: Fault | None
    at: float

    def __new__(cls, verb: str | None, params: dict[str, str], status: int, *,
                oai_error: str | None = None, identifiers: tuple[str, ...] = (),
                token: str | None = None, fault: Fault | None = None) -> Logged:
        obj = super().__new__(cls, (verb, params, status))
        obj.oai_error, obj.identifiers, obj.token, obj.fault = oai_error, identifiers, token, fault
        obj.at = time.monotonic()
        return obj

    @property
    def verb(self) -> str | None:
        return self[0]

    @property
    def params(self) -> dict[str, str]:
        return self[1]

    @property
    def status(self) -> int:
        return self[2]


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: list[tuple[str, str]]
    log: Logged
    drop: str | None = None  # "now" | "mid"
    delay: float = 0.0
    stream: bool = False


_versions = itertools.count(1)


class RecordList(list):
    """A list that stamps each change with a process-wide number, so the
    server's caches know when (and for which list) to recompute."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.version = next(_versions)

    def _changed(self) -> None:
        self.version = next(_versions)


def _mutator(name: str) -> Any:
    base = getattr(list, name)

    def method(self: RecordList, *args: Any, **kwargs: Any) -> Any:
        result = base(self, *args, **kwargs)
        self._changed()
        return self if name in ("__iadd__", "__imul__") else result

    method.__name__ = name
    return method


for _name in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend",
              "insert", "pop", "remove", "clear", "sort", "reverse"):
    setattr(RecordList, _name, _mutator(_name))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (or a stop mid-response) is normal here; the rest is not."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


# --- the server -----------------------------------------------------------------


class OAIServer:
    """An OAI-PMH repository over HTTP on 127.0.0.1; `start`/`stop` or ``with``."""

    def __init__(self, records: Iterable[FakeRecord] = (), *, page_size: int = 100,
                 granularity: str = SECONDS, deleted_record: str = "persistent",
                 earliest_datestamp: str | None = None, gzip: bool = True,
                 gzip_level: int = 1, formats: Iterable[str] | None = None,
                 set_names: dict[str, str] | None = None,
                 token_ttl: timedelta | None = timedelta(hours=1),
                 now: datetime | str | None = None, port: int = 0,
                 repository_name: str = "Fake PaN facility repository") -> None:
        if granularity not in (DAY, SECONDS):
            raise ValueError(f"granularity must be {DAY!r} or {SECONDS!r}")
        if deleted_record not in ("no", "transient", "persistent"):
            raise ValueError("deleted_record must be no, transient or persistent")
        self.records = records  # through the property: becomes a RecordList
        self.page_size = page_size
        self.granularity = granularity
        self.deleted_record = deleted_record
        self.earliest_datestamp = earliest_datestamp
        self.gzip = gzip
        self.gzip_level = gzip_level
        self.formats = tuple(formats) if formats is not None else None
        self.set_names = set_names
        self.token_ttl = token_ttl
        self.repository_name = repository_name
        self.faults: list[Fault] = []
        self.fired: list[Fault] = []
        self.requests: list[Logged] = []
        # (client address, request headers) of every request: who asked, over which connection.
        self.clients: list[tuple[tuple[str, int], dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0  # most requests being answered at one moment
        if now is None:
            latest = max((_full(r.datestamp) for r in self._records),
                         default="2024-12-31T00:00:00Z")
            now = datetime.strptime(latest, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=timezone.utc) + timedelta(days=1)
        self.now = now
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._nonce = itertools.count(1)
        self._match_cache: OrderedDict[tuple, list[FakeRecord]] = OrderedDict()
        # (records version, by identifier, setSpecs, metadataPrefixes)
        self._derived: tuple[int, dict[str, FakeRecord], tuple[str, ...],
                             tuple[str, ...]] | None = None
        self._headers: dict[tuple[FakeRecord, bool], bytes] = {}

    # -- state a test changes --

    @property
    def records(self) -> RecordList:
        return self._records

    @records.setter
    def records(self, value: Iterable[FakeRecord]) -> None:
        self._records = RecordList(value)

    @property
    def now(self) -> datetime:
        return self._now

    @now.setter
    def now(self, value: datetime | str) -> None:
        if isinstance(value, str):
            value = datetime.strptime(_full(value), "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=timezone.utc)
        if value.tzinfo is None:
            raise ValueError("server.now must be timezone-aware (UTC)")
        self._now = value.astimezone(timezone.utc).replace(microsecond=0)

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move the server clock forward (``advance(3600)``, ``advance(days=1)``)."""
        self.now = self._now + timedelta(seconds=seconds, **delta)
        return self._now

    def add(self, *records: FakeRecord) -> None:
        self._records.extend(records)

    def update(self, identifier: str, **changes: Any) -> FakeRecord:
        """Replace a record's fields; its datestamp becomes ``now`` unless given."""
        changes.setdefault("datestamp", _stamp(self._now))
        for i, rec in enumerate(self._records):
            if rec.identifier == identifier:
                self._records[i] = new = replace(rec, **changes)
                return new
        raise KeyError(identifier)

    def delete(self, identifier: str, **changes: Any) -> FakeRecord:
        """Mark a record deleted, datestamped ``now`` unless given."""
        return self.update(identifier, deleted=True, **changes)

    # -- lifecycle --

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oai"

    def start(self) -> OAIServer:
        httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        httpd.oai = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"oaiserver:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes Slow faults
        self._httpd.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:  # idle keep-alive handlers would otherwise wait for the client
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> OAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- derived views of the records (recomputed when the list changes) --

    def _views(self) -> tuple[dict[str, FakeRecord], tuple[str, ...], tuple[str, ...]]:
        version = self._records.version
        d = self._derived
        if d is None or d[0] != version:
            by_id = {r.identifier: r for r in self._records}
            sets = tuple(sorted({s for r in self._records for s in r.sets}))
            prefixes = tuple(dict.fromkeys(r.prefix for r in self._records)) or ("oai_datacite",)
            d = self._derived = (version, by_id, sets, prefixes)
        return d[1], d[2], d[3]

    def _formats(self) -> tuple[str, ...]:
        return self.formats if self.formats is not None else self._views()[2]

    def _visible(self, rec: FakeRecord) -> bool:
        return not (rec.deleted and self.deleted_record == "no")

    def _matches(self, prefix: str, set_: str | None, lo: str | None, hi: str | None,
                 ) -> list[FakeRecord]:
        key = (self._records.version, self.deleted_record, prefix, set_, lo, hi)
        hit = self._match_cache.get(key)
        if hit is not None:
            return hit
        out = []
        for r in self._records:
            if r.prefix != prefix or not self._visible(r):
                continue
            if set_ is not None and not any(s == set_ or s.startswith(set_ + ":") for s in r.sets):
                continue
            if lo is not None or hi is not None:
                stamp = _full(r.datestamp)
                if (lo is not None and stamp < lo) or (hi is not None and stamp > hi):
                    continue
            out.append(r)
        self._match_cache[key] = out
        while len(self._match_cache) > 16:
            self._match_cache.popitem(last=False)
        return out

    # -- tokens: stateless, so re-sending one gives the same page --

    def _token(self, verb: str, args: tuple[str, str | None, str | None, str | None],
               cursor: int, nonce: int = 0) -> str:
        expiry = int((self._now + self.token_ttl).timestamp()) if self.token_ttl else 0
        fields = [verb, *(a or "" for a in args), str(cursor), str(expiry), str(nonce)]
        return base64.urlsafe_b64encode("\x1f".join(fields).encode()).decode().rstrip("=")

    def _untoken(self, verb: str, token: str
                 ) -> tuple[tuple[str, str | None, str | None, str | None], int] | _ErrorOutcome:
        if token != token.strip():  # base64 would skip the whitespace; a real server's lookup would not
            return _ErrorOutcome("badResumptionToken", f"not a token of this server: {token!r}")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            t_verb, prefix, set_, lo, hi, cursor, expiry, _nonce = raw.split("\x1f")
            cursor_n, expiry_n = int(cursor), int(expiry)
        except ValueError:
            return _ErrorOutcome("badResumptionToken", f"not a token of this server: {token!r}")
        if t_verb != verb:
            return _ErrorOutcome("badResumptionToken", f"token was issued for {t_verb}")
        if expiry_n and self._now.timestamp() > expiry_n:
            return _ErrorOutcome("badResumptionToken", "the resumptionToken has expired")
        return (prefix, set_ or None, lo or None, hi or None), cursor_n

    # -- OAI-PMH --

    def _date_arg(self, value: str, until: bool) -> str | _ErrorOutcome:
        if _DAY_RE.fullmatch(value):
            form = value + ("T23:59:59Z" if until else "T00:00:00Z")
        elif _SECONDS_RE.fullmatch(value):
            if self.granularity == DAY:
                return _ErrorOutcome("badArgument", f"{value!r} is finer than the granularity "
                                     f"{DAY}", echo=False)
            form = value
        else:
            return _ErrorOutcome("badArgument", f"{value!r} is not a datestamp", echo=False)
        try:
            datetime.strptime(form, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return _ErrorOutcome("badArgument", f"{value!r} is not a valid date", echo=False)
        return form

    def _list(self, verb: str, params: dict[str, str]) -> _ListOutcome | _ErrorOutcome:
        token = params.get("resumptionToken")
        if token is not None:
            decoded = self._untoken(verb, token)
            if isinstance(decoded, _ErrorOutcome):
                return decoded
            args, cursor = decoded
        else:
            args = (params["metadataPrefix"], params.get("set"), params.get("from"),
                    params.get("until"))
            cursor = 0
        prefix, set_, lo_arg, hi_arg = args
        if prefix not in self._formats():
            return _ErrorOutcome("cannotDisseminateFormat", f"no format {prefix!r} here")
        lo = hi = None
        if lo_arg is not None:
            lo = self._date_arg(lo_arg, until=False)
            if isinstance(lo, _ErrorOutcome):
                return lo
        if hi_arg is not None:
            hi = self._date_arg(hi_arg, until=True)
            if isinstance(hi, _ErrorOutcome):
                return hi
        if lo_arg is not None and hi_arg is not None:
            if len(lo_arg) != len(hi_arg):
                return _ErrorOutcome("badArgument", "from and until differ in granularity",
                                     echo=False)
            if lo > hi:  # type: ignore[operator]
                return _ErrorOutcome("badArgument", "from is later than until", echo=False)
        if set_ is not None and not self._views()[1] and self.set_names is None:
            return _ErrorOutcome("noSetHierarchy", "this repository has no sets")
        matches = self._matches(prefix, set_, lo, hi)  # type: ignore[arg-type]
        if not matches and token is None:
            return _ErrorOutcome("noRecordsMatch", "no records match the request")
        size = max(self.page_size, 1)
        end = cursor + size
        if end < len(matches):
            next_token: str | None = self._token(verb, args, end)
        elif token is not None or cursor > 0:
            next_token = ""  # the last page of a list that took more than one
        else:
            next_token = None
        return _ListOutcome(verb, args, matches, cursor, size, next_token, matches[cursor:end])

    def _dispatch(self, params: dict[str, str]
                  ) -> _ListOutcome | _ErrorOutcome | bytes:
        verb = params.get("verb")
        if verb not in VERBS:
            return _ErrorOutcome("badVerb", f"illegal verb {verb!r}", echo=False)
        required, optional = _ARGS[verb]
        given = set(params) - {"verb"}
        if "resumptionToken" in given and verb in LIST_VERBS:
            if given != {"resumptionToken"}:
                return _ErrorOutcome("badArgument", "resumptionToken is an exclusive argument",
                                     echo=False)
        else:
            missing = [a for a in required if a not in given]
            unknown = given - set(required) - set(optional)
            if missing or unknown:
                return _ErrorOutcome("badArgument", f"missing {missing}, not allowed "
                                     f"{sorted(unknown)}", echo=False)
        if verb in LIST_VERBS:
            return self._list(verb, params)
        if verb == "Identify":
            return self._identify()
        if verb == "ListMetadataFormats":
            return self._list_formats(params.get("identifier"))
        if verb == "ListSets":
            return self._list_sets(params.get("resumptionToken"))
        return self._get_record(params["identifier"], params["metadataPrefix"])

    def _identify(self) -> bytes:
        earliest = self.earliest_datestamp or min(
            (_full(r.datestamp) for r in self._records), default="2000-01-01T00:00:00Z")
        parts = [f"<Identify><repositoryName>{escape(self.repository_name)}</repositoryName>"
                 f"<baseURL>{escape(self.url)}</baseURL><protocolVersion>2.0</protocolVersion>"
                 "<adminEmail>oai-admin@example.org</adminEmail>"
                 f"<earliestDatestamp>{self._served_stamp(earliest)}</earliestDatestamp>"
                 f"<deletedRecord>{self.deleted_record}</deletedRecord>"
                 f"<granularity>{self.granularity}</granularity>"]
        if self.gzip:
            parts.append("<compression>gzip</compression>")
        parts.append('<description><oai-identifier xmlns="http://www.openarchives.org/OAI/2.0/'
                     'oai-identifier"><scheme>oai</scheme><repositoryIdentifier>example.org'
                     "</repositoryIdentifier><delimiter>:</delimiter><sampleIdentifier>"
                     "oai:example.org:10.5442/ni000001</sampleIdentifier></oai-identifier>"
                     "</description></Identify>")
        return "".join(parts).encode()

    def _list_formats(self, identifier: str | None) -> bytes | _ErrorOutcome:
        prefixes = self._formats()
        if identifier is not None:
            rec = self._views()[0].get(identifier)
            if rec is None or not self._visible(rec):
                return _ErrorOutcome("idDoesNotExist", f"no record {identifier!r}")
            prefixes = (rec.prefix,)
        parts = [b"<ListMetadataFormats>"]
        for p in prefixes:
            schema, ns = FORMATS.get(p, (f"http://example.org/{p}.xsd", f"http://example.org/{p}/"))
            parts.append(f"<metadataFormat><metadataPrefix>{escape(p)}</metadataPrefix>"
                         f"<schema>{schema}</schema><metadataNamespace>{ns}</metadataNamespace>"
                         "</metadataFormat>".encode())
        parts.append(b"</ListMetadataFormats>")
        return b"".join(parts)

    def _list_sets(self, token: str | None) -> bytes | _ErrorOutcome:
        if token is not None:  # all sets fit in one response; no token was ever issued
            return _ErrorOutcome("badResumptionToken", "ListSets never issues tokens")
        names = self.set_names if self.set_names is not None else {
            s: f"Set {s}" for s in self._views()[1]}
        if not names:
            return _ErrorOutcome("noSetHierarchy", "this repository has no sets")
        body = "".join(f"<set><setSpec>{escape(s)}</setSpec><setName>{escape(n)}</setName></set>"
                       for s, n in names.items())
        return f"<ListSets>{body}</ListSets>".encode()

    def _get_record(self, identifier: str, prefix: str) -> bytes | _ErrorOutcome:
        rec = self._views()[0].get(identifier)
        if rec is None or not self._visible(rec):
            return _ErrorOutcome("idDoesNotExist", f"no record {identifier!r}")
        if prefix != rec.prefix:
            return _ErrorOutcome("cannotDisseminateFormat", f"{identifier} has no {prefix!r}")
        return b"<GetRecord>" + b"".join(self._record_parts(rec, None)) + b"</GetRecord>"

    # -- rendering: pages are joined from bytes made once per record --

    def _served_stamp(self, datestamp: str) -> str:
        return datestamp[:10] if self.granularity == DAY else _full(datestamp)

    def _header(self, rec: FakeRecord) -> bytes:
        key = (rec, self.granularity == DAY)
        head = self._headers.get(key)
        if head is None:
            status = ' status="deleted"' if rec.deleted else ""
            sets = "".join(f"<setSpec>{escape(s)}</setSpec>" for s in rec.sets)
            head = self._headers[key] = (
                f"<header{status}><identifier>{escape(rec.identifier)}</identifier>"
                f"<datestamp>{self._served_stamp(rec.datestamp)}</datestamp>{sets}</header>"
            ).encode()
        return head

    def _record_parts(self, rec: FakeRecord, damage: Fault | None) -> list[bytes]:
        head = self._header(rec)
        if rec.deleted:
            return [b"<record>", head, b"</record>\n"]
        metadata = rec.metadata_xml
        if isinstance(damage, BrokenRecord):
            if damage.kind == "no_header_identifier":
                head = re.sub(rb"<identifier>.*?</identifier>", b"", head, count=1)
            elif damage.kind == "empty_metadata":
                return [b"<record>", head, b"<metadata/></record>\n"]
            else:
                doi = escape(rec.doi or rec.identifier).encode()
                metadata = (b'<resource><identifier identifierType="DOI">' + doi
                            + b"</identifier></resource>")
        elif isinstance(damage, IllegalChars):
            metadata = _inject(metadata, damage.chars, damage.as_refs)
        return [b"<record>", head, b"<metadata>", metadata, b"</metadata></record>\n"]

    def _render_list(self, out: _ListOutcome, fault: Fault | None) -> list[bytes]:
        target = None
        if isinstance(fault, (IllegalChars, BrokenRecord)):
            candidates = [r for r in out.records if not r.deleted]
            if fault.identifier is not None:
                candidates = [r for r in candidates if r.identifier == fault.identifier]
            if candidates:
                target = candidates[0].identifier
                fault.hits.append(target)
        parts = [f"<{out.verb}>\n".encode()]
        for rec in out.records:
            if out.verb == "ListIdentifiers":
                parts.append(self._header(rec))
            else:
                parts.extend(self._record_parts(rec, fault if rec.identifier == target else None))
        if out.token is not None:
            attrs = f' completeListSize="{len(out.matches)}" cursor="{out.cursor}"'
            if out.token and self.token_ttl:
                attrs += f' expirationDate="{_stamp(self._now + self.token_ttl)}"'
            text = f"{fault.pad}{out.token}{fault.pad}" if isinstance(fault, PaddedToken) else out.token
            parts.append(f"<resumptionToken{attrs}>{text}</resumptionToken>\n".encode())
        parts.append(f"</{out.verb}>".encode())
        return parts

    def _envelope(self, params: dict[str, str], echo: bool, inner: list[bytes]) -> bytes:
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in params.items()) if echo else ""
        head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<OAI-PMH xmlns="{OAI_NS}" '
                f'xmlns:xsi="{XSI_NS}" xsi:schemaLocation="{OAI_NS} '
                f'http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd">\n'
                f"<responseDate>{_stamp(self._now)}</responseDate>\n"
                f"<request{attrs}>{escape(self.url)}</request>\n").encode()
        return b"".join([head, *inner, b"\n</OAI-PMH>\n"])

    def _apply_list_fault(self, out: _ListOutcome, fault: Fault | None,
                          received: str | None) -> _ListOutcome:
        if isinstance(fault, EmptyPageWithToken):
            return replace(out, records=[], token=self._token(out.verb, out.args, out.cursor,
                                                              next(self._nonce)))
        if isinstance(fault, LoopToken) and received is not None:
            if fault.repeat == "page" and out.cursor >= out.page_size:
                back = out.cursor - out.page_size
                return replace(out, cursor=back, records=out.matches[back:out.cursor],
                               token=self._token(out.verb, out.args, out.cursor,
                                                 next(self._nonce)))
            return replace(out, token=received)
        return out

    def _pick_fault(self, ctx: _Ctx) -> Fault | None:
        with self._lock:
            chosen = None
            for fault in list(self.faults):
                if not fault.applies(ctx):
                    continue
                fault.seen += 1
                if chosen is None and fault.triggers(ctx):
                    chosen = fault
            if chosen is not None:
                chosen.fired += 1
                self.fired.append(chosen)
                if chosen.times is not None and chosen.fired >= chosen.times:
                    self.faults.remove(chosen)
            return chosen

    def handle(self, method: str, path: str, body: bytes, accept_encoding: str) -> _Reply:
        """Answer one HTTP request (the handler only moves bytes)."""
        split = urlsplit(path)
        query = body.decode("utf-8", "replace") if method == "POST" else split.query
        pairs = parse_qsl(query, keep_blank_values=True)
        params: dict[str, str] = {}
        duplicated = False
        for k, v in pairs:
            duplicated |= k in params
            params.setdefault(k, v)
        verb = params.get("verb")
        if split.path != "/oai":
            outcome: Any = None
        elif duplicated:
            outcome = _ErrorOutcome("badArgument", "an argument is repeated", echo=False)
        else:
            outcome = self._dispatch(params)
        received = params.get("resumptionToken") if verb in LIST_VERBS else None
        fault = self._pick_fault(_Ctx(verb, received, outcome))

        def log(status: int, **detail: Any) -> Logged:
            entry = Logged(verb, params, status, fault=fault, **detail)
            self.requests.append(entry)
            return entry

        if outcome is None and not isinstance(fault, Status):
            return _Reply(404, b"<html><body>404 Not Found</body></html>",
                          [("Content-Type", "text/html")], log(404))
        if isinstance(fault, Status):
            headers = [("Content-Type", "text/html; charset=utf-8")]
            if fault.retry_after is not None:
                retry_after = fault.retry_after
                headers.append(("Retry-After", retry_after() if callable(retry_after) else
                                retry_after))
            text = fault.body if fault.body is not None else (
                f"<html><body><h1>{fault.code}</h1></body></html>".encode())
            return _Reply(fault.code, text, headers, log(fault.code))
        if isinstance(fault, DropConnection):
            return _Reply(200, self._body(outcome, params, fault, received), [], log(0),
                          drop="mid" if fault.mid_body else "now")
        if isinstance(fault, ExpiredToken):
            outcome = _ErrorOutcome("badResumptionToken", "the resumptionToken has expired")
        elif isinstance(fault, ErrorCode):
            outcome = _ErrorOutcome(fault.code, fault.message)
        if isinstance(outcome, _ListOutcome):
            outcome = self._apply_list_fault(outcome, fault, received)
        data = self._body(outcome, params, fault, received)
        if isinstance(fault, BrokenPage):
            data = _truncate(data)
        headers = [("Content-Type", "text/xml; charset=utf-8")]
        if self.gzip and _wants_gzip(accept_encoding):
            data = gzip.compress(data, compresslevel=self.gzip_level, mtime=0)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Vary", "Accept-Encoding"))
        detail: dict[str, Any] = {}
        if isinstance(outcome, _ErrorOutcome):
            detail["oai_error"] = outcome.code
        elif isinstance(outcome, _ListOutcome):
            detail["identifiers"] = tuple(r.identifier for r in outcome.records)
            detail["token"] = outcome.token
        slow = fault if isinstance(fault, Slow) else None
        return _Reply(200, data, headers, log(200, **detail),
                      delay=slow.seconds if slow else 0.0, stream=bool(slow and slow.stream))

    def _body(self, outcome: Any, params: dict[str, str], fault: Fault | None,
              received: str | None) -> bytes:
        if isinstance(outcome, _ErrorOutcome):
            inner = [f'<error code="{outcome.code}">{escape(outcome.message)}</error>'.encode()]
            return self._envelope(params, outcome.echo, inner)
        if isinstance(outcome, _ListOutcome):
            return self._envelope(params, True, self._render_list(outcome, fault))
        return self._envelope(params, True, [outcome or b""])


def _wants_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        name, _, q = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            return q.strip().replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _inject(metadata: bytes, chars: str, as_refs: bool) -> bytes:
    """Put `chars` at the start of the title's text, or of the first element's."""
    bad = ("".join(f"&#x{ord(c):X};" for c in chars) if as_refs else chars).encode("utf-8")
    at = metadata.find(b"<title")
    at = metadata.find(b">", at if at >= 0 else 0)
    if at < 0 or metadata[at - 1:at] == b"/":
        return metadata + bad  # lands between elements: still illegal, still found
    return metadata[:at + 1] + bad + metadata[at + 1:]


def _truncate(data: bytes) -> bytes:
    """Cut inside an element's start tag a little past the middle of the page."""
    at = data.find(b"<", len(data) // 2)
    if at < 0:
        at = data.rfind(b"<")
    return data[:at + 3]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: harvesters reuse connections
    server_version = "FakeOAI/1.0"
    timeout = 30  # an idle keep-alive connection is closed after this

    @property
    def oai(self) -> OAIServer:
        return self.server.oai  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.oai._lock:
            self.oai._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.oai._lock:
                self.oai._conns.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the server keeps its own request log."""

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length))

    def _serve(self, body: bytes) -> None:
        oai = self.oai
        with oai._lock:
            oai.in_flight += 1
            oai.max_in_flight = max(oai.max_in_flight, oai.in_flight)
        try:
            self._answer(body)
        finally:
            with oai._lock:
                oai.in_flight -= 1

    def _answer(self, body: bytes) -> None:
        self.oai.clients.append((self.client_address, dict(self.headers.items())))
        reply = self.oai.handle(self.command, self.path, body,
                                self.headers.get("Accept-Encoding", ""))
        stopping = self.oai._stopping
        if reply.drop == "now":
            self.close_connection = True
            return
        if reply.delay and not reply.stream:
            stopping.wait(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.drop == "mid":
            self.wfile.write(reply.body[:len(reply.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if reply.stream and reply.delay:
            pieces = 10
            step = -(-len(reply.body) // pieces) or 1
            for i in range(0, len(reply.body), step):
                self.wfile.write(reply.body[i:i + step])
                self.wfile.flush()
                if stopping.wait(reply.delay / pieces):
                    break
        else:
            self.wfile.write(reply.body)


# --- command line ---------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.oaiserver",
                                 description="Serve generated OAI-PMH records on 127.0.0.1.")
    ap.add_argument("--records", type=int, default=1000, help="how many records to generate")
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    ap.add_argument("--page-size", type=int, default=100, help="records per page")
    ap.add_argument("--granularity", choices=(DAY, SECONDS), default=SECONDS)
    ap.add_argument("--deleted-record", choices=("no", "transient", "persistent"),
                    default="persistent")
    ap.add_argument("--deleted-every", type=int, default=0, help="every Nth record is deleted")
    ap.add_argument("--sets", default="pub,raw", help="comma-separated setSpecs ('' for none)")
    ap.add_argument("--prefix", choices=("oai_datacite", "oai_dc"), default="oai_datacite")
    ap.add_argument("--slow", type=float, default=0.0,
                    help="delay every ListRecords/ListIdentifiers response by SECONDS")
    ap.add_argument("--slow-stream", action="store_true",
                    help="with --slow: stream each body slowly instead of waiting first")
    ap.add_argument("--gzip-level", type=int, default=1)
    ap.add_argument("--port", type=int, default=0)
    opts = ap.parse_args(argv)
    sets = tuple(s for s in opts.sets.split(",") if s)
    records = make_records(opts.records, seed=opts.seed, sets=sets, prefix=opts.prefix,
                           deleted_every=opts.deleted_every)
    server = OAIServer(records, page_size=opts.page_size, granularity=opts.granularity,
                       deleted_record=opts.deleted_record, gzip_level=opts.gzip_level,
                       port=opts.port)
    if opts.slow:
        server.faults.append(Slow(opts.slow, stream=opts.slow_stream, verb=LIST_VERBS, times=None))
    server.requests = _NoLog()  # a long benchmark run should not grow a log
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with server:
        print(server.url, flush=True)
        while not done.wait(0.5):
            pass
    return 0


class _NoLog(list):
    def append(self, item: Any) -> None:
        """Drop the entry."""


if __name__ == "__main__":
    sys.exit(main())
