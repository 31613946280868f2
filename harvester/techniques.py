"""Tag records with PaNET techniques, keeping the evidence for every tag.

Evidence, most certain first (``TechniqueTag.method``):

1. ``iri``: a PaNET IRI or id given in the record (subject valueURI, a PaNET
   subject scheme, a keyword holding an IRI);
2. ``subject``: a subject or keyword that *is* technique names ("SAXS",
   "Small-angle neutron scattering", "SAXS/WAXS"), compared ignoring case,
   hyphens and spacing;
3. ``text``: names and acronyms found in the title, abstract and longer
   keywords; acronyms must match case ("SANS" yes, French "sans" no);
4. ``instrument`` (weak): the record's instrument is built for a technique
   (ILL D22 -> SANS), from ``ontology/instruments.toml``;
5. ``facility`` (weak): a facility with a single probe (ILL -> neutron probe
   technique), from ``ontology/facilities.toml``.

Names come from PaNET (labels and skos:altLabel of five-digit technique
classes only) plus ``ontology/synonyms.toml``; ``ontology/stoplist.toml`` lists
phrases that only look like techniques. All names are compiled once into a
dict of token tuples; a scan is one dict probe per token that can start a name,
longest match first, so "grazing incidence small angle x-ray scattering" is
GISAXS and not also SAXS.
"""

from __future__ import annotations

import itertools
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from harvester.document import Document, Subject, TechniqueTag
from harvester.errors import OntologyError
from harvester.resources import project_dir
from harvester.ontology import (  # re-exported: callers may import everything from here
    DEFAULT_URL,
    Ontology,
    Technique,
    default_ontology,
    fetch_ontology,
    load_ontology,
    norm_name,
    technique_id,
)

__all__ = ["DEFAULT_URL", "Ontology", "Tagger", "Technique", "default_ontology", "fetch_ontology",
           "default_knowledge_dir", "load_ontology"]

STRENGTH = {"iri": 0, "subject": 1, "text": 2, "instrument": 3, "facility": 4}
_FIELD_ORDER = {"subjects": 0, "keywords": 1, "title": 2, "summary": 3, "instrument": 4, "facility": 5}
_WEAK = {"instrument", "facility"}

# Word tokens, plus the punctuation a technique name never spans (a phrase
# must not run across "x-ray. Scattering").
_TOKEN = re.compile(r"[^\W_]+|[.,;:!?()\[\]{}]")
_BREAK = "\x00"
_CONNECTORS = frozenset({"and", "or"})  # allowed between names in a subject ("SAXS and WAXS")


def default_knowledge_dir() -> Path:
    """The project's technique knowledge (``ontology/`` at the repository root)."""
    return project_dir("ontology")


def _is_acronym(token: str) -> bool:
    """Acronym-like tokens ("SAXS", "MuSR", "3D", "ID02") keep their case when matched."""
    return len(token) >= 2 and (token.isupper() or sum(c.isupper() for c in token) >= 2)


def _nfkc(text: str) -> str:
    # NFKC folds the micro sign into Greek mu ("µCT" = "μCT") and full-width forms.
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


class _Entry(NamedTuple):
    iris: tuple[str, ...]  # empty for a stop phrase
    priority: int  # lower wins when two names give the same key


class _Match(NamedTuple):
    iris: tuple[str, ...]
    start: int
    end: int


class _Phrases:
    """A dict of token-tuple keys with longest-match scanning."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, ...], _Entry] = {}
        self.first: dict[str, int] = {}  # token -> longest key starting with it

    def add(self, key: tuple[str, ...], iris: tuple[str, ...], priority: int) -> None:
        if not key:
            return
        old = self.table.get(key)
        if old is None or priority < old.priority:
            self.table[key] = _Entry(iris, priority)
        elif priority == old.priority and iris and old.iris:
            self.table[key] = _Entry(tuple(dict.fromkeys(old.iris + iris)), priority)
        self.first[key[0]] = max(self.first.get(key[0], 0), len(key))

    def scan(self, keys: list[str], spans: list[tuple[int, int]]) -> list[_Match]:
        out: list[_Match] = []
        first, table, n, i = self.first, self.table, len(keys), 0
        while i < n:
            longest = first.get(keys[i])
            if longest:
                for length in range(min(longest, n - i), 0, -1):
                    entry = table.get(tuple(keys[i:i + length]))
                    if entry is not None:
                        if entry.iris:
                            out.append(_Match(entry.iris, spans[i][0], spans[i + length - 1][1]))
                        i += length
                        break
                else:
                    i += 1
            else:
                i += 1
        return out


@dataclass
class _Knowledge:
    synonyms: dict[str, list[str]]
    spelling: dict[str, tuple[str, ...]]
    split: dict[str, tuple[str, ...]]
    stop_phrases: list[str]
    stop_acronyms: frozenset[str]
    subject_only: frozenset[str]
    never: frozenset[str]
    probes: dict[str, str]
    facilities: dict[str, list[str]]  # normalised facility name -> probe names
    facility_keys: dict[str, str]  # normalised facility name -> facility key
    instruments: dict[str, dict[str, list[str]]]  # facility key -> normalised instrument name -> ids
    instrument_names: dict[str, list[str]]  # facility key -> instrument names as written
    not_in_titles: frozenset[str]
    instrument_words: dict[str, list[str]]


def _ids(value: Any, where: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise OntologyError(f"{where}: expected a PaNET id or a list of ids, got {value!r}")
    return values


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise OntologyError(f"technique knowledge file missing: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise OntologyError(f"{path}: {exc}") from exc


def _instrument_key(name: str) -> str:
    return re.sub(r"[\s\-_]+", "", name).upper()


def load_knowledge(directory: Path) -> _Knowledge:
    syn = _load_toml(directory / "synonyms.toml")
    stop = _load_toml(directory / "stoplist.toml")
    fac = _load_toml(directory / "facilities.toml")
    ins = _load_toml(directory / "instruments.toml")
    facilities: dict[str, list[str]] = {}
    facility_keys: dict[str, str] = {}
    for key, entry in fac.get("facility", {}).items():
        for name in [key, *entry.get("names", [])]:
            facilities[norm_name(name)] = list(entry.get("probes", []))
            facility_keys[norm_name(name)] = key
    instruments = {
        facility: {_instrument_key(name): _ids(ids, f"instruments.toml [{facility}] {name}")
                   for name, ids in table.items()}
        for facility, table in ins.get("instrument", {}).items()
    }
    return _Knowledge(
        synonyms={p: _ids(v, f"synonyms.toml {p!r}") for p, v in syn.get("phrases", {}).items()},
        spelling={k: tuple(v.split()) for k, v in syn.get("spelling", {}).items()},
        split={k: tuple(v.split()) for k, v in syn.get("split", {}).items()},
        stop_phrases=list(stop.get("phrases", [])),
        stop_acronyms=frozenset(stop.get("acronyms", [])),
        subject_only=frozenset(norm_name(n) for n in stop.get("text_only_as_subject", [])),
        never=frozenset(norm_name(n) for n in stop.get("never", [])),
        probes=dict(fac.get("probes", {})),
        facilities=facilities,
        facility_keys=facility_keys,
        instruments=instruments,
        instrument_names={f: list(t) for f, t in ins.get("instrument", {}).items()},
        not_in_titles=frozenset(ins.get("not_in_titles", [])),
        instrument_words={p: _ids(v, f"instruments.toml [words] {p!r}")
                          for p, v in ins.get("words", {}).items()},
    )


class _Hit(NamedTuple):
    rank: tuple[int, int, int]
    iri: str
    method: str
    field: str
    text: str


class Tagger:
    """Finds PaNET techniques in a record. Build once (compiles every name), then call often."""

    def __init__(self, ontology: Ontology, knowledge_dir: Path | None = None) -> None:
        self.ontology = ontology
        self.knowledge = k = load_knowledge(knowledge_dir or default_knowledge_dir())
        self.unknown_ids: set[str] = set()  # ids in the knowledge files this ontology lacks
        self._word_vocab: set[str] = set()
        self._acro_vocab: set[str] = set()

        # (name, iris, priority): PaNET label 0, project synonym 1, PaNET synonym 2.
        names: list[tuple[str, tuple[str, ...], int]] = []
        for name, technique, is_label in ontology.names():
            names.append((name, (technique.iri,), 0 if is_label else 2))
        for phrase, ids in k.synonyms.items():
            if iris := self._iris(ids):
                names.append((phrase, iris, 1))
        names = [(n, i, p) for n, i, p in names
                 if n not in k.stop_acronyms and norm_name(n) not in k.never]
        for name, _, _ in names + [(s, (), -1) for s in k.stop_phrases]:
            for token in _TOKEN.findall(_nfkc(name)):
                if _is_acronym(token):
                    self._acro_vocab.add(token)
                else:
                    self._word_vocab.add(token.lower())

        self._text, self._subject, self._instrument = _Phrases(), _Phrases(), _Phrases()
        for name, iris, priority in names:
            subject_only = norm_name(name) in k.subject_only
            for key in self._name_keys(name):
                self._text.add(key, () if subject_only else iris, -1 if subject_only else priority)
                self._instrument.add(key, () if subject_only else iris, -1 if subject_only else priority)
                self._subject.add(tuple(t.lower() for t in key), iris, priority)
        for phrase in k.stop_phrases:
            for key in self._name_keys(phrase):
                self._text.add(key, (), -1)
                self._instrument.add(key, (), -1)
        for phrase, ids in k.instrument_words.items():
            if iris := self._iris(ids):
                for key in self._name_keys(phrase):
                    self._instrument.add(key, iris, 0)

        self._facility_probe: dict[str, str] = {}
        for name, probes in k.facilities.items():
            if len(probes) == 1 and (probe := k.probes.get(probes[0])) and (iris := self._iris([probe])):
                self._facility_probe[name] = iris[0]
        self._title_instruments: dict[str, re.Pattern[str]] = {}
        for facility, written in k.instrument_names.items():
            usable = sorted((n for n in written if len(n) >= 3 and n not in k.not_in_titles), key=len, reverse=True)
            if usable:
                self._title_instruments[facility] = re.compile(
                    r"(?<![\w\-.])(" + "|".join(map(re.escape, usable)) + r")(?![\w\-]|\.\d)")

    # -- compiling names ---------------------------------------------------
    def _iris(self, ids: Iterable[str]) -> tuple[str, ...]:
        out = []
        for i in ids:
            technique = self.ontology.technique(i)
            if technique is None:
                self.unknown_ids.add(i)
            else:
                out.append(technique.iri)
        return tuple(out)

    def _name_keys(self, name: str) -> list[tuple[str, ...]]:
        """Keys of one name: its tokens, and variants with compound words split."""
        parts: list[list[tuple[str, ...]]] = []
        for token in _TOKEN.findall(_nfkc(name)):
            if _is_acronym(token):
                parts.append([(token,)])
                continue
            low = token.lower()
            spelled = self.knowledge.spelling.get(low, (low,))
            options = [spelled]
            if low in self.knowledge.split:
                options.append(self.knowledge.split[low])
            parts.append(options)
        return [tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*parts)]

    # -- tokenising text ---------------------------------------------------
    def _keys(self, text: str, *, fold_case: bool = False) -> tuple[list[str], list[tuple[int, int]]]:
        keys: list[str] = []
        spans: list[tuple[int, int]] = []
        spelling, acro, words = self.knowledge.spelling, self._acro_vocab, self._word_vocab
        for m in _TOKEN.finditer(text):
            token = m.group()
            if len(token) == 1 and not token.isalnum():
                keys.append(_BREAK)
                spans.append(m.span())
                continue
            if token.islower():
                low = token
            elif not fold_case and token in acro:
                keys.append(token)
                spans.append(m.span())
                continue
            else:
                low = token.lower()
                # an all-capitals word ("X-RAY DIFFRACTION") reads as the word,
                # but unknown acronyms and "SANS" ("sans" is no name word) stay as written
                if not fold_case and _is_acronym(token) and low not in words:
                    keys.append(token)
                    spans.append(m.span())
                    continue
            spelled = spelling.get(low)
            if spelled is None:
                keys.append(low)
                spans.append(m.span())
            else:
                keys.extend(spelled)
                spans.extend([m.span()] * len(spelled))
        return keys, spans

    def _find(self, phrases: _Phrases, text: str) -> list[tuple[tuple[str, ...], str, int]]:
        text = _nfkc(text)
        keys, spans = self._keys(text)
        return [(m.iris, text[m.start:m.end], m.start) for m in phrases.scan(keys, spans)]

    def _whole_subject(self, value: str) -> list[tuple[tuple[str, ...], str, int]] | None:
        """The techniques a subject consists of, or None when it also holds other words."""
        value = _nfkc(value)
        keys, spans = self._keys(value, fold_case=True)
        matches = self._subject.scan(keys, spans)
        if not matches:
            return None
        covered = bytearray(len(value))
        for m in matches:
            covered[m.start:m.end] = b"\x01" * (m.end - m.start)
        for key, (start, end) in zip(keys, spans):
            if key != _BREAK and key not in _CONNECTORS and not covered[start]:
                return None
        return [(m.iris, value[m.start:m.end], m.start) for m in matches]

    # -- tagging -----------------------------------------------------------
    def tag(self, *, title: str | None = None, summary: str | None = None, keywords: Sequence[str] = (),
            subjects: Sequence[Subject] = (), instruments: Sequence[str] = (),
            facility: str | None = None) -> list[TechniqueTag]:
        hits: list[_Hit] = []

        def add(iris: Iterable[str], method: str, field: str, text: str, position: int = 0) -> None:
            rank = (STRENGTH[method], _FIELD_ORDER[field], position)
            hits.extend(_Hit(rank, iri, method, field, text) for iri in iris)

        # 1. PaNET IRIs and ids given in the record
        free_subjects: list[tuple[str, str]] = []
        for n, subject in enumerate(subjects):
            given = [u for u in (subject.value_uri, subject.value) if u and technique_id(u)]
            found = [t for t in (self.ontology.technique(u) for u in given) if t is not None]
            if found:
                add([found[0].iri], "iri", "subjects", given[0], n)
            elif subject.value:
                free_subjects.append(("subjects", subject.value))
        for n, keyword in enumerate(keywords):
            if technique_id(keyword) and (t := self.ontology.technique(keyword)):
                add([t.iri], "iri", "keywords", keyword, n)
            elif keyword:
                free_subjects.append(("keywords", keyword))

        # 2. subjects and keywords that are technique names; 3. names inside them and in the text
        for n, (field, value) in enumerate(free_subjects):
            whole = self._whole_subject(value)
            if whole is not None:
                for iris, text, pos in whole:
                    add(iris, "subject", field, text, n * 10_000 + pos)
            else:
                for iris, text, pos in self._find(self._text, value):
                    add(iris, "text", field, text, n * 10_000 + pos)
        for field, value in (("title", title), ("summary", summary)):
            if value:
                for iris, text, pos in self._find(self._text, value):
                    add(iris, "text", field, text, pos)

        # 4. instruments; 5. the facility's single probe
        facility_key = self.knowledge.facility_keys.get(norm_name(facility)) if facility else None
        for n, instrument in enumerate(instruments):
            if instrument:
                for iris, text in self._instrument_hints(instrument, facility_key):
                    add(iris, "instrument", "instrument", text, n)
        if title and facility_key in self._title_instruments:
            for m in self._title_instruments[facility_key].finditer(title):
                if ids := self.knowledge.instruments[facility_key].get(_instrument_key(m.group())):
                    add(self._iris(ids), "instrument", "title", m.group(), m.start())
        if facility and (probe := self._facility_probe.get(norm_name(facility))):
            add([probe], "facility", "facility", facility.strip())
        return self._resolve(hits)

    def _instrument_hints(self, instrument: str, facility_key: str | None) -> list[tuple[tuple[str, ...], str]]:
        out: list[tuple[tuple[str, ...], str]] = []
        head = re.split(r"\s+[-–:]\s+|\s*[(,;]", instrument.strip(), maxsplit=1)[0].strip()
        candidates = dict.fromkeys([instrument.strip(), head, *head.split()])
        tables = ([self.knowledge.instruments[facility_key]] if facility_key in self.knowledge.instruments
                  else list(self.knowledge.instruments.values()))
        for name in candidates:
            found = {tuple(t[_instrument_key(name)]) for t in tables if _instrument_key(name) in t}
            if len(found) == 1:  # unknown facility: only when every facility agrees
                out.append((self._iris(found.pop()), name))
                break
        out.extend((iris, text) for iris, text, _ in self._find(self._instrument, instrument))
        return out

    def _resolve(self, hits: list[_Hit]) -> list[TechniqueTag]:
        """One tag per technique (strongest evidence), minus ancestors of equal or stronger tags."""
        best: dict[str, _Hit] = {}
        for hit in sorted(hits):
            best.setdefault(hit.iri, hit)
        kept = []
        for hit in best.values():
            if hit.method != "iri" and any(
                    hit.iri in self.ontology.ancestors(other.iri)
                    for other in best.values() if other.rank[0] <= hit.rank[0] and other is not hit):
                continue
            kept.append(hit)
        out = []
        for hit in kept:
            t = self.ontology.technique(hit.iri)
            assert t is not None  # every iri in a hit comes from this ontology
            out.append(TechniqueTag(iri=t.iri, id=t.id, label=t.label, method=hit.method,  # type: ignore[arg-type]
                                    field=hit.field, text=hit.text, weak=hit.method in _WEAK))
        return out

    def tag_document(self, doc: Document) -> Document:
        """A copy of ``doc`` with ``techniques`` and ``ontology_version`` set."""
        facility = doc.facility or next((i.facility for i in doc.instruments if i.facility), None) or doc.publisher
        tags = self.tag(title=doc.title, summary=doc.summary, keywords=doc.keywords, subjects=doc.subjects,
                        instruments=[i.name for i in doc.instruments], facility=facility)
        return doc.model_copy(update={"techniques": tags, "ontology_version": self.ontology.version})
