"""The same FakeRecords served by two OAI-PMH servers nobody here wrote.

``serve_with_oaipmh(records)`` and ``serve_with_oai_repo(records)`` each put
one PyPI implementation behind a stdlib HTTP server on 127.0.0.1 and yield
its base URL. Only the glue is ours: the data layer each library asks for
and an HTTP handler that passes the query (GET) or form (POST) parameters to
the library and returns its bytes, 200 ``text/xml``, no compression.

Their conventions differ from each other and from `tests.oaiserver`; that is
the point, so they are left as they are:

oaipmh 4.0.0 (``oaipmh.server.BatchingServer``, a maintained pyoai fork)
  * The last page of a list carries no ``resumptionToken`` element at all
    (OAI-PMH 2.0 asks for an empty one); tokens have no cursor,
    completeListSize or expirationDate attributes. A token is the
    percent-quoted query string of the original request plus a cursor.
  * ``responseDate`` comes from the machine's clock; datestamps are always
    written at seconds granularity, whatever Identify says.
  * Deleted records: served (``status="deleted"``, no metadata), sets served.
  * A request for a list with no match answers ``noRecordsMatch``.

oai-repo 0.5.2 (``oai_repo.OAIRepository`` with our ``DataInterface``)
  * The last page carries ``<resumptionToken cursor=".." completeListSize=".."/>``
    (no text), a list of one page carries none; tokens are base64 (``+``,
    ``/``, ``=``: a client must URL-encode them).
  * It cannot mark a record deleted: its ``add_header`` never writes
    ``status="deleted"`` and ``add_records`` silently drops a record whose
    metadata is None. So this wrapper serves deleted records as absent and
    its Identify says ``deletedRecord=no``; a harvest against it learns of
    deletions only by their absence.
  * ``until=YYYY-MM-DD`` is read as midnight at the start of that day, so a
    day-granularity ``until`` leaves out that day's later records.
  * ``ListSets`` has no paging; ``responseDate`` is the machine's clock.
  * Payloads are re-serialised by lxml (namespace declarations move, and
    non-ASCII text comes as character references such as ``&#252;``); the
    element content is the same, the bytes are not.

Both serve every record's payload as parsed XML (the stored bytes wrapped in
an OAI ``<metadata>`` with ``xsi`` declared, as in the sample files, then
re-serialised by the library). Every record of `make_records` and
`sample_records` comes back from oaipmh, every live one from oai-repo:
checked with sickle 0.7 in tests/test_oaiserver.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from lxml import etree

from tests.recordgen import FORMATS, FakeRecord

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ADMIN = "oai-admin@example.org"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def payload_element(rec: FakeRecord) -> etree._Element:
    """A record's stored payload as an element, parsed in the context it is served in.

    Sample payloads (HZB) use the ``xsi`` prefix and the OAI default namespace
    declared on the envelope around them, so they only parse inside one.
    """
    wrapped = (f'<metadata xmlns="{OAI_NS}" xmlns:xsi="{XSI_NS}">'.encode()
               + rec.metadata_xml + b"</metadata>")
    return etree.fromstring(wrapped, _PARSER)[0]


def _naive(datestamp: str) -> datetime:
    """oaipmh wants naive UTC datetimes."""
    if len(datestamp) == 10:
        datestamp += "T00:00:00Z"
    return datetime.strptime(datestamp, "%Y-%m-%dT%H:%M:%SZ")


def _in_set(rec: FakeRecord, set_: str | None) -> bool:
    return set_ is None or any(s == set_ or s.startswith(set_ + ":") for s in rec.sets)


@contextmanager
def _http(make_app: Callable[[str], Callable[[dict[str, str]], bytes]]) -> Iterator[str]:
    """Serve ``app(params) -> bytes`` at http://127.0.0.1:PORT/oai; yield that URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            self._answer(urlsplit(self.path).query)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._answer(self.rfile.read(length).decode("utf-8", "replace"))

        def _answer(self, query: str) -> None:
            if urlsplit(self.path).path != "/oai":
                status, body = 404, b"not found"
            else:
                try:
                    status, body = 200, app(dict(parse_qsl(query, keep_blank_values=True)))
                except Exception as exc:  # a library bug: a 500 the test sees, not a hang
                    status, body = 500, f"{type(exc).__name__}: {exc}".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    url = f"http://127.0.0.1:{httpd.server_address[1]}/oai"
    app = make_app(url)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield url
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- oaipmh 4.0.0 ---------------------------------------------------------------


class _OaipmhRepository:
    """The IBatchingOAI data layer `oaipmh.server.BatchingServer` asks for."""

    def __init__(self, records: Sequence[FakeRecord], url: str, deleted_record: str) -> None:
        from oaipmh import common, error

        self._common, self._error = common, error
        self._records = list(records)
        self._url = url
        self._deleted_record = deleted_record
        self._prefixes = tuple(dict.fromkeys(r.prefix for r in self._records)) or ("oai_datacite",)

    def _visible(self) -> list[FakeRecord]:
        if self._deleted_record == "no":
            return [r for r in self._records if not r.deleted]
        return self._records

    def _header(self, rec: FakeRecord) -> Any:
        return self._common.Header(None, rec.identifier, _naive(rec.datestamp), list(rec.sets),
                                   rec.deleted)

    def identify(self) -> Any:
        earliest = min((_naive(r.datestamp) for r in self._records),
                       default=datetime(2000, 1, 1))
        return self._common.Identify(
            repositoryName="Fake PaN repository (oaipmh)", baseURL=self._url,
            protocolVersion="2.0", adminEmails=[ADMIN], earliestDatestamp=earliest,
            deletedRecord=self._deleted_record, granularity="YYYY-MM-DDThh:mm:ssZ",
            compression=["identity"])

    def listMetadataFormats(self, identifier: str | None = None) -> list[tuple[str, str, str]]:
        prefixes = self._prefixes
        if identifier is not None:
            rec = next((r for r in self._visible() if r.identifier == identifier), None)
            if rec is None:
                raise self._error.IdDoesNotExistError(identifier)
            prefixes = (rec.prefix,)
        return [(p, *FORMATS[p]) for p in prefixes]

    def listSets(self, cursor: int = 0, batch_size: int = 10) -> list[tuple[str, str, None]]:
        specs = sorted({s for r in self._records for s in r.sets})
        if not specs:
            raise self._error.NoSetHierarchyError("no sets")
        return [(s, f"Set {s}", None) for s in specs][cursor:cursor + batch_size]

    def _select(self, metadataPrefix: str, set: str | None, from_: datetime | None,
                until: datetime | None) -> list[FakeRecord]:
        if metadataPrefix not in self._prefixes:
            raise self._error.CannotDisseminateFormatError(metadataPrefix)
        return [r for r in self._visible()
                if r.prefix == metadataPrefix and _in_set(r, set)
                and (from_ is None or _naive(r.datestamp) >= from_)
                and (until is None or _naive(r.datestamp) <= until)]

    def listRecords(self, metadataPrefix: str, set: str | None = None,
                    from_: datetime | None = None, until: datetime | None = None,
                    cursor: int = 0, batch_size: int = 10) -> list[tuple[Any, Any, None]]:
        page = self._select(metadataPrefix, set, from_, until)[cursor:cursor + batch_size]
        return [(self._header(r), r, None) for r in page]

    def listIdentifiers(self, metadataPrefix: str, set: str | None = None,
                        from_: datetime | None = None, until: datetime | None = None,
                        cursor: int = 0, batch_size: int = 10) -> list[Any]:
        page = self._select(metadataPrefix, set, from_, until)[cursor:cursor + batch_size]
        return [self._header(r) for r in page]

    def getRecord(self, metadataPrefix: str, identifier: str) -> tuple[Any, Any, None]:
        rec = next((r for r in self._visible() if r.identifier == identifier), None)
        if rec is None:
            raise self._error.IdDoesNotExistError(identifier)
        if rec.prefix != metadataPrefix:
            raise self._error.CannotDisseminateFormatError(metadataPrefix)
        return self._header(rec), rec, None


def _write_payload(element: etree._Element, rec: FakeRecord) -> None:
    """oaipmh metadata writer: the stored payload goes under <metadata> as it is."""
    element.append(payload_element(rec))


@contextmanager
def serve_with_oaipmh(records: Sequence[FakeRecord], page_size: int = 100, *,
                      deleted_record: str = "persistent") -> Iterator[str]:
    """Serve `records` with oaipmh's BatchingServer; yield the base URL."""
    from oaipmh.metadata import MetadataRegistry
    from oaipmh.server import BatchingServer

    registry = MetadataRegistry()
    for prefix in {r.prefix for r in records} or {"oai_datacite"}:
        registry.registerWriter(prefix, _write_payload)

    def make_app(url: str) -> Callable[[dict[str, str]], bytes]:
        server = BatchingServer(_OaipmhRepository(records, url, deleted_record),
                                metadata_registry=registry, resumption_batch_size=page_size)
        return server.handleRequest

    with _http(make_app) as url:
        yield url


# --- oai-repo 0.5.2 ---------------------------------------------------------------


def _oai_repo_data(records: Sequence[FakeRecord], url: str, page_size: int) -> Any:
    from oai_repo import DataInterface, Identify, MetadataFormat, RecordHeader, Set

    # Deleted records are absent: oai_repo 0.5.2 cannot mark one deleted (module docstring).
    live = [r for r in records if not r.deleted]
    by_id = {r.identifier: r for r in live}
    prefixes = tuple(dict.fromkeys(r.prefix for r in live)) or ("oai_datacite",)
    specs = sorted({s for r in live for s in r.sets})

    class Data(DataInterface):
        limit = page_size

        def get_identify(self) -> Identify:
            # A string: its validator strptime()s earliest_datestamp whatever its type.
            earliest = min((_naive(r.datestamp) for r in live), default=datetime(2000, 1, 1))
            return Identify(repository_name="Fake PaN repository (oai-repo)", base_url=url,
                            admin_email=[ADMIN],
                            earliest_datestamp=earliest.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            deleted_record="no", granularity="YYYY-MM-DDThh:mm:ssZ",
                            compression=[], description=[])

        def is_valid_identifier(self, identifier: str) -> bool:
            return identifier in by_id

        def get_metadata_formats(self, identifier: str | None = None) -> list[MetadataFormat]:
            chosen = (by_id[identifier].prefix,) if identifier in by_id else prefixes
            return [MetadataFormat(p, *FORMATS[p]) for p in chosen]

        def get_record_header(self, identifier: str) -> RecordHeader:
            rec = by_id[identifier]
            return RecordHeader(identifier=rec.identifier,
                                datestamp=_naive(rec.datestamp).replace(tzinfo=timezone.utc),
                                setspecs=list(rec.sets))

        def get_record_metadata(self, identifier: str, metadataprefix: str
                                ) -> etree._Element | None:
            rec = by_id[identifier]
            return payload_element(rec) if rec.prefix == metadataprefix else None

        def get_record_abouts(self, identifier: str) -> list[etree._Element]:
            return []

        def list_set_specs(self, identifier: str | None = None, cursor: int = 0) -> tuple:
            if identifier is not None:
                return list(by_id[identifier].sets), None, None
            return (specs or None), len(specs), None

        def get_set(self, setspec: str) -> Set:
            return Set(spec=setspec, name=f"Set {setspec}", description=[])

        def list_identifiers(self, metadataprefix: str, filter_from: datetime | None = None,
                             filter_until: datetime | None = None,
                             filter_set: str | None = None, cursor: int = 0) -> tuple:
            lo = filter_from.replace(tzinfo=None) if filter_from else None
            hi = filter_until.replace(tzinfo=None) if filter_until else None
            ids = [r.identifier for r in live
                   if r.prefix == metadataprefix and _in_set(r, filter_set)
                   and (lo is None or _naive(r.datestamp) >= lo)
                   and (hi is None or _naive(r.datestamp) <= hi)]
            return ids[cursor:cursor + page_size], len(ids), None

    return Data()


@contextmanager
def serve_with_oai_repo(records: Sequence[FakeRecord], page_size: int = 100) -> Iterator[str]:
    """Serve `records` with oai_repo's OAIRepository; yield the base URL."""
    from oai_repo import OAIRepository

    def make_app(url: str) -> Callable[[dict[str, str]], bytes]:
        repository = OAIRepository(_oai_repo_data(records, url, page_size))
        return lambda params: bytes(repository.process(params))

    with _http(make_app) as url:
        yield url
