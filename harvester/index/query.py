"""What a search asks, parsed once and answered the same way by both backends. Pure.

Free text: whitespace-separated words and "quoted phrases"; every one must
match (AND), each as a phrase of its tokens ("x-ray" matches "X-ray" and
"x ray"). The text searched is the document's `text` field: title, abstract,
keywords, subjects, creators, publisher, facility, instruments, and the
labels and synonyms of its techniques and their ancestors.

Filters: facilities (any of, case-insensitive), techniques (any of; each a
PaNET label, synonym/acronym, id or IRI, standing for itself and all its
descendants), publication years (inclusive range).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DIMENSIONS = ("facility", "technique", "year", "licence", "instrument", "source", "access")

_PHRASE = re.compile(r'"([^"]*)"|(\S+)')
_WORD = re.compile(r"\w")
_YEAR_RANGE = re.compile(r"^\s*(\d{4})?\s*(?:(\.\.)\s*(\d{4})?)?\s*$")


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    facilities: tuple[str, ...] = ()
    technique_iris: frozenset[str] | None = None  # None: no technique filter
    year_from: int | None = None
    year_to: int | None = None
    size: int = 10
    offset: int = 0
    facets: tuple[str, ...] = ()
    facet_size: int = 100

    def __post_init__(self) -> None:
        unknown = [f for f in self.facets if f not in DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimension(s) {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}")
        if self.size < 0 or self.offset < 0:
            raise ValueError("size and offset must not be negative")

    @property
    def phrases(self) -> list[str]:
        return parse_text(self.text)


@dataclass
class SearchResult:
    total: int
    hits: list[dict[str, Any]]
    facets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": self.total, "hits": self.hits}
        if self.facets:
            out["facets"] = self.facets
        return out


def parse_text(text: str | None) -> list[str]:
    """Words and quoted phrases; pieces without a letter or digit are dropped (they
    would match nothing in one backend and everything in the other)."""
    if not text:
        return []
    out = []
    for quoted, bare in _PHRASE.findall(text):
        piece = " ".join((quoted or bare).split())
        if piece and _WORD.search(piece):
            out.append(piece)
    return out


def parse_year_range(text: str) -> tuple[int | None, int | None]:
    """'2019..2021' -> (2019, 2021); '2019..' and '..2021' are open; '2020' is one year."""
    m = _YEAR_RANGE.match(text or "")
    if not m or not (m.group(1) or m.group(3)):
        raise ValueError(f"{text!r} is not a year range: use YYYY, YYYY..YYYY, YYYY.. or ..YYYY")
    start = int(m.group(1)) if m.group(1) else None
    end = int(m.group(3)) if m.group(3) else None
    if not m.group(2):  # a single year
        end = start
    if start is not None and end is not None and start > end:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return start, end


def resolve_techniques(names: Iterable[str], ontology: Any) -> frozenset[str]:
    """IRIs of the named techniques and all their descendants (union over names).

    Raises LookupError naming the first name PaNET does not know."""
    iris: set[str] = set()
    for name in names:
        found = ontology.resolve(name)
        if not found:
            raise LookupError(f"unknown technique {name!r}: give a PaNET label, synonym or acronym "
                              "(e.g. 'small angle scattering', 'SAXS'), id (PaNET01188) or IRI")
        for technique in found:
            iris.add(technique.iri)
            iris.update(ontology.descendants(technique.iri))
    return frozenset(iris)


def sort_buckets(dimension: str, buckets: Iterable[dict[str, Any]], limit: int | None = None
                 ) -> list[dict[str, Any]]:
    """The one bucket order of both backends: the `limit` largest buckets (ties
    by key), shown by count, except years, shown in calendar order."""
    ordered = sorted(buckets, key=lambda b: (-b["count"], b["key"]))
    if limit is not None:
        ordered = ordered[:limit]
    if dimension == "year":
        ordered.sort(key=lambda b: b["key"])
    return ordered
