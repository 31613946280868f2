"""The project's technique knowledge: ``ontology/*.toml`` loaded for the Tagger.

``synonyms.toml`` (names PaNET lacks, spellings, fillers), ``stoplist.toml``
(look-alikes, comparison and background cues, generic techniques),
``facilities.toml`` (names and probes) and ``instruments.toml`` (what each
instrument is built for), read once into a ``_Knowledge``. A missing file, bad
TOML, an id that is not a string or a cue window that is not a number is an
``OntologyError`` naming the file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester.errors import OntologyError
from harvester.ontology import norm_name
from harvester.resources import project_dir


def default_knowledge_dir() -> Path:
    """The project's technique knowledge (``ontology/`` at the repository root)."""
    return project_dir("ontology")


@dataclass
class _Knowledge:
    synonyms: dict[str, list[str]]
    spelling: dict[str, tuple[str, ...]]
    split: dict[str, tuple[str, ...]]
    modes: dict[str, tuple[str, list[str]]]  # PaNET id -> (the id it reads as, words naming the mode)
    fillers: frozenset[str]
    stop_phrases: list[str]
    stop_acronyms: frozenset[str]
    subject_only: frozenset[str]
    never: frozenset[str]
    not_used_after: dict[str, int]  # cue phrase -> how many words may stand between it and the name
    not_used_before: dict[str, int]  # cue phrase -> how many words may stand between the name and it
    not_used_in_sentence: list[str]  # cue words that make a whole sentence background
    needs_context: list[str]  # PaNET ids of generic techniques, tagged only in a beam context
    acronyms_need_context: frozenset[str]  # acronyms tagged only in a beam context
    laboratory: list[str]  # PaNET ids of lab methods, not tagged from an abstract beside a beam technique
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


def _modes(table: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    out = {}
    for technique, entry in table.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("to"), str)
                and isinstance(words := entry.get("words"), list) and words
                and all(isinstance(w, str) for w in words)):
            raise OntologyError(f"synonyms.toml [modes] {technique}: expected {{ to = id, words = [...] }}, "
                                f"got {entry!r}")
        out[technique] = (entry["to"], words)
    return out


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
    """The four knowledge files in ``directory`` (``default_knowledge_dir()`` for the project's)."""
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
    names = {f: list(t) for f, t in ins.get("instrument", {}).items()}
    for key, entry in fac.get("facility", {}).items():
        if (parent := entry.get("instruments")) is not None:
            if parent not in instruments:
                raise OntologyError(f"facilities.toml [facility.{key}] instruments: no instrument "
                                    f"table {parent!r} in instruments.toml")
            instruments[key], names[key] = instruments[parent], names[parent]
    cues = stop.get("not_used_after", {})
    after_cues = stop.get("not_used_before", {})
    for table, values in (("not_used_after", cues), ("not_used_before", after_cues)):
        if not all(isinstance(v, int) and v >= 0 for v in values.values()):
            raise OntologyError(f"stoplist.toml [{table}]: expected phrase = number of words, got {values!r}")
    return _Knowledge(
        synonyms={p: _ids(v, f"synonyms.toml {p!r}") for p, v in syn.get("phrases", {}).items()},
        spelling={k: tuple(v.split()) for k, v in syn.get("spelling", {}).items()},
        split={k: tuple(v.split()) for k, v in syn.get("split", {}).items()},
        modes=_modes(syn.get("modes", {})),
        fillers=frozenset(w.lower() for w in syn.get("fillers", [])),
        stop_phrases=list(stop.get("phrases", [])),
        stop_acronyms=frozenset(stop.get("acronyms", [])),
        subject_only=frozenset(norm_name(n) for n in stop.get("text_only_as_subject", [])),
        never=frozenset(norm_name(n) for n in stop.get("never", [])),
        not_used_after=dict(cues),
        not_used_before=dict(after_cues),
        not_used_in_sentence=list(stop.get("not_used_in_sentence", [])),
        needs_context=_ids(stop.get("needs_context", []), "stoplist.toml needs_context"),
        acronyms_need_context=frozenset(stop.get("acronyms_need_context", [])),
        laboratory=_ids(stop.get("laboratory", []), "stoplist.toml laboratory"),
        probes=dict(fac.get("probes", {})),
        facilities=facilities,
        facility_keys=facility_keys,
        instruments=instruments,
        instrument_names=names,
        not_in_titles=frozenset(ins.get("not_in_titles", [])),
        instrument_words={p: _ids(v, f"instruments.toml [words] {p!r}")
                          for p, v in ins.get("words", {}).items()},
    )
