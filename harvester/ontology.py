"""PaNET, the photon & neutron technique ontology: load, compile, cache, query.

PaNET comes as OWL (RDF/XML, sometimes Turtle). Parsing it with rdflib takes a
fraction of a second and pulls in a large library, so the graph is compiled
once into a small JSON form (techniques, labels, synonyms, direct parents)
kept beside the data and keyed by the source file's sha256; later start-ups
read only the JSON.

What counts as a technique: the five-digit classes
``http://purl.org/pan-science/PaNET/PaNET0xxxx``. Since PaNET 1.3 the
seven-digit ``PaNET2xxxxxx`` classes are "specifiers" (probe, process...) and
71 of their labels repeat technique labels ("x-ray fluorescence"), so they are
left out of every index here.

Hierarchy: ``rdfs:subClassOf`` plus the named members of an
``owl:equivalentClass`` intersection (SAXS = small angle scattering AND x-ray
probe technique): in the asserted build those intersections carry part of the
hierarchy that only the reasoned build spells out as subclass edges.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harvester.errors import OntologyError

log = logging.getLogger(__name__)

DEFAULT_URL = "http://purl.org/pan-science/PaNET/PaNET.owl"
PANET_NS = "http://purl.org/pan-science/PaNET/"
COMPILED_FORMAT = 1  # bump when the JSON layout changes: old caches are then ignored

# A technique id inside any PaNET IRI form seen in records:
# http(s)://purl.org/pan-science/PaNET/PaNET01188, ...PaNET.owl#PaNET01188, "PaNET01188".
_TECHNIQUE_ID = re.compile(r"^PaNET\d{5}$")
_PANET_IRI = re.compile(r"^https?://(?:www\.)?purl\.org/pan-science/PaNET/(?:PaNET\.owl#)?(PaNET\d+)/?$",
                        re.IGNORECASE)


def technique_id(iri_or_id: str) -> str | None:
    """The five-digit PaNET id in an IRI or id string, else None (specifiers give None)."""
    value = iri_or_id.strip()
    m = _PANET_IRI.match(value)
    if m:
        value = m.group(1)
    elif value.lower().startswith("panet:"):  # CURIE form, e.g. in ICAT exports
        value = value[6:]
    if value[:5].lower() == "panet":
        value = "PaNET" + value[5:]
    return value if _TECHNIQUE_ID.match(value) else None


def norm_name(text: str) -> str:
    """Case-, space- and hyphen-insensitive key for a name ("Small-Angle X-ray" -> "small angle x ray")."""
    return " ".join(re.split(r"[\s\-‐‑–_/]+", text.strip().lower())).strip()


@dataclass(frozen=True)
class Technique:
    iri: str
    id: str
    label: str
    alt_labels: tuple[str, ...]
    parents: tuple[str, ...]  # direct parents, technique IRIs
    definition: str | None = field(default=None, compare=False)


class Ontology:
    """An immutable, compiled PaNET: techniques, their names and their hierarchy."""

    def __init__(self, techniques: Iterable[Technique], *, version: str, source: str = "",
                 sha256: str = "", version_iri: str | None = None) -> None:
        self.version = version
        self.version_iri = version_iri
        self.source = source
        self.sha256 = sha256
        self._by_iri: dict[str, Technique] = {t.iri: t for t in techniques}
        self._by_id: dict[str, Technique] = {t.id: t for t in self._by_iri.values()}
        self._ancestors = _closure({t.iri: t.parents for t in self._by_iri.values()})
        children: dict[str, list[str]] = {}
        for t in self._by_iri.values():
            for p in t.parents:
                children.setdefault(p, []).append(t.iri)
        self._descendants = _closure(children)
        # name indexes: labels win over synonyms (PaNET 1.0 has "Diffraction" as a
        # synonym of "high pressure single crystal diffraction").
        self._labels: dict[str, list[Technique]] = {}
        self._alts: dict[str, list[Technique]] = {}
        self._exact_alts: dict[str, list[Technique]] = {}
        for t in self._by_iri.values():
            self._labels.setdefault(norm_name(t.label), []).append(t)
            for alt in t.alt_labels:
                self._alts.setdefault(norm_name(alt), []).append(t)
                self._exact_alts.setdefault(" ".join(alt.split()), []).append(t)

    # -- lookups ---------------------------------------------------------
    def technique(self, iri_or_id: str) -> Technique | None:
        tid = technique_id(iri_or_id)
        return self._by_id.get(tid) if tid else None

    def ancestors(self, iri: str) -> frozenset[str]:
        t = self.technique(iri)
        return self._ancestors.get(t.iri, frozenset()) if t else frozenset()

    def descendants(self, iri: str) -> frozenset[str]:
        t = self.technique(iri)
        return self._descendants.get(t.iri, frozenset()) if t else frozenset()

    def resolve(self, name: str) -> list[Technique]:
        """Techniques a user or a record may mean by ``name``.

        IRI or id first; then a label compared case-, space- and hyphen-insensitively;
        then an exact (case-sensitive) synonym such as "SAXS"; then a synonym compared
        like a label.
        """
        t = self.technique(name)
        if t is not None:
            return [t]
        key = norm_name(name)
        if key in self._labels:
            return list(self._labels[key])
        exact = self._exact_alts.get(" ".join(name.split()))
        if exact:
            return list(exact)
        return list(self._alts.get(key, ()))

    def names(self) -> Iterator[tuple[str, Technique, bool]]:
        """Every (name, technique, is_label) pair, for building matchers."""
        for t in self._by_iri.values():
            yield t.label, t, True
            for alt in t.alt_labels:
                yield alt, t, False

    def stats(self) -> dict[str, int]:
        return {
            "techniques": len(self._by_iri),
            "labels": sum(1 for t in self._by_iri.values() if t.label != t.id),
            "synonyms": sum(len(t.alt_labels) for t in self._by_iri.values()),
            "edges": sum(len(t.parents) for t in self._by_iri.values()),
        }

    def __len__(self) -> int:
        return len(self._by_iri)

    def __iter__(self) -> Iterator[Technique]:
        return iter(sorted(self._by_iri.values(), key=lambda t: t.id))

    def __contains__(self, iri_or_id: object) -> bool:
        return isinstance(iri_or_id, str) and self.technique(iri_or_id) is not None

    def __repr__(self) -> str:
        return f"<Ontology PaNET {self.version} {len(self)} techniques from {self.source or '?'}>"

    # -- compiled form ---------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": COMPILED_FORMAT,
            "version": self.version,
            "version_iri": self.version_iri,
            "source": self.source,
            "sha256": self.sha256,
            "techniques": [
                {"iri": t.iri, "label": t.label, "alt_labels": list(t.alt_labels),
                 "parents": list(t.parents), "definition": t.definition}
                for t in self
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ontology:
        if data.get("format") != COMPILED_FORMAT:
            raise OntologyError(f"compiled ontology has format {data.get('format')!r}, "
                                f"expected {COMPILED_FORMAT}")
        techniques = [
            Technique(iri=t["iri"], id=t["iri"].rsplit("/", 1)[-1], label=t["label"],
                      alt_labels=tuple(t["alt_labels"]), parents=tuple(t["parents"]),
                      definition=t.get("definition"))
            for t in data["techniques"]
        ]
        return cls(techniques, version=data["version"], source=data.get("source", ""),
                   sha256=data.get("sha256", ""), version_iri=data.get("version_iri"))


def _closure(edges: dict[str, tuple[str, ...] | list[str]]) -> dict[str, frozenset[str]]:
    """Transitive closure of a graph that may hold cycles (equivalent classes), self excluded."""
    out: dict[str, frozenset[str]] = {}
    for start in edges:
        seen: set[str] = set()
        stack = list(edges[start])
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(edges.get(node, ()))
        seen.discard(start)
        out[start] = frozenset(seen)
    return out


# -- compiling RDF ----------------------------------------------------------

def _rdf_format(data: bytes, name: str) -> str:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "xml"
    if head.startswith(b"{") or head.startswith(b"["):
        return "json-ld"
    lowered = name.lower()
    if lowered.endswith(".nt"):
        return "nt"
    return "turtle"


def compile_rdf(data: bytes, *, source: str = "") -> Ontology:
    """Parse PaNET (RDF/XML or Turtle bytes) into an Ontology. The only place rdflib is used."""
    import rdflib  # imported here: a cached start-up never needs it
    from rdflib.collection import Collection
    from rdflib.namespace import OWL, RDF, RDFS, SKOS

    iao_definition = rdflib.URIRef("http://purl.obolibrary.org/obo/IAO_0000115")
    fmt = _rdf_format(data, source)
    graph = rdflib.Graph()
    try:
        graph.parse(data=data, format=fmt, publicID=DEFAULT_URL)
    except Exception as exc:  # rdflib raises many unrelated types for bad input
        raise OntologyError(f"cannot parse ontology {source or '(bytes)'} as {fmt}: {exc}") from exc

    def is_technique(node: object) -> bool:
        return isinstance(node, rdflib.URIRef) and str(node).startswith(PANET_NS) \
            and _TECHNIQUE_ID.match(str(node)[len(PANET_NS):]) is not None

    # Direct superclasses of every named class (techniques and the few foreign
    # classes such as wikidata Q133900 that sit between techniques).
    supers: dict[str, set[str]] = {}
    for s, o in graph.subject_objects(RDFS.subClassOf):
        if isinstance(s, rdflib.URIRef) and isinstance(o, rdflib.URIRef) and s != o:
            supers.setdefault(str(s), set()).add(str(o))
    for s, eq in graph.subject_objects(OWL.equivalentClass):
        if not isinstance(s, rdflib.URIRef):
            continue
        if isinstance(eq, rdflib.URIRef):
            if eq != s:
                supers.setdefault(str(s), set()).add(str(eq))
            continue
        for members in graph.objects(eq, OWL.intersectionOf):
            for member in Collection(graph, members):
                if isinstance(member, rdflib.URIRef) and member != s:
                    supers.setdefault(str(s), set()).add(str(member))

    nodes = {str(s) for s in graph.subjects(RDF.type, OWL.Class) if is_technique(s)}
    nodes |= {s for s in supers if is_technique(rdflib.URIRef(s))}
    tech_ancestors = _technique_parents(nodes, supers)

    techniques = []
    for iri in nodes:
        node = rdflib.URIRef(iri)
        labels = sorted(" ".join(str(v).split()) for v in graph.objects(node, RDFS.label))
        alts = sorted({" ".join(str(v).split()) for v in graph.objects(node, SKOS.altLabel)} - {""})
        definition = next((str(v) for v in graph.objects(node, iao_definition)), None)
        tid = iri[len(PANET_NS):]
        label = labels[0] if labels and labels[0] else tid
        techniques.append(Technique(iri=iri, id=tid, label=label,
                                    alt_labels=tuple(a for a in alts if a != label),
                                    parents=tech_ancestors[iri], definition=definition))

    version, version_iri = None, None
    for onto in graph.subjects(RDF.type, OWL.Ontology):
        version = version or next((str(v) for v in graph.objects(onto, OWL.versionInfo)), None)
        version_iri = version_iri or next((str(v) for v in graph.objects(onto, OWL.versionIRI)), None)
    sha = hashlib.sha256(data).hexdigest()
    if not techniques:
        raise OntologyError(f"{source or 'ontology'} holds no PaNET technique class")
    return Ontology(techniques, version=version or version_iri or f"sha256:{sha[:12]}",
                    source=source, sha256=sha, version_iri=version_iri)


def _technique_parents(nodes: set[str], supers: dict[str, set[str]]) -> dict[str, tuple[str, ...]]:
    """Direct technique parents: look through foreign classes, then drop implied edges.

    The reasoned build lists every inferred superclass as a direct one; removing
    a parent that is already an ancestor of another parent gives the same
    "direct" parents for the asserted and the reasoned build.
    """
    def technique_supers(iri: str) -> set[str]:
        found, seen, stack = set(), {iri}, list(supers.get(iri, ()))
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node in nodes:
                found.add(node)
            else:  # a foreign class: climb through it to the next techniques
                stack.extend(supers.get(node, ()))
        return found

    direct = {iri: technique_supers(iri) for iri in nodes}
    ancestors = _closure({k: tuple(v) for k, v in direct.items()})
    out = {}
    for iri, parents in direct.items():
        kept = {p for p in parents
                if not any(p in ancestors.get(q, ()) and q not in ancestors.get(p, ())
                           for q in parents if q != p)}
        out[iri] = tuple(sorted(kept))
    return out


# -- loading, caching, fetching --------------------------------------------

def _is_url(source: str | Path) -> bool:
    return isinstance(source, str) and urlparse(source).scheme in ("http", "https")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _source_key(source: str | Path) -> str:
    return source if _is_url(source) else str(Path(source).expanduser().resolve())


class _Cache:
    """Compiled ontologies in one folder: ``panet-<sha256>.json`` plus ``sources.json``
    (source path or URL -> sha256) so a source that is gone or unreachable still loads."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def compiled_path(self, sha: str) -> Path:
        return self.dir / f"panet-{sha}.json"

    def get(self, sha: str) -> Ontology | None:
        path = self.compiled_path(sha)
        try:
            return Ontology.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OntologyError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable compiled ontology %s: %s", path, exc)
            return None

    def put(self, ontology: Ontology, source: str | Path) -> None:
        _atomic_write(self.compiled_path(ontology.sha256),
                      json.dumps(ontology.to_json(), ensure_ascii=False).encode())
        sources = self._sources()
        sources[_source_key(source)] = ontology.sha256
        _atomic_write(self.dir / "sources.json", json.dumps(sources, indent=1, sort_keys=True).encode())

    def last_for(self, source: str | Path) -> Ontology | None:
        sha = self._sources().get(_source_key(source))
        return self.get(sha) if sha else None

    def _sources(self) -> dict[str, str]:
        try:
            data = json.loads((self.dir / "sources.json").read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            log.warning("ignoring unreadable %s: %s", self.dir / "sources.json", exc)
            return {}
        return data if isinstance(data, dict) else {}


def _download(url: str, session: Any = None, timeout: float = 60.0) -> bytes:
    import requests

    own = session is None
    session = session or requests.Session()
    try:
        response = session.get(url, timeout=timeout,
                               headers={"Accept": "application/rdf+xml, text/turtle;q=0.9, */*;q=0.1"})
        if response.status_code != 200:
            raise OntologyError(f"cannot fetch ontology {url}: HTTP {response.status_code}")
        return response.content
    except requests.RequestException as exc:
        raise OntologyError(f"cannot fetch ontology {url}: {exc}") from exc
    finally:
        if own:
            session.close()


def load_ontology(source: str | Path, *, cache_dir: Path | None = None) -> Ontology:
    """Load PaNET from a path or http(s) URL (RDF/XML or Turtle, or a compiled ``.json``).

    With ``cache_dir`` the compiled form is written there, keyed by the file's
    sha256, and used next time instead of parsing RDF. A URL found in the cache
    is not downloaded again (``fetch_ontology`` refreshes it); a local file that
    has disappeared falls back to its last compiled form, with a warning.
    """
    cache = _Cache(Path(cache_dir)) if cache_dir is not None else None
    if _is_url(source):
        if cache and (hit := cache.last_for(source)) is not None:
            return hit
        data = _download(str(source))
    else:
        path = Path(source).expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if cache and (hit := cache.last_for(path)) is not None:
                log.warning("ontology file %s is gone; using its compiled copy (version %s)", path, hit.version)
                return hit
            raise OntologyError(f"ontology file not found: {path}") from None
        except OSError as exc:
            raise OntologyError(f"cannot read ontology file {path}: {exc}") from exc
        if path.suffix == ".json":
            try:
                return Ontology.from_json(json.loads(data))
            except (ValueError, KeyError, TypeError) as exc:
                raise OntologyError(f"{path} is not a compiled ontology: {exc}") from exc
    sha = hashlib.sha256(data).hexdigest()
    if cache and (hit := cache.get(sha)) is not None:
        if _source_key(source) not in cache._sources():
            cache.put(hit, source)
        return hit
    started = time.perf_counter()
    ontology = compile_rdf(data, source=str(source))
    log.info("compiled PaNET %s from %s in %.2fs", ontology.version, source, time.perf_counter() - started)
    if cache:
        cache.put(ontology, source)
    return ontology


def ontology_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "ontology"


def fetch_ontology(url: str, data_dir: Path, session: Any = None) -> Path:
    """Download PaNET into ``data_dir/ontology/``, compile it, and make it the default copy.

    The download is parsed before it replaces anything, so a failed or bad
    download leaves the previous copy in place. Returns the downloaded file's path.
    """
    target_dir = ontology_dir(data_dir)
    data = _download(url, session)
    ontology = compile_rdf(data, source=url)
    name = Path(urlparse(url).path).name or "PaNET.owl"
    path = target_dir / name
    _atomic_write(path, data)
    cache = _Cache(target_dir / "compiled")
    cache.put(ontology, url)
    cache.put(ontology, path)
    _atomic_write(target_dir / "fetched.json", json.dumps({
        "url": url, "file": name, "sha256": ontology.sha256, "version": ontology.version,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=1).encode())
    return path


def fetched_path(data_dir: Path) -> Path | None:
    """The copy ``fetch_ontology`` left in ``data_dir``, if any."""
    marker = ontology_dir(data_dir) / "fetched.json"
    try:
        info = json.loads(marker.read_bytes())
        return ontology_dir(data_dir) / str(info["file"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise OntologyError(f"{marker} is unreadable ({exc}); run `pan-harvester ontology fetch` again") from exc


def default_ontology(data_dir: Path, configured: str | None) -> Ontology:
    """The ontology to tag with: the configured path/URL, else the copy fetched into data_dir."""
    cache_dir = ontology_dir(data_dir) / "compiled"
    if configured:
        return load_ontology(configured, cache_dir=cache_dir)
    path = fetched_path(data_dir)
    if path is None:
        raise OntologyError(
            f"no PaNET ontology: none configured and none fetched into {ontology_dir(data_dir)}. "
            "Run `pan-harvester ontology fetch` or set --ontology / PAN_HARVESTER_ONTOLOGY "
            "to a PaNET file or URL.")
    return load_ontology(path, cache_dir=cache_dir)
