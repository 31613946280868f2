"""records.parse_record / parse_element against every sample record in ../shared/samples,
field by field, plus synthetic records for the shapes and failures the samples lack.

Expected values are read off the sample files by hand, not produced by the code.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from lxml import etree

from harvester import quirks
from harvester.document import (
    Affiliation,
    DateInfo,
    Document,
    Instrument,
    Person,
    RelatedIdentifier,
    Subject,
)
from harvester.errors import RecordError
from harvester.records import parse_element, parse_record, safe_parser

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def records_in(name: str) -> list[etree._Element]:
    """Every <record> of an OAI-PMH response, as the harvester will hand them over."""
    root = etree.fromstring(sample(name), safe_parser())
    return list(root.iter("{http://www.openarchives.org/OAI/2.0/}record"))


def assert_valid(doc: Document) -> None:
    # Quirks mutate documents after validation: what comes out must still validate.
    assert Document.model_validate(doc.model_dump()) == doc


# --- HZB: kernel 4.5 in the OAI namespace, Handle pid, instrument relatedItem ----------

HZB = "hzb_inv_oai_datacite_record__b2find.xml"
HZB_NAME = "Helmholtz-Zentrum Berlin für Materialien und Energie"


def test_hzb_record():
    doc = parse_record(sample(HZB), source="hzb", facility="HZB", metadata_prefix="oai_datacite")
    assert_valid(doc)
    assert doc.source == "hzb"
    assert doc.metadata_prefix == "oai_datacite"
    assert doc.format == "datacite"
    assert doc.oai_identifier == "9beb3749-a078-5f7c-949a-e6da71f6185f"
    assert doc.datestamp == "2023-05-08T10:30:43Z"
    # The identifier is a Handle, not a DOI: kept as the pid, no doi invented.
    assert doc.pid == "21.11151/74ix-jvpa"
    assert doc.doi is None
    assert doc.title == (
        "Change of magnetic order by non-magnetic dilution in the quasicrystal approximant "
        "TbCd6 and icosahedral quasicrystal i-Tb-Cd")
    assert doc.summary.startswith("Our group has recently discovered i-R-Cd quasicrystals")
    assert doc.summary.endswith("In total we ask for 10 days of beam time at E2.")
    assert "\n" not in doc.summary
    assert doc.publisher == HZB_NAME
    assert doc.facility == "HZB"
    assert doc.publication_year == 2021
    assert doc.release_date == "2021"  # no Issued/Available date: the publication year
    assert doc.resource_type == "Investigation"
    assert doc.resource_type_general == "Other"
    assert doc.creators == []  # the record has contributors only
    assert doc.contributors == [
        Person(full_name="Kreyßig, Andreas", given_name="Andreas", family_name="Kreyßig", role="Other"),
        Person(full_name="Tucker, Gregory", given_name="Gregory", family_name="Tucker", role="Other"),
        Person(full_name="Ueland, Benjamin", given_name="Benjamin", family_name="Ueland", role="Other"),
        Person(full_name="Goldman, Alan", given_name="Alan", family_name="Goldman", role="Other"),
        Person(full_name=HZB_NAME, role="Other"),
    ]
    assert doc.license == "CC0-1.0"
    assert doc.license_uri == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert doc.rights == ["Creative Commons Zero v1.0 Universal",
                          "https://creativecommons.org/publicdomain/zero/1.0/"]
    assert doc.access_rights == "open"
    assert doc.is_public is True
    assert doc.sizes == ["5.70 MiB"]
    assert doc.formats == []
    assert doc.language is None
    assert doc.dates == [DateInfo(type="Collected", start="2016-06-14T06:00:00Z",
                                  end="2016-07-05T06:18:54Z",
                                  raw="2016-06-14T06:00:00Z/2016-07-05T06:18:54Z")]
    assert doc.collection_start == "2016-06-14T06:00:00Z"
    assert doc.collection_end == "2016-07-05T06:18:54Z"
    # relatedIdentifier and relatedItem name the same link: listed once.
    assert doc.related_identifiers == [
        RelatedIdentifier(identifier="10.5442/ni000001", type="DOI", relation="IsCollectedBy")]
    assert doc.instruments == [
        Instrument(name="E2 - Flat-Cone Diffractometer", pid="10.5442/ni000001", facility="HZB")]
    assert doc.subjects == [] and doc.keywords == []


def test_hzb_without_facility_falls_back_to_publisher():
    doc = parse_record(sample(HZB), source="hzb")
    assert doc.facility == HZB_NAME
    assert doc.instruments == [
        Instrument(name="E2 - Flat-Cone Diffractometer", pid="10.5442/ni000001", facility=HZB_NAME)]


def _hzb_without_related_item() -> bytes:
    root = etree.fromstring(sample(HZB), safe_parser())
    resource = root.find("{*}metadata/{*}resource")
    resource.remove(resource.find("{*}relatedItems"))
    return etree.tostring(root)


def test_hzb_quirk_turns_an_is_collected_by_doi_into_an_instrument():
    doc = parse_record(_hzb_without_related_item(), source="hzb", facility="HZB")
    assert doc.instruments == [
        Instrument(name="10.5442/ni000001", pid="10.5442/ni000001", facility="HZB")]
    assert_valid(doc)
    # Elsewhere an IsCollectedBy DOI without resourceTypeGeneral="Instrument" is only a link.
    other = parse_record(_hzb_without_related_item(), source="elsewhere")
    assert other.instruments == []
    assert other.related_identifiers == doc.related_identifiers


def test_quirks_are_keyed_by_facility_or_source_case_insensitively():
    by_source = parse_record(_hzb_without_related_item(), source="HZB")
    assert [i.pid for i in by_source.instruments] == ["10.5442/ni000001"]
    assert quirks.instrument_from_collected_by in quirks.QUIRKS["hzb"]


# --- ESS: SciCat /openaire route, mixed namespaces, DOI as a URL, URL "abstract" ------

ESS = "ess_openaire_oai_record__b2find.xml"
ESS_BROKEN = "ess_openaire_oai_record_broken_id__b2find.xml"


def test_ess_openaire_record():
    doc = parse_record(sample(ESS), source="ess", facility="ESS", metadata_prefix="oai_datacite")
    assert_valid(doc)
    assert doc.format == "openaire"
    assert doc.oai_identifier == "10.17199/BRIGHTNESS/V200111"  # as the header gives it
    assert doc.datestamp == "2020-01-01"
    assert doc.doi == "10.17199/brightness/v200111"  # from identifierType="URL" https://doi.org/...
    assert doc.pid == doc.doi
    assert doc.title == "Sample Data from V20"
    assert doc.summary is None  # the "abstract" is a bare wiki URL
    assert doc.creators == [Person(full_name="Tobias Richter", affiliations=[Affiliation(name="ESS")])]
    assert doc.contributors == []
    assert doc.publisher == "ESS"
    assert doc.facility == "ESS"
    assert doc.publication_year == 2018
    assert doc.release_date == "2020-01-01"
    assert doc.dates == [
        DateInfo(type="Issued", start="2020-01-01", end="2020-01-01", raw="2020-01-01"),
        DateInfo(type="Available", start="2020-01-01", end="2020-01-01", raw="2020-01-01"),
    ]
    assert doc.rights == ["OpenAccess"]
    assert doc.license is None  # openAccess is an access right, not a licence
    assert doc.license_uri is None
    assert doc.access_rights == "open"
    assert doc.is_public is True
    assert doc.resource_type is None
    assert doc.resource_type_general == "Dataset"  # ESS quirk: SciCat publishes datasets
    assert doc.instruments == [] and doc.related_identifiers == []


def test_ess_record_without_the_facility_quirk_has_no_resource_type():
    doc = parse_record(sample(ESS), source="scicat-test")
    assert doc.resource_type_general is None
    assert doc.facility == "ESS"  # from the publisher


def test_ess_broken_id_record_is_kept_under_its_doi():
    # The "broken id" is the empty header <identifier/>; the payload itself is sound
    # (title, DOI, creator), and B2FIND indexes it too. Dropping it would lose a real
    # dataset, so the document is kept and its oai_identifier falls back to the DOI,
    # which is stable across harvests: a re-harvest updates the same document.
    doc = parse_record(sample(ESS_BROKEN), source="ess", facility="ESS")
    assert_valid(doc)
    assert doc.oai_identifier == "10.17199/brightness/nmx0032"
    assert doc.datestamp == "2020-06-10"
    assert doc.doi == "10.17199/brightness/nmx0032"
    assert doc.pid == doc.doi
    assert doc.format == "datacite"  # kernel-3 resource in an oai_datacite wrapper
    assert doc.title == "Sample Data from NMX"
    assert doc.summary is None
    assert doc.creators == [Person(full_name="Pfeiffer, Dorothea", given_name="Dorothea",
                                   family_name="Pfeiffer", affiliations=[Affiliation(name="ESS")])]
    assert doc.keywords == ["Photon and neutron data"]
    assert doc.subjects == [Subject(value="Photon and neutron data")]
    assert doc.publisher == "ESS"
    assert doc.resource_type == "Dataset"
    assert doc.resource_type_general == "Dataset"
    assert doc.publication_year == 2018
    assert doc.release_date == "2018-01-01"
    assert doc.dates == [DateInfo(type="Issued", start="2018-01-01", end="2018-01-01", raw="2018-01-01")]
    assert doc.rights == ["OpenAccess"]
    assert doc.access_rights == "open"
    assert doc.license is None


# --- DataCite's kernel-4.7 examples (bare resources, no OAI header) ------------------

FULL = "datacite_kernel-4.7_example_full.xml"
ORCID = "0000-0001-5727-2427"
EXAMPLE_AFFILIATION = Affiliation(name="ExampleAffiliation", ror="https://ror.org/04wxnsj81")


def test_kernel47_full_example():
    doc = parse_record(sample(FULL), source="datacite")
    assert_valid(doc)
    assert doc.format == "datacite"
    assert doc.pid == doc.doi == "10.82433/b09z-4k37"
    assert doc.oai_identifier == "10.82433/b09z-4k37"  # no header: the record's identifier
    assert doc.datestamp == ""
    assert doc.title == "Example Title"  # not the Subtitle / TranslatedTitle / AlternativeTitle
    assert doc.summary == "Example Abstract"
    assert doc.creators == [
        Person(full_name="ExampleFamilyName, ExampleGivenName", given_name="ExampleGivenName",
               family_name="ExampleFamilyName", orcid=ORCID, affiliations=[EXAMPLE_AFFILIATION],
               kind="person"),
        Person(full_name="ExampleOrganization", kind="organization"),
    ]
    assert [c.role for c in doc.contributors] == [
        "ContactPerson", "DataCollector", "DataCurator", "DataManager", "Distributor", "Editor",
        "HostingInstitution", "Producer", "ProjectLeader", "ProjectManager", "ProjectMember",
        "RegistrationAgency", "RegistrationAuthority", "RelatedPerson", "Researcher",
        "ResearchGroup", "RightsHolder", "Sponsor", "Supervisor", "Translator",
        "WorkPackageLeader", "Other"]  # the relatedItem's contributor is not one of them
    by_role = {c.role: c for c in doc.contributors}
    assert by_role["ContactPerson"].orcid == ORCID  # " https://orcid.org/..." with a leading space
    assert by_role["ContactPerson"].affiliations == [EXAMPLE_AFFILIATION]
    assert by_role["Distributor"] == Person(full_name="ExampleOrganization", role="Distributor",
                                            kind="organization")
    assert by_role["ResearchGroup"] == Person(
        full_name="ExampleContributor", role="ResearchGroup",
        affiliations=[Affiliation(name="ExampleOrganization", ror="https://ror.org/03yrm5c26")])
    # The Sponsor's affiliation is written as the ROR URL itself.
    assert by_role["Sponsor"].affiliations == [
        Affiliation(name="https://ror.org/03yrm5c26", ror="https://ror.org/03yrm5c26")]
    assert by_role["RegistrationAuthority"].kind == "organization"
    assert by_role["RegistrationAuthority"].affiliations == []
    assert doc.publisher == "Example Publisher"
    assert doc.facility == "ExampleOrganization"  # the HostingInstitution contributor
    assert doc.publication_year == 2024
    assert doc.resource_type == "Example ResourceType"
    assert doc.resource_type_general == "Dataset"
    assert doc.subjects == [
        Subject(value="FOS: Computer and information sciences",
                scheme="Fields of Science and Technology (FOS)",
                scheme_uri="http://www.oecd.org/science/inno",
                value_uri="http://www.oecd.org/science/inno/38235147.pdf"),
        Subject(value="Digital curation and preservation",
                scheme="Australian and New Zealand Standard Research Classification (ANZSRC), 2020",
                scheme_uri="https://www.abs.gov.au/statistics/classifications/australian-and-new-zealand-standard-research-classification-anzsrc"),
        Subject(value="Example Subject"),
    ]
    assert doc.keywords == ["Example Subject"]
    assert [d.type for d in doc.dates] == [
        "Accepted", "Available", "Copyrighted", "Collected", "Coverage", "Created", "Issued",
        "Submitted", "Updated", "Valid", "Withdrawn", "Other"]
    assert doc.dates[3] == DateInfo(type="Collected", start="2024-01-01", end="2024-12-31",
                                    raw="2024-01-01/2024-12-31")
    assert (doc.collection_start, doc.collection_end) == ("2024-01-01", "2024-12-31")
    assert doc.release_date == "2024-01-01"
    assert doc.language == "en"
    assert doc.sizes == ["1 MB", "90 pages"]
    assert doc.formats == ["application/xml", "text/plain"]
    assert doc.license == "CC-BY-4.0"
    assert doc.license_uri == "https://creativecommons.org/licenses/by/4.0/"
    assert doc.rights == ["Creative Commons Attribution 4.0 International"]
    assert doc.access_rights == "open" and doc.is_public is True
    # 41 relatedIdentifiers, then the relatedItem's ISSN.
    assert len(doc.related_identifiers) == 42
    assert doc.related_identifiers[0] == RelatedIdentifier(
        identifier="ark:/13030/tqb3kh97gh8w", type="ARK", relation="IsCitedBy")
    assert doc.related_identifiers[4] == RelatedIdentifier(
        identifier="10.1016/j.epsl.2011.11.037", type="DOI", relation="IsContinuedBy")
    assert doc.related_identifiers[-1] == RelatedIdentifier(
        identifier="1234-5678", type="ISSN", relation="Cites")
    # Its IsCollectedBy points at a DOI typed "Other", and its relatedItem is a Text.
    assert doc.instruments == []


def test_kernel47_dataset_example():
    doc = parse_record(sample("datacite_kernel-4.7_example_dataset.xml"), source="datacite")
    assert_valid(doc)
    assert doc.pid == doc.doi == "10.82433/9184-dy35"
    assert doc.title == "External Environmental Data, 2010-2020, National Gallery"
    assert doc.summary.startswith("The National Gallery houses one of the greatest ‒ and most visited ‒")
    assert doc.creators == [Person(full_name="National Gallery", kind="organization")]
    assert doc.contributors == [
        Person(full_name="Padfield, Joseph", given_name="Joseph", family_name="Padfield",
               orcid="0000-0002-2572-6428", role="ContactPerson", kind="person",
               affiliations=[Affiliation(name="National Gallery", ror="https://ror.org/043kfff89")]),
        Person(full_name="Building Facilities Department", role="DataCollector", kind="organization",
               affiliations=[Affiliation(name="National Gallery", ror="https://ror.org/043kfff89")]),
    ]
    assert doc.publisher == "National Gallery"
    assert doc.facility == "National Gallery"
    assert doc.publication_year == 2022
    assert doc.resource_type == "Environmental data"
    assert doc.resource_type_general == "Dataset"
    assert len(doc.subjects) == 6
    assert doc.subjects[1] == Subject(value="temperature", scheme="Wikidata",
                                      scheme_uri="https://www.wikidata.org/wiki",
                                      value_uri="https://www.wikidata.org/wiki/Q11466")
    assert doc.keywords == []  # every subject has a scheme
    assert doc.dates == [
        DateInfo(type="Collected", start="2010", end="2020", raw="2010/2020"),
        DateInfo(type="Other", start="2010", end="2020", raw="2010/2020"),
        DateInfo(type="Issued", start="2022", end="2022", raw="2022"),
    ]
    assert (doc.collection_start, doc.collection_end) == ("2010", "2020")
    assert doc.release_date == "2022"
    assert doc.language == "en"
    assert doc.sizes == ["13.6 MB"] and doc.formats == ["application/json"]
    assert [r.identifier for r in doc.related_identifiers] == [
        "https://www.nationalgallery.org.uk/research/research-resources/research-papers/improving-our-environment",
        "https://research.ng-london.org.uk/scientific/env/",
        "10.1080/00393630.2018.1504449",  # trailing "/" dropped
        "10.5281/zenodo.7629200",
    ]
    # The example declares rightsIdentifier CC-BY-4.0 with a by-nc rightsURI: the SPDX
    # id is the explicit statement, and license_uri must agree with it.
    assert doc.license == "CC-BY-4.0"
    assert doc.license_uri == "https://creativecommons.org/licenses/by/4.0/"
    assert doc.rights == ["Creative Commons Attribution Non Commercial 4.0 International"]
    assert doc.instruments == []


def test_kernel47_instrument_example():
    doc = parse_record(sample("datacite_kernel-4.7_example_instrument.xml"), source="datacite")
    assert_valid(doc)
    assert doc.pid == doc.doi == "10.82433/08qf-ee96"
    assert doc.title == "Pilatus detector at MX station 14.1"
    assert doc.summary == "The Pilatus 6M pixel-detector at the MX station 14.1"
    assert doc.creators == [Person(full_name="DECTRIS", kind="organization")]
    assert doc.contributors == [Person(full_name=HZB_NAME, role="HostingInstitution", kind="organization")]
    assert doc.publisher == "Helmholtz Centre Potsdam - GFZ German Research Centre for Geosciences"
    assert doc.facility == HZB_NAME  # hosted at HZB, published by GFZ
    assert doc.resource_type == "Raster image pixel detector"
    assert doc.resource_type_general == "Instrument"
    assert doc.publication_year == 2022
    assert doc.release_date == "2022"
    assert doc.related_identifiers == [
        RelatedIdentifier(identifier="1234.1675", type="Handle", relation="IsPartOf"),
        RelatedIdentifier(
            identifier="https://www.dectris.com/products/pilatus3/pilatus3-s-for-synchrotron/details/pilatus3-s-6m",
            type="URL", relation="IsDescribedBy"),
    ]
    assert doc.license is None and doc.access_rights is None and doc.is_public is None


# --- DataCite's OAI-PMH provider (viringo): the same record in three prefixes --------

FENNER = Person(full_name="Fenner, Martin", given_name="Martin", family_name="Fenner",
                orcid="0000-0003-1419-2405", kind="person",
                affiliations=[Affiliation(name="DataCite", ror="https://ror.org/04wxnsj81")])
HALLETT = Person(full_name="Hallett, Richard", given_name="Richard", family_name="Hallett",
                 orcid="0000-0002-8599-0773", kind="person",
                 affiliations=[Affiliation(name="DataCite", ror="https://ror.org/04wxnsj81")])
FAKE = "This is a fake DOI with fake metadata."


@pytest.mark.parametrize("name", ["datacite_oai_oai_getrecord_datacite__viringo.xml",
                                  "datacite_oai_oai_getrecord_oaidatacite__viringo.xml"])
def test_viringo_datacite_prefixes(name):
    (record,) = records_in(name)
    doc = parse_element(record, source="datacite", metadata_prefix="oai_datacite")
    assert_valid(doc)
    assert doc.format == "datacite"
    assert doc.oai_identifier == "doi:10.5072/not-a-real-doi"
    assert doc.datestamp == "2018-03-17T06:33:00Z"
    assert doc.pid == doc.doi == "10.5072/not-a-real-doi"
    assert doc.title == FAKE and doc.summary == FAKE
    assert doc.creators == [FENNER, HALLETT]
    assert doc.contributors == []
    assert doc.publisher == "DataCite" and doc.facility == "DataCite"
    assert doc.publication_year == 2018
    assert doc.resource_type == "BlogPosting" and doc.resource_type_general == "Text"
    assert doc.keywords == ["datacite"] and doc.subjects == [Subject(value="datacite")]
    assert doc.dates == [DateInfo(type=t, start="2018-01-18", end="2018-01-18", raw="2018-01-18")
                         for t in ("Issued", "Created", "Updated")]
    assert doc.release_date == "2018-01-18"
    assert doc.related_identifiers == [RelatedIdentifier(
        identifier="10.5072/related-not-a-real-doi", type="DOI", relation="IsPartOf")]
    assert doc.rights == [] and doc.license is None and doc.access_rights is None
    assert doc.is_public is None


def test_viringo_oai_datacite_wrapper_and_bare_kernel_agree():
    (bare,) = records_in("datacite_oai_oai_getrecord_datacite__viringo.xml")
    (wrapped,) = records_in("datacite_oai_oai_getrecord_oaidatacite__viringo.xml")
    assert parse_element(bare, source="s") == parse_element(wrapped, source="s")


def _dc_people():
    return [Person(full_name="Fenner, Martin", given_name="Martin", family_name="Fenner"),
            Person(full_name="Hallett, Richard", given_name="Richard", family_name="Hallett")]


def test_viringo_oai_dc_getrecord():
    (record,) = records_in("datacite_oai_oai_getrecord_dc__viringo.xml")
    doc = parse_element(record, source="datacite", metadata_prefix="oai_dc")
    assert_valid(doc)
    assert doc.format == "oai_dc"
    assert doc.metadata_prefix == "oai_dc"
    assert doc.oai_identifier == "doi:10.5072/not-a-real-doi"
    assert doc.datestamp == "2018-03-17T06:33:00Z"
    assert doc.pid == doc.doi == "10.5072/not-a-real-doi"  # from dc:identifier "doi:..."
    assert doc.title == FAKE and doc.summary == FAKE
    assert doc.creators == _dc_people()
    assert doc.publisher == "DataCite"
    assert doc.keywords == ["datacite"] and doc.subjects == [Subject(value="datacite")]
    assert doc.resource_type_general == "Text" and doc.resource_type == "BlogPosting"
    assert doc.dates == [
        DateInfo(type="Issued", start="2018", end="2018", raw="2018"),
        DateInfo(type="Issued", start="2018-01-18", end="2018-01-18", raw="Issued: 2018-01-18"),
        DateInfo(type="Created", start="2018-01-18", end="2018-01-18", raw="Created: 2018-01-18"),
        DateInfo(type="Updated", start="2018-01-18", end="2018-01-18", raw="Updated: 2018-01-18"),
    ]
    assert doc.publication_year == 2018
    assert doc.release_date == "2018-01-18"  # the most precise Issued date
    assert doc.related_identifiers == [
        RelatedIdentifier(identifier="10.5072/related-not-a-real-doi", type="DOI")]
    assert doc.instruments == [] and doc.license is None


def test_viringo_oai_dc_listrecords_parses_each_record():
    docs = [parse_element(r, source="datacite", metadata_prefix="oai_dc")
            for r in records_in("datacite_oai_oai_listrecords_dc__viringo.xml")]
    assert [d.oai_identifier for d in docs] == ["doi:10.5072/not-a-real-doi",
                                                "doi:10.5072/not-a-real-doi-2"]
    assert [d.datestamp for d in docs] == ["2018-03-17T06:33:00Z", "2018-05-17T06:33:00Z"]
    assert [d.doi for d in docs] == ["10.5072/not-a-real-doi", "10.5072/not-a-real-doi-2"]
    assert [d.release_date for d in docs] == ["2018-01-18", "2018-02-16"]
    assert [len(d.related_identifiers) for d in docs] == [1, 0]
    for doc in docs:
        assert_valid(doc)
        assert doc.title == FAKE
        assert doc.creators == _dc_people()
        assert doc.publication_year == 2018


def test_parse_record_and_parse_element_agree():
    raw = etree.tostring(records_in("datacite_oai_oai_getrecord_oaidatacite__viringo.xml")[0])
    (element,) = records_in("datacite_oai_oai_getrecord_oaidatacite__viringo.xml")
    assert parse_record(raw, source="s") == parse_element(element, source="s")


# --- Synthetic records: kernel 2.2 and 3 shapes, quirks, failures ----------------------

OAI = 'xmlns="http://www.openarchives.org/OAI/2.0/"'


def oai_record(payload: str, *, identifier: str = "oai:example.org:1", status: str = "") -> bytes:
    status_attr = f' status="{status}"' if status else ""
    return (f"<record {OAI}><header{status_attr}><identifier>{identifier}</identifier>"
            f"<datestamp>2024-02-03</datestamp></header><metadata>{payload}</metadata>"
            f"</record>").encode()


KERNEL_22 = """<resource xmlns="http://datacite.org/schema/kernel-2.2">
  <identifier identifierType="DOI">10.5291/ILL-DATA.5-31-2400</identifier>
  <creators>
    <creator><creatorName>Dupont, Jean</creatorName>
      <nameIdentifier nameIdentifierScheme="ORCID">0000-0002-1825-0097</nameIdentifier></creator>
    <creator><creatorName>:null</creatorName></creator>
  </creators>
  <titles><title>Magnetic excitations in a kagome lattice</title></titles>
  <publisher>Institut Laue-Langevin (ILL)</publisher>
  <publicationYear>2012</publicationYear>
  <subjects><subject>Magnetism</subject>
    <subject subjectScheme="PaNET" schemeURI="http://purl.org/pan-science/PaNET/"
      >inelastic neutron scattering</subject></subjects>
  <contributors><contributor contributorType="DataCollector">
    <contributorName>Martin, Claire</contributorName></contributor></contributors>
  <dates><date dateType="Available">2015-06-01</date><date dateType="Created">2012-05</date></dates>
  <language>eng</language>
  <resourceType resourceTypeGeneral="Dataset">Experimental data</resourceType>
  <relatedIdentifiers><relatedIdentifier relatedIdentifierType="DOI" relationType="IsCitedBy"
    >DOI:10.1103/PhysRevB.1.2</relatedIdentifier></relatedIdentifiers>
  <sizes><size>12 GB</size></sizes>
  <formats><format>NeXus</format></formats>
  <version>1</version>
  <rights>Creative Commons Attribution 4.0 International</rights>
  <descriptions><description descriptionType="Other">Raw data of proposal 5-31-2400.</description>
  </descriptions>
</resource>"""


def test_kernel_22_shape():
    doc = parse_record(KERNEL_22.encode(), source="ill", facility="ILL")
    assert_valid(doc)
    assert doc.pid == doc.doi == "10.5291/ill-data.5-31-2400"
    assert doc.oai_identifier == doc.pid and doc.datestamp == ""
    assert doc.title == "Magnetic excitations in a kagome lattice"
    # ISIS-style ":null" creator dropped; kernel 2.2 has no nameType, so kind stays unknown.
    assert doc.creators == [Person(full_name="Dupont, Jean", given_name="Jean", family_name="Dupont",
                                   orcid="0000-0002-1825-0097")]
    assert doc.contributors == [Person(full_name="Martin, Claire", given_name="Claire",
                                       family_name="Martin", role="DataCollector")]
    assert doc.keywords == ["Magnetism"]
    assert doc.subjects[1] == Subject(value="inelastic neutron scattering", scheme="PaNET",
                                      scheme_uri="http://purl.org/pan-science/PaNET/")
    assert doc.dates == [
        DateInfo(type="Available", start="2015-06-01", end="2015-06-01", raw="2015-06-01"),
        DateInfo(type="Created", start="2012-05", end="2012-05", raw="2012-05"),
    ]
    assert doc.release_date == "2015-06-01"
    assert doc.publication_year == 2012
    assert doc.language == "eng"
    assert doc.related_identifiers == [
        RelatedIdentifier(identifier="10.1103/physrevb.1.2", type="DOI", relation="IsCitedBy")]
    assert doc.sizes == ["12 GB"] and doc.formats == ["NeXus"]
    # kernel 2.x: <rights> sits directly under <resource>, text only.
    assert doc.license == "CC-BY-4.0"
    assert doc.license_uri == "https://creativecommons.org/licenses/by/4.0/"
    assert doc.access_rights == "open"
    assert doc.summary == "Raw data of proposal 5-31-2400."
    assert doc.facility == "ILL"
    assert doc.resource_type == "Experimental data" and doc.resource_type_general == "Dataset"


KERNEL_3 = """<resource xmlns="http://datacite.org/schema/kernel-3">
  <identifier identifierType="DOI">https://doi.org/10.15151/ESRF-ES-123456</identifier>
  <creators><creator><creatorName>Rossi,   Maria</creatorName>
    <affiliation>ESRF</affiliation></creator></creators>
  <titles><title titleType="AlternativeTitle">Alt</title>
    <title>  Operando XRD of
      battery cathodes </title></titles>
  <publisher>ESRF (European Synchrotron Radiation Facility)</publisher>
  <dates><date dateType="Accepted">2019-03-04</date><date dateType="Collected">2018-11-02/2018-11-05</date></dates>
  <rightsList>
    <rights rightsURI="info:eu-repo/semantics/embargoedAccess">Embargoed</rights>
    <rights rightsURI="http://creativecommons.org/licenses/by/4.0">CC BY 4.0</rights>
  </rightsList>
  <descriptions>
    <description descriptionType="Methods">Powder diffraction.</description>
    <description descriptionType="Abstract">Line one<br/>line two.</description>
  </descriptions>
</resource>"""


def test_kernel_3_shape_and_esrf_missing_publication_year():
    doc = parse_record(oai_record(KERNEL_3), source="esrf", facility="ESRF")
    assert_valid(doc)
    assert doc.oai_identifier == "oai:example.org:1"
    assert doc.datestamp == "2024-02-03"
    assert doc.doi == "10.15151/esrf-es-123456"
    assert doc.title == "Operando XRD of battery cathodes"  # the title without titleType
    assert doc.creators == [Person(full_name="Rossi, Maria", given_name="Maria", family_name="Rossi",
                                   affiliations=[Affiliation(name="ESRF")])]
    # No publicationYear and no Available date: the Accepted date's year.
    assert doc.publication_year == 2019
    assert doc.release_date == "2019"
    assert (doc.collection_start, doc.collection_end) == ("2018-11-02", "2018-11-05")
    # An explicit access right wins over "a licence implies open".
    assert doc.access_rights == "embargoed" and doc.is_public is False
    assert doc.license == "CC-BY-4.0"
    assert doc.license_uri == "http://creativecommons.org/licenses/by/4.0"  # the record's own
    assert doc.rights == ["Embargoed", "CC BY 4.0"]
    assert doc.summary == "Line one line two."  # <br/> is a break, not a join


def test_publication_year_falls_back_to_available_before_accepted():
    xml = KERNEL_3.replace('<date dateType="Accepted">2019-03-04</date>',
                           '<date dateType="Accepted">2019-03-04</date>'
                           '<date dateType="Available">2021-01-01</date>')
    doc = parse_record(xml.encode(), source="esrf")
    assert doc.publication_year == 2021
    assert doc.release_date == "2021-01-01"


def test_release_date_is_when_the_data_became_available():
    # An embargoed dataset: DOI issued in 2020, data public from mid-2021.
    xml = KERNEL_3.replace('<date dateType="Accepted">2019-03-04</date>',
                           '<date dateType="Issued">2020-02-02</date>'
                           '<date dateType="Available">2021-06-01</date>')
    doc = parse_record(xml.encode(), source="x")
    assert doc.release_date == "2021-06-01"
    assert doc.publication_year == 2021  # no publicationYear: Available comes first


KERNEL_4_UNKNOWN_SPDX = """<resource xmlns="http://datacite.org/schema/kernel-4">
  <identifier identifierType="DOI">10.1234/ABC</identifier>
  <creators><creator><creatorName nameType="Personal">:unav</creatorName>
    <givenName>Ada</givenName><familyName>Lovelace</familyName></creator>
    <creator><creatorName>   </creatorName></creator>
    <creator><creatorName>Hopper, Grace</creatorName>
      <nameIdentifier nameIdentifierScheme="ISNI">0000-0002-1825-0097</nameIdentifier>
      <nameIdentifier>https://orcid.org/0000-0002-1694-233X</nameIdentifier></creator></creators>
  <titles><title>T</title></titles>
  <rightsList><rights rightsIdentifierScheme="SPDX" rightsIdentifier="CC-BY-3.0-DE"
    rightsURI="https://creativecommons.org/licenses/by/3.0/de/">CC BY 3.0 DE</rights></rightsList>
  <relatedIdentifiers><relatedIdentifier relatedIdentifierType="DOI" relationType="IsCollectedBy"
    resourceTypeGeneral="Instrument">https://doi.org/10.5442/NI000002</relatedIdentifier></relatedIdentifiers>
</resource>"""


def test_kernel_4_details():
    doc = parse_record(KERNEL_4_UNKNOWN_SPDX.encode(), source="x")
    # A placeholder name with real given/family names keeps the person; a blank one does not.
    # An ISNI shares the ORCID format but is not one; an orcid.org URL is, whatever the scheme.
    assert doc.creators == [
        Person(full_name="Lovelace, Ada", given_name="Ada", family_name="Lovelace", kind="person"),
        Person(full_name="Hopper, Grace", given_name="Grace", family_name="Hopper",
               orcid="0000-0002-1694-233X"),
    ]
    # A declared SPDX id is trusted even when the table does not know it.
    assert doc.license == "CC-BY-3.0-DE"
    assert doc.license_uri == "https://creativecommons.org/licenses/by/3.0/de/"
    # DataCite 4.4+: IsCollectedBy + resourceTypeGeneral="Instrument" is an instrument anywhere.
    assert doc.instruments == [Instrument(name="10.5442/ni000002", pid="10.5442/ni000002")]
    assert doc.publication_year is None and doc.release_date is None


OPENAIRE = """<resource xmlns="http://namespace.openaire.eu/schema/oaire/"
    xmlns:datacite="http://datacite.org/schema/kernel-4" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <datacite:identifier identifierType="Handle">11234/1-5678</datacite:identifier>
  <datacite:titles><datacite:title>Guidelines record</datacite:title></datacite:titles>
  <dc:description>Direct dc:description, as the OpenAIRE guidelines put it.</dc:description>
  <dc:format>application/x-hdf5</dc:format>
  <licenseCondition uri="https://creativecommons.org/licenses/by-sa/4.0/">CC BY-SA 4.0</licenseCondition>
  <datacite:rights rightsURI="http://purl.org/coar/access_right/c_16ec">restricted access</datacite:rights>
  <datacite:dates><datacite:date dateType="Issued">2022-07</datacite:date></datacite:dates>
</resource>"""


def test_openaire_guidelines_shape():
    doc = parse_record(oai_record(OPENAIRE), source="x")
    assert doc.format == "openaire"
    assert doc.pid == "11234/1-5678" and doc.doi is None
    assert doc.summary == "Direct dc:description, as the OpenAIRE guidelines put it."
    assert doc.formats == ["application/x-hdf5"]
    assert doc.license == "CC-BY-SA-4.0"
    assert doc.access_rights == "restricted" and doc.is_public is False
    assert doc.release_date == "2022-07" and doc.publication_year == 2022


DC = """<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
    xmlns:dc="http://purl.org/dc/elements/1.1/">
  <dc:title>Powder data</dc:title>
  <dc:creator>:null</dc:creator>
  <dc:creator>Doe, Jane</dc:creator>
  <dc:contributor>PSI</dc:contributor>
  <dc:identifier>https://doi.psi.ch/detail/10.16907/abc</dc:identifier>
  <dc:identifier>https://doi.org/10.16907/ABC</dc:identifier>
  <dc:description>https://example.org/only-a-link</dc:description>
  <dc:description>Neutron powder diffraction on HRPT.</dc:description>
  <dc:date>info:eu-repo/date/embargoEnd/2025-01-01</dc:date>
  <dc:rights>info:eu-repo/semantics/embargoedAccess</dc:rights>
  <dc:rights>https://creativecommons.org/licenses/by/4.0/</dc:rights>
  <dc:type>Dataset</dc:type>
  <dc:relation>https://example.org/paper</dc:relation>
  <dc:language>en</dc:language>
  <dc:format>HDF5</dc:format>
</oai_dc:dc>"""


def test_oai_dc_details():
    doc = parse_record(oai_record(DC), source="psi", facility="PSI", metadata_prefix="oai_dc")
    assert_valid(doc)
    assert doc.doi == "10.16907/abc" == doc.pid  # the DOI among the dc:identifiers
    assert doc.creators == [Person(full_name="Doe, Jane", given_name="Jane", family_name="Doe")]
    assert doc.contributors == [Person(full_name="PSI")]
    assert doc.summary == "Neutron powder diffraction on HRPT."
    assert doc.dates == [DateInfo(type="Available", start="2025-01-01", end="2025-01-01",
                                  raw="info:eu-repo/date/embargoEnd/2025-01-01")]
    assert doc.release_date == "2025-01-01"
    assert doc.access_rights == "embargoed"
    assert doc.license == "CC-BY-4.0"
    assert doc.license_uri == "https://creativecommons.org/licenses/by/4.0/"
    assert doc.resource_type_general == "Dataset" and doc.resource_type is None
    assert doc.related_identifiers == [RelatedIdentifier(identifier="https://example.org/paper", type="URL")]
    assert doc.language == "en" and doc.formats == ["HDF5"]
    assert doc.facility == "PSI"


def test_record_with_comments_and_prefixed_record_element():
    xml = (b'<oai:record xmlns:oai="http://www.openarchives.org/OAI/2.0/"><!-- c -->'
           b"<oai:header><oai:identifier>oai:x:9</oai:identifier><!-- c --></oai:header>"
           b'<oai:metadata><!-- c --><resource xmlns="http://datacite.org/schema/kernel-4">'
           b"<!-- c --><titles><!-- c --><title>Commented</title></titles></resource>"
           b"</oai:metadata></oai:record>")
    doc = parse_record(xml, source="x")
    assert doc.title == "Commented"
    assert doc.pid == doc.oai_identifier == "oai:x:9"  # no identifier in the payload


# --- Failures: each is a RecordError with a reason, never a crash of the page ---------


def test_record_without_title_is_an_error():
    xml = oai_record('<resource xmlns="http://datacite.org/schema/kernel-4">'
                     '<identifier identifierType="DOI">10.1234/x</identifier>'
                     '<titles><title>   </title></titles></resource>')
    with pytest.raises(RecordError, match="no title") as info:
        parse_record(xml, source="x")
    assert info.value.identifier == "oai:example.org:1"


def test_deleted_record_is_an_error():
    xml = (f'<record {OAI}><header status="deleted"><identifier>oai:x:gone</identifier>'
           f"<datestamp>2024-01-01</datestamp></header></record>").encode()
    with pytest.raises(RecordError, match="deleted") as info:
        parse_record(xml, source="x")
    assert info.value.identifier == "oai:x:gone"


def test_malformed_xml_is_an_error():
    with pytest.raises(RecordError, match="unreadable XML"):
        parse_record(b"<record><header><identifier>x</identifier></header>", source="x")
    with pytest.raises(RecordError, match="unreadable XML"):
        parse_record(b"", source="x")


def test_record_without_any_identifier_is_an_error():
    xml = b'<resource xmlns="http://datacite.org/schema/kernel-4"><titles><title>T</title></titles></resource>'
    with pytest.raises(RecordError, match="no identifier"):
        parse_record(xml, source="x")


def test_record_without_metadata_or_with_unknown_format_is_an_error():
    with pytest.raises(RecordError, match="no metadata"):
        parse_record(f"<record {OAI}><header><identifier>i</identifier></header></record>".encode(),
                     source="x")
    with pytest.raises(RecordError, match="unsupported metadata format <mods>"):
        parse_record(oai_record('<mods xmlns="http://www.loc.gov/mods/v3"/>'), source="x")
    with pytest.raises(RecordError, match="without a payload"):
        parse_record(oai_record('<oai_datacite xmlns="http://schema.datacite.org/oai/oai-1.0/">'
                                "<schemaVersion>4</schemaVersion></oai_datacite>"), source="x")


def test_external_entities_are_not_expanded():
    xml = (b'<?xml version="1.0"?>\n'
           b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
           b'<resource xmlns="http://datacite.org/schema/kernel-4">'
           b'<identifier identifierType="DOI">10.1234/xxe</identifier>'
           b"<titles><title>Safe &e; title</title></titles>"
           b"<descriptions><description>&e;</description></descriptions></resource>")
    doc = parse_record(xml, source="x")
    dumped = doc.model_dump_json()
    assert "root:" not in dumped and "&e;" not in dumped
    assert doc.title == "Safe title"
    assert doc.summary is None


def test_internal_entities_are_not_expanded_either():
    lol = b"lol" * 10
    xml = (b'<!DOCTYPE x [<!ENTITY a "' + lol + b'"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
           b'<resource xmlns="http://datacite.org/schema/kernel-4">'
           b'<identifier identifierType="DOI">10.1234/lol</identifier>'
           b"<titles><title>Laughs &b;</title></titles></resource>")
    doc = parse_record(xml, source="x")
    assert doc.title == "Laughs"


def test_parser_per_thread():
    results: dict[int, object] = {}
    raw = sample(HZB)

    def work(n: int) -> None:
        docs = [parse_record(raw, source="hzb", facility="HZB") for _ in range(30)]
        results[n] = (safe_parser(), docs[-1])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parsers = {id(parser) for parser, _ in results.values()}
    assert len(parsers) == 3  # one parser per thread
    assert len({doc.model_dump_json() for _, doc in results.values()}) == 1


def test_licence_text_under_an_access_right_uri():
    xml = KERNEL_3.replace(
        '<rights rightsURI="info:eu-repo/semantics/embargoedAccess">Embargoed</rights>\n'
        '    <rights rightsURI="http://creativecommons.org/licenses/by/4.0">CC BY 4.0</rights>',
        '<rights rightsURI="info:eu-repo/semantics/openAccess">CC BY-SA 4.0</rights>')
    doc = parse_record(xml.encode(), source="x")
    assert doc.access_rights == "open"
    assert doc.license == "CC-BY-SA-4.0"
    assert doc.license_uri == "https://creativecommons.org/licenses/by-sa/4.0/"
    assert doc.rights == ["CC BY-SA 4.0"]
