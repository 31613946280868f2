"""The search index: one interface, two backends.

    StoredRecord --pipeline.to_document--> Document --actions--> bulk action
        --IndexBackend.write--> concrete index, behind an alias consumers query

- `actions`: pure, Document -> indexed body and bulk action (datestamp = version).
- `elastic`: a real Elasticsearch (PAN_HARVESTER_ES_URL / settings.es_url).
- `embedded`: SQLite FTS5 in DATA_DIR/index.sqlite when no Elasticsearch is set;
  same search and statistics answers (one contract test suite runs on both).
- `sync`: follow the record store (`sync`), or build a new index and swap the
  alias (`rebuild`).
- `follow`: a process that syncs while `pan-harvester harvest` still runs.
- `query`: the search request both backends answer.

Both backends keep a concrete, versioned index (``ALIAS-v1-<timestamp>``)
behind the alias, create it on first use, and swap the alias in one atomic
step after a rebuild, so a search never sees a half-built index.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from harvester.errors import IndexError_
from harvester.resources import project_dir
from harvester.index.actions import COMPLETENESS_FLAGS, Action
from harvester.index.query import DIMENSIONS, SearchQuery, SearchResult

__all__ = ["IndexBackend", "WriteResult", "SearchQuery", "SearchResult", "DIMENSIONS",
           "COMPLETENESS_FLAGS", "open_backend", "check_alias", "new_index_name", "load_mapping"]

MAPPINGS_DIR = project_dir("mappings")
DEFAULT_MAPPING = MAPPINGS_DIR / "datasets-v1.json"

_ALIAS = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")

Outcome = Literal["ok", "stale", "failed"]


@dataclass(frozen=True)
class WriteResult:
    """What became of one action. `stale`: the index already holds this version or
    a newer one (a success for the sync). `failed`: this document was refused
    (error says why); it is recorded and retried. A backend that cannot be
    reached raises IndexError_ instead: nothing after that point was written."""

    id: str
    op: str  # index | delete
    outcome: Outcome
    error: str | None = None


def load_mapping(path: str | Path | None = None) -> dict[str, Any]:
    """Index settings and mappings: the given file (setting `es_mapping`, env
    PAN_HARVESTER_ES_MAPPING), else the shipped mappings/datasets-v1.json. An operator may point at a richer
    mapping (an english analyzer, synonyms) on a full distribution."""
    path = Path(path or DEFAULT_MAPPING)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexError_(f"index mapping file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise IndexError_(f"cannot read index mapping {path}: {exc}") from exc
    if not isinstance(data, dict) or "mappings" not in data:
        raise IndexError_(f"{path} has no 'mappings' object")
    data.setdefault("settings", {})
    return data


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias):
        raise IndexError_(f"index alias {alias!r} must be lower-case letters, digits, '.', '_' or '-'")
    return alias


def new_index_name(alias: str, mapping_version: int) -> str:
    """A fresh concrete index name: ALIAS-vN-<UTC time to the microsecond>."""
    return f"{alias}-v{mapping_version}-{datetime.now(UTC).strftime('%Y%m%dt%H%M%S%f')}"


_VERSIONED = re.compile(r"-v(\d+)-\d{8}t\d+$")


def check_mapping_version(index: str, expected: int) -> str:
    """An index built with another mapping version must be rebuilt before syncing
    into it (its strict mapping would refuse the new fields document by document)."""
    m = _VERSIONED.search(index)
    if m and int(m.group(1)) != expected:
        raise IndexError_(f"the index {index} was built with mapping v{m.group(1)}; this version "
                          f"writes mapping v{expected}: run `pan-harvester index rebuild`")
    return index


class IndexBackend(ABC):
    kind: str
    alias: str

    # -- lifecycle -------------------------------------------------------------
    @abstractmethod
    def check(self) -> None:
        """Raise IndexError_ when the backend cannot be reached."""

    @abstractmethod
    def current(self) -> str | None:
        """The concrete index behind the alias, None before the first use."""

    @abstractmethod
    def ensure(self) -> str:
        """The concrete index behind the alias, created (with the alias) if there is none."""

    @abstractmethod
    def create_index(self) -> str:
        """A new, empty concrete index that the alias does not point at yet."""

    @abstractmethod
    def publish(self, index: str) -> list[str]:
        """Point the alias at `index` in one atomic step; then drop the indexes it
        pointed at before (and leftovers of an interrupted rebuild), and return
        their names."""

    @abstractmethod
    def drop_index(self, index: str) -> None: ...

    @abstractmethod
    def indexes(self) -> list[str]:
        """Concrete indexes of this alias (published or being built)."""

    def close(self) -> None:
        pass

    def __enter__(self) -> IndexBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------
    @abstractmethod
    def write(self, actions: Iterable[Action], *, index: str | None = None,
              chunk_size: int = 500) -> Iterator[WriteResult]:
        """Apply bulk actions (to `index`, default the alias) and yield one result per
        action, in order, as each chunk is confirmed."""

    @abstractmethod
    def refresh(self, index: str | None = None) -> None:
        """Make what was written visible to searches."""

    # -- reading ---------------------------------------------------------------
    @abstractmethod
    def search(self, query: SearchQuery) -> SearchResult: ...

    @abstractmethod
    def completeness(self, query: SearchQuery) -> list[dict[str, Any]]:
        """Per facility: records and the share stating each COMPLETENESS_FLAGS fact."""

    @abstractmethod
    def get(self, doc_id: str) -> dict[str, Any] | None:
        """The indexed body of one document."""

    def count(self) -> int:
        return self.search(SearchQuery(size=0)).total

    def stats(self, by: Sequence[str] = ("facility", "technique", "year"),
              query: SearchQuery | None = None, *, limit: int = 1000,
              with_completeness: bool = True) -> dict[str, Any]:
        """Counts per dimension ({key, count} buckets) of the documents `query`
        selects (default: all), and the completeness report per facility."""
        base = query or SearchQuery()
        result = self.search(replace(base, size=0, offset=0, facets=tuple(by), facet_size=limit))
        out: dict[str, Any] = {"total": result.total}
        out.update({dim: result.facets.get(dim, []) for dim in by})
        if with_completeness:
            out["completeness"] = self.completeness(base)
        return out


def completeness_row(facility: str, count: int, flag_counts: dict[str, int]) -> dict[str, Any]:
    return {"key": facility, "count": count,
            **{flag: round(flag_counts.get(flag, 0) / count, 4) if count else 0.0
               for flag in COMPLETENESS_FLAGS}}


def open_backend(settings: Any, *, alias: str | None = None, es_url: str | None = None,
                 mapping: str | None = None) -> IndexBackend:
    """The configured backend: Elasticsearch when an URL is set, else the embedded index."""
    alias = check_alias(alias or settings.index_alias)
    url = es_url if es_url is not None else settings.es_url
    if url:
        from harvester.index.elastic import ElasticBackend

        return ElasticBackend(url, alias, mapping=mapping or settings.es_mapping)
    from harvester.index.embedded import EmbeddedBackend

    return EmbeddedBackend(settings.data_dir / "index.sqlite", alias)
