"""Facility quirks: small named fixes tied to a facility or source name.

A fix is `(Document, payload_element) -> Document`; `QUIRKS` maps a facility or
source name (compared case-insensitively) to the fixes it needs. records.py runs
them (`fixes_for`) once the generic mapping has built the Document, on the payload
root (`resource` or `dc`).

Only conventions that would be wrong to assume for everyone live here. The quirks
FIELD-NOTES §2 lists that are plain DataCite readings are handled for every record
in datacite.py, because they cannot hurt anyone else:
  - ISIS ":null" / HZB ":unav" creators: DataCite's standard "unknown" values, dropped;
  - ESS DOIs in identifier[@identifierType="URL"]: any doi.org URL is read as the DOI;
  - ESS bare-URL "abstract": a bare URL is never a summary;
  - ESRF missing publicationYear: year of the Available, Accepted, then Issued date;
  - HZB instruments in relatedItem[@relatedItemType="Instrument"].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from types import MappingProxyType

from lxml import etree

from harvester.document import Document, Instrument
from harvester.normalize import normalize_doi

Fix = Callable[[Document, etree._Element], Document]


def instrument_from_collected_by(doc: Document, root: etree._Element) -> Document:
    """HZB links the instrument twice: a relatedItem (with its name) and a bare
    relatedIdentifier relationType="IsCollectedBy" with its DOI, without
    resourceTypeGeneral. At HZB an IsCollectedBy DOI is always an instrument
    (10.5442/NI...), so one given without its relatedItem still becomes one.
    Elsewhere IsCollectedBy may point at anything (DataCite's kernel-4.7 example
    points it at a journal article), so this is not done generically."""
    known = {instrument.pid for instrument in doc.instruments}
    for related in doc.related_identifiers:
        if related.relation == "IsCollectedBy" and (related.type or "").upper() == "DOI":
            pid = normalize_doi(related.identifier) or related.identifier
            if pid not in known:
                doc.instruments.append(Instrument(name=pid, pid=pid, facility=doc.facility))
                known.add(pid)
    return doc


def scicat_datasets(doc: Document, root: etree._Element) -> Document:
    """SciCat's /openaire route publishes datasets only and often omits resourceType
    (ESS sample V200111): say what it is."""
    if doc.resource_type_general is None:
        doc.resource_type_general = "Dataset"
    return doc


# Read-only: fixes_for memoises what it finds here.
QUIRKS: Mapping[str, tuple[Fix, ...]] = MappingProxyType({
    "hzb": (instrument_from_collected_by,),
    "ess": (scicat_datasets,),
})


@lru_cache(maxsize=256)
def fixes_for(facility: str | None, source: str | None) -> tuple[Fix, ...]:
    """The fixes for the facility, then those for the source, each once. Memoised: this
    runs for every record, and a harvest sees a handful of (facility, source) pairs."""
    fixes: list[Fix] = []
    for key in (facility, source):
        for fix in QUIRKS.get(key.lower(), ()) if key else ():
            if fix not in fixes:
                fixes.append(fix)
    return tuple(fixes)

