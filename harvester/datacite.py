"""DataCite: a DataCite `resource` -> the values of one Document.

Kernel 2.2..4.7, the payload of oai_datacite, and the OpenAIRE/SciCat variant (a
DataCite resource in OpenAIRE's default namespace). One pass over the resource's
children, each dispatched on its tag to a small handler that collects into a
`_State`; the Document's values are settled once the whole resource is seen.
Separate from records.py (the entry point: envelope, dispatch, building the Document)
because it is the bulk of the mapping; the rules for a summary, rights and dates
(`_summary`, `_apply_rights`, `_apply_dates`) are DataCite's readings, which
dublincore.py reuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree

from harvester.document import (
    Affiliation,
    DateInfo,
    Document,
    Person,
    RelatedIdentifier,
    Subject,
)
from harvester.normalize import (
    access_right,
    collapse,
    date_range,
    find_doi,
    is_bare_url,
    is_placeholder,
    license_id,
    license_uri,
    normalize_doi,
    normalize_orcid,
    normalize_ror,
    split_name,
    year_of,
)
from harvester.xmltext import _LOCAL, _elements, _text

_OPENAIRE_NS = "http://namespace.openaire.eu/schema/oaire/"
_OPENAIRE_CLARK = "{" + _OPENAIRE_NS

# The models' trusted constructors, bound once: looking up a classmethod on every call
# costs ~0.1 us, and the mapper builds ~10 models per record.
_new_person = Person.trusted
_new_affiliation = Affiliation.trusted
_new_date = DateInfo.trusted
_new_related = RelatedIdentifier.trusted
_new_subject = Subject.trusted

# Every field of a Document, in declaration order, all None: each record's values are
# filled into a copy of it, so that they are built once, already in the right order.
# (dublincore.py fills a copy of the same.)
_BLANK_DOCUMENT: dict[str, Any] = dict.fromkeys(Document.model_fields)


_DATE_YEAR_FALLBACK = ("Available", "Accepted", "Issued")  # when publicationYear is missing
_RELEASE_TYPES = ("Available", "Issued")  # "made publicly available" is the release


# One rights statement: (text, rightsURI or licenseCondition/@uri, rightsIdentifier,
# rightsIdentifierScheme="SPDX"). A plain tuple: a NamedTuple's constructor is Python code.
_Rights = tuple[str, str | None, str | None, bool]


class _State:
    """What one pass over a DataCite resource collects: the Document values it can set
    directly, and what becomes values once the whole resource is seen."""

    __slots__ = ("values", "identifiers", "alternates", "titles", "descriptions", "rights",
                 "dates", "publication_year", "language_seen", "instruments", "related")

    def __init__(self) -> None:
        self.values = values = _BLANK_DOCUMENT.copy()
        values["creators"], values["contributors"] = [], []
        values["subjects"], values["keywords"] = [], []
        values["sizes"], values["formats"] = [], []
        self.identifiers: list[tuple[str, str]] = []  # (identifierType, value)
        self.alternates: list[tuple[str, str]] = []
        self.titles: list[tuple[str | None, str]] = []  # (titleType, text)
        self.descriptions: list[tuple[str | None, str]] = []
        self.rights: list[_Rights] = []
        self.dates: list[DateInfo] = []
        self.publication_year: str | None = None
        self.language_seen = False  # the first <language> counts, even an empty one
        self.instruments: list[tuple[str, str | None]] = []  # (name, pid)
        self.related: list[tuple[str, str | None, str | None]] = []  # (identifier, type, relation)


def _identifier(el, st: _State) -> None:
    value = _text(el)
    if value:
        st.identifiers.append((el.get("identifierType") or "", value))


def _alternate_identifiers(el, st: _State) -> None:
    for child in _elements(el):
        value = _text(child)
        if value:
            st.alternates.append((child.get("alternateIdentifierType") or "", value))


def _titles(el, st: _State) -> None:
    for child in _elements(el):
        text = _text(child)
        if text:
            st.titles.append((child.get("titleType"), text))


def _descriptions(el, st: _State) -> None:
    for child in _elements(el):
        _description(child, st)


def _description(el, st: _State) -> None:
    text = _text(el)
    if text:
        st.descriptions.append((el.get("descriptionType"), text))


def _person(el, role: str | None) -> Person | None:
    full = ""
    name_type = given = family = orcid = None
    has_ror = False
    affiliations: list[tuple[str, str | None]] = []  # (name, ror), in order, no repeats
    local = _LOCAL
    for child in el[:]:
        name = local[child.tag]
        # The commonest children first: this runs for every child of every person.
        if name == "creatorName" or name == "contributorName":
            full = _text(child)
            name_type = child.get("nameType")
        elif name == "givenName":
            given = _text(child) or None
        elif name == "familyName":
            family = _text(child) or None
        elif name == "affiliation":
            affiliation = _affiliation(child)
            if affiliation and affiliation not in affiliations:
                affiliations.append(affiliation)
        elif name == "nameIdentifier":
            value = _text(child)
            scheme = (child.get("nameIdentifierScheme") or "").upper()
            if (scheme == "ORCID" or "orcid.org" in value
                    or "orcid.org" in (child.get("schemeURI") or "")):
                orcid = orcid or normalize_orcid(value)
            elif scheme == "ROR" or "ror.org" in value:
                has_ror = True
    if is_placeholder(full):
        # ":null" (ISIS), ":unav" (HZB) or empty: keep the person only if the parts say who.
        if not family or is_placeholder(family):
            return None
        full = f"{family}, {given}" if given else family
    if name_type == "Personal":
        kind = "person"
    elif name_type == "Organizational" or (name_type is None and has_ror and not orcid):
        kind = "organization"
    else:
        kind = None
    if kind != "organization" and not (given and family):
        split_given, split_family = split_name(full)
        given = given or split_given
        family = family or split_family
    return _new_person({
        "full_name": full, "given_name": given, "family_name": family, "orcid": orcid,
        "affiliations": [_new_affiliation({"name": name, "ror": ror})
                         for name, ror in affiliations] if affiliations else [],
        "role": role, "kind": kind})


def _affiliation(el) -> tuple[str, str | None] | None:
    name = _text(el)
    identifier = el.get("affiliationIdentifier")
    ror = normalize_ror(identifier) if identifier else None
    if ror is None and "ror.org" in name:  # the ROR URL written as the name
        ror = normalize_ror(name)
    name = name or collapse(identifier)
    return (name, ror) if name else None


def _creators(el, st: _State) -> None:
    people = st.values["creators"]
    for child in _elements(el):
        person = _person(child, None)
        if person:
            people.append(person)


def _contributors(el, st: _State) -> None:
    people = st.values["contributors"]
    for child in _elements(el):
        person = _person(child, child.get("contributorType"))
        if person:
            people.append(person)


def _publisher(el, st: _State) -> None:
    st.values["publisher"] = _text(el) or None


def _publication_year(el, st: _State) -> None:
    st.publication_year = _text(el)


def _resource_type(el, st: _State) -> None:
    st.values["resource_type"] = _text(el) or None
    st.values["resource_type_general"] = el.get("resourceTypeGeneral")


def _subjects(el, st: _State) -> None:
    subjects, keywords = st.values["subjects"], st.values["keywords"]
    for child in _elements(el):
        value = _text(child)
        if not value:
            continue
        scheme = child.get("subjectScheme")
        subjects.append(_new_subject({"value": value, "scheme": scheme,
                                      "scheme_uri": child.get("schemeURI"),
                                      "value_uri": child.get("valueURI")}))
        if (not scheme or "keyword" in scheme.lower()) and value not in keywords:
            keywords.append(value)


def _dates(el, st: _State) -> None:
    dates = st.dates
    for child in _elements(el):
        raw = _text(child)
        if raw:
            start, end = date_range(raw)
            dates.append(_new_date({"type": child.get("dateType") or "Other",
                                    "start": start, "end": end, "raw": raw}))


def _language(el, st: _State) -> None:
    if not st.language_seen:
        st.language_seen = True
        st.values["language"] = _text(el) or None


def _related_identifiers(el, st: _State) -> None:
    related = st.related
    for child in _elements(el):
        value = _text(child)
        if not value:
            continue
        id_type = child.get("relatedIdentifierType")
        relation = child.get("relationType")
        if id_type and id_type.upper() == "DOI":
            value = normalize_doi(value) or value
        related.append((value, id_type, relation))
        # DataCite 4.4+: a dataset "IsCollectedBy" the instrument that produced it.
        if relation == "IsCollectedBy" and child.get("resourceTypeGeneral") == "Instrument":
            st.instruments.append((value, value))


def _related_items(el, st: _State) -> None:
    local = _LOCAL
    for item in _elements(el):
        identifier = id_type = None
        title = first_title = None
        for child in item[:]:
            name = local[child.tag]
            if name == "relatedItemIdentifier":
                identifier = _text(child) or None
                id_type = child.get("relatedItemIdentifierType")
            elif name == "titles":
                for title_el in _elements(child):
                    text = _text(title_el)
                    if text and first_title is None:
                        first_title = text
                    if text and title is None and not title_el.get("titleType"):
                        title = text
        if identifier and (id_type or "").upper() == "DOI":
            identifier = normalize_doi(identifier) or identifier
        if identifier:
            entry = (identifier, id_type, item.get("relationType"))
            if entry not in st.related:
                st.related.append(entry)
        if item.get("relatedItemType") == "Instrument" and (title or first_title or identifier):
            st.instruments.append((title or first_title or identifier, identifier))


def _texts(el) -> list[str]:
    return [text for child in _elements(el) if (text := _text(child))]


def _sizes(el, st: _State) -> None:
    st.values["sizes"].extend(_texts(el))


def _formats(el, st: _State) -> None:
    st.values["formats"].extend(_texts(el))


def _format(el, st: _State) -> None:  # OpenAIRE: dc:format directly under the resource
    text = _text(el)
    if text:
        st.values["formats"].append(text)


def _rights_list(el, st: _State) -> None:
    for child in _elements(el):
        _rights(child, st)


def _rights(el, st: _State) -> None:
    identifier = el.get("rightsIdentifier")
    spdx = (el.get("rightsIdentifierScheme") or "").upper() == "SPDX"
    st.rights.append((_text(el), el.get("rightsURI"), identifier, spdx))


def _license_condition(el, st: _State) -> None:  # OpenAIRE: oaire:licenseCondition uri=...
    st.rights.append((_text(el), el.get("uri"), None, False))


_DATACITE: dict[str, Callable[[Any, _State], None]] = {
    "identifier": _identifier,
    "alternateIdentifiers": _alternate_identifiers,
    "titles": _titles,
    "descriptions": _descriptions,
    "description": _description,
    "creators": _creators,
    "contributors": _contributors,
    "publisher": _publisher,
    "publicationYear": _publication_year,
    "resourceType": _resource_type,
    "subjects": _subjects,
    "dates": _dates,
    "language": _language,
    "relatedIdentifiers": _related_identifiers,
    "relatedItems": _related_items,
    "sizes": _sizes,
    "formats": _formats,
    "format": _format,
    "rightsList": _rights_list,
    "rights": _rights,  # kernel 2.x: <rights> directly under <resource>
    "licenseCondition": _license_condition,
}


class _Handlers(dict[Any, Callable[[Any, _State], None] | None]):
    """The same handlers keyed by Clark tag ("{ns}titles"), filled as tags are met, so
    the walk over a resource's children costs one dict lookup each. Non-element
    children (their tag is a function) have none. Bounded like _LOCAL."""

    def __missing__(self, tag: Any) -> Callable[[Any, _State], None] | None:
        handler = _DATACITE.get(_LOCAL[tag])
        if len(self) < 4096:
            self[tag] = handler
        return handler


_DATACITE_BY_TAG = _Handlers()


def _map_datacite(resource: etree._Element) -> tuple[dict[str, Any], str | None,
                                                      list[tuple[str, str | None]]]:
    """(the Document's values, the hosting institution, the instruments as (name, pid))."""
    st = _State()
    by_tag = _DATACITE_BY_TAG
    for child in resource[:]:
        handler = by_tag[child.tag]
        if handler is not None:
            handler(child, st)
    fields = st.values
    hosting = None
    for person in fields["contributors"]:  # a loop, not next(genexpr): most lists are empty
        if person.role == "HostingInstitution":
            hosting = person.full_name
            break

    doi = None
    for id_type, value in st.identifiers:
        # ESS/SciCat give the DOI as identifierType="URL" https://doi.org/...
        if id_type.upper() in ("DOI", "URL", ""):
            doi = normalize_doi(value)
            if doi:
                break
    if doi is None:
        doi = find_doi([v for t, v in st.alternates if t.upper() in ("DOI", "URL")])
    fields["doi"] = doi
    fields["pid"] = doi or (st.identifiers[0][1] if st.identifiers else None)

    title = None  # the first title without a titleType, else the first title
    for kind, text in st.titles:
        if not kind:
            title = text
            break
    else:
        if st.titles:
            title = st.titles[0][1]
    fields["title"] = title
    fields["summary"] = _summary(st.descriptions)
    _apply_rights(fields, st.rights)
    _apply_dates(fields, st.dates, year_of(st.publication_year))
    fields["related_identifiers"] = [
        _new_related({"identifier": identifier, "type": id_type, "relation": relation})
        for identifier, id_type, relation in st.related] if st.related else []
    fields["format"] = "openaire" if _is_openaire(resource) else "datacite"
    return fields, hosting, _merge_instruments(st.instruments) if st.instruments else []


def _is_openaire(resource: etree._Element) -> bool:
    # SciCat's /openaire route: a DataCite resource whose default namespace is OpenAIRE's.
    # An unprefixed resource is in the default namespace, so its tag tells; only a prefixed
    # one (ESS: datacite:resource) needs the namespaces in scope, which lxml builds as a
    # new dict on every call.
    return (resource.tag.startswith(_OPENAIRE_CLARK)
            or (resource.prefix is not None and resource.nsmap.get(None) == _OPENAIRE_NS))


def _summary(descriptions: list[tuple[str | None, str]]) -> str | None:
    """The first abstract, else the first description; a bare URL (ESS writes a wiki
    link as the "abstract") describes nothing."""
    first = None
    for kind, text in descriptions:
        if is_bare_url(text):
            continue
        if kind == "Abstract":
            return text
        if first is None:
            first = text
    return first


def _apply_rights(fields: dict[str, Any], rights: list[_Rights]) -> None:
    spdx = uri = access = None
    texts: list[str] = []
    for text, rights_uri, identifier, declared_spdx in rights:
        rights_uri = rights_uri.strip() if rights_uri else None
        shown = text or rights_uri
        if shown and shown not in texts:
            texts.append(shown)
        if access_right(rights_uri):
            # info:eu-repo/semantics/openAccess is an access right, not a licence URI.
            access = access or access_right(rights_uri)
            rights_uri = None
        elif access_right(text):
            access = access or access_right(text)
            continue
        if spdx is None:
            identifier = identifier.strip() if identifier else None
            # A declared SPDX id is trusted even when our table does not know it.
            spdx = (license_id(identifier) or (identifier if declared_spdx else None)
                    or license_id(rights_uri) or license_id(text))
            if spdx:
                # Keep the record's own URI unless it names another licence (DataCite's
                # kernel-4.7 example pairs CC-BY-4.0 with a by-nc URI): license and
                # license_uri must agree, and the SPDX id is the explicit statement.
                if rights_uri and license_id(rights_uri) in (spdx, None):
                    uri = rights_uri
                elif is_bare_url(text) and license_id(text) == spdx:
                    uri = text
                else:
                    uri = license_uri(spdx)
    fields["rights"] = texts
    fields["license"] = spdx
    fields["license_uri"] = uri
    # Every licence in the table is an open licence, so a recognised one implies open access.
    access = access or ("open" if spdx else None)
    fields["access_rights"] = access
    fields["is_public"] = None if access is None else access == "open"


def _apply_dates(fields: dict[str, Any], dates: list[DateInfo],
                 publication_year: int | None) -> None:
    fields["dates"] = dates
    for date in dates:
        if date.type == "Collected":
            fields["collection_start"], fields["collection_end"] = date.start, date.end
            break
    if publication_year is None:  # ESRF: no publicationYear; B2FIND falls back the same way
        for date_type in _DATE_YEAR_FALLBACK:
            publication_year = next(
                (year_of(d.start) for d in dates if d.type == date_type and d.start), None)
            if publication_year:
                break
    fields["publication_year"] = publication_year
    release = None
    for date_type in _RELEASE_TYPES:
        # the most precise of the dates of that type ("2018-01-18" beats "2018"), the
        # first of equals
        for date in dates:
            start = date.start
            if start and date.type == date_type and (not release or len(start) > len(release)):
                release = start
        if release:
            break
    fields["release_date"] = release or (str(publication_year) if publication_year else None)


def _merge_instruments(instruments: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """One instrument per pid, keeping a real name over a name that is only the pid."""
    merged: dict[str, tuple[str, str | None]] = {}
    for name, pid in instruments:
        key = pid or name
        known = merged.get(key)
        if known is None or (known[0] == known[1] and name != key):
            merged[key] = (name, pid)
    return list(merged.values())
