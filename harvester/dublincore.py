"""Dublin Core: an oai_dc `dc` element -> the values of one Document.

oai_dc is flat and untyped, so this maps repeated dc:* elements onto the Document's
fields, reading types and dates out of the text (dc:type against DataCite's
resourceTypeGeneral values, info:eu-repo/date/... and "Issued: 2018-01-18" dates).
Separate from datacite.py because it is a different walk over a different shape;
it reuses DataCite's rules for the summary, rights and dates so both formats agree.
No instruments and no hosting institution: oai_dc has neither.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from harvester.datacite import _BLANK_DOCUMENT, _apply_dates, _apply_rights, _summary
from harvester.document import DateInfo, Person, RelatedIdentifier, Subject
from harvester.normalize import date_range, find_doi, is_placeholder, normalize_doi, split_name
from harvester.xmltext import _LOCAL, _text

# The models' trusted constructors, bound once: looking up a classmethod on every call
# costs ~0.1 us, and the mapper builds ~10 models per record.
_new_person = Person.trusted
_new_date = DateInfo.trusted
_new_related = RelatedIdentifier.trusted
_new_subject = Subject.trusted


# DataCite resourceTypeGeneral values, to tell "Dataset" from "BlogPosting" in dc:type.
_GENERAL_TYPES = {t.lower(): t for t in (
    "Audiovisual", "Award", "Book", "BookChapter", "Collection", "ComputationalNotebook",
    "ConferencePaper", "ConferenceProceeding", "DataPaper", "Dataset", "Dissertation", "Event",
    "Image", "Instrument", "InteractiveResource", "Journal", "JournalArticle", "Model",
    "OutputManagementPlan", "PeerReview", "PhysicalObject", "Preprint", "Project", "Report",
    "Service", "Software", "Sound", "Standard", "StudyRegistration", "Text", "Workflow", "Other")}
_DATE_TYPES = {t.lower(): t for t in (
    "Accepted", "Available", "Copyrighted", "Collected", "Coverage", "Created", "Issued",
    "Submitted", "Updated", "Valid", "Withdrawn", "Other")}
# info:eu-repo/date/<event>/<date> (OpenAIRE guidelines for dc:date)
_EU_REPO_DATES = {"embargoend": "Available", "accepted": "Accepted", "issued": "Issued",
                  "available": "Available", "created": "Created", "updated": "Updated"}


def _dc_date(raw: str) -> DateInfo:
    date_type, value = "Issued", raw  # a plain dc:date is the publication date
    if raw.startswith("info:eu-repo/date/"):
        parts = raw.split("/")
        if len(parts) >= 4:
            date_type = _EU_REPO_DATES.get(parts[2].lower(), "Other")
            value = "/".join(parts[3:])
    else:
        label, sep, rest = raw.partition(":")
        if sep and label.strip().lower() in _DATE_TYPES:  # viringo: "Issued: 2018-01-18"
            date_type, value = _DATE_TYPES[label.strip().lower()], rest.strip()
    start, end = date_range(value)
    return _new_date({"type": date_type, "start": start, "end": end, "raw": raw})


def _map_dc(dc: etree._Element) -> dict[str, Any]:
    """The Document's values (no instruments, no hosting institution in oai_dc)."""
    values: dict[str, list[str]] = {}
    for child in dc[:]:
        name = _LOCAL[child.tag]
        if name:
            text = _text(child)
            if text:
                values.setdefault(name, []).append(text)
    get = values.get

    identifiers = get("identifier", [])
    doi = find_doi(identifiers)
    creators = [_dc_person(n) for n in get("creator", []) if not is_placeholder(n)]
    contributors = [_dc_person(n) for n in get("contributor", []) if not is_placeholder(n)]
    keywords: list[str] = []
    for subject in get("subject", []):
        if subject not in keywords:
            keywords.append(subject)
    related: list[RelatedIdentifier] = []
    for relation in get("relation", []):
        related_doi = normalize_doi(relation)
        if related_doi:
            identifier, id_type = related_doi, "DOI"
        else:
            is_url = relation.lower().startswith(("http://", "https://"))
            identifier, id_type = relation, "URL" if is_url else None
        related.append(_new_related(
            {"identifier": identifier, "type": id_type, "relation": None}))
    general = resource_type = None
    for dc_type in get("type", []):
        canonical = _GENERAL_TYPES.get(dc_type.lower())
        if canonical and general is None:
            general = canonical
        elif not canonical and resource_type is None:
            resource_type = dc_type

    fields = _BLANK_DOCUMENT.copy()
    fields.update({
        "format": "oai_dc",
        "doi": doi,
        "pid": doi or (identifiers[0] if identifiers else None),
        "title": (get("title") or [None])[0],
        "summary": _summary([(None, d) for d in get("description", [])]),
        "keywords": keywords,
        "subjects": [_new_subject({"value": k, "scheme": None, "scheme_uri": None,
                                   "value_uri": None}) for k in keywords],
        "creators": creators,
        "contributors": contributors,
        "publisher": (get("publisher") or [None])[0],
        "resource_type": resource_type,
        "resource_type_general": general,
        "related_identifiers": related,
        "sizes": [],
        "formats": get("format", []),
        "language": (get("language") or [None])[0],
    })
    _apply_rights(fields, [(text, None, None, False) for text in get("rights", [])])
    _apply_dates(fields, [_dc_date(raw) for raw in get("date", [])], None)
    return fields


def _dc_person(full_name: str) -> Person:
    given, family = split_name(full_name)
    return _new_person({"full_name": full_name, "given_name": given, "family_name": family,
                        "orcid": None, "affiliations": [], "role": None, "kind": None})
