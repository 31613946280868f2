"""Document -> indexed body -> bulk action. Pure: no I/O, no clock.

A bulk action is the plain dict `elasticsearch.helpers.streaming_bulk` takes
(the embedded backend reads the same dicts)::

    {"_op_type": "index", "_id": ..., "_version": <datestamp in epoch ms>,
     "_version_type": "external_gte", "_source": {...}}
    {"_op_type": "delete", "_id": ..., "_version": ..., "_version_type": "external_gte"}

The record's datestamp is the external version, so writing the same record
twice, or an older copy after a newer one, changes nothing: a sync can be
repeated, interrupted and resumed in any order. `external_gte` rather than
`external`: a record corrected without a new datestamp (same version) still
replaces the indexed copy. Deletes are first-class actions carrying a version
too, so a late copy of a deleted record cannot bring it back.

The body's fields are those of `mappings/datasets-v1.json` (dynamic: strict);
`tests/test_index_actions.py` checks the two agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from harvester.document import Document, Person, TechniqueTag
from harvester.errors import RecordError
from harvester.normalize import is_bare_url

Action = dict[str, Any]

VERSION_TYPE = "external_gte"
COMPLETENESS_FLAGS = ("licence", "orcid", "ror", "abstract", "instrument", "technique")
# Fields copied into the catch-all `text` field (copy_to in the mapping; the
# embedded index concatenates the same values).
TEXT_FIELDS = ("title", "summary", "keywords", "subjects.value", "creators.full_name", "publisher",
               "facility", "instruments.name", "technique_labels")
_MAX_ID_BYTES = 512  # Elasticsearch's limit on _id


class OntologyLike(Protocol):
    """What indexing needs from `harvester.ontology.Ontology`."""

    version: str

    def technique(self, iri_or_id: str) -> Any: ...

    def ancestors(self, iri: str) -> frozenset[str]: ...


def doc_id(source: str, identifier: str) -> str:
    """The index id of a stored record: its store key, readable, within 512 bytes."""
    value = f"{source}:{identifier}"
    if len(value.encode()) <= _MAX_ID_BYTES:
        return value
    return f"{source}:sha256:{hashlib.sha256(identifier.encode()).hexdigest()}"


def version_of(datestamp: str) -> int:
    """The datestamp as milliseconds since the epoch (day granularity counts as midnight UTC)."""
    text = datestamp.strip()
    try:
        if len(text) == 10:
            moment = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError as exc:
        raise RecordError(f"datestamp {datestamp!r} is not an ISO 8601 date") from exc
    # Elasticsearch external versions must be >= 0.
    return max(0, int(moment.timestamp() * 1000))


def _is_organising(technique: Any) -> bool:
    """PaNET's root and its "defined by ..." axes: ancestors of almost everything,
    whose labels ("photon and neutron technique") would make every tagged document
    match a search for "neutron"."""
    return not technique.parents or technique.label.startswith("defined by ")


@lru_cache(maxsize=8192)
def _expansion(ontology: OntologyLike, iri: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(IRIs, labels) one tag adds: its ancestors, its and their labels and synonyms.
    Cached: a corpus uses few techniques, a rebuild tags millions of records."""
    iris: list[str] = []
    labels: list[str] = []
    own = ontology.technique(iri)
    if own is not None:
        labels.extend(own.alt_labels)
    for ancestor in sorted(ontology.ancestors(iri)):
        iris.append(ancestor)
        parent = ontology.technique(ancestor)
        if parent is not None and not _is_organising(parent):
            labels.append(parent.label)
            labels.extend(parent.alt_labels)
    return tuple(iris), tuple(labels)


def technique_fields(tags: Iterable[TechniqueTag], ontology: OntologyLike | None) -> dict[str, Any]:
    """The tags plus their ancestors: IRIs and ids to filter on, labels to search.

    With the ancestors in the document, a search for "small angle scattering"
    (or a filter on its IRI) finds SAXS, SANS and GISAXS datasets without the
    consumer knowing the hierarchy."""
    iris: dict[str, None] = {}
    labels: dict[str, None] = {}
    for tag in tags:
        iris[tag.iri] = None
        labels[tag.label] = None
        if ontology is not None:
            more_iris, more_labels = _expansion(ontology, tag.iri)
            iris.update(dict.fromkeys(more_iris))
            labels.update(dict.fromkeys(more_labels))
    return {
        "technique_iris": list(iris),
        "technique_ids": [iri.rsplit("/", 1)[-1] for iri in iris],
        "technique_labels": list(labels),
    }


def _has_ror(people: Iterable[Person]) -> bool:
    return any(a.ror for p in people for a in p.affiliations)


def completeness(doc: Document) -> dict[str, Any]:
    """Which FAIR-relevant facts the record states. `technique` counts a technique
    found in the record itself, not one implied by its facility or instrument."""
    flags = {
        "licence": bool(doc.license or doc.license_uri),
        "orcid": any(p.orcid for p in doc.creators),
        "ror": _has_ror(doc.creators) or _has_ror(doc.contributors),
        # ESS puts a bare link where the abstract goes: that is not an abstract.
        "abstract": bool(doc.summary and doc.summary.strip() and not is_bare_url(doc.summary)),
        "instrument": bool(doc.instruments),
        "technique": any(not t.weak for t in doc.techniques),
    }
    return {**flags, "score": round(sum(flags.values()) / len(flags), 3)}


def to_body(doc: Document, ontology: OntologyLike | None = None, *, id: str | None = None,
            datestamp: str | None = None) -> dict[str, Any]:
    """The indexed JSON body of a document (the `_source` of an index action)."""
    data = doc.model_dump(mode="json", exclude={"techniques"})
    body: dict[str, Any] = {
        "id": id or doc_id(doc.source, doc.oai_identifier),
        **data,
        "datestamp": datestamp or doc.datestamp or None,
        "techniques": [
            {"iri": t.iri, "id": t.id, "label": t.label, "method": t.method, "field": t.field,
             "text": t.text, "weak": t.weak}
            for t in doc.techniques
        ],
        **technique_fields(doc.techniques, ontology),
        "completeness": completeness(doc),
    }
    if ontology is not None and doc.techniques and not body.get("ontology_version"):
        body["ontology_version"] = ontology.version
    return body


def index_action(doc: Document, ontology: OntologyLike | None = None, *, source: str,
                 identifier: str, datestamp: str) -> Action:
    """Index (create or replace) the document of stored record (source, identifier)."""
    key = doc_id(source, identifier)
    return {
        "_op_type": "index",
        "_id": key,
        "_version": version_of(datestamp),
        "_version_type": VERSION_TYPE,
        "_source": to_body(doc, ontology, id=key, datestamp=datestamp),
    }


def delete_action(*, source: str, identifier: str, datestamp: str) -> Action:
    """Delete the document of a stored record that became a tombstone."""
    return {
        "_op_type": "delete",
        "_id": doc_id(source, identifier),
        "_version": version_of(datestamp),
        "_version_type": VERSION_TYPE,
    }


def text_values(body: dict[str, Any]) -> list[str]:
    """What the mapping's copy_to puts into `text` (TEXT_FIELDS), for the embedded index."""
    out: list[str] = []
    for name in TEXT_FIELDS:
        head, _, tail = name.partition(".")
        value = body.get(head)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if tail:
                item = item.get(tail) if isinstance(item, dict) else None
            if isinstance(item, str) and item.strip():
                out.append(item)
    return out


# The body fields hit() reads (dotted: the parts of a list of objects): all a
# search needs to ask the index for.
HIT_FIELDS = ("id", "pid", "doi", "title", "facility", "source", "publication_year", "license",
              "instruments.name", "techniques.id", "techniques.label")


def hit(body: dict[str, Any]) -> dict[str, Any]:
    """The short form of an indexed body that search results carry."""
    techniques: dict[str, str] = {}
    for t in body.get("techniques") or ():
        techniques.setdefault(t["id"], t["label"])
    return {
        "id": body["id"],
        "pid": body.get("pid"),
        "doi": body.get("doi"),
        "title": body.get("title"),
        "facility": body.get("facility"),
        "source": body.get("source"),
        "publication_year": body.get("publication_year"),
        "license": body.get("license"),
        "instruments": [i["name"] for i in body.get("instruments") or ()],
        "techniques": [{"id": k, "label": v} for k, v in techniques.items()],
    }

