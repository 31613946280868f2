"""From a stored record to the Document that gets indexed: parse, then tag. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harvester.document import Document
from harvester.errors import RecordError
from harvester.records import parse_record
from harvester.store import StoredRecord


# A source's facility, or an aggregator's facility per set (config `set_facilities`).
Facility = str | Mapping[str, str] | None


def to_document(rec: StoredRecord, *, facility: Facility, tagger: Any | None) -> Document:
    """Parse a stored record's raw XML and tag its PaNET techniques (when a tagger
    is given). Raises RecordError for a record that cannot become a Document,
    including a tombstone (it has no metadata: delete it instead).

    `facility`: the source's facility; for an aggregator, its facility per set
    (config `set_facilities`, set names in lower case): the first of the record's
    sets found there names it, else the record's own metadata does."""
    if rec.deleted or rec.raw is None:
        raise RecordError("deleted record: nothing to parse", identifier=rec.identifier)
    if isinstance(facility, Mapping):
        facility = next((facility[s.lower()] for s in rec.sets if s.lower() in facility), None)
    doc = parse_record(rec.raw, source=rec.source, facility=facility or None,
                       metadata_prefix=rec.metadata_prefix)
    return tagger.tag_document(doc) if tagger is not None else doc
