"""The Elasticsearch backend: a concrete index per mapping version behind an alias.

Verified against the server-core distribution (9.5, see scripts/elasticsearch):
it has no `GET /`, so liveness is cluster health, never ping()/info(). The
Python client's major version must match the server's (client 9.x, server 9.x).
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError
from elasticsearch.serializer import OrjsonSerializer

from harvester.errors import IndexError_
from harvester.index import (IndexBackend, WriteResult, check_mapping_version, completeness_row, load_mapping,
                             new_index_name)
from harvester.index.actions import COMPLETENESS_FLAGS, HIT_FIELDS, Action, hit
from harvester.index.query import SearchQuery, SearchResult, sort_buckets

# dimension -> the keyword field it counts
FACET_FIELDS = {
    "facility": "facility",
    "technique": "techniques.id",
    "year": "publication_year",
    "licence": "license",
    "instrument": "instruments.name",
    "source": "source",
    "access": "access_rights",
}
_MAX_CHUNK_BYTES = 20 * 1024 * 1024  # well under the server's http.max_content_length (100 MB)


_RETRIES = 3  # times an action refused with 429 (too many requests) is sent again
_BACKOFF = 0.5  # seconds before the first retry, doubled for each next one
# Per action only what the sync needs back (status, error): the default answer
# repeats index, id, version, shards... (~200 bytes an action to render and parse).
_BULK_FILTER = "items.*.status,items.*.error"


@dataclass(frozen=True)
class _Encoded:
    """One bulk action as the NDJSON lines sent for it."""

    id: str
    op: str
    lines: bytes


def _encode(action: Action) -> _Encoded:
    op = action.get("_op_type", "index")
    doc = str(action["_id"])
    meta: dict[str, Any] = {"_id": doc}
    if "_version" in action:
        meta["version"] = action["_version"]
        meta["version_type"] = action.get("_version_type", "external")
    lines = orjson.dumps({op: meta}) + b"\n"
    if op != "delete":
        body = action["_source"]
        lines += (body if isinstance(body, bytes) else orjson.dumps(body)) + b"\n"
    return _Encoded(doc, op, lines)


def _chunks(actions: Iterable[Action], size: int, max_bytes: int) -> Iterator[list[_Encoded]]:
    """Encoded actions in chunks of `size`, or fewer when they would pass `max_bytes`.
    A chunk goes out as soon as it is full: the next action is not asked for before."""
    chunk: list[_Encoded] = []
    nbytes = 0
    for action in actions:
        item = _encode(action)
        if chunk and nbytes + len(item.lines) > max_bytes:
            yield chunk
            chunk, nbytes = [], 0
        chunk.append(item)
        nbytes += len(item.lines)
        if len(chunk) >= size:
            yield chunk
            chunk, nbytes = [], 0
    if chunk:
        yield chunk


def _reason(info: dict[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, dict):
        text = f"{error.get('type')}: {error.get('reason')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict):
            text += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        return text
    return str(error or f"status {info.get('status')}")


class ElasticBackend(IndexBackend):
    kind = "elasticsearch"
    # write() mostly waits on the server: the sync builds the next documents
    # meanwhile, in a thread (harvester.index.sync._Builder).
    build_ahead = True

    def __init__(self, url: str, alias: str, *, mapping: str | Path | dict[str, Any] | None = None,
                 request_timeout: float = 30.0, swap_grace: float = 1.0) -> None:
        self.url = url.rstrip("/")
        self.alias = alias
        self.mapping = mapping if isinstance(mapping, dict) else load_mapping(mapping)
        meta = self.mapping["mappings"].get("_meta") or {}
        self.mapping_version = int(meta.get("mapping_version", 1))
        # A searcher that is in the middle of reading the old index when the alias
        # moves gets this long to finish before that index is deleted.
        self.swap_grace = swap_grace
        # orjson parses answers several times faster than the json module; the
        # client only uses it when told to.
        self.es = Elasticsearch(self.url, request_timeout=request_timeout, max_retries=2,
                                retry_on_timeout=True, serializer=OrjsonSerializer())
        self._name = re.compile(rf"^{re.escape(alias)}-v\d+-\d{{8}}t\d+$")

    def close(self) -> None:
        self.es.close()

    def __repr__(self) -> str:
        return f"<ElasticBackend {self.url} alias={self.alias}>"

    # -- errors ----------------------------------------------------------------
    def _unreachable(self, exc: Exception) -> IndexError_:
        return IndexError_(f"Elasticsearch at {self.url} is unreachable: {exc}")

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NotFoundError as exc:
            if "index_not_found" in str(exc):
                raise IndexError_(f"no index {self.alias!r} at {self.url} yet: run "
                                  "`pan-harvester index sync` (or a harvest) first") from exc
            raise IndexError_(f"{what}: {exc}") from exc
        except ApiError as exc:
            raise IndexError_(f"Elasticsearch at {self.url} refused to {what}: {exc}") from exc
        except TransportError as exc:
            raise self._unreachable(exc) from exc

    # -- lifecycle -------------------------------------------------------------
    def check(self) -> None:
        health = self._call("report its health", self.es.cluster.health, timeout="10s")
        if health.get("status") == "red":
            raise IndexError_(f"Elasticsearch at {self.url} is red (some primary shards are missing)")

    def _behind_alias(self) -> list[str]:
        resp = self._call(f"list alias {self.alias}", self.es.options(ignore_status=404).indices.get_alias,
                          name=self.alias)
        return [] if resp.meta.status == 404 else sorted(resp.body)

    def current(self) -> str | None:
        names = self._behind_alias()
        if len(names) > 1:
            raise IndexError_(f"alias {self.alias!r} points at several indexes ({', '.join(names)}); "
                              "run `pan-harvester index rebuild`")
        if not names and self._call("check the index", self.es.indices.exists, index=self.alias):
            raise IndexError_(f"{self.alias!r} at {self.url} is an index, not an alias: move it away "
                              "or choose another alias (PAN_HARVESTER_INDEX_ALIAS)")
        return names[0] if names else None

    def _create(self, name: str, settings: dict[str, Any], aliases: dict[str, Any] | None) -> None:
        self._call(f"create index {name}", self.es.indices.create, index=name, settings=settings,
                   mappings=self.mapping["mappings"], aliases=aliases,
                   wait_for_active_shards="1")

    def ensure(self) -> str:
        existing = self.current()
        if existing:
            return check_mapping_version(existing, self.mapping_version)
        name = new_index_name(self.alias, self.mapping_version)
        try:
            self._create(name, self.mapping["settings"], {self.alias: {}})
        except IndexError_:
            # Another process may have created it at the same moment: use theirs.
            self.drop_index(name)
            existing = self.current()
            if existing:
                return existing
            raise
        return name

    def create_index(self) -> str:
        name = new_index_name(self.alias, self.mapping_version)
        settings = copy.deepcopy(self.mapping["settings"])
        # Bulk loading: no refreshes until the index is complete.
        settings.setdefault("index", {})["refresh_interval"] = "-1"
        self._create(name, settings, None)
        return name

    def publish(self, index: str) -> list[str]:
        interval = (self.mapping["settings"].get("index") or {}).get("refresh_interval", "1s")
        self._call("restore the refresh interval", self.es.indices.put_settings, index=index,
                   settings={"index": {"refresh_interval": interval}})
        self.refresh(index)
        self._call("wait for the new index", self.es.cluster.health, index=index,
                   wait_for_status="yellow", timeout="60s")
        old = [name for name in self._behind_alias() if name != index]
        actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": self.alias}} for name in old]
        actions.append({"add": {"index": index, "alias": self.alias}})
        # One _aliases call: searches see the old index or the new one, never neither.
        self._call("swap the alias", self.es.indices.update_aliases, actions=actions)
        if old:
            time.sleep(self.swap_grace)
            for name in old:
                self.drop_index(name)
        # Leftovers of a rebuild that died before its swap (rebuilds of one alias
        # are serialised by its lock, so no other rebuild is writing them).
        for name in set(self.indexes()) - {index, *old}:
            self.drop_index(name)
            old.append(name)
        return old

    def drop_index(self, index: str) -> None:
        self._call(f"delete {index}", self.es.options(ignore_status=404).indices.delete, index=index)

    def indexes(self) -> list[str]:
        found = self._call("list indexes", self.es.indices.get, index=f"{self.alias}-v*",
                           allow_no_indices=True, ignore_unavailable=True)
        return sorted(name for name in found.body if self._name.match(name))

    # -- writing ---------------------------------------------------------------
    def write(self, actions: Iterable[Action], *, index: str | None = None,
              chunk_size: int = 500) -> Iterator[WriteResult]:
        """Bulk requests of `chunk_size` actions, one at a time, results in order.

        Our own loop rather than `helpers.streaming_bulk`: that one spends more
        CPU than the request itself (about 25 us an action, against 8 here:
        this runs on the critical path of every sync), and the documents it
        retries after a 429 come back after the rest of their chunk, out of the
        order the sync's position tracking relies on."""
        target = index or self.alias
        for chunk in _chunks(actions, chunk_size, _MAX_CHUNK_BYTES):
            # Never let a write through a missing alias auto-create an index
            # with a guessed mapping.
            yield from self._send(chunk, target, require_alias=index is None)

    def _send(self, chunk: list[_Encoded], target: str, *, require_alias: bool) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(chunk)
        todo = list(range(len(chunk)))
        for attempt in range(_RETRIES + 1):
            if attempt:
                time.sleep(_BACKOFF * 2 ** (attempt - 1))
            try:
                resp = self.es.bulk(operations=b"".join(chunk[i].lines for i in todo), index=target,
                                    require_alias=require_alias, filter_path=_BULK_FILTER)
            except ApiError as exc:
                if exc.status_code == 429 and attempt < _RETRIES:  # the whole request: overloaded
                    continue
                raise IndexError_(f"Elasticsearch at {self.url} refused a bulk write: {exc}") from exc
            except TransportError as exc:
                # Connection refused or reset, timeout: nothing of this chunk is
                # confirmed; the caller stops before it.
                raise IndexError_(f"Elasticsearch at {self.url} stopped answering during a bulk "
                                  f"write: {exc}") from exc
            items = resp.body.get("items") or []
            if len(items) != len(todo):
                raise IndexError_(f"Elasticsearch at {self.url} answered {len(items)} results to a "
                                  f"bulk request of {len(todo)} actions")
            again = []
            for i, item in zip(todo, items):
                info = next(iter(item.values()))
                if info.get("status") == 429 and attempt < _RETRIES:
                    again.append(i)
                else:
                    results[i] = self._result(chunk[i], info)
            todo = again
            if not todo:
                break
        return results  # type: ignore[return-value]

    def _result(self, sent: _Encoded, info: dict[str, Any]) -> WriteResult:
        status = info.get("status")
        if isinstance(status, int) and 200 <= status < 300:
            return WriteResult(sent.id, sent.op, "ok")
        if status == 409:  # version conflict: the index holds this version or a newer one
            return WriteResult(sent.id, sent.op, "stale")
        if sent.op == "delete" and status == 404:  # nothing to delete: the outcome we wanted
            return WriteResult(sent.id, sent.op, "ok")
        if status == 429 or not isinstance(status, int) or status >= 500:
            # The cluster is overloaded or failing: not this document's fault, so
            # it is not recorded as a failure; stop here.
            raise IndexError_(f"Elasticsearch at {self.url} could not take a bulk write "
                              f"(status {status}): {_reason(info)}")
        return WriteResult(sent.id, sent.op, "failed", _reason(info))

    def refresh(self, index: str | None = None) -> None:
        self._call("refresh", self.es.indices.refresh, index=index or self.alias)

    # -- reading ---------------------------------------------------------------
    @staticmethod
    def _filters(q: SearchQuery) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = []
        if q.facilities:
            filters.append({"bool": {"should": [
                {"term": {"facility": {"value": f, "case_insensitive": True}}} for f in q.facilities
            ], "minimum_should_match": 1}})
        if q.technique_iris is not None:
            filters.append({"terms": {"technique_iris": sorted(q.technique_iris)}})
        if q.year_from is not None or q.year_to is not None:
            bounds = {}
            if q.year_from is not None:
                bounds["gte"] = q.year_from
            if q.year_to is not None:
                bounds["lte"] = q.year_to
            filters.append({"range": {"publication_year": bounds}})
        return filters

    @classmethod
    def build_query(cls, q: SearchQuery) -> dict[str, Any]:
        phrases = q.phrases
        must = [{"match_phrase": {"text": p}} for p in phrases] or [{"match_all": {}}]
        should: list[dict[str, Any]] = []
        if phrases:
            # Relevance only: the title counts more, word pairs in it more still.
            should = [{"match": {"title": {"query": " ".join(phrases), "boost": 2.0}}},
                      {"match": {"title.shingles": {"query": " ".join(phrases)}}}]
        return {"bool": {"must": must, "filter": cls._filters(q), "should": should}}

    @staticmethod
    def _aggs(q: SearchQuery) -> dict[str, Any]:
        aggs: dict[str, Any] = {}
        for dim in q.facets:
            agg: dict[str, Any] = {"terms": {"field": FACET_FIELDS[dim], "size": q.facet_size}}
            if dim == "technique":
                # One document of the bucket tells the label that goes with the id.
                agg["aggs"] = {"one": {"top_hits": {"size": 1, "_source": {
                    "includes": ["techniques.id", "techniques.label"]}}}}
            aggs[dim] = agg
        return aggs

    def search(self, query: SearchQuery) -> SearchResult:
        sort: list[Any] = (["_score", {"id": "asc"}] if query.phrases else
                           [{"publication_year": {"order": "desc", "missing": "_last"}}, {"id": "asc"}])
        resp = self._call("search", self.es.search, index=self.alias, query=self.build_query(query),
                          size=query.size, from_=query.offset, sort=sort, track_total_hits=True,
                          source_includes=HIT_FIELDS, aggs=self._aggs(query) or None)
        hits = []
        for h in resp["hits"]["hits"]:
            item = hit(h["_source"])
            if query.phrases:
                item["score"] = h.get("_score")
            hits.append(item)
        facets = {}
        for dim in query.facets:
            buckets = []
            for b in resp["aggregations"][dim]["buckets"]:
                bucket: dict[str, Any] = {"key": b["key"], "count": b["doc_count"]}
                if dim == "technique":
                    bucket["label"] = self._label(b, b["key"])
                buckets.append(bucket)
            facets[dim] = sort_buckets(dim, buckets, query.facet_size)
        return SearchResult(total=resp["hits"]["total"]["value"], hits=hits, facets=facets)

    @staticmethod
    def _label(bucket: dict[str, Any], technique_id: str) -> str | None:
        for h in bucket["one"]["hits"]["hits"]:
            for t in h["_source"].get("techniques") or ():
                if t.get("id") == technique_id:
                    return t.get("label")
        return None

    def completeness(self, query: SearchQuery) -> list[dict[str, Any]]:
        flags = {flag: {"term": {f"completeness.{flag}": True}} for flag in COMPLETENESS_FLAGS}
        resp = self._call("compute completeness", self.es.search, index=self.alias,
                          query=self.build_query(query), size=0, aggs={"by_facility": {
                              "terms": {"field": "facility", "size": 10000},
                              "aggs": {"flags": {"filters": {"filters": flags}}}}})
        rows = [completeness_row(b["key"], b["doc_count"],
                                 {f: v["doc_count"] for f, v in b["flags"]["buckets"].items()})
                for b in resp["aggregations"]["by_facility"]["buckets"]]
        return sort_buckets("facility", rows)

    def get(self, doc_id: str) -> dict[str, Any] | None:
        # 404: no such document, or no index yet.
        resp = self._call(f"get {doc_id}", self.es.options(ignore_status=404).get, index=self.alias, id=doc_id)
        return None if resp.meta.status == 404 else resp["_source"]

    def count(self) -> int:
        return int(self._call("count", self.es.count, index=self.alias)["count"])
