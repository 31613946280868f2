"""Fixtures for the index tests (loaded by tests/conftest.py as a plugin).

- `es_url` (session): the real Elasticsearch. PAN_HARVESTER_TEST_ES_URL (set by
  .ci/run), else `scripts/elasticsearch start` once per session (stopped again
  at the end if this session started it). With CI=true a server that cannot
  start fails the run instead of skipping.
- `index_backend` (parametrised: embedded, elasticsearch): an empty backend
  behind a unique alias, its indexes dropped afterwards.
- `panet`, `panet_tagger` (session): PaNET from ../shared/ontology and a Tagger.
- `index_store`: an empty record store in tmp_path.
- `dataset(...)` and `fill(store, specs)`: hand-made DataCite records with
  known techniques, facilities, years, licences...
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import escape

import pytest

from harvester.index import IndexBackend
from harvester.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ES_SCRIPT = REPO / "scripts" / "elasticsearch"
PANET_OWL = SHARED / "ontology" / "PaNET.owl"
PANET = "http://purl.org/pan-science/PaNET/"

# source name -> facility, as the source registry would say
FACILITIES = {"esrf": "ESRF", "ill": "ILL", "desy": "DESY", "hzb": "HZB"}


# --- Elasticsearch ------------------------------------------------------------------


def _healthy(url: str, timeout: float = 5.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=yellow&timeout=5s",
                                    timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def es_script(*args: str, port: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if port is not None:
        env["PAN_ES_PORT"] = str(port)
    return subprocess.run([str(ES_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    url = os.environ.get("PAN_HARVESTER_TEST_ES_URL")
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if url:
        if not _healthy(url, timeout=30):
            pytest.fail(f"PAN_HARVESTER_TEST_ES_URL={url} does not answer cluster health")
        yield url.rstrip("/")
        return
    was_running = es_script("status").returncode == 0
    started = es_script("start")
    if started.returncode != 0:
        message = f"scripts/elasticsearch start failed:\n{started.stderr[-4000:]}"
        if in_ci:
            pytest.fail(message)
        pytest.skip(message)
    url = es_script("url").stdout.strip()
    yield url
    if not was_running and not os.environ.get("PAN_ES_KEEP"):
        es_script("stop")


def es_port(url: str) -> int:
    return urlparse(url).port or 9200


def unique_alias(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def index_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Top-level settings for a test of `backend` ("embedded" or "elasticsearch"): an
    alias of its own, and the test server's URL for Elasticsearch."""
    settings = {"index_alias": unique_alias()}
    if backend == "elasticsearch":
        settings["es_url"] = request.getfixturevalue("es_url")
    return settings


def _drop_all(backend: IndexBackend) -> None:
    from harvester.index.elastic import ElasticBackend

    if isinstance(backend, ElasticBackend):
        for name in backend.indexes():
            backend.es.options(ignore_status=404).indices.delete(index=name)


@pytest.fixture(params=["embedded", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def index_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexBackend]:
    alias = unique_alias()
    backend: IndexBackend
    if request.param == "embedded":
        from harvester.index.embedded import EmbeddedBackend

        backend = EmbeddedBackend(tmp_path / "index.sqlite", alias)
    else:
        from harvester.index.elastic import ElasticBackend

        backend = ElasticBackend(request.getfixturevalue("es_url"), alias, swap_grace=0.2)
    yield backend
    try:
        _drop_all(backend)
    finally:
        backend.close()


@pytest.fixture
def es_backend(es_url: str) -> Iterator[Any]:
    from harvester.index.elastic import ElasticBackend

    backend = ElasticBackend(es_url, unique_alias(), swap_grace=0.2)
    yield backend
    try:
        _drop_all(backend)
    finally:
        backend.close()


# --- PaNET ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def panet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from harvester.ontology import load_ontology

    return load_ontology(PANET_OWL, cache_dir=tmp_path_factory.mktemp("panet-cache"))


@pytest.fixture(scope="session")
def panet_tagger(panet: Any) -> Any:
    from harvester.techniques import Tagger

    return Tagger(panet)


# --- records -------------------------------------------------------------------------


@dataclass
class Dataset:
    """What one hand-made record says; `record()` renders it as an OAI <record>."""

    identifier: str
    source: str = "esrf"
    datestamp: str = "2024-01-01T00:00:00Z"
    title: str = "A dataset"
    year: int | None = 2020
    techniques: tuple[str, ...] = ()  # PaNET ids given as subject valueURI
    keywords: tuple[str, ...] = ()
    license: str | None = "CC-BY-4.0"
    orcid: str | None = None
    ror: str | None = None
    abstract: str | None = "Measurements on a sample."
    instrument: str | None = None
    creators: tuple[str, ...] = ("Doe, Jane",)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def doi(self) -> str:
        return f"10.5555/{self.identifier.rsplit(':', 1)[-1]}"

    def payload(self) -> bytes:
        out = ['<resource xmlns="http://datacite.org/schema/kernel-4">',
               f'<identifier identifierType="DOI">{self.doi}</identifier><creators>']
        for i, name in enumerate(self.creators):
            out.append(f"<creator><creatorName>{escape(name)}</creatorName>")
            if i == 0 and self.orcid:
                out.append(f'<nameIdentifier nameIdentifierScheme="ORCID">{self.orcid}</nameIdentifier>')
            if i == 0 and self.ror:
                out.append(f'<affiliation affiliationIdentifier="{self.ror}" '
                           'affiliationIdentifierScheme="ROR">Some University</affiliation>')
            out.append("</creator>")
        out.append(f"</creators><titles><title>{escape(self.title)}</title></titles>"
                   "<publisher>Some Facility</publisher>")
        if self.year is not None:
            out.append(f"<publicationYear>{self.year}</publicationYear>")
        out.append('<resourceType resourceTypeGeneral="Dataset">Experimental data</resourceType>')
        if self.techniques or self.keywords:
            out.append("<subjects>")
            out.extend(f"<subject>{escape(k)}</subject>" for k in self.keywords)
            out.extend(f'<subject subjectScheme="PaNET" valueURI="{PANET}{t}">{t}</subject>'
                       for t in self.techniques)
            out.append("</subjects>")
        if self.license:
            out.append(f'<rightsList><rights rightsIdentifierScheme="SPDX" rightsIdentifier="{self.license}">'
                       f"{self.license}</rights></rightsList>")
        if self.abstract:
            out.append(f'<descriptions><description descriptionType="Abstract">{escape(self.abstract)}'
                       "</description></descriptions>")
        if self.instrument:
            out.append('<relatedItems><relatedItem relationType="IsCollectedBy" relatedItemType="Instrument">'
                       f"<titles><title>{escape(self.instrument)}</title></titles></relatedItem></relatedItems>")
        out.append("</resource>")
        return "".join(out).encode()

    def record(self) -> bytes:
        return oai_record(self.identifier, self.datestamp, self.payload())


def oai_record(identifier: str, datestamp: str, payload: bytes, sets: tuple[str, ...] = ()) -> bytes:
    """The whole OAI-PMH <record> element, as the store keeps it."""
    specs = "".join(f"<setSpec>{escape(s)}</setSpec>" for s in sets)
    return (f'<record xmlns="http://www.openarchives.org/OAI/2.0/"><header>'
            f"<identifier>{escape(identifier)}</identifier><datestamp>{datestamp}</datestamp>{specs}"
            "</header><metadata>").encode() + payload + b"</metadata></record>"


def put(store: Store, ds: Dataset) -> bool:
    return store.upsert_record(ds.source, ds.identifier, ds.datestamp, deleted=False, raw=ds.record())


def tombstone(store: Store, source: str, identifier: str, datestamp: str) -> bool:
    return store.upsert_record(source, identifier, datestamp, deleted=True, raw=None)


# Known techniques: SAXS, SANS and GISAXS descend from small angle scattering (PaNET01124).
SAXS, SANS, GISAXS, XRD, ARPES = "PaNET01188", "PaNET01189", "PaNET01162", "PaNET01216", "PaNET01089"

CORPUS = [
    Dataset("oai:esrf:1", "esrf", title="Lysozyme in solution", year=2019, techniques=(SAXS,),
            orcid="0000-0002-1825-0097", ror="https://ror.org/02550n020", instrument="ID02"),
    Dataset("oai:ill:2", "ill", title="Polymer blend under shear", year=2020, techniques=(SANS,),
            instrument="D22", license="CC0-1.0"),
    Dataset("oai:esrf:3", "esrf", title="Thin film morphology", year=2021, techniques=(GISAXS,),
            orcid="0000-0001-5109-3700", instrument="ID10"),
    Dataset("oai:desy:4", "desy", title="Powder patterns of zeolites", year=2020, techniques=(XRD,),
            license=None, instrument="P02.1"),
    Dataset("oai:ill:5", "ill", title="Commissioning data", year=2018, license=None, abstract=None),
    Dataset("oai:hzb:6", "hzb", title="Band structure of Bi2Se3", year=2021, techniques=(ARPES,),
            ror="https://ror.org/02aj13c28", keywords=("topological insulator",)),
    Dataset("oai:esrf:7", "esrf", title="Müller's cement paste hydration", year=None,
            abstract="https://example.org/abstract"),
]


def fill(store: Store, datasets: list[Dataset] | None = None) -> list[Dataset]:
    datasets = CORPUS if datasets is None else datasets
    for ds in datasets:
        put(store, ds)
    return datasets


@pytest.fixture
def index_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "harvester.sqlite")
    yield store
    store.close()


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
