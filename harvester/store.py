"""The durable record store (SQLite, WAL): raw records, checkpoints, runs.

Everything the harvester knows lives here, so the index can be rebuilt and a
killed harvest resumed without asking any facility again:

- `records`: one row per (source, identifier), the raw OAI `<record>` XML,
  newest datestamp wins, deletions kept as tombstones; `seq` is a global,
  strictly increasing change counter that the index sync follows.
- `checkpoints`: where an unfinished list harvest stands (token, cursor,
  completeListSize, expirationDate, window, first responseDate), committed in
  the same transaction as the page's records.
- `watermarks`: the server's first responseDate of the last complete harvest
  of a (source, set, prefix): the next incremental `from`.
- `runs`, `kept_aside`, `source_state`: what happened, what was set aside, the
  last success and error per source.
- `index_state`, `index_failures`: how far each index has followed `seq`.

A Store holds one connection; give each thread its own Store. Writers
serialise on SQLite's lock (BEGIN IMMEDIATE, busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BUSY_TIMEOUT = 60.0  # seconds a connection waits for another's lock

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    source TEXT NOT NULL,
    identifier TEXT NOT NULL,
    datestamp TEXT NOT NULL,          -- as the server sent it
    datestamp_key TEXT NOT NULL,      -- normalised to YYYY-MM-DDThh:mm:ssZ for comparison
    deleted INTEGER NOT NULL,
    sets TEXT NOT NULL,               -- JSON array
    metadata_prefix TEXT NOT NULL,
    raw BLOB,                         -- the whole <record> element; NULL for tombstones
    digest BLOB,
    seq INTEGER NOT NULL,
    harvested_at TEXT NOT NULL,
    PRIMARY KEY (source, identifier)
);
CREATE UNIQUE INDEX IF NOT EXISTS records_seq ON records(seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    source TEXT NOT NULL,
    set_spec TEXT NOT NULL,           -- '' for no set
    metadata_prefix TEXT NOT NULL,
    token TEXT,
    cursor INTEGER,
    complete_list_size INTEGER,
    expiration_date TEXT,
    window_from TEXT,
    window_until TEXT,
    first_response_date TEXT,
    pages INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, set_spec, metadata_prefix)
);
CREATE TABLE IF NOT EXISTS watermarks (
    source TEXT NOT NULL,
    set_spec TEXT NOT NULL,
    metadata_prefix TEXT NOT NULL,
    response_date TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (source, set_spec, metadata_prefix)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    mode TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,             -- running, ok, failed, interrupted
    records INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    kept_aside INTEGER NOT NULL DEFAULT 0,
    repaired INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_source ON runs(source, id);
CREATE TABLE IF NOT EXISTS kept_aside (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,               -- page, record, document
    url TEXT,
    identifier TEXT,
    reason TEXT NOT NULL,
    raw BLOB,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS source_state (
    source TEXT PRIMARY KEY,
    identify TEXT,                    -- JSON of the last Identify answer
    identified_at TEXT,
    last_success TEXT,
    last_error TEXT,
    last_error_at TEXT
);
CREATE TABLE IF NOT EXISTS index_state (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS index_failures (
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    identifier TEXT NOT NULL,
    seq INTEGER NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (name, source, identifier)
);
"""


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(value: str) -> datetime:
    """The moment a `utcnow()` string names."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def datestamp_key(datestamp: str) -> str:
    """Day-granularity datestamps compare as the start of that day."""
    datestamp = datestamp.strip()
    if len(datestamp) == 10:
        return datestamp + "T00:00:00Z"
    return datestamp


@dataclass(frozen=True)
class StoredRecord:
    source: str
    identifier: str
    datestamp: str
    deleted: bool
    sets: tuple[str, ...]
    metadata_prefix: str
    raw: bytes | None
    seq: int


@dataclass(frozen=True)
class IncomingRecord:
    """One record of a page, as the harvester hands it to the store."""

    identifier: str
    datestamp: str
    deleted: bool
    sets: tuple[str, ...]
    raw: bytes | None


@dataclass
class Checkpoint:
    source: str
    set_spec: str
    metadata_prefix: str
    token: str | None = None
    cursor: int | None = None
    complete_list_size: int | None = None
    expiration_date: str | None = None
    window_from: str | None = None
    window_until: str | None = None
    first_response_date: str | None = None
    pages: int = 0
    records: int = 0
    started_at: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class PageOutcome:
    new: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0


_RECORD_COLUMNS = "source, identifier, datestamp, deleted, sets, metadata_prefix, raw, seq"


def _to_record(row: sqlite3.Row | tuple) -> StoredRecord:
    source, identifier, datestamp, deleted, sets, prefix, raw, seq = row
    return StoredRecord(source, identifier, datestamp, bool(deleted), tuple(json.loads(sets)), prefix,
                        raw, seq)


def _named(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    """A row as {column: value}."""
    return dict(zip([d[0] for d in cur.description], row))


def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def open_wal(path: Path | str, *, setup: Callable[[sqlite3.Connection], Any] | None = None
             ) -> sqlite3.Connection:
    """A connection in WAL mode with explicit transactions (isolation_level None:
    a page and its checkpoint commit together or not at all), then `setup`
    (idempotent: the schema, pragmas).

    Switching a new file to WAL takes an exclusive lock for which SQLite does not
    always call the busy handler: two harvests starting at once on a new data
    directory got "database is locked" about once in a hundred. So this waits on
    its own, as long as the busy timeout would."""
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False)
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if setup is not None:
                setup(conn)
            return conn
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.5)


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = open_wal(path, setup=lambda conn: conn.executescript(SCHEMA))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------

    def _write(self) -> "_Transaction":
        return _Transaction(self.conn)

    # -- records --------------------------------------------------------------

    def _upsert(self, source: str, prefix: str, rec: IncomingRecord, seq: int, now: str) -> str:
        """Insert or update one record inside an open transaction.
        Returns 'new', 'updated', 'deleted' or 'unchanged'."""
        key = datestamp_key(rec.datestamp)
        raw = None if rec.deleted else rec.raw
        digest = hashlib.blake2b(raw, digest_size=16).digest() if raw is not None else None
        row = self.conn.execute(
            "SELECT datestamp_key, deleted, digest FROM records WHERE source=? AND identifier=?",
            (source, rec.identifier),
        ).fetchone()
        if row is not None:
            old_key, old_deleted, old_digest = row
            if key < old_key:
                return "unchanged"  # an older version: newest datestamp wins
            if key == old_key and bool(old_deleted) == rec.deleted and old_digest == digest:
                return "unchanged"  # from/until are inclusive: the same record comes twice
        self.conn.execute(
            """INSERT INTO records (source, identifier, datestamp, datestamp_key, deleted, sets,
                   metadata_prefix, raw, digest, seq, harvested_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (source, identifier) DO UPDATE SET
                   datestamp=excluded.datestamp, datestamp_key=excluded.datestamp_key,
                   deleted=excluded.deleted, sets=excluded.sets,
                   metadata_prefix=excluded.metadata_prefix, raw=excluded.raw,
                   digest=excluded.digest, seq=excluded.seq, harvested_at=excluded.harvested_at""",
            (source, rec.identifier, rec.datestamp, key, int(rec.deleted), json.dumps(list(rec.sets)),
             prefix, raw, digest, seq, now),
        )
        if rec.deleted:
            return "deleted"
        return "new" if row is None else "updated"

    def _next_seq(self) -> int:
        return self.max_seq() + 1

    def commit_page(self, source: str, prefix: str, records: Iterable[IncomingRecord],
                    checkpoint: Checkpoint | None, *, kept_aside: Sequence[dict[str, Any]] = ()
                    ) -> PageOutcome:
        """Store a page's records, what was kept aside from it, and the checkpoint
        after it, in one transaction."""
        counts = {"new": 0, "updated": 0, "deleted": 0, "unchanged": 0}
        now = utcnow()
        with self._write():
            seq = self._next_seq()
            for rec in records:
                outcome = self._upsert(source, prefix, rec, seq, now)
                counts[outcome] += 1
                if outcome != "unchanged":
                    seq += 1
            for item in kept_aside:
                self._keep_aside(source, now=now, **item)
            if checkpoint is not None:
                checkpoint.updated_at = now
                self._save_checkpoint(checkpoint)
        return PageOutcome(**counts)

    def upsert_record(self, source: str, identifier: str, datestamp: str, *, deleted: bool,
                      raw: bytes | None, sets: Sequence[str] = (),
                      metadata_prefix: str = "oai_datacite") -> bool:
        """Store one record on its own; True if it changed the store."""
        outcome = self.commit_page(
            source, metadata_prefix,
            [IncomingRecord(identifier, datestamp, deleted, tuple(sets), raw)], None)
        return outcome.unchanged == 0

    def mark_deleted(self, source: str, identifiers: Iterable[str], datestamp: str) -> int:
        """Turn live records into tombstones (records that vanished from a server
        that does not report deletions)."""
        n = 0
        now = utcnow()
        with self._write():
            seq = self._next_seq()
            for identifier in identifiers:
                cur = self.conn.execute(
                    """UPDATE records SET deleted=1, raw=NULL, digest=NULL, seq=?, harvested_at=?,
                           datestamp=?, datestamp_key=?
                       WHERE source=? AND identifier=? AND deleted=0""",
                    (seq, now, datestamp, datestamp_key(datestamp), source, identifier))
                if cur.rowcount:
                    n += 1
                    seq += 1
        return n

    def get_record(self, source: str, identifier: str) -> StoredRecord | None:
        row = self.conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE source=? AND identifier=?",
            (source, identifier)).fetchone()
        return _to_record(row) if row else None

    def iter_records(self, source: str | None = None, *, include_deleted: bool = False
                     ) -> Iterator[StoredRecord]:
        clauses, params = [], []
        if source is not None:
            clauses.append("source=?")
            params.append(source)
        if not include_deleted:
            clauses.append("deleted=0")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # A separate cursor streams rows; nothing is collected in memory.
        for row in self.conn.execute(f"SELECT {_RECORD_COLUMNS} FROM records {where} ORDER BY seq",
                                     params):
            yield _to_record(row)

    def live_identifiers(self, source: str) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT identifier FROM records WHERE source=? AND deleted=0", (source,))}

    def changes_since(self, seq: int) -> Iterator[StoredRecord]:
        for row in self.conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE seq > ? ORDER BY seq", (seq,)):
            yield _to_record(row)

    def max_seq(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0]

    def count_changes_since(self, seq: int) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM records WHERE seq > ?", (seq,)).fetchone()[0]

    def count_changes_by_source(self, seq: int) -> dict[str, int]:
        """Changes after `seq` per source. Counted from the seq index: cheap while
        the lag is small, which is when a metrics scrape asks most."""
        return dict(self.conn.execute(
            "SELECT source, COUNT(*) FROM records WHERE seq > ? GROUP BY source", (seq,)).fetchall())

    def counts(self, source: str) -> tuple[int, int]:
        """(live records, tombstones) of a source."""
        live, dead = self.conn.execute(
            "SELECT COALESCE(SUM(deleted=0), 0), COALESCE(SUM(deleted=1), 0) FROM records WHERE source=?",
            (source,)).fetchone()
        return live, dead

    # -- checkpoints and watermarks ------------------------------------------

    def _save_checkpoint(self, cp: Checkpoint) -> None:
        self.conn.execute(
            """INSERT OR REPLACE INTO checkpoints (source, set_spec, metadata_prefix, token, cursor,
                   complete_list_size, expiration_date, window_from, window_until,
                   first_response_date, pages, records, started_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (cp.source, cp.set_spec, cp.metadata_prefix, cp.token, cp.cursor, cp.complete_list_size,
             cp.expiration_date, cp.window_from, cp.window_until, cp.first_response_date, cp.pages,
             cp.records, cp.started_at or cp.updated_at, cp.updated_at))

    def save_checkpoint(self, cp: Checkpoint) -> None:
        cp.updated_at = utcnow()
        with self._write():
            self._save_checkpoint(cp)

    def get_checkpoint(self, source: str, set_spec: str, prefix: str) -> Checkpoint | None:
        cur = self.conn.execute(
            "SELECT * FROM checkpoints WHERE source=? AND set_spec=? AND metadata_prefix=?",
            (source, set_spec, prefix))
        row = cur.fetchone()
        if row is None:
            return None
        return Checkpoint(**_named(cur, row))

    def checkpoints(self, source: str) -> list[Checkpoint]:
        cur = self.conn.execute("SELECT * FROM checkpoints WHERE source=?", (source,))
        return [Checkpoint(**row) for row in _dicts(cur)]

    def complete_list(self, source: str, set_spec: str, prefix: str, *,
                      watermark: str | None) -> None:
        """A list harvest reached its end: drop the checkpoint and, when the
        window covered everything up to now, move the watermark."""
        with self._write():
            self.conn.execute(
                "DELETE FROM checkpoints WHERE source=? AND set_spec=? AND metadata_prefix=?",
                (source, set_spec, prefix))
            if watermark:
                self.conn.execute(
                    """INSERT OR REPLACE INTO watermarks (source, set_spec, metadata_prefix,
                           response_date, completed_at) VALUES (?, ?, ?, ?, ?)""",
                    (source, set_spec, prefix, watermark, utcnow()))

    def get_watermark(self, source: str, set_spec: str, prefix: str) -> str | None:
        row = self.conn.execute(
            "SELECT response_date FROM watermarks WHERE source=? AND set_spec=? AND metadata_prefix=?",
            (source, set_spec, prefix)).fetchone()
        return row[0] if row else None

    def watermark_of(self, source: str) -> str | None:
        """The oldest watermark across a source's lists: everything before it is harvested."""
        row = self.conn.execute("SELECT MIN(response_date) FROM watermarks WHERE source=?",
                                (source,)).fetchone()
        return row[0] if row else None

    # -- runs, errors, kept aside --------------------------------------------

    def start_run(self, source: str, mode: str) -> int:
        with self._write():
            cur = self.conn.execute(
                "INSERT INTO runs (source, mode, started_at, status) VALUES (?, ?, ?, 'running')",
                (source, mode, utcnow()))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, *, status: str, records: int, deleted: int, kept_aside: int,
                   repaired: int, requests: int, error: str | None) -> None:
        now = utcnow()
        with self._write():
            self.conn.execute(
                """UPDATE runs SET finished_at=?, status=?, records=?, deleted=?, kept_aside=?,
                       repaired=?, requests=?, error=? WHERE id=?""",
                (now, status, records, deleted, kept_aside, repaired, requests, error, run_id))
            source = self.conn.execute("SELECT source FROM runs WHERE id=?", (run_id,)).fetchone()[0]
            self.conn.execute("INSERT OR IGNORE INTO source_state (source) VALUES (?)", (source,))
            if status == "ok":
                self.conn.execute("UPDATE source_state SET last_success=? WHERE source=?",
                                  (now, source))
                self.conn.execute(
                    "UPDATE source_state SET last_error=NULL, last_error_at=NULL WHERE source=?",
                    (source,))
            elif error:
                self.conn.execute(
                    "UPDATE source_state SET last_error=?, last_error_at=? WHERE source=?",
                    (error, now, source))

    def runs(self, source: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE source=?", [source]) if source else ("", [])
        cur = self.conn.execute(f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        return _dicts(cur)

    def close_stale_runs(self, source: str) -> None:
        """Runs left 'running' by a killed process are marked interrupted."""
        with self._write():
            self.conn.execute(
                "UPDATE runs SET status='interrupted', finished_at=? WHERE source=? AND status='running'",
                (utcnow(), source))

    def _keep_aside(self, source: str, *, kind: str, reason: str, url: str | None = None,
                    identifier: str | None = None, raw: bytes | None = None, now: str) -> None:
        self.conn.execute(
            """INSERT INTO kept_aside (source, kind, url, identifier, reason, raw, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (source, kind, url, identifier, reason, raw, now))

    def keep_aside(self, source: str, *, kind: str, reason: str, url: str | None = None,
                   identifier: str | None = None, raw: bytes | None = None) -> None:
        with self._write():
            self._keep_aside(source, kind=kind, reason=reason, url=url, identifier=identifier,
                             raw=raw, now=utcnow())

    def kept_aside(self, source: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        if source:
            clauses.append("source=?")
            params.append(source)
        if kind:
            clauses.append("kind=?")
            params.append(kind)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        cur = self.conn.execute(
            f"SELECT id, source, kind, url, identifier, reason, created_at FROM kept_aside {where} "
            "ORDER BY id", params)
        return _dicts(cur)

    def source_state(self, source: str) -> dict[str, Any]:
        cur = self.conn.execute("SELECT * FROM source_state WHERE source=?", (source,))
        row = cur.fetchone()
        if row is None:
            return {"source": source, "identify": None, "identified_at": None, "last_success": None,
                    "last_error": None, "last_error_at": None}
        state = _named(cur, row)
        state["identify"] = json.loads(state["identify"]) if state["identify"] else None
        return state

    def save_identify(self, source: str, identify: dict[str, Any]) -> None:
        with self._write():
            self.conn.execute("INSERT OR IGNORE INTO source_state (source) VALUES (?)", (source,))
            self.conn.execute("UPDATE source_state SET identify=?, identified_at=? WHERE source=?",
                              (json.dumps(identify), utcnow(), source))

    def index_position(self, name: str) -> int:
        row = self.conn.execute("SELECT position FROM index_state WHERE name=?", (name,)).fetchone()
        return row[0] if row else 0

    def set_index_position(self, name: str, seq: int) -> None:
        with self._write():
            self.conn.execute("INSERT OR REPLACE INTO index_state (name, position) VALUES (?, ?)",
                              (name, seq))

    def add_index_failure(self, name: str, source: str, identifier: str, seq: int, error: str) -> None:
        with self._write():
            self.conn.execute(
                """INSERT INTO index_failures (name, source, identifier, seq, error) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (name, source, identifier) DO UPDATE SET
                       seq=excluded.seq, error=excluded.error, attempts=attempts + 1""",
                (name, source, identifier, seq, error))

    def index_failures(self, name: str) -> list[tuple[str, str, int, str, int]]:
        return [tuple(r) for r in self.conn.execute(
            "SELECT source, identifier, seq, error, attempts FROM index_failures WHERE name=? ORDER BY seq",
            (name,))]

    def clear_index_failure(self, name: str, source: str, identifier: str) -> None:
        with self._write():
            self.conn.execute("DELETE FROM index_failures WHERE name=? AND source=? AND identifier=?",
                              (name, source, identifier))


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
