"""The record mapper builds Documents with `Model.trusted` (no validation): what it
builds must be exactly what validation would have built.

For every record of every sample file, generated records in both formats and the
odd shapes below, the document must (1) give every field of every nested model,
(2) hold only the declared types (plain str, not lxml's str subclasses; int, not
"2019"), (3) survive strict validation of its dump unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from pydantic import BaseModel

from harvester.document import Affiliation, DateInfo, Document, Person
from harvester.errors import RecordError
from harvester.records import parse_element, parse_record, safe_parser
from tests.recordgen import make_records

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"
OAI = "http://www.openarchives.org/OAI/2.0/"


def assert_exact(doc: Document) -> None:
    problems: list[str] = []
    _check(doc, "doc", problems)
    assert not problems, problems
    again = Document.model_validate(doc.model_dump(), strict=True)
    assert again == doc
    assert again.model_dump() == doc.model_dump()
    assert repr(again) == repr(doc)  # same field order too


def _check(model: BaseModel, where: str, problems: list[str]) -> None:
    fields = type(model).model_fields
    if list(model.__dict__) != list(fields):
        problems.append(f"{where}: fields {list(model.__dict__)} != {list(fields)}")
    for name, value in model.__dict__.items():
        _check_value(value, f"{where}.{name}", problems)


def _check_value(value: Any, where: str, problems: list[str]) -> None:
    if isinstance(value, BaseModel):
        _check(value, where, problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", problems)
    elif value is not None and type(value) not in (str, int, bool):
        problems.append(f"{where}: {type(value).__name__} {value!r}")


def sample_records() -> list[tuple[str, etree._Element]]:
    out = []
    for path in sorted(SAMPLES.glob("*.xml")):
        root = etree.fromstring(path.read_bytes(), safe_parser())
        records = list(root.iter(f"{{{OAI}}}record")) or [root]
        out.extend((f"{path.name}#{i}", record) for i, record in enumerate(records))
    return out


SAMPLE_RECORDS = sample_records()
NO_RECORDS = ("_identify_", "_listidentifiers_", "_listmetadataformats_", "_listsets_")


@pytest.mark.parametrize(("name", "record"), SAMPLE_RECORDS, ids=[n for n, _ in SAMPLE_RECORDS])
@pytest.mark.parametrize(("source", "facility"), [("x", None), ("hzb", "HZB"), ("ess", "ESS")])
def test_every_sample_record_is_built_exactly(name: str, record: etree._Element, source: str,
                                              facility: str | None) -> None:
    try:
        doc = parse_element(record, source=source, facility=facility)
    except RecordError:
        # Responses that hold no record at all.
        assert any(verb in name for verb in NO_RECORDS), name
        return
    assert_exact(doc)


def test_the_samples_hold_records() -> None:
    records = [name for name, _ in SAMPLE_RECORDS if not any(v in name for v in NO_RECORDS)]
    assert len(records) >= 10


@pytest.mark.parametrize("prefix", ["oai_datacite", "oai_dc"])
def test_generated_records_are_built_exactly(prefix: str) -> None:
    built = 0
    for rec in make_records(300, seed=11, prefix=prefix):
        raw = (f'<record xmlns="{OAI}"><header><identifier>{rec.identifier}</identifier>'
               f"<datestamp>{rec.datestamp}</datestamp></header><metadata>").encode()
        doc = parse_record(raw + rec.metadata_xml + b"</metadata></record>", source="hzb",
                           facility="HZB")
        assert_exact(doc)
        built += 1
    assert built == 300


ODD = """<resource xmlns="http://datacite.org/schema/kernel-4">
  <identifier identifierType="URL">https://doi.org/10.5442/ODD</identifier>
  <creators>
    <creator><creatorName>:null</creatorName><givenName>Ann</givenName>
      <familyName>Lee</familyName></creator>
    <creator><creatorName nameType="Organizational">Paul Scherrer Institute</creatorName>
      <nameIdentifier nameIdentifierScheme="ROR">https://ror.org/03eh3y714</nameIdentifier>
      <affiliation affiliationIdentifier="https://ror.org/03eh3y714">PSI</affiliation>
      <affiliation affiliationIdentifier="https://ror.org/03eh3y714">PSI</affiliation>
      <affiliation>https://ror.org/03eh3y714</affiliation></creator>
    <creator><creatorName>Dupont, <!-- x -->Jean</creatorName>
      <nameIdentifier nameIdentifierScheme="orcid">0000-0002-1694-233x</nameIdentifier></creator>
  </creators>
  <titles><title titleType="Subtitle">Sub</title><title>Main <i>title</i></title></titles>
  <contributors><contributor contributorType="HostingInstitution">
    <contributorName>ILL</contributorName></contributor></contributors>
  <dates><date dateType="Collected">2020-1-2/2020-01-05 10:00</date>
    <date dateType="Accepted">2021</date><date>garbage</date></dates>
  <subjects><subject subjectScheme="PaNET" valueURI="http://purl.org/pan-science/PaNET/PaNET01188"
    >SAXS</subject><subject subjectScheme="Keywords">saxs</subject></subjects>
  <relatedIdentifiers>
    <relatedIdentifier relatedIdentifierType="DOI" relationType="IsCollectedBy"
      resourceTypeGeneral="Instrument">doi:10.5442/NI/D22</relatedIdentifier>
    <relatedIdentifier relatedIdentifierType="DOI" relationType="IsCollectedBy"
      >10.5442/NI/OTHER</relatedIdentifier></relatedIdentifiers>
  <relatedItems><relatedItem relatedItemType="Instrument" relationType="IsCollectedBy">
    <relatedItemIdentifier relatedItemIdentifierType="DOI">10.5442/NI/D22</relatedItemIdentifier>
    <titles><title>D22</title></titles></relatedItem></relatedItems>
  <rightsList><rights rightsURI="info:eu-repo/semantics/embargoedAccess"/>
    <rights rightsIdentifier="CC-BY-4.0" rightsIdentifierScheme="SPDX">CC BY</rights></rightsList>
  <sizes><size>1 GB</size></sizes><formats><format>NeXus</format></formats>
  <language>en</language>
</resource>"""

DC = """<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
    xmlns:dc="http://purl.org/dc/elements/1.1/">
  <dc:title>A Dublin Core record</dc:title><dc:creator>Doe, Jane</dc:creator>
  <dc:creator>:unav</dc:creator><dc:contributor>Someone</dc:contributor>
  <dc:subject>SANS</dc:subject><dc:subject>SANS</dc:subject>
  <dc:relation>https://doi.org/10.1/X</dc:relation><dc:relation>http://example.org/y</dc:relation>
  <dc:relation>see paper</dc:relation>
  <dc:date>info:eu-repo/date/embargoEnd/2025-01-01</dc:date><dc:date>Issued: 2018-01-18</dc:date>
  <dc:type>Dataset</dc:type><dc:type>Raw data</dc:type>
  <dc:identifier>oai:example.org:7</dc:identifier>
  <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
</oai_dc:dc>"""


@pytest.mark.parametrize("payload", [ODD, DC], ids=["datacite-odd", "oai_dc"])
@pytest.mark.parametrize("facility", [None, "HZB", "ESS"])
def test_odd_shapes_are_built_exactly(payload: str, facility: str | None) -> None:
    doc = parse_record(payload.encode(), source="src", facility=facility)
    assert_exact(doc)


def test_odd_shapes_are_read_as_before() -> None:
    """A few values the faster code paths (ORCID, dates, dedup tuples) must keep."""
    doc = parse_record(ODD.encode(), source="src", facility="HZB")
    assert doc.doi == "10.5442/odd"
    assert [p.full_name for p in doc.creators] == ["Lee, Ann", "Paul Scherrer Institute",
                                                   "Dupont, Jean"]
    assert doc.creators[2].orcid == "0000-0002-1694-233X"
    assert (doc.creators[2].given_name, doc.creators[2].family_name) == ("Jean", "Dupont")
    psi = doc.creators[1]
    assert psi.kind == "organization"
    assert psi.affiliations == [Affiliation(name="PSI", ror="https://ror.org/03eh3y714"),
                                Affiliation(name="https://ror.org/03eh3y714",
                                            ror="https://ror.org/03eh3y714")]
    assert doc.title == "Main title"
    assert doc.facility == "HZB"
    assert doc.dates[0] == DateInfo(type="Collected", start="2020-01-02", end="2020-01-05T10:00",
                                    raw="2020-1-2/2020-01-05 10:00")
    assert (doc.collection_start, doc.collection_end) == ("2020-01-02", "2020-01-05T10:00")
    assert doc.publication_year == 2021
    assert doc.keywords == ["saxs"]
    assert {(i.name, i.pid) for i in doc.instruments} == {("D22", "10.5442/ni/d22"),
                                                          ("10.5442/ni/other", "10.5442/ni/other")}
    assert all(i.facility == "HZB" for i in doc.instruments)
    assert [r.identifier for r in doc.related_identifiers] == ["10.5442/ni/d22", "10.5442/ni/other"]
    assert (doc.license, doc.access_rights) == ("CC-BY-4.0", "embargoed")


def test_trusted_equals_validated_and_stays_mutable() -> None:
    values = {"full_name": "Lee, Ann", "given_name": "Ann", "family_name": "Lee", "orcid": None,
              "affiliations": [Affiliation.trusted({"name": "ILL", "ror": None})],
              "role": None, "kind": "person"}
    built = Person.trusted(dict(values))
    assert built == Person.model_validate(values)
    assert built.model_fields_set == set(values)
    built.orcid = "0000-0002-1825-0097"
    assert built.model_dump()["orcid"] == "0000-0002-1825-0097"
    assert built.model_copy(update={"role": "Editor"}).role == "Editor"
