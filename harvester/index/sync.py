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

Building the actions (parse, tag, map: the CPU-heavy part) runs ahead in a
thread of its own with its own store connection while the calling thread
waits on Elasticsearch; every store write stays in the calling thread. With
`until`, a sync follows a store that is still being written (a harvest running
meanwhile, see `harvester.index.follow`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harvester.errors import IndexError_, LockedError, OntologyError, RecordError
from harvester.index import IndexBackend, WriteResult
from harvester.index.actions import Action, delete_action, doc_id, index_action
from harvester.pipeline import Facility, to_document
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


# One unit of work handed from the builder to the writer.
@dataclass
class _Entry:
    source: str
    identifier: str
    seq: int
    advances: bool  # a change of the stream (moves the position) or a retry (does not)
    retry: bool = False  # an earlier failure tried again
    gone: bool = False  # an earlier failure whose record left the store: forget it
    action: Action | None = None
    error: str | None = None  # why it is no action (unparsable): the writer records it
    sent: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.identifier


# What a pass writes, read through the store connection it is given: entries in
# the order their results must come back, each with its record (None: nothing
# to build); None between them when a followed store has nothing new yet.
Pair = tuple[_Entry, StoredRecord | None]
Feed = Callable[[Store], Iterator[Pair | None]]


@dataclass(frozen=True)
class _Enrichment:
    """What turning a record into an action needs."""

    facilities: Mapping[str, Facility]
    tagger: Any
    ontology: Any


def _build(entry: _Entry, rec: StoredRecord, how: _Enrichment) -> None:
    """Parse, tag and map one record into `entry.action` (or `entry.error`). Pure: no
    store access, so it can run in the builder thread."""
    try:
        if rec.deleted:
            entry.action = delete_action(source=rec.source, identifier=rec.identifier,
                                         datestamp=rec.datestamp)
        else:
            doc = to_document(rec, facility=how.facilities.get(rec.source), tagger=how.tagger)
            entry.action = index_action(doc, how.ontology, source=rec.source,
                                        identifier=rec.identifier, datestamp=rec.datestamp)
    except RecordError as exc:
        # Kept aside as an index failure: it is retried on every sync, so a
        # parser fix (then `index sync` or `rebuild`) brings it in.
        entry.error = f"unparsable: {exc}"


def _built(pairs: Iterable[Pair | None], how: _Enrichment) -> Iterator[_Entry]:
    for pair in pairs:
        if pair is None:
            continue
        entry, rec = pair
        if rec is not None:
            _build(entry, rec, how)
        yield entry


def _stream(records: Iterable[StoredRecord], *, advances: bool) -> Iterator[Pair]:
    for rec in records:
        yield _Entry(rec.source, rec.identifier, rec.seq, advances), rec


def _batches(pairs: Iterable[Pair | None], size: int) -> Iterator[list[Pair]]:
    """Batches of `size`; a shorter one (maybe empty) when the feed has nothing new."""
    batch: list[Pair] = []
    for pair in pairs:
        if pair is None:
            yield batch
            batch = []
            continue
        batch.append(pair)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_BATCH = 50  # entries per queue hand-over: one lock round trip per batch, not per record
_DONE = object()


@contextmanager
def _in_line(path: Path, feed: Feed, how: _Enrichment) -> Iterator[Iterator[_Entry]]:
    """Build in the calling thread, reading through a connection of its own all
    the same: a connection in the middle of a long read cannot start writing once
    another one (a harvest) has committed (SQLite's WAL snapshots), and the
    writer's connection must stay free to record failures and the position."""
    with Store(path) as own:
        yield _built(feed(own), how)


class _Raised:
    """An exception of the builder thread, on its way to the writer's."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Builder:
    """Builds the actions of a pass (parse, tag, map: the CPU-heavy part) in a
    thread of its own, ahead of the writer, which meanwhile waits on the backend;
    hands them over in order through a bounded queue.

    The thread reads the store through its own connection (a Store is one sqlite3
    connection with explicit transactions: never shared between threads; see
    also `_in_line`) and writes nothing: an unparsable record travels as an
    entry with an `error`, which the writer records. A failure of the thread is
    raised in the writer's thread."""

    def __init__(self, path: Path, feed: Feed, how: _Enrichment, *, ahead: int) -> None:
        self.path, self.feed, self.how = path, feed, how
        self.depth = max(2, ahead // _BATCH)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-builder", daemon=True)

    def __enter__(self) -> Iterator[_Entry]:
        self._thread.start()
        return self._entries()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a builder waiting on a full queue
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with Store(self.path) as own:
                for batch in _batches(self.feed(own), _BATCH):
                    if self._stop.is_set() or batch and not self._put(list(_built(batch, self.how))):
                        return
            self._put(_DONE)
        except BaseException as exc:  # handed to the writer, which raises it
            self._put(_Raised(exc))

    def _entries(self) -> Iterator[_Entry]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield from item


class _Writer:
    """Streams records through one backend, in order, keeping the position honest.

    All store writes (failures recorded and cleared, the position) happen in the
    calling thread; only building the actions runs ahead in a `_Builder`."""

    def __init__(self, store: Store, backend: IndexBackend, report: SyncReport, *,
                 facilities: Mapping[str, Facility], tagger: Any, ontology: Any,
                 chunk_size: int, on_progress: Progress | None, position: int) -> None:
        self.store, self.backend, self.report = store, backend, report
        self.name = backend.alias
        self.how = _Enrichment(dict(facilities), tagger, ontology)
        self.chunk_size, self.on_progress = chunk_size, on_progress
        self.safe = position  # every change up to here is handled
        self.known_failures = {(s, i) for s, i, *_ in store.index_failures(self.name)}
        self._pending: deque[_Entry] = deque()

    def _fail(self, entry: _Entry, error: str) -> None:
        self.store.add_index_failure(self.name, entry.source, entry.identifier, entry.seq, error)
        self.known_failures.add(entry.key)

    def _actions(self, entries: Iterable[_Entry]) -> Iterator[Action]:
        for entry in entries:
            if entry.gone:
                self.store.clear_index_failure(self.name, *entry.key)
                self.known_failures.discard(entry.key)
                continue
            if entry.retry:
                self.report.retried += 1
            if entry.error is not None:
                self._fail(entry, entry.error)
                self.report.unparsable += 1
                self._pending.append(entry)
                continue
            entry.sent = True
            self._pending.append(entry)
            yield entry.action  # type: ignore[misc]

    def _advance(self, entry: _Entry) -> None:
        if entry.advances:
            self.safe = entry.seq

    def _drain_local(self) -> None:
        # Records handled without the backend (unparsable, recorded) that came
        # before any unconfirmed action are safe to move past.
        while self._pending and not self._pending[0].sent:
            self._advance(self._pending.popleft())

    def _outcome(self, entry: _Entry, result: WriteResult) -> None:
        if result.outcome == "failed":
            self._fail(entry, result.error or "refused")
            self.report.failed += 1
            return
        if result.outcome == "stale":
            self.report.stale += 1
        elif result.op == "delete":
            self.report.deleted += 1
        else:
            self.report.indexed += 1
        if entry.key in self.known_failures:
            self.store.clear_index_failure(self.name, *entry.key)
            self.known_failures.discard(entry.key)

    def _entries(self, feed: Feed) -> AbstractContextManager[Iterable[_Entry]]:
        if str(self.store.path) == ":memory:":  # no second connection sees it
            return nullcontext(_built(feed(self.store), self.how))
        # Building ahead pays while write() waits on a server (`build_ahead`, set by
        # the Elasticsearch backend). Where write() is CPU-bound Python itself (the
        # embedded index), a builder thread only contends for the interpreter lock:
        # measured 10-15% slower.
        if getattr(self.backend, "build_ahead", False):
            return _Builder(self.store.path, feed, self.how, ahead=2 * self.chunk_size)
        return _in_line(self.store.path, feed, self.how)

    def run(self, feed: Feed, *, index: str | None, save_position: bool) -> None:
        done = 0
        try:
            with self._entries(feed) as entries:
                for result in self.backend.write(self._actions(entries), index=index,
                                                 chunk_size=self.chunk_size):
                    self._drain_local()
                    entry = self._pending.popleft()
                    expected = doc_id(entry.source, entry.identifier)
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


def _finished(report: SyncReport, store: Store, started: float) -> SyncReport:
    report.behind = store.count_changes_since(report.position)
    report.seconds = time.monotonic() - started
    return report


def _behind(exc: IndexError_, store: Store, report: SyncReport, started: float) -> IndexError_:
    _finished(report, store, started)
    report.error = str(exc)
    err = IndexError_(
        f"{exc}. The index {report.alias!r} is behind the record store by {report.behind} "
        f"change(s) (in step up to change {report.position} of {store.max_seq()}); nothing is lost: "
        "the store keeps every record and the next `pan-harvester index sync` catches up.")
    err.report = report  # type: ignore[attr-defined]
    return err


def _tail(store: Store, position: int, until: Callable[[], bool], poll: float
          ) -> Iterator[Pair | None]:
    """Every change after `position`, including those committed while this runs,
    until `until()` is true and nothing newer is left."""
    last = position
    while True:
        # Asked before looking: whatever was committed before the writer said it
        # is done is in the look that follows.
        finished = until()
        moved = False
        for rec in store.changes_since(last):
            moved, last = True, rec.seq
            yield _Entry(rec.source, rec.identifier, rec.seq, True), rec
        if not moved:
            if finished:
                return
            yield None  # nothing new: what was read so far can go, and a stop be heard
            time.sleep(poll)


def _retries(store: Store, name: str, position: int) -> Iterator[Pair]:
    """Earlier failures to try again; the writer forgets those whose record is gone."""
    for source, identifier, _seq, _error, _attempts in store.index_failures(name):
        rec = store.get_record(source, identifier)
        if rec is None:  # gone from the store altogether
            yield _Entry(source, identifier, 0, False, gone=True), None
        elif rec.seq <= position:  # else it changed since: it comes with the changes
            yield _Entry(rec.source, rec.identifier, rec.seq, False, retry=True), rec


def sync(store: Store, backend: IndexBackend, *, facilities: Mapping[str, Facility] | None = None,
         tagger: Any = None, ontology: Any = None, chunk_size: int = 500,
         on_progress: Progress | None = None, until: Callable[[], bool] | None = None,
         poll: float = 0.05) -> SyncReport:
    """Bring the index behind `backend.alias` up to date with the store.

    Creates the index on first use. Raises IndexError_ (with `.report`) when the
    backend cannot be reached; the position then stays at the last change
    confirmed written.

    With `until`, follow a store that is being written (a harvest running
    meanwhile): keep taking its new changes, looking every `poll` seconds, until
    `until()` is true, then catch up with what was committed before it became
    true and return."""
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

        def feed(own: Store) -> Iterator[Pair | None]:
            yield from _retries(own, name, position)
            if until is None:
                yield from _stream(own.changes_since(position), advances=True)
            else:
                yield from _tail(own, position, until, poll)

        writer.run(feed, index=None, save_position=True)
        backend.refresh()
    except IndexError_ as exc:
        raise _behind(exc, store, report, started) from exc
    return _finished(report, store, started)


def rebuild(store: Store, backend: IndexBackend, *, facilities: Mapping[str, Facility] | None = None,
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
        writer.run(lambda own: _stream(own.iter_records(), advances=False), index=target,
                   save_position=False)
        # What changed while the bulk load ran, tombstones included.
        writer.run(lambda own: _stream(own.changes_since(start_seq), advances=True), index=target,
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
        since = writer.safe
        writer.run(lambda own: _stream(own.changes_since(since), advances=True), index=None,
                   save_position=True)
        backend.refresh()
    except IndexError_ as exc:
        raise _behind(exc, store, report, started) from exc
    return _finished(report, store, started)


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
                chunk_size: int = 1000, until: Callable[[], bool] | None = None
                ) -> tuple[SyncReport, str | None]:
    """Sync (or rebuild) the configured index from the app's store, holding the
    alias's lock so two syncs of one index never interleave. Returns the report
    and a warning (None when all is well). Raises IndexError_ with `.report`.
    `until`: follow the store until it is true (a sync only, see `sync`)."""
    from harvester.index import open_backend
    from harvester.locks import source_lock

    settings = app.settings
    facilities = {name: src.facility_rule() for name, src in settings.sources.items()}
    tagger, ontology, warning = _enrichment(app)
    if warning:
        log.warning("%s", warning)
    run: Callable[..., SyncReport] = rebuild if mode == "rebuild" else sync
    extra = {"until": until} if until is not None else {}
    backend = open_backend(settings)
    store = app.store()
    try:
        # "_" cannot start a source name, so this lock never collides with a harvest's.
        with source_lock(settings.data_dir, f"_index-{backend.alias}", wait=LOCK_WAIT,
                         purpose=f"index {mode}"):
            report = run(store, backend, facilities=facilities, tagger=tagger, ontology=ontology,
                         chunk_size=chunk_size, on_progress=on_progress, **extra)
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


def sync_after_harvest(app: Any, follower: Any = None) -> dict[str, Any]:
    """Bring the index up to date after a harvest. The index being down never fails
    the harvest: the answer says how far behind it is ("ok": False).

    `follower`: the `harvester.index.follow.Follower` that ran during the harvest;
    its result when it has one, else a sync now."""
    done = follower.finish() if follower is not None else None
    if done is not None:
        report, warning = done
    else:
        try:
            report, warning = run_for_app(app)
        except (IndexError_, LockedError) as exc:
            report = getattr(exc, "report", None)
            return {"ok": False, "message": f"warning: {exc}",
                    **(report.to_json() if report else {})}
    message = describe(report) + (f"\nwarning: {warning}" if warning else "")
    return {"ok": True, "message": message, **report.to_json()}
