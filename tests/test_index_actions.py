"""The pure parts of indexing: Document -> body and bulk action, query parsing."""

from __future__ import annotations

import json

import pytest

from harvester.document import Document, Instrument, Person, TechniqueTag
from harvester.errors import IndexError_, RecordError
from harvester.index import DEFAULT_MAPPING, check_alias, load_mapping
from harvester.index.actions import (COMPLETENESS_FLAGS, TEXT_FIELDS, completeness, delete_action, doc_id,
                                     hit, index_action, technique_fields, text_values, to_body, version_of)
from harvester.index.query import (SearchQuery, parse_text, parse_year_range, resolve_techniques,
                                   sort_buckets)
from harvester.pipeline import to_document
from harvester.store import StoredRecord
from tests.conftest_index import CORPUS, GISAXS, PANET, SANS, SAXS, XRD

MAPPING = load_mapping(DEFAULT_MAPPING)


def _doc(**fields) -> Document:
    base = dict(source="esrf", oai_identifier="oai:esrf:1", datestamp="2024-01-01T00:00:00Z",
                pid="10.5555/1", title="A title")
    return Document(**{**base, **fields})


def _tag(technique_id: str, label: str, *, weak: bool = False) -> TechniqueTag:
    return TechniqueTag(iri=PANET + technique_id, id=technique_id, label=label,
                        method="facility" if weak else "iri", field="subjects", text=label, weak=weak)


@pytest.mark.parametrize("datestamp, expected", [
    ("2024-01-01", 1704067200000),
    ("2024-01-01T00:00:00Z", 1704067200000),
    ("2024-01-01T00:00:01Z", 1704067201000),
    ("2024-01-01T00:00:00.5Z", 1704067200500),
    ("2024-01-01T01:00:00+01:00", 1704067200000),
    ("1960-01-01", 0),  # Elasticsearch versions cannot be negative
])
def test_version_is_the_datestamp_in_epoch_ms(datestamp: str, expected: int) -> None:
    assert version_of(datestamp) == expected


def test_a_datestamp_that_is_no_date_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="not an ISO 8601"):
        version_of("yesterday")


def test_newer_datestamps_give_larger_versions() -> None:
    stamps = ["2019-12-31", "2020-01-01T00:00:00Z", "2020-01-01T00:00:01Z", "2020-01-02"]
    assert [version_of(s) for s in stamps] == sorted(version_of(s) for s in stamps)
    assert len({version_of(s) for s in stamps}) == 4


def test_doc_id_is_the_store_key_and_fits_elasticsearch() -> None:
    assert doc_id("esrf", "oai:esrf:1") == "esrf:oai:esrf:1"
    long = doc_id("esrf", "x" * 600)
    assert len(long.encode()) <= 512 and long.startswith("esrf:sha256:")
    assert long == doc_id("esrf", "x" * 600) != doc_id("esrf", "x" * 601)


def test_index_and_delete_actions_carry_the_external_version() -> None:
    action = index_action(_doc(), None, source="esrf", identifier="oai:esrf:1",
                          datestamp="2024-01-01T00:00:00Z")
    assert action["_op_type"] == "index"
    assert action["_id"] == "esrf:oai:esrf:1" == action["_source"]["id"]
    assert action["_version"] == 1704067200000
    assert action["_version_type"] == "external_gte"
    gone = delete_action(source="esrf", identifier="oai:esrf:1", datestamp="2024-02-01")
    assert gone == {"_op_type": "delete", "_id": "esrf:oai:esrf:1", "_version": 1706745600000,
                    "_version_type": "external_gte"}


def _mapping_paths(properties: dict, prefix: str = "") -> set[str]:
    out = set()
    for name, spec in properties.items():
        out.add(prefix + name)
        if "properties" in spec:
            out |= _mapping_paths(spec["properties"], f"{prefix}{name}.")
    return out


def _body_paths(value, prefix: str = "") -> set[str]:
    out = set()
    if isinstance(value, list):
        for item in value:
            out |= _body_paths(item, prefix)
    elif isinstance(value, dict):
        for name, item in value.items():
            out.add(prefix + name)
            out |= _body_paths(item, f"{prefix}{name}.")
    return out


def test_every_field_of_a_full_body_is_in_the_strict_mapping(panet) -> None:
    doc = _doc(summary="An abstract", keywords=["k"], license="CC-BY-4.0", publication_year=2020,
               creators=[Person(full_name="Doe, Jane", orcid="0000-0002-1825-0097",
                                affiliations=[{"name": "U", "ror": "https://ror.org/02550n020"}])],
               contributors=[Person(full_name="Roe, Rick", role="DataCollector")],
               instruments=[Instrument(name="ID02", pid="10.1/x", facility="ESRF")],
               subjects=[{"value": "v", "scheme": "s", "scheme_uri": "u", "value_uri": "w"}],
               dates=[{"type": "Collected", "start": "2020", "end": "2021", "raw": "2020/2021"}],
               related_identifiers=[{"identifier": "x", "type": "DOI", "relation": "IsCitedBy"}],
               techniques=[_tag(SAXS, "small angle x-ray scattering")], ontology_version="1.3")
    body = to_body(doc, panet)
    mapped = _mapping_paths(MAPPING["mappings"]["properties"])
    assert _body_paths(body) - mapped == set()
    assert MAPPING["mappings"]["dynamic"] == "strict"


def test_the_mapping_needs_nothing_the_server_core_lacks() -> None:
    text = json.dumps(MAPPING)
    for missing in ('"english"', '"stemmer"', '"asciifolding"', '"synonym"', '"porter_stem"', '"snowball"'):
        assert missing not in text
    copied = {path for path, spec in _flat(MAPPING["mappings"]["properties"]) if spec.get("copy_to") == "text"}
    assert copied == set(TEXT_FIELDS)


def _flat(properties: dict, prefix: str = ""):
    for name, spec in properties.items():
        yield prefix + name, spec
        if "properties" in spec:
            yield from _flat(spec["properties"], f"{prefix}{name}.")


def test_techniques_carry_their_ancestors_but_not_the_organising_classes(panet) -> None:
    fields = technique_fields([_tag(SAXS, "small angle x-ray scattering")], panet)
    assert fields["technique_ids"][0] == SAXS
    assert "PaNET01124" in fields["technique_ids"]  # small angle scattering
    assert "PaNET00001" in fields["technique_ids"]  # the root: harmless as a filter value
    labels = fields["technique_labels"]
    assert {"small angle x-ray scattering", "SAXS", "small angle scattering", "SAS"} <= set(labels)
    assert "photon and neutron technique" not in labels
    assert not [label for label in labels if label.startswith("defined by")]


def test_without_an_ontology_only_the_tags_themselves_are_indexed() -> None:
    fields = technique_fields([_tag(SAXS, "small angle x-ray scattering")], None)
    assert fields == {"technique_iris": [PANET + SAXS], "technique_ids": [SAXS],
                      "technique_labels": ["small angle x-ray scattering"]}


@pytest.mark.parametrize("changes, flag, expected", [
    ({"license": "CC-BY-4.0"}, "licence", True),
    ({"license_uri": "https://example.org/licence"}, "licence", True),
    ({}, "licence", False),
    ({"creators": [Person(full_name="A", orcid="0000-0002-1825-0097")]}, "orcid", True),
    ({"creators": [Person(full_name="A")]}, "orcid", False),
    ({"contributors": [Person(full_name="A", affiliations=[{"name": "U", "ror": "https://ror.org/x"}])]},
     "ror", True),
    ({"creators": [Person(full_name="A", affiliations=[{"name": "U"}])]}, "ror", False),
    ({"summary": "We measured things."}, "abstract", True),
    ({"summary": "https://example.org/abstract"}, "abstract", False),  # ESS: a bare link
    ({"summary": "   "}, "abstract", False),
    ({"instruments": [Instrument(name="ID02")]}, "instrument", True),
    ({"techniques": [_tag(SAXS, "small angle x-ray scattering")]}, "technique", True),
    ({"techniques": [_tag("PaNET01012", "x-ray probe technique", weak=True)]}, "technique", False),
])
def test_completeness_flags(changes: dict, flag: str, expected: bool) -> None:
    assert completeness(_doc(**changes))[flag] is expected


def test_completeness_score_is_the_share_of_flags() -> None:
    flags = completeness(_doc(license="CC-BY-4.0", summary="An abstract"))
    assert set(flags) == {*COMPLETENESS_FLAGS, "score"}
    assert flags["score"] == round(2 / 6, 3)


def test_text_values_follow_the_copy_to_fields(panet) -> None:
    doc = _doc(summary="About lysozyme", keywords=["proteins"], facility="ESRF",
               instruments=[Instrument(name="ID02")], creators=[Person(full_name="Doe, Jane")],
               techniques=[_tag(SAXS, "small angle x-ray scattering")])
    values = text_values(to_body(doc, panet))
    for expected in ("A title", "About lysozyme", "proteins", "ESRF", "ID02", "Doe, Jane",
                     "small angle scattering"):
        assert expected in values


def test_hit_is_the_short_form() -> None:
    body = to_body(_doc(facility="ESRF", publication_year=2020,
                        techniques=[_tag(SAXS, "small angle x-ray scattering"),
                                    _tag(SAXS, "small angle x-ray scattering")]))
    assert hit(body) == {
        "id": "esrf:oai:esrf:1", "pid": "10.5555/1", "doi": None, "title": "A title", "facility": "ESRF",
        "source": "esrf", "publication_year": 2020, "license": None, "instruments": [],
        "techniques": [{"id": SAXS, "label": "small angle x-ray scattering"}]}


def test_to_document_parses_and_tags_a_stored_record(panet_tagger) -> None:
    ds = CORPUS[0]
    rec = StoredRecord(ds.source, ds.identifier, ds.datestamp, False, (), "oai_datacite", ds.record(), 1)
    doc = to_document(rec, facility="ESRF", tagger=panet_tagger)
    assert doc.facility == "ESRF" and doc.title == "Lysozyme in solution"
    assert [t.id for t in doc.techniques] == [SAXS]
    assert to_document(rec, facility="ESRF", tagger=None).techniques == []


def test_to_document_refuses_tombstones_and_garbage() -> None:
    dead = StoredRecord("esrf", "oai:x", "2024-01-01", True, (), "oai_datacite", None, 1)
    with pytest.raises(RecordError):
        to_document(dead, facility=None, tagger=None)
    garbage = StoredRecord("esrf", "oai:x", "2024-01-01", False, (), "oai_datacite", b"<record><oops", 1)
    with pytest.raises(RecordError):
        to_document(garbage, facility=None, tagger=None)


# --- query -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("2020", (2020, 2020)),
    ("2018..2021", (2018, 2021)),
    ("2019..", (2019, None)),
    ("..2015", (None, 2015)),
    (" 2018 .. 2021 ", (2018, 2021)),
])
def test_year_ranges(text: str, expected: tuple) -> None:
    assert parse_year_range(text) == expected


@pytest.mark.parametrize("text", ["", "..", "20", "2021..2018", "last year", "2020-2021"])
def test_bad_year_ranges(text: str) -> None:
    with pytest.raises(ValueError):
        parse_year_range(text)


@pytest.mark.parametrize("text, expected", [
    (None, []),
    ("small angle scattering", ["small", "angle", "scattering"]),
    ('"small angle"  scattering', ["small angle", "scattering"]),
    ("x-ray  - & lysozyme", ["x-ray", "lysozyme"]),
    ('" "', []),
])
def test_text_is_words_and_phrases(text, expected) -> None:
    assert parse_text(text) == expected


def test_a_technique_stands_for_itself_and_its_descendants(panet) -> None:
    iris = resolve_techniques(["small angle scattering"], panet)
    assert {PANET + t for t in (SAXS, SANS, GISAXS, "PaNET01124")} <= iris
    assert PANET + XRD not in iris
    assert resolve_techniques(["SAXS"], panet) >= {PANET + SAXS}
    assert resolve_techniques([PANET + SAXS], panet) == resolve_techniques([SAXS], panet)
    both = resolve_techniques(["SAXS", "x-ray diffraction"], panet)
    assert PANET + SAXS in both and PANET + XRD in both


def test_an_unknown_technique_is_named_in_the_error(panet) -> None:
    with pytest.raises(LookupError, match="'telepathy'"):
        resolve_techniques(["telepathy"], panet)


def test_unknown_dimensions_are_refused() -> None:
    with pytest.raises(ValueError, match="colour"):
        SearchQuery(facets=("colour",))


def test_bucket_order() -> None:
    buckets = [{"key": "b", "count": 2}, {"key": "a", "count": 2}, {"key": "c", "count": 5}]
    assert [b["key"] for b in sort_buckets("facility", buckets)] == ["c", "a", "b"]
    assert [b["key"] for b in sort_buckets("facility", buckets, 2)] == ["c", "a"]
    years = [{"key": 2021, "count": 1}, {"key": 2019, "count": 5}, {"key": 2020, "count": 3}]
    assert [b["key"] for b in sort_buckets("year", years)] == [2019, 2020, 2021]
    assert [b["key"] for b in sort_buckets("year", years, 2)] == [2019, 2020]


@pytest.mark.parametrize("alias", ["pan-datasets", "test.a_b-1"])
def test_good_aliases(alias: str) -> None:
    assert check_alias(alias) == alias


@pytest.mark.parametrize("alias", ["Pan", "-x", "a b", "", "a/b"])
def test_bad_aliases(alias: str) -> None:
    with pytest.raises(IndexError_):
        check_alias(alias)


def test_an_index_of_another_mapping_version_asks_for_a_rebuild() -> None:
    from harvester.index import check_mapping_version

    assert check_mapping_version("pan-datasets-v1-20260101t120000123456", 1).endswith("123456")
    with pytest.raises(IndexError_, match="index rebuild"):
        check_mapping_version("pan-datasets-v1-20260101t120000123456", 2)
