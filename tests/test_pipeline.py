"""Stored by the harvest -> Document: every record a real harvest stored maps,
without loss, and `show` displays it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harvester.cli import main
from harvester.config import load_settings
from harvester.ontology import load_ontology
from harvester.pipeline import to_document
from harvester.store import Store
from harvester.techniques import Tagger
from tests.helpers import harvest, settings_for
from tests.oaiserver import OAIServer
from tests.recordgen import make_records, sample_records

PANET = Path(__file__).resolve().parents[1].parent / "shared" / "ontology" / "PaNET.owl"


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return Tagger(load_ontology(PANET, cache_dir=tmp_path_factory.mktemp("panet")))


@pytest.mark.parametrize("prefix", ["oai_datacite", "oai_dc"])
def test_every_harvested_record_becomes_a_document(tmp_path, tagger, prefix):
    records = make_records(400, seed=31, prefix=prefix, deleted_every=13)
    records += [] if prefix == "oai_dc" else [r for r in sample_records() if r.identifier]
    with OAIServer(records, page_size=100) as srv:
        settings, _ = settings_for(tmp_path, {"lab": {"url": srv.url, "metadata_prefix": prefix,
                                                      "facility": "ESRF"}})
        assert harvest(settings).status == "ok"
    truth = {r.identifier: r for r in records}
    mapped = 0
    with Store(settings.db_path) as store:
        for rec in store.iter_records("lab"):
            doc = to_document(rec, facility="ESRF", tagger=tagger)
            fake = truth[rec.identifier]
            assert (doc.source, doc.oai_identifier, doc.datestamp) == ("lab", rec.identifier, fake.datestamp)
            assert doc.title
            if rec.identifier.startswith("oai:example.org:"):  # generated: its DOI is known, in both formats
                assert fake.doi and doc.doi == fake.doi.lower()
            if fake.technique:  # the generator knows which technique the title names
                (named,) = [t for t in tagger.ontology if t.label.lower() == fake.technique.lower()]
                # that technique, or a more specific one (tomography at an x-ray facility)
                assert any(t.iri == named.iri or t.iri in tagger.ontology.descendants(named.iri)
                           for t in doc.techniques), (doc.title, [t.label for t in doc.techniques])
            assert doc.ontology_version
            mapped += 1
    assert mapped == sum(1 for r in records if not r.deleted)


def test_an_aggregator_record_takes_its_sets_facility(tmp_path, tagger):
    # DataCite's provider serves many facilities: the record's set says which
    records = make_records(60, seed=33, sets=("INIST.ILL", "TIB.DESY", "OTHER.X"))
    with OAIServer(records, page_size=25) as srv:
        _, cfg = settings_for(tmp_path, {"agg": {"url": srv.url, "facility": "DataCite"}})
        with cfg.open("a") as fh:
            fh.write('[sources.agg.set_facilities]\n"inist.ill" = "ILL"\n"TIB.DESY" = "DESY"\n')
        settings = load_settings(cfg, environ={}, overrides={"data_dir": tmp_path / "data"})
        assert harvest(settings, "agg").status == "ok"
    rule = settings.sources["agg"].facility_rule()
    seen = set()
    with Store(settings.db_path) as store:
        for rec in store.iter_records("agg"):
            if rec.deleted:
                continue
            doc = to_document(rec, facility=rule, tagger=tagger)
            if "INIST.ILL" in rec.sets:
                assert doc.facility == "ILL", rec.sets
            elif "TIB.DESY" in rec.sets:
                assert doc.facility == "DESY", rec.sets
            else:  # in no listed set: what the record itself names (its publisher here)
                assert doc.facility == doc.publisher and doc.facility not in (None, "DataCite")
            seen.add(doc.facility)
    assert {"ILL", "DESY"} < seen


def test_show_prints_the_document(tmp_path):
    records = make_records(5, seed=32)
    with OAIServer(records, page_size=10) as srv:
        settings, cfg = settings_for(tmp_path, {"lab": {"url": srv.url}})
        assert harvest(settings).status == "ok"
    base = ["--config", str(cfg), "--data-dir", str(settings.data_dir), "--ontology", str(PANET)]
    target = records[0]
    result = CliRunner().invoke(main, [*base, "show", "lab", target.identifier, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["oai_identifier"] == target.identifier and doc["doi"] == target.doi.lower()
    table = CliRunner().invoke(main, [*base, "show", "lab", target.identifier])
    assert table.exit_code == 0 and doc["title"][:30] in table.output.replace("\n", " ")
    missing = CliRunner().invoke(main, [*base, "show", "lab", "oai:nope"])
    assert missing.exit_code == 1 and "no record" in missing.output
