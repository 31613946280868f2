"""The harvest loop: windows, checkpoints, resume.

For each source: Identify (cached for `identify_ttl`), then ListRecords per
configured set, page by page. After every page its records and the checkpoint
that follows it are committed together, so a harvest killed at any point
resumes from its last page. The incremental `from` is the first responseDate
of the last complete harvest of that list, at the granularity the server
declared: the server's clock, never ours. An expired or rejected token
restarts the window (upserts are idempotent), it never ends the harvest.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from harvester.config import Settings, Source
from harvester.errors import BadResumptionToken, HarvesterError, Interrupted, LoopError, PageError
from harvester.http import HTTPClient
from harvester.locks import source_lock
from harvester.oai import OAI_NS, Identify, OAIClient, Page
from harvester.store import Checkpoint, IncomingRecord, Store, parse_utc, utcnow

log = logging.getLogger(__name__)

DAY = "YYYY-MM-DD"
SECONDS = "YYYY-MM-DDThh:mm:ssZ"
MAX_TOKEN_RESTARTS = 3
MAX_EMPTY_PAGES = 1000  # consecutive pages with no record but a fresh token


@dataclass(frozen=True)
class HarvestRequest:
    """What the operator asked for. Default: incremental from the watermark."""

    full: bool = False
    from_: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        """Checked when asked for, not after the lock and an Identify request:
        a bad date is the operator's typo, not the source's failure."""
        if self.full and (self.from_ or self.until):
            raise HarvesterError("--full cannot be combined with --from/--until")
        lo = to_granularity(self.from_, SECONDS) if self.from_ else None
        hi = to_granularity(self.until, SECONDS, end=True) if self.until else None
        if lo and hi and lo > hi:
            raise HarvesterError(f"--from {self.from_} is later than --until {self.until}")

    @property
    def mode(self) -> str:
        if self.full:
            return "full"
        if self.from_ or self.until:
            return f"window {self.from_ or '..'}/{self.until or '..'}"
        return "incremental"


@dataclass
class SourceResult:
    source: str
    status: str = "ok"  # ok, failed, interrupted, skipped
    new: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    kept_aside: int = 0
    repaired: int = 0
    pages: int = 0
    requests: int = 0
    vanished: int = 0  # tombstoned because a full sweep no longer lists them
    error: str | None = None
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return self.new + self.updated

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "records": self.records}


@dataclass(frozen=True)
class Progress:
    source: str
    set_spec: str
    records: int  # seen so far in this run
    total: int | None  # completeListSize when the server gives it
    pages: int
    message: str = ""


ProgressCallback = Callable[[Progress], None]


def to_granularity(value: str, granularity: str, *, end: bool = False) -> str:
    """An operator's or a server's date at the server's granularity.
    '2024-01-05' -> '2024-01-05T00:00:00Z' (or T23:59:59Z for `until`) for a
    seconds-granularity server; '2024-01-05T10:11:12Z' -> '2024-01-05' for a
    day-granularity one. Both ends are inclusive in OAI-PMH."""
    value = value.strip()
    try:
        if len(value) == 10:
            moment = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            if end:
                moment += timedelta(days=1, seconds=-1)
        else:
            moment = datetime.strptime(value.replace("Z", "+0000").replace("+00:00", "+0000"),
                                       "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        raise HarvesterError(f"{value!r} is not a date (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)") from None
    moment = moment.astimezone(UTC)
    if granularity == SECONDS:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%d")


def _text(el: etree._Element | None) -> str:
    return el.text.strip() if el is not None and el.text else ""


def split_page(page: Page) -> tuple[list[IncomingRecord], list[dict[str, Any]]]:
    """A page's records, and the malformed ones to keep aside. A bad record is
    one bad record: the rest of the page goes on."""
    good: list[IncomingRecord] = []
    bad: list[dict[str, Any]] = []
    for rec in page.records():
        raw = etree.tostring(rec, encoding="UTF-8", xml_declaration=False)
        header = rec.find(f"{OAI_NS}header")
        identifier = _text(header.find(f"{OAI_NS}identifier")) if header is not None else ""
        datestamp = _text(header.find(f"{OAI_NS}datestamp")) if header is not None else ""
        if not identifier or not datestamp:
            bad.append({"kind": "record", "url": page.url, "identifier": identifier or None,
                        "reason": "record header lacks an identifier or a datestamp", "raw": raw})
            continue
        deleted = header.get("status") == "deleted"
        if not deleted:
            metadata = rec.find(f"{OAI_NS}metadata")
            if metadata is None or len(metadata) == 0:
                bad.append({"kind": "record", "url": page.url, "identifier": identifier,
                            "reason": "record has no metadata and is not marked deleted", "raw": raw})
                continue
        sets = tuple(_text(s) for s in header.iterfind(f"{OAI_NS}setSpec"))
        good.append(IncomingRecord(identifier, datestamp, deleted, sets, None if deleted else raw))
    return good, bad


class Harvester:
    """Harvests sources into the store. One instance per process; thread-safe."""

    def __init__(self, settings: Settings, *, http: HTTPClient | None = None,
                 stop: threading.Event | None = None, progress: ProgressCallback | None = None,
                 lock_wait: float | None = 0.0) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.http = http or HTTPClient(settings.http, contact=settings.contact,
                                       user_agent=settings.user_agent, stop=self.stop)
        for source in settings.sources.values():
            if source.url and source.delay is not None:
                self.http.set_host_delay(source.url, source.delay)
        self.progress = progress or (lambda p: None)
        self.lock_wait = lock_wait

    # -- many sources ---------------------------------------------------------

    def harvest_many(self, sources: Sequence[Source], request: HarvestRequest = HarvestRequest()
                     ) -> list[SourceResult]:
        """Sources in parallel (one request at a time per host, by the HTTP layer)."""
        if not sources:
            return []
        with ThreadPoolExecutor(max_workers=min(self.settings.workers, len(sources)),
                                thread_name_prefix="harvest") as pool:
            return list(pool.map(lambda s: self.harvest_source(s, request), sources))

    # -- one source -----------------------------------------------------------

    def harvest_source(self, source: Source, request: HarvestRequest = HarvestRequest()) -> SourceResult:
        result = SourceResult(source.name)
        if not source.url:
            result.status, result.error = "skipped", source.disabled_reason or "no url"
            return result
        started = time.monotonic()
        store = Store(self.settings.db_path)
        try:
            with source_lock(self.settings.data_dir, source.name, wait=self.lock_wait, stop=self.stop):
                store.close_stale_runs(source.name)
                run_id = store.start_run(source.name, request.mode)
                sent_before = self.http.requests_sent
                try:
                    self._harvest(source, request, store, result)
                except Interrupted as exc:
                    result.status, result.error = "interrupted", str(exc)
                except HarvesterError as exc:
                    result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, PageError):
                        store.keep_aside(source.name, kind="page", url=exc.url, reason=str(exc), raw=exc.raw)
                        result.kept_aside += 1
                    log.error("%s: harvest failed: %s", source.name, result.error)
                finally:
                    # Approximate when sources share a host; exact per source otherwise.
                    result.requests = self.http.requests_sent - sent_before
                    store.finish_run(run_id, status=result.status, records=result.records,
                                     deleted=result.deleted, kept_aside=result.kept_aside,
                                     repaired=result.repaired, requests=result.requests,
                                     error=result.error)
        except Interrupted as exc:  # stopped while waiting for the lock: not the source's fault
            result.status, result.error = "interrupted", str(exc)
        except HarvesterError as exc:  # the lock is held
            result.status, result.error = "failed", str(exc)
        finally:
            store.close()
            result.seconds = time.monotonic() - started
        return result

    def _identify(self, source: Source, client: OAIClient, store: Store, fresh: bool) -> Identify:
        state = store.source_state(source.name)
        cached, at = state.get("identify"), state.get("identified_at")
        if cached and at and not fresh:
            age = datetime.now(UTC) - parse_utc(at)
            if age.total_seconds() < self.settings.identify_ttl:
                cached["compression"] = tuple(cached.get("compression") or ())
                return Identify(**cached)
        identify = client.identify()
        store.save_identify(source.name, identify.as_dict())
        return identify

    def _harvest(self, source: Source, request: HarvestRequest, store: Store, result: SourceResult) -> None:
        assert source.url
        client = OAIClient(source.url, self.http, source=source.name)
        identify = self._identify(source, client, store, fresh=request.full)
        for set_spec in source.sets or [""]:
            self._harvest_list(source, set_spec, identify, request, client, store, result)
        if request.full and not request.from_ and not request.until and identify.deleted_record != "persistent":
            result.vanished = self.sweep_deletions(source, client, store)
            result.deleted += result.vanished

    def _window(self, source: Source, set_spec: str, identify: Identify, request: HarvestRequest,
                store: Store) -> tuple[str | None, str | None]:
        g = identify.granularity
        if request.from_ or request.until:
            return (to_granularity(request.from_, g) if request.from_ else None,
                    to_granularity(request.until, g, end=True) if request.until else None)
        if request.full:
            return None, None
        watermark = store.get_watermark(source.name, set_spec, source.metadata_prefix)
        return (to_granularity(watermark, g) if watermark else None), None

    def _harvest_list(self, source: Source, set_spec: str, identify: Identify, request: HarvestRequest,
                      client: OAIClient, store: Store, result: SourceResult) -> None:
        prefix = source.metadata_prefix
        window = self._window(source, set_spec, identify, request, store)
        cp = store.get_checkpoint(source.name, set_spec, prefix)
        explicit = request.full or request.from_ or request.until
        if cp is not None and (not explicit or (cp.window_from, cp.window_until) == window):
            log.info("%s%s: resuming at cursor %s (page %d)", source.name, f"/{set_spec}" if set_spec else "",
                     cp.cursor, cp.pages)
        else:
            cp = Checkpoint(source.name, set_spec, prefix, window_from=window[0], window_until=window[1],
                            started_at=utcnow())
        # The watermark may only move when this window reaches back to the old one:
        # a window starting later would leave a gap behind it.
        old_watermark = store.get_watermark(source.name, set_spec, prefix)
        covers = cp.window_until is None and (
            cp.window_from is None
            or (old_watermark is not None
                and cp.window_from <= to_granularity(old_watermark, identify.granularity)))

        restarts = 0
        while True:
            try:
                self._pages(source, set_spec, cp, client, store, result)
                break
            except BadResumptionToken as exc:
                restarts += 1
                if restarts > MAX_TOKEN_RESTARTS:
                    raise
                log.warning("%s: %s; restarting the window %s/%s (restart %d)", source.name, exc,
                            cp.window_from or "..", cp.window_until or "..", restarts)
                # Keep first_response_date: the earliest one is the safe watermark.
                cp.token, cp.cursor, cp.complete_list_size, cp.expiration_date = None, None, None, None
                store.save_checkpoint(cp)
        store.complete_list(source.name, set_spec, prefix,
                            watermark=cp.first_response_date if covers else None)

    def _pages(self, source: Source, set_spec: str, cp: Checkpoint, client: OAIClient, store: Store,
               result: SourceResult) -> None:
        params: dict[str, str] = {"metadataPrefix": cp.metadata_prefix}
        if set_spec:
            params["set"] = set_spec
        if cp.window_from:
            params["from"] = cp.window_from
        if cp.window_until:
            params["until"] = cp.window_until
        seen_tokens: set[str] = {cp.token} if cp.token else set()
        last_signature: bytes | None = None
        empty_run = 0
        for page in client.pages("ListRecords", token=cp.token, **params):
            records, bad = split_page(page)
            token = page.token()
            if cp.first_response_date is None:
                cp.first_response_date = page.response_date
            next_token = token.value if token else None
            if next_token is not None:
                if next_token in seen_tokens:
                    raise LoopError(f"the server repeated resumptionToken {next_token!r}")
                seen_tokens.add(next_token)
                empty_run = empty_run + 1 if not records and not bad else 0
                if empty_run > MAX_EMPTY_PAGES:
                    raise LoopError(f"{MAX_EMPTY_PAGES} pages in a row without a record")
            signature = hashlib.blake2b(
                b"\n".join(f"{r.identifier} {r.datestamp}".encode() for r in records)).digest()
            if records and signature == last_signature:
                raise LoopError("the server sent the same page twice")
            last_signature = signature
            cp.token = next_token
            if token is not None:
                cp.cursor, cp.complete_list_size = token.cursor, token.complete_list_size
                cp.expiration_date = token.expiration_date
            cp.pages += 1
            cp.records += len(records)
            outcome = store.commit_page(source.name, cp.metadata_prefix, records, cp, kept_aside=bad)
            result.pages += 1
            result.new += outcome.new
            result.updated += outcome.updated
            result.deleted += outcome.deleted
            result.unchanged += outcome.unchanged
            result.kept_aside += len(bad)
            result.repaired += page.repaired
            if bad:
                log.warning("%s: kept aside %d malformed record(s) from %s", source.name, len(bad), page.url)
            if page.repaired:
                log.warning("%s: repaired %d illegal character(s) in %s", source.name, page.repaired, page.url)
            self.progress(Progress(source.name, set_spec, cp.records, cp.complete_list_size, cp.pages))
            if self.stop.is_set():
                # The page is committed with its checkpoint: the next run resumes here.
                raise Interrupted("stopped after committing a page")

    def sweep_deletions(self, source: Source, client: OAIClient, store: Store) -> int:
        """For servers that do not keep deletions (deletedRecord no/transient): a
        ListIdentifiers sweep lists what is alive; live records of ours it does
        not list are tombstoned."""
        listed: set[str] = set()
        params: dict[str, str] = {"metadataPrefix": source.metadata_prefix}
        first_response: str | None = None
        for set_spec in source.sets or [""]:
            if set_spec:
                params["set"] = set_spec
            for page in client.pages("ListIdentifiers", **params):
                first_response = first_response or page.response_date
                for header in page.headers():
                    if header.get("status") != "deleted":
                        listed.add(_text(header.find(f"{OAI_NS}identifier")))
                if self.stop.is_set():
                    raise Interrupted("stopped during the identifier sweep")
        vanished = store.live_identifiers(source.name) - listed
        if vanished:
            log.warning("%s: %d record(s) no longer listed by the server; marking them deleted",
                        source.name, len(vanished))
        return store.mark_deleted(source.name, sorted(vanished), first_response or utcnow())


def failed(results: Iterable[SourceResult]) -> list[SourceResult]:
    return [r for r in results if r.status == "failed"]
