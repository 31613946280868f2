"""Keep an index in step with the record store: `sync` follows it, `rebuild` starts over.

The store numbers every change (`seq`); the index remembers how far it got
(`Store.index_position(alias)`). A sync streams `changes_since(position)`
into bulk writes and moves the position only over what is safely handled:

- written, or refused as stale (the index already holds that version or a
  newer one: the datestamp is the external version);
- refused for this document alone (mapping error...), or not parseable: the
  failure is recorded in the store (`index_failures`) and tried again at the
  start of every sync until it goes through.

When the index cannot be reached, the sync stops, keeps the position of the
last confirmed change and raises IndexError_ saying how far behind the index
is; the store still holds everything and the next sync catches up.

A rebuild writes every live record into a new concrete index, catches up
with what changed meanwhile, then swaps the alias atomically (searches see the
old index until then) and drops the old one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harvester.errors import IndexError_, LockedError, OntologyError, RecordError
from harvester.index import IndexBackend, WriteResult
from harvester.index.actions import Action, delete_action, doc_id, index_action
from harvester.pipeline import to_document
from harvester.store import Store, StoredRecord

log = logging.getLogger(__name__)

Progress = Callable[["SyncReport"], None]


@dataclass
class SyncReport:
    alias: str
    backend: str
    mode: str = "sync"  # sync | rebuild
    index: str | None = None  # the concrete index written
    indexed: int = 0
    deleted: int = 0
    stale: int = 0  # already there in this version or a newer one
    failed: int = 0  # refused by the index: recorded, retried on the next sync
    unparsable: int = 0  # not a Document: recorded, retried on the next sync
    retried: int = 0  # earlier failures tried again
    position: int = 0  # the store change the index is in step with
    behind: int = 0  # changes of the store not yet in the index
    seconds: float = 0.0
    replaced: list[str] = field(default_factory=list)  # indexes a rebuild dropped
    error: str | None = None

    @property
    def handled(self) -> int:
        return self.indexed + self.deleted + self.stale + self.failed + self.unparsable

    @property
    def per_second(self) -> float:
        return self.handled / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "handled": self.handled, "per_second": round(self.per_second, 1)}


@dataclass
class _Entry:
    rec: StoredRecord
    advances: bool  # a change of the stream (moves the position) or a retry (does not)
    sent: bool = False


class _Writer:
    """Streams records through one backend, in order, keeping the position honest."""

    def __init__(self, store: Store, backend: IndexBackend, report: SyncReport, *,
                 facilities: Mapping[str, str | None], tagger: Any, ontology: Any,
                 chunk_size: int, on_progress: Progress | None, position: int) -> None:
        self.store, self.backend, self.report = store, backend, report
        self.name = backend.alias
        self.facilities, self.tagger, self.ontology = facilities, tagger, ontology
        self.chunk_size, self.on_progress = chunk_size, on_progress
        self.safe = position  # every change up to here is handled
        self.known_failures = {(s, i) for s, i, *_ in store.index_failures(self.name)}
        self._pending: deque[_Entry] = deque()

    def _action(self, rec: StoredRecord) -> Action:
        if rec.deleted:
            return delete_action(source=rec.source, identifier=rec.identifier, datestamp=rec.datestamp)
        doc = to_document(rec, facility=self.facilities.get(rec.source), tagger=self.tagger)
        return index_action(doc, self.ontology, source=rec.source, identifier=rec.identifier,
                            datestamp=rec.datestamp)

    def _fail(self, rec: StoredRecord, error: str) -> None:
        self.store.add_index_failure(self.name, rec.source, rec.identifier, rec.seq, error)
        self.known_failures.add((rec.source, rec.identifier))

    def _actions(self, records: Iterable[tuple[StoredRecord, bool]]) -> Iterator[Action]:
        for rec, advances in records:
            entry = _Entry(rec, advances)
            try:
                action = self._action(rec)
            except RecordError as exc:
                # Kept aside as an index failure: it is retried on every sync, so a
                # parser fix (then `index sync` or `rebuild`) brings it in.
                self._fail(rec, f"unparsable: {exc}")
                self.report.unparsable += 1
                self._pending.append(entry)
                continue
            entry.sent = True
            self._pending.append(entry)
            yield action

    def _advance(self, entry: _Entry) -> None:
        if entry.advances:
            self.safe = entry.rec.seq

    def _drain_local(self) -> None:
        # Records handled without the backend (unparsable, recorded) that came
        # before any unconfirmed action are safe to move past.
        while self._pending and not self._pending[0].sent:
            self._advance(self._pending.popleft())

    def _outcome(self, entry: _Entry, result: WriteResult) -> None:
        rec, key = entry.rec, (entry.rec.source, entry.rec.identifier)
        if result.outcome == "failed":
            self._fail(rec, result.error or "refused")
            self.report.failed += 1
            return
        if result.outcome == "stale":
            self.report.stale += 1
        elif result.op == "delete":
            self.report.deleted += 1
        else:
            self.report.indexed += 1
        if key in self.known_failures:
            self.store.clear_index_failure(self.name, *key)
            self.known_failures.discard(key)

    def run(self, records: Iterable[tuple[StoredRecord, bool]], *, index: str | None,
            save_position: bool) -> None:
        done = 0
        try:
            for result in self.backend.write(self._actions(records), index=index,
                                             chunk_size=self.chunk_size):
                self._drain_local()
                entry = self._pending.popleft()
                expected = doc_id(entry.rec.source, entry.rec.identifier)
                if result.id != expected:  # would mean results out of order: never advance blindly
                    raise IndexError_(f"bulk results out of order: got {result.id}, expected {expected}")
                self._outcome(entry, result)
                self._advance(entry)
                self._drain_local()
                done += 1
                if done % self.chunk_size == 0:
                    if save_position:
                        self.store.set_index_position(self.name, self.safe)
                    self._progress()
            self._drain_local()
        finally:
            self._pending.clear()
            if save_position:
                self.store.set_index_position(self.name, self.safe)
            self.report.position = self.safe
        self._progress()

    def _progress(self) -> None:
        self.report.position = self.safe
        if self.on_progress is not None:
            self.on_progress(self.report)


def _behind(exc: IndexError_, store: Store, report: SyncReport, started: float) -> IndexError_:
    report.behind = store.count_changes_since(report.position)
    report.seconds = time.monotonic() - started
    report.error = str(exc)
    err = IndexError_(
        f"{exc}. The index {report.alias!r} is behind the record store by {report.behind} "
        f"change(s) (in step up to change {report.position} of {store.max_seq()}); nothing is lost: "
        "the store keeps every record and the next `pan-harvester index sync` catches up.")
    err.report = report  # type: ignore[attr-defined]
    return err


def _retries(store: Store, name: str, position: int, report: SyncReport
             ) -> Iterator[tuple[StoredRecord, bool]]:
    for source, identifier, _seq, _error, _attempts in store.index_failures(name):
        rec = store.get_record(source, identifier)
        if rec is None:  # gone from the store altogether
            store.clear_index_failure(name, source, identifier)
            continue
        if rec.seq > position:  # changed since: it comes with the changes
            continue
        report.retried += 1
        yield rec, False


def sync(store: Store, backend: IndexBackend, *, facilities: Mapping[str, str | None] | None = None,
         tagger: Any = None, ontology: Any = None, chunk_size: int = 500,
         on_progress: Progress | None = None) -> SyncReport:
    """Bring the index behind `backend.alias` up to date with the store.

    Creates the index on first use. Raises IndexError_ (with `.report`) when the
    backend cannot be reached; the position then stays at the last change
    confirmed written."""
    started = time.monotonic()
    name = backend.alias
    position = store.index_position(name)
    report = SyncReport(alias=name, backend=backend.kind, position=position)
    try:
        backend.check()
        report.index = backend.ensure()
        writer = _Writer(store, backend, report, facilities=facilities or {}, tagger=tagger,
                         ontology=ontology, chunk_size=chunk_size, on_progress=on_progress,
                         position=position)

        def records() -> Iterator[tuple[StoredRecord, bool]]:
            yield from _retries(store, name, position, report)
            for rec in store.changes_since(position):
                yield rec, True

        writer.run(records(), index=None, save_position=True)
        backend.refresh()
    except IndexError_ as exc:
        raise _behind(exc, store, report, started) from exc
    report.behind = store.count_changes_since(report.position)
    report.seconds = time.monotonic() - started
    return report


def rebuild(store: Store, backend: IndexBackend, *, facilities: Mapping[str, str | None] | None = None,
            tagger: Any = None, ontology: Any = None, chunk_size: int = 500,
            on_progress: Progress | None = None) -> SyncReport:
    """Build a new concrete index from every live record of the store, swap the
    alias to it in one step and drop the old one. Searches keep using the old
    index until the swap. On failure the new index is dropped and the alias
    left as it was."""
    started = time.monotonic()
    name = backend.alias
    report = SyncReport(alias=name, backend=backend.kind, mode="rebuild",
                        position=store.index_position(name))
    target: str | None = None
    try:
        backend.check()
        start_seq = store.max_seq()
        target = backend.create_index()
        report.index = target
        writer = _Writer(store, backend, report, facilities=facilities or {}, tagger=tagger,
                         ontology=ontology, chunk_size=chunk_size, on_progress=on_progress,
                         position=start_seq)
        writer.run(((rec, False) for rec in store.iter_records()), index=target, save_position=False)
        # What changed while the bulk load ran, tombstones included.
        writer.run(((rec, True) for rec in store.changes_since(start_seq)), index=target,
                   save_position=False)
        report.replaced = backend.publish(target)
    except IndexError_ as exc:
        report.position = store.index_position(name)  # the alias still serves the old index
        if target is not None:
            try:
                backend.drop_index(target)
            except IndexError_ as drop_exc:
                log.warning("could not drop the unfinished index %s: %s", target, drop_exc)
        raise _behind(exc, store, report, started) from exc
    try:
        # A sync running meanwhile wrote into the old index; bring those changes
        # into the new one (versions make the repeat harmless).
        writer.run(((rec, True) for rec in store.changes_since(writer.safe)), index=None,
                   save_position=True)
        backend.refresh()
    except IndexError_ as exc:
        raise _behind(exc, store, report, started) from exc
    report.behind = store.count_changes_since(report.position)
    report.seconds = time.monotonic() - started
    return report


# -- for the command line and the daemon (an app object: .settings, .store(), .tagger(), .ontology())

LOCK_WAIT = 600.0  # seconds a sync waits for another sync or rebuild of the same alias


def _enrichment(app: Any) -> tuple[Any, Any, str | None]:
    """(tagger, ontology, warning): without PaNET the documents go in untagged
    rather than not at all; a rebuild after `ontology fetch` adds the techniques."""
    try:
        return app.tagger(), app.ontology(), None
    except OntologyError as exc:
        return None, None, (f"indexing without PaNET techniques ({exc}); after fixing that, run "
                            "`pan-harvester index rebuild`")


def run_for_app(app: Any, *, mode: str = "sync", on_progress: Progress | None = None,
                chunk_size: int = 500) -> tuple[SyncReport, str | None]:
    """Sync (or rebuild) the configured index from the app's store, holding the
    alias's lock so two syncs of one index never interleave. Returns the report
    and a warning (None when all is well). Raises IndexError_ with `.report`."""
    from harvester.index import open_backend
    from harvester.locks import source_lock

    settings = app.settings
    facilities = {name: (src.facility or None) for name, src in settings.sources.items()}
    tagger, ontology, warning = _enrichment(app)
    if warning:
        log.warning("%s", warning)
    run = rebuild if mode == "rebuild" else sync
    backend = open_backend(settings)
    store = app.store()
    try:
        # "_" cannot start a source name, so this lock never collides with a harvest's.
        with source_lock(settings.data_dir, f"_index-{backend.alias}", wait=LOCK_WAIT,
                         purpose=f"index {mode}"):
            report = run(store, backend, facilities=facilities, tagger=tagger, ontology=ontology,
                         chunk_size=chunk_size, on_progress=on_progress)
    finally:
        store.close()
        backend.close()
    return report, warning


def describe(report: SyncReport) -> str:
    what = "rebuilt" if report.mode == "rebuild" else "synced"
    parts = [f"{report.indexed} indexed", f"{report.deleted} deleted"]
    if report.stale:
        parts.append(f"{report.stale} already up to date")
    if report.failed or report.unparsable:
        parts.append(f"{report.failed + report.unparsable} kept aside for retry "
                     f"({report.unparsable} unparsable)")
    text = (f"index {report.alias!r} ({report.backend}, {report.index}) {what}: {', '.join(parts)} "
            f"in {report.seconds:.1f}s")
    if report.replaced:
        text += f"; replaced {', '.join(report.replaced)}"
    return text


def sync_after_harvest(app: Any) -> dict[str, Any]:
    """Bring the index up to date after a harvest. The index being down never fails
    the harvest: the answer says how far behind it is ("ok": False)."""
    try:
        report, warning = run_for_app(app)
    except (IndexError_, LockedError) as exc:
        report = getattr(exc, "report", None)
        return {"ok": False, "message": f"warning: {exc}",
                **(report.to_json() if report else {})}
    message = describe(report) + (f"\nwarning: {warning}" if warning else "")
    return {"ok": True, "message": message, **report.to_json()}
