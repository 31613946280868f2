"""From a stored record to the Document that gets indexed: parse, then tag. Pure."""

from __future__ import annotations

from typing import Any

from harvester.document import Document
from harvester.errors import RecordError
from harvester.records import parse_record
from harvester.store import StoredRecord


def to_document(rec: StoredRecord, *, facility: str | None, tagger: Any | None) -> Document:
    """Parse a stored record's raw XML and tag its PaNET techniques (when a tagger
    is given). Raises RecordError for a record that cannot become a Document,
    including a tombstone (it has no metadata: delete it instead)."""
    if rec.deleted or rec.raw is None:
        raise RecordError("deleted record: nothing to parse", identifier=rec.identifier)
    doc = parse_record(rec.raw, source=rec.source, facility=facility or None,
                       metadata_prefix=rec.metadata_prefix)
    return tagger.tag_document(doc) if tagger is not None else doc
