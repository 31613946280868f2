"""The embedded backend: SQLite FTS5 in DATA_DIR/index.sqlite, for use without Elasticsearch.

It answers like the Elasticsearch backend (one contract test suite runs on
both): the same bulk actions and external versions (tombstones keep the
version of a deleted document), the same query semantics (every word or
quoted phrase must match the text; facility, technique and year filters), the
same facet buckets and completeness report. Relevance scores differ.

Layout: `aliases` maps an alias to a concrete index; each concrete index is a
set of tables `t<N>_docs` (one narrow row per document: the columns filters
and facets read, so scanning 100k of them is cheap), `t<N>_src` (the hit and
the whole body as JSON), `t<N>_tech` (technique IRIs with their ancestors),
`t<N>_direct` (the tagged techniques, for facets), `t<N>_instr`, `t<N>_fts`
(FTS5: title, text) and `t<N>_gone` (tombstones). A rebuild fills
new tables, then moves the alias in one transaction; WAL lets searches go on
reading their snapshot meanwhile.

One connection per thread (SQLite connections are not shared across threads).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from harvester.errors import IndexError_
from harvester.index import (DEFAULT_MAPPING, IndexBackend, WriteResult, check_mapping_version, completeness_row,
                             load_mapping, new_index_name)
from harvester.index.actions import COMPLETENESS_FLAGS, Action, hit, text_values
from harvester.index.query import SearchQuery, SearchResult, sort_buckets
from harvester.store import open_wal

_REGISTRY = """
CREATE TABLE IF NOT EXISTS indexes (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    alias TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (alias TEXT PRIMARY KEY, name TEXT NOT NULL);
"""

_TABLES = """
CREATE TABLE t{n}_docs (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    source TEXT, facility TEXT, year INTEGER, license TEXT, access TEXT,
    c_licence INTEGER, c_orcid INTEGER, c_ror INTEGER, c_abstract INTEGER,
    c_instrument INTEGER, c_technique INTEGER,
    techs TEXT, instrs TEXT  -- tagged technique ids, instrument names: US-separated, for facets
);
CREATE INDEX t{n}_docs_facility_ci ON t{n}_docs(facility COLLATE NOCASE);
CREATE INDEX t{n}_docs_facility ON t{n}_docs(facility);
CREATE INDEX t{n}_docs_order ON t{n}_docs(year DESC, id);
CREATE INDEX t{n}_docs_license ON t{n}_docs(license);
CREATE TABLE t{n}_src (rowid INTEGER PRIMARY KEY, hit TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE t{n}_tech (iri TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (iri, rid)) WITHOUT ROWID;
CREATE INDEX t{n}_tech_rid ON t{n}_tech(rid);
CREATE TABLE t{n}_direct (id TEXT NOT NULL, rid INTEGER NOT NULL, label TEXT,
                          PRIMARY KEY (id, rid)) WITHOUT ROWID;
CREATE INDEX t{n}_direct_rid ON t{n}_direct(rid);
CREATE TABLE t{n}_instr (name TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (name, rid)) WITHOUT ROWID;
CREATE INDEX t{n}_instr_rid ON t{n}_instr(rid);
CREATE TABLE t{n}_gone (id TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIRTUAL TABLE t{n}_fts USING fts5(title, text, tokenize='unicode61 remove_diacritics 0');
INSERT INTO t{n}_fts (t{n}_fts, rank) VALUES ('rank', 'bm25(4.0, 1.0)')
"""
_SUFFIXES = ("docs", "src", "tech", "direct", "instr", "gone", "fts")

# dimension -> column of t<N>_docs (technique and instrument: US-separated lists)
_DOC_FACETS = {"facility": "facility", "year": "year", "licence": "license", "source": "source",
               "access": "access"}
_LIST_FACETS = {"technique": "techs", "instrument": "instrs"}
_SEP = "\x1f"


# Elasticsearch's standard tokenizer (Unicode word boundaries, UAX #29) keeps
# "müller's", "u.s.a", "oai:esrf", "p02.1", "1,000" and "foo_bar" as one token
# where FTS5's unicode61 splits them; gluing the parts (in the indexed text and
# in queries alike) makes both backends match the same documents.
_GLUE = re.compile(r"(?<=\w)[:'’.·,;_](?=\w)")


def _glued(m: re.Match[str]) -> str:
    text, i = m.string, m.start()
    before, mark, after = text[i - 1], text[i], text[i + 1]
    if mark == "_":
        return ""
    if before.isdigit() and after.isdigit():
        return "" if mark in ".,;'" else mark
    if before.isalpha() and after.isalpha():
        return "" if mark in ":'’.·" else mark
    return mark


def _glue(text: str) -> str:
    return _GLUE.sub(_glued, text)


def _fts_query(phrases: list[str]) -> str:
    # Each word or phrase as an FTS5 string: its tokens must appear in sequence;
    # strings side by side are ANDed. Quoting also neutralises AND/OR/NOT/NEAR/*.
    return " ".join('"' + _glue(p).replace('"', '""') + '"' for p in phrases)


def _pragmas(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")


class EmbeddedBackend(IndexBackend):
    kind = "embedded"

    def __init__(self, path: Path | str, alias: str) -> None:
        self.path = Path(path)
        self.alias = alias
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # The shipped mapping is strict; refuse the same unknown fields Elasticsearch would.
        mapping = load_mapping(DEFAULT_MAPPING)["mappings"]
        self._fields = frozenset(mapping["properties"])
        self.mapping_version = int((mapping.get("_meta") or {}).get("mapping_version", 1))
        self._conn().executescript(_REGISTRY)

    def __repr__(self) -> str:
        return f"<EmbeddedBackend {self.path} alias={self.alias}>"

    # -- connections -----------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = open_wal(self.path, setup=_pragmas)
            except sqlite3.Error as exc:
                raise IndexError_(f"cannot open the embedded index {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def _tx(self, immediate: bool = True) -> _Tx:
        return _Tx(self._conn(), immediate, self.path)

    # -- registry --------------------------------------------------------------
    def _n(self, name: str) -> int:
        row = self._conn().execute("SELECT n FROM indexes WHERE name=?", (name,)).fetchone()
        if row is None:
            raise IndexError_(f"no embedded index {name!r} in {self.path}")
        return int(row[0])

    def _alias_n(self) -> int:
        row = self._conn().execute(
            "SELECT i.n FROM aliases a JOIN indexes i ON i.name = a.name WHERE a.alias=?",
            (self.alias,)).fetchone()
        if row is None:
            raise IndexError_(f"no index {self.alias!r} in {self.path} yet: run "
                              "`pan-harvester index sync` (or a harvest) first")
        return int(row[0])

    def _register(self, name: str) -> int:
        conn = self._conn()
        cur = conn.execute("INSERT INTO indexes (name, alias, created) VALUES (?, ?, ?)",
                           (name, self.alias, datetime.now(UTC).isoformat()))
        n = int(cur.lastrowid)
        for statement in _TABLES.format(n=n).split(";"):
            if statement.strip():
                conn.execute(statement)
        return n

    # -- lifecycle -------------------------------------------------------------
    def check(self) -> None:
        try:
            self._conn().execute("SELECT count(*) FROM aliases").fetchone()
        except sqlite3.Error as exc:
            raise IndexError_(f"the embedded index {self.path} is unusable: {exc}") from exc

    def current(self) -> str | None:
        row = self._conn().execute("SELECT name FROM aliases WHERE alias=?", (self.alias,)).fetchone()
        return row[0] if row else None

    def ensure(self) -> str:
        with self._tx():
            existing = self.current()
            if existing:
                return check_mapping_version(existing, self.mapping_version)
            name = new_index_name(self.alias, self.mapping_version)
            self._register(name)
            self._conn().execute("INSERT INTO aliases (alias, name) VALUES (?, ?)", (self.alias, name))
            return name

    def create_index(self) -> str:
        name = new_index_name(self.alias, self.mapping_version)
        with self._tx():
            self._register(name)
        return name

    def _analyze(self, n: int) -> None:
        """Table statistics for the query planner (sampled: milliseconds, not seconds)."""
        conn = self._conn()
        conn.execute("PRAGMA analysis_limit=2000")
        for suffix in ("docs", "tech", "direct", "instr"):
            conn.execute(f"ANALYZE t{n}_{suffix}")

    def publish(self, index: str) -> list[str]:
        self._analyze(self._n(index))
        with self._tx():
            old = [r[0] for r in self._conn().execute(
                "SELECT name FROM aliases WHERE alias=? AND name != ?", (self.alias, index))]
            self._conn().execute("INSERT OR REPLACE INTO aliases (alias, name) VALUES (?, ?)",
                                 (self.alias, index))
        # and leftovers of a rebuild that died before its swap (rebuilds of one
        # alias are serialised by its lock, so no other rebuild is writing them)
        old += [name for name in self.indexes() if name != index and name not in old]
        for name in old:
            self.drop_index(name)
        return old

    def drop_index(self, index: str) -> None:
        conn = self._conn()
        with self._tx():
            row = conn.execute("SELECT n FROM indexes WHERE name=?", (index,)).fetchone()
            if row is None:
                return
            if conn.execute("SELECT 1 FROM aliases WHERE name=?", (index,)).fetchone():
                raise IndexError_(f"{index} is behind an alias; publish another index first")
            for suffix in _SUFFIXES:
                conn.execute(f"DROP TABLE IF EXISTS t{row[0]}_{suffix}")
            conn.execute("DELETE FROM indexes WHERE n=?", (row[0],))

    def indexes(self) -> list[str]:
        return sorted(r[0] for r in self._conn().execute(
            "SELECT name FROM indexes WHERE alias=?", (self.alias,)))

    # -- writing ---------------------------------------------------------------
    def write(self, actions: Iterable[Action], *, index: str | None = None,
              chunk_size: int = 500) -> Iterator[WriteResult]:
        iterator = iter(actions)
        while True:
            # Build the chunk (parsing, tagging) before taking the write lock.
            chunk = list(islice(iterator, chunk_size))
            if not chunk:
                return
            prepared = [self._prepare(a) for a in chunk]
            try:
                with self._tx():
                    n = self._n(index) if index else self._alias_n()
                    results = [self._apply(n, action, row) if error is None else
                               WriteResult(str(action.get("_id")), str(action.get("_op_type")), "failed",
                                           error)
                               for action, row, error in prepared]
            except sqlite3.Error as exc:
                raise IndexError_(f"cannot write the embedded index {self.path}: {exc}") from exc
            yield from results

    def _prepare(self, action: Action) -> tuple[Action, dict[str, Any] | None, str | None]:
        """Everything computed from the action before any write, so a malformed
        action fails alone instead of leaving half a document behind."""
        try:
            op = action.get("_op_type", "index")
            int(action["_version"])
            str(action["_id"])
            if op == "delete":
                return action, None, None
            if op != "index":
                return action, None, f"unsupported operation {op!r}"
            body = action["_source"]
            unknown = sorted(set(body) - self._fields)
            if unknown:
                return action, None, (f"strict_dynamic_mapping_exception: field(s) {', '.join(unknown)} "
                                      "not in the mapping")
            flags = body.get("completeness") or {}
            year = body.get("publication_year")
            direct = sorted({t["id"]: t.get("label") for t in body.get("techniques") or ()}.items())
            instr = sorted({i["name"] for i in body.get("instruments") or () if i.get("name")})
            row = {
                "cols": (body.get("source"), body.get("facility"),
                         int(year) if year is not None else None, body.get("license"),
                         body.get("access_rights"),
                         *(int(bool(flags.get(f))) for f in COMPLETENESS_FLAGS),
                         _SEP.join(i for i, _ in direct) or None, _SEP.join(instr) or None),
                "src": (json.dumps(hit(body), ensure_ascii=False), json.dumps(body, ensure_ascii=False)),
                "iris": sorted(set(body.get("technique_iris") or ())),
                "direct": direct,
                "instr": instr,
                "title": _glue(body.get("title") or ""),
                "text": _glue("\n".join(text_values(body))),
            }
            return action, row, None
        except (KeyError, TypeError, ValueError) as exc:
            return action, None, f"malformed action: {exc!r}"

    def _apply(self, n: int, action: Action, row: dict[str, Any] | None) -> WriteResult:
        conn = self._conn()
        doc, op, version = str(action["_id"]), action.get("_op_type", "index"), int(action["_version"])
        found = conn.execute(f"SELECT rowid, version FROM t{n}_docs WHERE id=?", (doc,)).fetchone()
        current = found[1] if found else None
        if found is None:
            gone = conn.execute(f"SELECT version FROM t{n}_gone WHERE id=?", (doc,)).fetchone()
            current = gone[0] if gone else None
        if current is not None and version < current:  # external_gte
            return WriteResult(doc, op, "stale")
        if found is not None:
            self._remove(n, found[0], keep_doc=(op == "index"))
        if op == "delete":
            conn.execute(f"INSERT OR REPLACE INTO t{n}_gone (id, version) VALUES (?, ?)", (doc, version))
            return WriteResult(doc, op, "ok")
        assert row is not None
        conn.execute(f"DELETE FROM t{n}_gone WHERE id=?", (doc,))
        values = (doc, version, *row["cols"])
        if found is not None:
            rid = found[0]
            conn.execute(
                f"""UPDATE t{n}_docs SET id=?, version=?, source=?, facility=?, year=?, license=?,
                        access=?, c_licence=?, c_orcid=?, c_ror=?, c_abstract=?, c_instrument=?,
                        c_technique=?, techs=?, instrs=? WHERE rowid=?""", (*values, rid))
        else:
            rid = conn.execute(
                f"""INSERT INTO t{n}_docs (id, version, source, facility, year, license, access,
                        c_licence, c_orcid, c_ror, c_abstract, c_instrument, c_technique, techs, instrs)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", values).lastrowid
        conn.execute(f"INSERT OR REPLACE INTO t{n}_src (rowid, hit, body) VALUES (?, ?, ?)", (rid, *row["src"]))
        conn.executemany(f"INSERT INTO t{n}_tech (iri, rid) VALUES (?, ?)", [(i, rid) for i in row["iris"]])
        conn.executemany(f"INSERT INTO t{n}_direct (id, rid, label) VALUES (?, ?, ?)",
                         [(i, rid, label) for i, label in row["direct"]])
        conn.executemany(f"INSERT INTO t{n}_instr (name, rid) VALUES (?, ?)",
                         [(name, rid) for name in row["instr"]])
        conn.execute(f"INSERT INTO t{n}_fts (rowid, title, text) VALUES (?, ?, ?)",
                     (rid, row["title"], row["text"]))
        return WriteResult(doc, op, "ok")

    def _remove(self, n: int, rid: int, *, keep_doc: bool) -> None:
        conn = self._conn()
        for table in ("tech", "direct", "instr"):
            conn.execute(f"DELETE FROM t{n}_{table} WHERE rid=?", (rid,))
        conn.execute(f"DELETE FROM t{n}_fts WHERE rowid=?", (rid,))
        if not keep_doc:
            conn.execute(f"DELETE FROM t{n}_docs WHERE rowid=?", (rid,))
            conn.execute(f"DELETE FROM t{n}_src WHERE rowid=?", (rid,))

    def refresh(self, index: str | None = None) -> None:
        # A committed transaction is visible at once; keep the planner's statistics current.
        self._analyze(self._n(index) if index else self._alias_n())

    # -- reading ---------------------------------------------------------------
    @staticmethod
    def _where(n: int, q: SearchQuery, *, text: bool = True) -> tuple[str, list[Any]]:
        """The condition on `t<N>_docs d` the query sets, and its parameters.
        text=False leaves the text out, for a query that MATCHes the FTS table itself."""
        clauses: list[str] = []
        params: list[Any] = []
        phrases = q.phrases if text else None
        if phrases:
            clauses.append(f"d.rowid IN (SELECT rowid FROM t{n}_fts WHERE t{n}_fts MATCH ?)")
            params.append(_fts_query(phrases))
        if q.facilities:
            clauses.append("(" + " OR ".join("d.facility = ? COLLATE NOCASE" for _ in q.facilities) + ")")
            params.extend(q.facilities)
        if q.technique_iris is not None:
            iris = sorted(q.technique_iris)
            clauses.append(f"d.rowid IN (SELECT rid FROM t{n}_tech WHERE iri IN ({','.join('?' * len(iris))}))"
                           if iris else "0")
            params.extend(iris)
        if q.year_from is not None:
            clauses.append("d.year >= ?")
            params.append(q.year_from)
        if q.year_to is not None:
            clauses.append("d.year <= ?")
            params.append(q.year_to)
        return (" AND ".join(clauses) or "1"), params

    def search(self, query: SearchQuery) -> SearchResult:
        with self._tx(immediate=False):  # one snapshot: an alias swap lands before or after
            n = self._alias_n()
            where, params = self._where(n, query)
            conn = self._conn()
            try:
                total, facets = self._facets(n, query, where, params) if query.facets else (None, {})
                if total is None:
                    total = conn.execute(f"SELECT count(*) FROM t{n}_docs d WHERE {where}", params).fetchone()[0]
                hits = self._hits(n, query, where, params) if query.size else []
            except sqlite3.OperationalError as exc:
                raise IndexError_(f"embedded search failed: {exc}") from exc
        return SearchResult(total=total, hits=hits, facets=facets)

    def _hits(self, n: int, q: SearchQuery, where: str, params: list[Any]) -> list[dict[str, Any]]:
        conn = self._conn()
        # Pick the page by rowid first, then fetch only its JSON hits.
        if q.phrases:
            # FTS5's rank is bm25 with the title weighted 4:1 (set at creation). The
            # join MATCHes the text here, so the other conditions come without it.
            where, params = self._where(n, q, text=False)
            rows = conn.execute(
                f"""SELECT s.hit, -top.rank FROM (
                        SELECT f.rowid AS rid, f.rank AS rank, d.id AS id
                        FROM t{n}_fts f JOIN t{n}_docs d ON d.rowid = f.rowid
                        WHERE t{n}_fts MATCH ? AND {where}
                        ORDER BY f.rank, d.id LIMIT ? OFFSET ?) AS top
                    JOIN t{n}_src s ON s.rowid = top.rid ORDER BY top.rank, top.id""",
                [_fts_query(q.phrases), *params, q.size, q.offset]).fetchall()
            return [{**json.loads(h), "score": round(s, 4)} for h, s in rows]
        # SQLite sorts NULL first, so DESC puts documents without a year last, as
        # Elasticsearch's "missing": "_last" does; the (year DESC, id) index serves it.
        rows = conn.execute(
            f"""SELECT s.hit FROM (
                    SELECT d.rowid AS rid, d.year AS year, d.id AS id FROM t{n}_docs d WHERE {where}
                    ORDER BY d.year DESC, d.id LIMIT ? OFFSET ?) AS top
                JOIN t{n}_src s ON s.rowid = top.rid ORDER BY top.year DESC, top.id""",
            [*params, q.size, q.offset]).fetchall()
        return [json.loads(h) for (h,) in rows]

    def _facets(self, n: int, q: SearchQuery, where: str, params: list[Any]
                ) -> tuple[int | None, dict[str, list[dict[str, Any]]]]:
        """Buckets per dimension, and the number of matches when it came for free."""
        conn = self._conn()
        counts: dict[str, Counter[Any]] = {}
        total: int | None = None
        if where == "1":
            # Everything matches: group on the indexes.
            for dim in q.facets:
                if dim in _DOC_FACETS:
                    col = _DOC_FACETS[dim]
                    rows = conn.execute(f"SELECT {col}, count(*) FROM t{n}_docs WHERE {col} IS NOT NULL "
                                        f"GROUP BY {col}").fetchall()
                elif dim == "technique":
                    rows = conn.execute(f"SELECT id, count(*) FROM t{n}_direct GROUP BY id").fetchall()
                else:
                    rows = conn.execute(f"SELECT name, count(*) FROM t{n}_instr GROUP BY name").fetchall()
                counts[dim] = Counter(dict(rows))
        else:
            # One pass over the matching documents for every dimension at once.
            cols = [_DOC_FACETS.get(dim) or _LIST_FACETS[dim] for dim in q.facets]
            rows = conn.execute(f"SELECT {', '.join('d.' + c for c in cols)} FROM t{n}_docs d WHERE {where}",
                                params).fetchall()
            total = len(rows)
            for i, dim in enumerate(q.facets):
                values = (row[i] for row in rows)
                if dim in _LIST_FACETS:
                    counts[dim] = Counter(v for joined in values if joined for v in joined.split(_SEP))
                else:
                    counts[dim] = Counter(v for v in values if v is not None)
        out: dict[str, list[dict[str, Any]]] = {}
        for dim in q.facets:
            buckets = sort_buckets(dim, [{"key": k, "count": c} for k, c in counts[dim].items()],
                                   q.facet_size)
            if dim == "technique":
                labels = self._labels(n, [b["key"] for b in buckets])
                for b in buckets:
                    b["label"] = labels.get(b["key"])
            out[dim] = buckets
        return total, out

    def _labels(self, n: int, ids: list[str]) -> dict[str, str | None]:
        """The label of each technique id (the one stored with one of its documents)."""
        labels: dict[str, str | None] = {}
        for start in range(0, len(ids), 500):  # under SQLite's limit on parameters
            part = ids[start:start + 500]
            # min(rid): the label stored with the first document, whatever the page.
            rows = self._conn().execute(
                f"SELECT id, label, min(rid) FROM t{n}_direct WHERE id IN ({','.join('?' * len(part))}) "
                "GROUP BY id", part).fetchall()
            labels.update((i, label) for i, label, _ in rows)
        return labels

    def completeness(self, query: SearchQuery) -> list[dict[str, Any]]:
        with self._tx(immediate=False):
            n = self._alias_n()
            where, params = self._where(n, query)
            sums = ", ".join(f"sum(c_{flag})" for flag in COMPLETENESS_FLAGS)
            rows = self._conn().execute(
                f"SELECT d.facility, count(*), {sums} FROM t{n}_docs d "
                f"WHERE d.facility IS NOT NULL AND {where} GROUP BY d.facility", params).fetchall()
        out = [completeness_row(r[0], r[1], dict(zip(COMPLETENESS_FLAGS, r[2:]))) for r in rows]
        return sort_buckets("facility", out)

    def get(self, doc_id: str) -> dict[str, Any] | None:
        with self._tx(immediate=False):
            try:
                n = self._alias_n()
            except IndexError_:
                return None
            row = self._conn().execute(f"SELECT s.body FROM t{n}_docs d JOIN t{n}_src s ON s.rowid = d.rowid "
                                       "WHERE d.id=?", (doc_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def count(self) -> int:
        with self._tx(immediate=False):
            n = self._alias_n()
            return int(self._conn().execute(f"SELECT count(*) FROM t{n}_docs").fetchone()[0])


class _Tx:
    """BEGIN [IMMEDIATE] ... COMMIT on this thread's connection; nested use joins the outer one."""

    def __init__(self, conn: sqlite3.Connection, immediate: bool, path: Path) -> None:
        self.conn, self.immediate, self.path = conn, immediate, path
        self.outer = False

    def __enter__(self) -> None:
        if self.conn.in_transaction:
            self.outer = True
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise IndexError_(f"the embedded index {self.path} is busy or unusable: {exc}") from exc

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.outer:
            return
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self.conn.execute("ROLLBACK")
                raise IndexError_(f"cannot write the embedded index {self.path}: {exc}") from exc
        else:
            self.conn.execute("ROLLBACK")

