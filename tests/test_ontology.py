"""PaNET loading: the three builds, the hierarchy, the compiled cache, fetching."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester.errors import OntologyError
from harvester.ontology import (
    compile_rdf,
    default_ontology,
    fetch_ontology,
    load_ontology,
    technique_id,
)
from tests.helpers import serve_ontology

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ONTOLOGY = SHARED / "ontology"
PANET = "http://purl.org/pan-science/PaNET/"

pytestmark = pytest.mark.skipif(not (ONTOLOGY / "PaNET.owl").is_file(), reason="../shared/ontology missing")


@functools.cache
def _load(name: str):
    return load_ontology(ONTOLOGY / name)


@pytest.fixture(scope="module")
def panet():
    return _load("PaNET.owl")


@pytest.mark.parametrize(("name", "count", "version"), [
    ("PaNET.owl", 380, "1.3.0-48-g7011e6b"),
    ("PaNET_reasoned.owl", 380, "1.3.0-48-g7011e6b"),
    ("PaNET-v1.0.owl", 375, "1.0.0-3-g6a0b629-dirty"),
])
def test_builds_load_with_five_digit_techniques_only(name, count, version):
    onto = _load(name)
    assert onto.version == version
    assert len(onto) == count
    assert all(t.iri == PANET + t.id and technique_id(t.id) == t.id for t in onto)
    assert onto.technique("PaNET00001").label == "photon and neutron technique"
    saxs = onto.technique("PaNET01188")
    assert (saxs.label, saxs.alt_labels) == ("small angle x-ray scattering", ("SAXS",))


def test_specifiers_are_not_techniques(panet):
    # "x-ray fluorescence" is the label of technique PaNET01177 and of specifier PaNET2020074
    assert panet.technique("PaNET2020074") is None
    assert panet.technique(PANET + "PaNET2020009") is None  # "x-ray" specifier
    assert [t.id for t in panet.resolve("x-ray fluorescence")] == ["PaNET01177"]
    assert panet.resolve("x-ray") == []
    assert panet.resolve("neutron") == []


def test_technique_accepts_ids_and_iri_forms(panet):
    for form in ("PaNET01188", PANET + "PaNET01188", "https://purl.org/pan-science/PaNET/PaNET01188",
                 "http://purl.org/pan-science/PaNET/PaNET.owl#PaNET01188", "panet:PaNET01188", " PaNET01188 "):
        assert panet.technique(form).id == "PaNET01188", form
    assert panet.technique("PaNET99999") is None
    assert panet.technique("small angle x-ray scattering") is None


def test_ancestors_and_descendants(panet):
    saxs = PANET + "PaNET01188"
    ancestors = {panet.technique(i).label for i in panet.ancestors(saxs)}
    assert {"small angle scattering", "x-ray scattering", "x-ray probe technique",
            "photon and neutron technique"} <= ancestors
    assert saxs not in panet.ancestors(saxs)
    assert all(i.startswith(PANET) and panet.technique(i) for i in panet.ancestors(saxs))
    below = {panet.technique(i).label for i in panet.descendants(PANET + "PaNET01124")}
    assert {"small angle x-ray scattering", "small angle neutron scattering",
            "grazing incidence small angle x-ray scattering"} <= below
    assert "small angle scattering" not in below
    # techniques whose parent is the foreign class wikidata Q133900 still reach "elastic scattering"
    assert PANET + "PaNET01020" in panet.ancestors(PANET + "PaNET01217")


def test_asserted_build_gives_the_reasoned_hierarchy():
    # the asserted file carries part of its hierarchy in owl:equivalentClass intersections
    asserted, reasoned = _load("PaNET.owl"), _load("PaNET_reasoned.owl")
    for t in asserted:
        assert asserted.ancestors(t.iri) == reasoned.ancestors(t.iri), t.label
    assert asserted.technique("PaNET01188").parents == reasoned.technique("PaNET01188").parents


def test_v10_hierarchy():
    onto = _load("PaNET-v1.0.owl")
    assert PANET + "PaNET01124" in onto.ancestors(PANET + "PaNET01189")
    assert PANET + "PaNET01188" in onto.descendants(PANET + "PaNET01124")


def test_intersection_members_are_superclasses_and_turtle_is_detected():
    ttl = b"""
    @prefix owl: <http://www.w3.org/2002/07/owl#> .
    @prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
    @prefix skos: <http://www.w3.org/2004/02/skos/core#> .
    @prefix p: <http://purl.org/pan-science/PaNET/> .
    <http://purl.org/pan-science/PaNET/PaNET.owl> a owl:Ontology ; owl:versionInfo "9.9" .
    p:PaNET00001 a owl:Class ; rdfs:label "photon and neutron technique" .
    p:PaNET01012 a owl:Class ; rdfs:label "x-ray probe technique" ; rdfs:subClassOf p:PaNET00001 .
    p:PaNET01124 a owl:Class ; rdfs:label "small angle scattering" ; rdfs:subClassOf p:PaNET00001 .
    p:PaNET01188 a owl:Class ; rdfs:label "small angle x-ray scattering" ; skos:altLabel "SAXS" ;
        owl:equivalentClass [ a owl:Class ; owl:intersectionOf ( p:PaNET01012 p:PaNET01124 ) ] .
    p:PaNET2020009 a owl:Class ; rdfs:label "x-ray" .
    """
    onto = compile_rdf(ttl, source="mini.ttl")
    assert onto.version == "9.9"
    assert len(onto) == 4  # the specifier is not a technique
    assert set(onto.technique("PaNET01188").parents) == {PANET + "PaNET01012", PANET + "PaNET01124"}
    assert onto.ancestors("PaNET01188") == {PANET + "PaNET01012", PANET + "PaNET01124", PANET + "PaNET00001"}


def test_resolve_names(panet):
    def ids(name):
        return [t.id for t in panet.resolve(name)]
    assert ids("SAXS") == ["PaNET01188"]
    assert ids("Small-Angle X-ray  Scattering") == ["PaNET01188"]
    assert ids("sans") == ["PaNET01189"]  # a lookup, not free text: case-insensitive fallback
    assert ids(PANET + "PaNET01189") == ["PaNET01189"]
    assert ids("inelastic neutron scattering") == ["PaNET01245"]  # a synonym
    assert ids("no such technique") == []


def test_compiled_cache_is_used_without_the_rdf(tmp_path):
    owl = tmp_path / "PaNET.owl"
    shutil.copy(ONTOLOGY / "PaNET.owl", owl)
    cache = tmp_path / "cache"
    first = load_ontology(owl, cache_dir=cache)
    compiled = list(cache.glob("panet-*.json"))
    assert [p.name for p in compiled] == [f"panet-{first.sha256}.json"]

    owl.unlink()  # the second load cannot parse RDF: it must come from the compiled form
    second = load_ontology(owl, cache_dir=cache)
    assert (second.version, len(second), second.sha256) == (first.version, len(first), first.sha256)
    assert second.ancestors("PaNET01188") == first.ancestors("PaNET01188")
    assert load_ontology(compiled[0]).version == first.version  # the JSON loads directly too

    with pytest.raises(OntologyError, match="not found"):
        load_ontology(owl)  # without the cache, a missing file is an error

    # a changed file is recompiled (new sha256), not served from the old cache entry
    shutil.copy(ONTOLOGY / "PaNET-v1.0.owl", owl)
    third = load_ontology(owl, cache_dir=cache)
    assert third.version.startswith("1.0.0") and len(list(cache.glob("panet-*.json"))) == 2


def test_cache_survives_a_corrupt_entry(tmp_path):
    owl = tmp_path / "PaNET.owl"
    shutil.copy(ONTOLOGY / "PaNET.owl", owl)
    first = load_ontology(owl, cache_dir=tmp_path)
    (tmp_path / f"panet-{first.sha256}.json").write_text("{broken")
    assert load_ontology(owl, cache_dir=tmp_path).version == first.version


def test_bad_input_is_an_ontology_error(tmp_path):
    bad = tmp_path / "bad.owl"
    bad.write_text("<rdf:RDF this is not xml")
    with pytest.raises(OntologyError, match="cannot parse"):
        load_ontology(bad)
    empty = tmp_path / "empty.ttl"
    empty.write_text("@prefix x: <http://example.org/> . x:a x:b x:c .")
    with pytest.raises(OntologyError, match="no PaNET technique"):
        load_ontology(empty)


@pytest.fixture()
def server() -> Iterator[str]:
    with serve_ontology() as url:
        yield url


def test_fetch_then_default(server, tmp_path):
    with pytest.raises(OntologyError, match="pan-harvester ontology fetch"):
        default_ontology(tmp_path, None)
    path = fetch_ontology(f"{server}/PaNET.owl", tmp_path)
    assert path == tmp_path / "ontology" / "PaNET.owl" and path.is_file()
    onto = default_ontology(tmp_path, None)
    assert onto.version == "1.3.0-48-g7011e6b"
    info = json.loads((tmp_path / "ontology" / "fetched.json").read_text())
    assert info["sha256"] == onto.sha256

    # a failed download keeps the previous copy
    with pytest.raises(OntologyError, match="HTTP 404"):
        fetch_ontology(f"{server}/missing.owl", tmp_path)
    assert default_ontology(tmp_path, None).version == "1.3.0-48-g7011e6b"


def test_url_source_is_cached(tmp_path):
    with serve_ontology() as server:
        url = f"{server}/PaNET-v1.0.owl"
        first = load_ontology(url, cache_dir=tmp_path)
    assert len(first) == 375
    # the server is gone: a URL already compiled is served from the cache
    assert load_ontology(url, cache_dir=tmp_path).sha256 == first.sha256
    with pytest.raises(OntologyError, match="cannot fetch"):
        load_ontology(url)


def test_default_prefers_the_configured_source(tmp_path):
    onto = default_ontology(tmp_path, str(ONTOLOGY / "PaNET-v1.0.owl"))
    assert len(onto) == 375
    assert list((tmp_path / "ontology" / "compiled").glob("panet-*.json"))
