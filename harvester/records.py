"""Records: one raw OAI-PMH record (bytes or an lxml element) -> one Document.

Accepted shapes, matched by LOCAL NAME whatever the namespaces (real records mix
them: HZB puts `resource` in the OAI namespace, ESS mixes `datacite:` with the
OpenAIRE default namespace):

    record(header, metadata(oai_datacite(payload(resource))))   oai_datacite
    record(header, metadata(resource))                          datacite 2.2..4.7, openaire
    record(header, metadata(dc))                                oai_dc
    resource | oai_datacite | dc                                bare payload, no header

Each payload element is walked once, children dispatched on their local name; no
XPath. The work is split in the order a record meets it:

    records.py      this entry point: the OAI envelope (header, metadata, the
                    oai_datacite wrapper), the dispatch on the payload's shape, and
                    building the Document from the mapped values
    xmltext.py      the XML helpers the mappings share (local names, element
                    children, trimmed text)
    datacite.py     DataCite resource -> Document values (kernel 2.2..4.7, OpenAIRE)
    dublincore.py   oai_dc -> Document values, with DataCite's rules for rights and dates
    quirks.py       facility-specific fixes, run on the finished Document

A record that cannot become a Document raises RecordError: the caller keeps it aside
and carries on with the page.
"""

from __future__ import annotations

from lxml import etree

from harvester import quirks
from harvester.datacite import _map_datacite
from harvester.document import Document, Instrument
from harvester.dublincore import _map_dc
from harvester.errors import RecordError
from harvester.safexml import parse_xml, safe_parser
from harvester.xmltext import _LOCAL, _first_child, _text

__all__ = ["parse_record", "parse_element", "safe_parser"]

# The models' trusted constructors, bound once: looking up a classmethod costs ~0.1 us
# a call, and this runs for every record.
_new_document = Document.trusted
_new_instrument = Instrument.trusted


def parse_record(raw: bytes, *, source: str, facility: str | None = None,
                 metadata_prefix: str | None = None) -> Document:
    """Parse the bytes of one `<record>` (or a bare payload root) into a Document."""
    try:
        root = parse_xml(raw)
    except (etree.XMLSyntaxError, ValueError) as exc:
        # ValueError: a str with an encoding declaration; either way the XML is unusable.
        raise RecordError(f"unreadable XML: {exc}") from exc
    return parse_element(root, source=source, facility=facility, metadata_prefix=metadata_prefix)


def parse_element(root: etree._Element, *, source: str, facility: str | None = None,
                  metadata_prefix: str | None = None) -> Document:
    """Map an already parsed `<record>` element (or bare payload root) to a Document:
    what parse_record does once the bytes are parsed, and what a caller holding a
    parsed page (the benchmark) calls for each of its records."""
    oai_identifier: str | None = None
    datestamp = ""
    payload: etree._Element | None = root
    if _LOCAL[root.tag] == "record":
        header = metadata = None
        for child in root[:]:
            name = _LOCAL[child.tag]
            if name == "header":
                header = child
            elif name == "metadata":
                metadata = child
        if header is not None:
            oai_identifier, datestamp, deleted = _header(header)
            if deleted:
                raise RecordError("deleted record (header status=\"deleted\")",
                                  identifier=oai_identifier)
        payload = _first_child(metadata) if metadata is not None else None
        if payload is None:
            raise RecordError("record has no metadata", identifier=oai_identifier)

    name = _LOCAL[payload.tag]
    if name == "oai_datacite":
        wrapper = payload
        payload = None
        for child in wrapper[:]:
            if _LOCAL[child.tag] == "payload":
                payload = _first_child(child)
        if payload is None:
            raise RecordError("oai_datacite wrapper without a payload resource",
                              identifier=oai_identifier)
        name = _LOCAL[payload.tag]

    if name == "resource":
        values, hosting_institution, instruments = _map_datacite(payload)
    elif name == "dc":
        values, hosting_institution, instruments = _map_dc(payload), None, None
    else:
        raise RecordError(f"unsupported metadata format <{name}>", identifier=oai_identifier)

    pid = values["pid"]
    if not pid and not oai_identifier:
        raise RecordError("record has no identifier")
    if not values["title"]:
        raise RecordError("record has no title", identifier=oai_identifier or pid)

    # The facility: as configured for the source, else the hosting institution the record
    # names (an instrument record's publisher may be someone else), else the publisher.
    the_facility = facility or hosting_institution or values["publisher"]
    # `values` holds every field, in declaration order, each of its declared type:
    # Document.trusted skips validation (tests/test_document_build.py checks the output
    # against it). What the payload alone cannot say is filled in here.
    values["source"] = source
    # A missing or empty header identifier (bare payloads; the ESS "broken id" record)
    # falls back to the record's own pid: it is as stable across harvests as an OAI
    # identifier, so re-harvesting the record updates the same document.
    values["oai_identifier"] = oai_identifier or pid
    values["datestamp"] = datestamp
    values["metadata_prefix"] = metadata_prefix
    values["pid"] = pid or oai_identifier
    values["facility"] = the_facility
    values["instruments"] = [
        _new_instrument({"name": name, "pid": instrument_pid, "facility": the_facility})
        for name, instrument_pid in instruments] if instruments else []
    values["techniques"] = []
    document = _new_document(values)
    for fix in quirks.fixes_for(facility, source):
        document = fix(document, payload)
    return document


def _header(header: etree._Element) -> tuple[str | None, str, bool]:
    identifier, datestamp = None, ""
    for child in header[:]:
        name = _LOCAL[child.tag]
        if name == "identifier":
            identifier = _text(child) or None
        elif name == "datestamp":
            datestamp = _text(child)
    return identifier, datestamp, header.get("status") == "deleted"
