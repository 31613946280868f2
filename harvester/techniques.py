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
   (ILL D22 -> SANS), from ``ontology/instruments.toml``; it refines an
   umbrella the record names ("neutron scattering" on IN20 -> INS) but never
   narrows a specific one (SAXS on a beamline also known for USAXS);
5. ``facility`` (weak): a facility with a single probe (ILL -> neutron probe
   technique), from ``ontology/facilities.toml``, and only when nothing above
   found a technique: next to a named technique a probe adds nothing, and
   PaNET does not place every technique under its probe.

Names come from PaNET (labels and skos:altLabel of five-digit technique
classes only) plus ``ontology/synonyms.toml``; ``ontology/stoplist.toml`` lists
phrases that only look like techniques and the words after which a technique
is named without being used ("compared to X-ray diffraction").

How free text is read: facility text names techniques in a few set ways, and
each has a rule here rather than a synonym per combination.

* Longest match: "grazing incidence small angle x-ray scattering" is GISAXS
  and not also SAXS; a stop phrase that wins hides what it covers
  ("diffraction limit", "neutron star").
* Coordination: "small angle neutron and X-ray scattering", "X-ray and neutron
  reflectometry", "single crystal and powder X-ray diffraction" share a
  modifier or a head between two names; both are tagged when both are names.
* Fillers: "phase-contrast synchrotron tomography" is phase contrast
  tomography ("synchrotron", "based" may stand inside a name).
* Comparison and negation: a name right after "compared to", "unlike",
  "instead of", "is not a", "conventional", "with potential for"... in the
  same clause is a technique the record measures against, or might use one
  day, not one it used (``[not_used_after]`` in the stoplist).
* Background: a sentence holding "conventionally" or "traditionally" says how
  it is usually done; nothing it names counts (``not_used_in_sentence``).
* Context: a record whose only techniques are generic ones ("tomography",
  "reflectometry", "crystallography": ``needs_context``) or acronyms that mean
  other things elsewhere (MX, SFX, INS: ``acronyms_need_context``) is tagged
  only when it shows a photon, neutron or muon context (a known facility or
  instrument, a probe or source named); upper-mantle tomography is not a PaN
  technique, nor the MX record of a mail domain.
* Readings: a generic name is read with the record's one probe ("tomography"
  in an X-ray record is x-ray tomography); a name with the mode its record
  speaks of (X-ray fluorescence of elemental maps is scanning XRF,
  ``[modes]`` in the synonyms); an acronym with the definition the record
  gives it ("surface X-ray diffraction (SXRD)").
* Laboratory methods (electron or optical microscopy, Raman...: ``laboratory``)
  in an abstract that also names a beam technique are the complementary
  characterisation, not what the dataset holds.

Speed (a harvest tags every record): names are compiled once into a trie of
token keys. A text is cut into tokens by one bytes.translate and one split
(ASCII; a regex otherwise), title and abstract in one pass; a set test on the
tokens as written rejects text without technique words, and only positions
where a name may begin (one token, or a pair of tokens, found in precomputed
sets) are walked in the trie. Token keys, subjects, instruments and facilities
are memoised (they repeat across records); character offsets for the evidence
text are computed for matches only.

The stage in three modules: this one, the ``Tagger`` (scan, coordination,
comparison and background cues, beam context, instrument and facility hints,
choosing one tag per technique); ``harvester.knowledge``, which loads
``ontology/*.toml``; ``harvester.phrases``, which cuts text into tokens and
holds names in the trie. PaNET itself is loaded by ``harvester.ontology``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harvester.cues import Cues
from harvester.document import Document, Subject, TechniqueTag
from harvester.knowledge import _instrument_key, default_knowledge_dir, load_knowledge
from harvester.ontology import (  # re-exported: callers may import everything from here
    DEFAULT_URL,
    Ontology,
    Technique,
    default_ontology,
    fetch_ontology,
    load_ontology,
    norm_name,
)
from harvester.phrases import (
    _BREAK,
    _BREAKS,
    _CONNECTORS,
    _END,
    _FIELD_SEP,
    _PUNCT,
    _Entry,
    _Match,
    _Phrases,
    _Text,
    _cased,
    _indices,
    _is_acronym,
    _token_at,
)

__all__ = ["DEFAULT_URL", "Ontology", "Tagger", "Technique", "default_ontology", "fetch_ontology",
           "default_knowledge_dir", "load_ontology"]

STRENGTH = {"iri": 0, "subject": 1, "text": 2, "instrument": 3, "facility": 4}
# A photon, neutron or muon context: a probe, a source or a beamline named in the text.
# A generic name ("tomography", "reflectometry", "powder diffraction") is a PaN
# technique only in such a record: upper-mantle tomography, time-domain reflectometry
# in soil and NMR crystallography are not.
_XRAYS = r"(?<![a-z])x[\s-]?rays?(?![a-z])"
_NEUTRONS = r"\bneutrons?\b"
_BEAM_CONTEXT = re.compile(
    _XRAYS + r"|\b(?:neutrons?|muons?|µsr|μsr|musr|synchrotrons?|beam[\s-]?lines?|beam[\s-]?times?"
    r"|xfels?|free[\s-]electron[\s-]lasers?|spallation|light[\s-]sources?|undulators?|photon[\s-]sources?)\b",
    re.IGNORECASE)
# The probes a generic name is read with ("tomography" in a record that speaks only of
# X-rays is x-ray tomography): the key in facilities.toml [probes], and how text names it.
_PROBE_WORDS = {
    "x-ray": re.compile(_XRAYS, re.IGNORECASE),
    "neutron": re.compile(_NEUTRONS, re.IGNORECASE),
}
_CONNECTORS_CASED = _cased(_CONNECTORS)
_UMBRELLA = 10  # descendants that make a technique an umbrella ("neutron diffraction": 10, "SAXS": 9)
# how a facility field joins several names: "DESY (PETRA III)", "ESRF; DESY", "SNS/HFIR"
_FACILITY_PARTS = re.compile(r"[;,()/]|\s[-–]\s")
_COORD_WINDOW = 5  # tokens looked at on each side of a connector
_CACHE_LIMIT = 50_000  # per memo; cleared when full (keywords and instruments repeat a lot)

_new_tag = TechniqueTag.trusted


def _copy(doc: Document, update: dict[str, Any]) -> Document:
    # Document.trusted takes the values as they are: the document was valid and
    # the update is typed here (cheaper than model_copy, next to a ~15 us tag()).
    return Document.trusted({**doc.__dict__, **update})


# One piece of evidence: (strength, field order, position, iri, method, field, text);
# a plain tuple, so that sorting it sorts by rank.
_Hit = tuple[int, int, int, str, str, str, str]


def _drop_back_references(hits: list[_Hit]) -> list[_Hit]:
    """A name that ends a longer name said before it refers back to that one: after
    "X-ray emission spectroscopy", "Kβ emission spectroscopy" is not also the broader
    (and in PaNET unrelated) "emission spectroscopy". A title's "X-ray diffraction"
    before the abstract's "grazing incidence X-ray diffraction" stays its own."""
    texts = {hit[6] for hit in hits if hit[4] == "text"}
    if len(texts) < 2:  # most records: one name, or one name giving several classes
        return hits
    tails = {text.rsplit(None, 1)[-1].lower() for text in texts}
    if len(tails) == len(texts):  # no two names end alike
        return hits
    said = [((hit[1], hit[2]), " " + _words(hit[6])) for hit in hits if hit[4] == "text"]
    return [hit for hit in hits if hit[4] != "text" or not any(
        where < (hit[1], hit[2]) and longer != (short := " " + _words(hit[6])) and longer.endswith(short)
        for where, longer in said)]


def _spells(acronym: str, words: list[str]) -> bool:
    """Whether ``words`` hold every letter of ``acronym``, in order ("sxrd" in surface
    x ray diffraction, "arpes" in angle resolved photoemission; not "waxs" in wide
    angle scattering)."""
    letters = iter("".join(words))
    return all(letter in letters for letter in acronym if letter.isalpha())


def _words(text: str) -> str:
    return " ".join(text.lower().replace("-", " ").split())


class Tagger:
    """Finds PaNET techniques in a record. Build once (compiles every name), then call often."""

    def __init__(self, ontology: Ontology, knowledge_dir: Path | None = None) -> None:
        self.ontology = ontology
        self.knowledge = k = load_knowledge(knowledge_dir or default_knowledge_dir())
        self.unknown_ids: set[str] = set()  # ids in the knowledge files this ontology lacks
        self._word_vocab: set[str] = set()
        self._acro_vocab: set[str] = set()
        self._ancestors = {t.iri: ontology.ancestors(t.iri) for t in ontology}
        # techniques with many descendants: "neutron scattering", "x-ray diffraction"
        self._umbrellas = frozenset(t.iri for t in ontology if len(ontology.descendants(t.iri)) >= _UMBRELLA)
        self._tag_fields = {t.iri: (t.id, t.label) for t in ontology}

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
            for token in _Text(name).tokens:
                if _is_acronym(token):
                    self._acro_vocab.add(token)
                else:
                    self._word_vocab.add(token.lower())

        self._text, self._subject, self._instrument = _Phrases(), _Phrases(), _Phrases()
        for name, iris, priority in names:
            subject_only = norm_name(name) in k.subject_only
            for key in self._name_keys(name):
                self._text.add(key, () if subject_only else iris, -1 if subject_only else priority)
                self._subject.add(tuple(t.lower() for t in key), iris, priority)
        for phrase in k.stop_phrases:
            for key in self._name_keys(phrase):
                self._text.add(key, (), -1)
        # an instrument's description reads like text, plus instrument-type words
        self._instrument.table = dict(self._text.table)
        for phrase, ids in k.instrument_words.items():
            if iris := self._iris(ids):
                for key in self._name_keys(phrase):
                    self._instrument.add(key, iris, 0)

        for table in (self._text, self._subject, self._instrument):
            table.finish(k.spelling, k.fillers)
        words = {t.lower() for key in self._text.table for t in key}
        self._name_words = frozenset(words | {w for w, spelled in k.spelling.items() if set(spelled) <= words})
        self._cues = Cues(k.not_used_after, k.not_used_before, k.not_used_in_sentence)

        self._needs_context = frozenset(self._iris(k.needs_context))
        self._laboratory = frozenset(self._iris(k.laboratory))
        self._ambiguous_acronyms = k.acronyms_need_context
        self._modes: dict[str, tuple[str, re.Pattern[str]]] = {}
        for technique, (mode, words) in k.modes.items():
            if (iris := self._iris([technique])) and (to := self._iris([mode])):
                self._modes[iris[0]] = (to[0], re.compile(
                    r"\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"[\s-]+") for w in words) + r")\b",
                    re.IGNORECASE))
        self._probes, self._refine = self._probe_refinements(ontology, k.probes)
        self._refinable = frozenset(generic for generic, _ in self._refine)
        # facility key -> instrument key -> IRIs, resolved once (and checked: unknown_ids)
        self._instrument_iris = {facility: {key: self._iris(ids) for key, ids in table.items()}
                                 for facility, table in k.instruments.items()}
        self._facility_probe: dict[str, str] = {}
        for name, probes in k.facilities.items():
            if len(probes) == 1 and (probe := k.probes.get(probes[0])) and (iris := self._iris([probe])):
                self._facility_probe[name] = iris[0]
        self._title_instruments: dict[str, re.Pattern[str]] = {}
        self._title_instrument_words: dict[str, frozenset[str]] = {}  # a cheap first test for the regex
        for facility, written in k.instrument_names.items():
            usable = sorted((n for n in written if len(n) >= 3 and n not in k.not_in_titles), key=len, reverse=True)
            if usable:
                self._title_instrument_words[facility] = frozenset(_Text(n).tokens[0] for n in usable)
                self._title_instruments[facility] = re.compile(
                    r"(?<![\w\-.])(" + "|".join(map(re.escape, usable)) + r")(?![\w\-]|\.\d)")

        # Memos: token -> keys (text and folded),
        # subject -> names, (instrument, facility) -> hints, facility -> (key, probe).
        self._keys_text: dict[str, tuple[str, ...]] = {}
        self._keys_fold: dict[str, tuple[str, ...]] = {}
        self._subject_memo: dict[str, tuple[str, list[tuple[tuple[str, ...], str, int]] | tuple[()]]] = {}
        self._instrument_memo: dict[tuple[str, str | None], list[tuple[tuple[str, ...], str]]] = {}
        self._facility_memo: dict[str, tuple[str | None, str | None]] = {}

    def _probe_refinements(self, ontology: Ontology, probes: dict[str, str]
                           ) -> tuple[list[tuple[str, re.Pattern[str]]], dict[tuple[str, str], str]]:
        """The probes of _PROBE_WORDS as (IRI, pattern), and (generic IRI, probe IRI) ->
        the generic's one child named by the probe word and placed under the probe:
        "small angle scattering" + x-ray -> "small angle x-ray scattering". Read off
        PaNET, so another build brings its own classes."""
        children: dict[str, list[Technique]] = {}
        for t in ontology:
            for parent in t.parents:
                children.setdefault(parent, []).append(t)
        found: list[tuple[str, re.Pattern[str]]] = []
        refine: dict[tuple[str, str], str] = {}
        for word, pattern in _PROBE_WORDS.items():
            iris = self._iris([probes[word]]) if word in probes else ()
            if not iris:
                continue
            probe = iris[0]
            found.append((probe, pattern))
            for generic in ontology:
                if probe in self._ancestors[generic.iri]:
                    continue  # already the probe's ("neutron reflectometry")
                words = {*generic.label.split(), word}
                named = [c.iri for c in children.get(generic.iri, ())
                         if probe in self._ancestors[c.iri] and set(c.label.split()) == words]
                if len(named) == 1:
                    refine[(generic.iri, probe)] = named[0]
        return found, refine

    def _with_probe(self, hits: list[_Hit], facility_probe: str | None, texts: Iterable[str | None]) -> list[_Hit]:
        """Generic names read with the record's probe, when the record has exactly one:
        named in its text, implied by its other techniques or by its facility."""
        text = "\n".join(t for t in texts if t)
        seen: list[str] = []
        for probe, pattern in self._probes:
            if (facility_probe is not None and (facility_probe == probe or probe in self._ancestors[facility_probe])
                    or any(probe in self._ancestors[hit[3]] for hit in hits) or pattern.search(text)):
                seen.append(probe)
        if len(seen) != 1:
            return hits
        refine, ancestors = self._refine, self._ancestors
        named = {hit[3] for hit in hits if hit[0] < 3}
        guessed = {hit[3] for hit in hits if hit[0] >= 3}
        # A generic name that a more specific one of the record covers is left to
        # _resolve; so is one an instrument would narrow further than the reading
        # (TOMCAT on "tomography": x-ray microtomography, not x-ray tomography). A
        # guess the reading equals or covers does not stop it (ID22 on "powder
        # diffraction": x-ray powder diffraction either way).
        out = []
        for hit in hits:
            if hit[4] == "text" and (read := refine.get((hit[3], seen[0]))) is not None \
                    and not any(hit[3] in ancestors[other] for other in named) \
                    and not any(read in ancestors[other] for other in guessed):
                hit = (*hit[:3], read, *hit[4:])
            out.append(hit)
        return out

    def _in_mode(self, hits: list[_Hit], texts: Iterable[str | None]) -> list[_Hit]:
        """Names read with the mode their record speaks of (synonyms.toml [modes]):
        X-ray fluorescence in a record of elemental maps is scanning XRF."""
        modes = self._modes
        out = []
        for hit in hits:
            if hit[3] in modes and hit[4] in ("text", "subject"):
                mode, words = modes[hit[3]]
                if any(words.search(t) for t in texts if t):
                    hit = (*hit[:3], mode, *hit[4:])
            out.append(hit)
        return out

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
        for token in _Text(name).tokens:
            if token == _PUNCT:
                parts.append([(_BREAK,)])
            elif token == "&":
                parts.append([("and",)])
            elif _is_acronym(token):
                parts.append([(token,)])
            else:
                low = token.lower()
                options = [self.knowledge.spelling.get(low, (low,))]
                if low in self.knowledge.split:
                    options.append(self.knowledge.split[low])
                parts.append(options)
        return [tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*parts)]

    # -- reading text ------------------------------------------------------
    def _key(self, token: str, fold: bool) -> tuple[str, ...]:
        """The key(s) a text token stands for: case kept for acronyms unless ``fold``."""
        memo = self._keys_fold if fold else self._keys_text
        keys = memo.get(token)
        if keys is not None:
            return keys
        if token in _BREAKS:
            keys = (_BREAK,)
        elif token == "&":
            keys = ("and",)
        else:
            low = token.lower()
            if not fold and low != token and (
                    token in self._acro_vocab
                    # an all-capitals word ("X-RAY DIFFRACTION") reads as the word, but
                    # unknown acronyms and "SANS" ("sans" is no name word) stay as written
                    or (_is_acronym(token) and low not in self._word_vocab)):
                keys = (token,)
            else:
                keys = self.knowledge.spelling.get(low, (low,))
        if len(memo) >= _CACHE_LIMIT:
            memo.clear()
        memo[token] = keys
        return keys

    def _scan(self, doc: _Text, phrases: _Phrases, *, fold: bool = False, coordinate: bool = False,
              cues: bool = False) -> list[_Match]:
        # subjects are read case-insensitively (short, and remembered); text as written
        candidates = phrases.candidates(doc.lower if fold else doc.tokens)
        if not candidates:
            return []
        tokens, trie, key = doc.tokens, phrases.trie, self._key  # tokens: only now split
        memo = self._keys_fold if fold else self._keys_text
        fillers = self.knowledge.fillers
        n = len(tokens)
        matches: list[_Match] = []
        done = 0  # first token not yet inside a match
        for i in candidates:
            if i < done:
                continue
            # walk the trie token by token; remember the longest name (or stop phrase) passed
            node: dict[str, Any] | None = trie
            found: _Entry | None = None
            last = j = i
            while node is not None and j < n:
                parts = memo.get(tokens[j]) or key(tokens[j], fold)
                if parts[0] in fillers and node is not trie and parts[0] not in node:
                    j += 1  # "phase contrast synchrotron tomography"
                    continue
                for part in parts:
                    node = node.get(part)
                    if node is None:
                        break
                else:
                    entry = node.get(_END)
                    if entry is not None:
                        found, last = entry, j
                j += 1
            if found is not None:
                if found.iris:
                    matches.append((found.iris, i, last, 2 * i))
                done = last + 1
        if coordinate and matches and not _CONNECTORS_CASED.isdisjoint(doc.tokens):
            matches = self._coordinate(doc, phrases, matches, fold)
        if cues and matches and not self._cues.words.isdisjoint(doc.tokens):
            matches = self._cues.drop(doc.lower, matches)
        if cues and len(matches) > 1:
            matches = self._own_definitions(doc.lower, matches)
        return matches

    def _own_definitions(self, low: list[str], matches: list[_Match]) -> list[_Match]:
        """An acronym the record defines names what its definition names: after "surface
        X-ray diffraction (SXRD)", every SXRD of the record is surface X-ray diffraction,
        not PaNET's SXRD (single crystal X-ray diffraction). An acronym keeps its own
        class when it is a descendant of its definition's; and when it has letters the
        definition's words do not spell ("wide-angle scattering (WAXS)" left out the
        X-ray), the definition takes the acronym's class."""
        defined: dict[str, tuple[str, ...]] = {}  # acronym -> its definition's class
        vague: dict[int, tuple[str, ...]] = {}  # a definition's start -> its acronym's class
        for (iris, first, last, _), a in zip(matches, matches[1:]):  # matches come in text order
            if (a[1] != last + 2 or last == first or a[1] != a[2] or a[0] == iris or low[last + 1] != _PUNCT
                    or low[last + 3:last + 4] not in ([], [_PUNCT])):
                continue
            if not _spells(low[a[1]], low[first:last + 1]):
                if not any(own in self._ancestors[name] for name in iris for own in a[0]):
                    vague[first] = a[0]  # "wide-angle scattering (WAXS)": the WAXS it means
            elif not all(any(name in self._ancestors[own] for name in iris) for own in a[0]):
                defined[low[a[1]]] = iris
        if not defined and not vague:
            return matches
        return [(defined[low[m[1]]], *m[1:]) if m[1] == m[2] and low[m[1]] in defined
                else (vague[m[1]], *m[1:]) if m[1] in vague else m for m in matches]

    def _coordinate(self, doc: _Text, phrases: _Phrases, matches: list[_Match], fold: bool) -> list[_Match]:
        """Names that share words across "and", "or", "/": "small angle neutron and X-ray scattering".

        Left of the connector: a shared prefix P and the first conjunct A1; right
        of it: the second conjunct A2 and a shared head S. Both P+A1+S and P+A2+S
        must be names, and at least P or S must be non-empty (two whole names
        are found by the scan anyway). The reading sharing the most words wins.
        Scanned names lying inside the coordinated phrase were fragments of it.
        """
        low, tokens = doc.lower, doc.tokens
        connectors = _CONNECTORS.intersection(low)
        words = self._name_words
        covered = {j for _, first, last, _ in matches for j in range(first + 1, last + 1)}
        found: list[tuple[int, int, tuple[str, ...], tuple[str, ...]]] = []
        for k in sorted(i for c in connectors for i in _indices(low, c)):
            if (k == 0 or k + 1 >= len(low) or k in covered or low[k - 1] not in words
                    or low[k + 1] not in words or (found and k <= found[-1][1])):
                continue
            left_start = k
            while left_start > 0 and k - left_start < _COORD_WINDOW and low[left_start - 1] in words \
                    and low[left_start - 1] not in _CONNECTORS:
                left_start -= 1
            right_stop = k + 1
            while right_stop < len(low) and right_stop - k <= _COORD_WINDOW and low[right_stop] in words \
                    and low[right_stop] not in _CONNECTORS:
                right_stop += 1
            left = [self._key(t, fold) for t in tokens[left_start:k]]
            right = [self._key(t, fold) for t in tokens[k + 1:right_stop]]
            best: tuple[int, int, int, int, tuple[str, ...], tuple[str, ...]] | None = None
            for stop in range(len(right), 0, -1):
                for cut in range(1, stop + 1):
                    a2, head = right[:cut], right[cut:stop]
                    for begin in range(len(left)):
                        for mid in range(begin, len(left)):
                            prefix, a1 = left[begin:mid], left[mid:]
                            shared = len(prefix) + len(head)
                            if not shared or (best is not None and (shared, len(head)) <= best[:2]):
                                continue
                            one = phrases.names(tuple(itertools.chain(*prefix, *a1, *head)))
                            two = phrases.names(tuple(itertools.chain(*prefix, *a2, *head))) if one else ()
                            if one and two:
                                best = (shared, len(head), left_start + begin, k + stop, one, two)
            if best is not None:
                found.append((best[2], best[3], best[4], best[5]))
        if not found:
            return matches
        kept = [m for m in matches if not any(a <= m[1] and m[2] <= b for a, b, _, _ in found)]
        for a, b, one, two in found:
            kept.append((one, a, b, 2 * a))
            kept.append((two, a, b, 2 * a + 1))
        kept.sort(key=lambda m: m[3])
        return kept

    def _found(self, doc: _Text, matches: list[_Match]) -> list[tuple[tuple[str, ...], str, int]]:
        """(iris, matched text, order) of each match: the text as written."""
        return [(iris, doc.text[start:end], order) for iris, start, end, order in self._located(doc, matches)]

    def _located(self, doc: _Text, matches: list[_Match]) -> list[tuple[tuple[str, ...], int, int, int]]:
        """(iris, start, end, order) of each match: character offsets in the text, found
        by counting occurrences of the match's first and last tokens."""
        text, tokens = doc.text, doc.tokens
        out = []
        for iris, first, last, order in matches:
            head, tail = tokens[first], tokens[last]
            start = _token_at(text, head, tokens[:first].count(head), 0)
            end = _token_at(text, tail, tokens[first:last].count(tail), start) + len(tail)
            out.append((iris, start, end, order))
        return out

    def _find(self, phrases: _Phrases, text: str | _Text, *,
              context: bool = False) -> list[tuple[tuple[str, ...], str, int]] | tuple[()]:
        doc = text if isinstance(text, _Text) else _Text(text)
        if phrases.starts.isdisjoint(doc.tokens):  # most texts: one C-level test and done
            return ()
        matches = self._scan(doc, phrases, coordinate=context, cues=context)
        if not matches:
            return ()
        if context and (spans := self._cues.background_spans(doc)):
            return [(iris, doc.text[start:end], order) for iris, start, end, order in self._located(doc, matches)
                    if not any(a <= start < b for a, b in spans)]
        return self._found(doc, matches)

    def _subject_names(self, value: str) -> tuple[str, list[tuple[tuple[str, ...], str, int]] | tuple[()]]:
        """("iri", ...) when a subject or keyword is a PaNET IRI or id; ("subject", names)
        when it is technique names and nothing else ("SAXS", "SAXS and WAXS"); else
        ("text", names found in it as in free text)."""
        memo = self._subject_memo
        result = memo.get(value)
        if result is not None:
            return result
        if (iri := self._given(value)) is not None:
            result = ("iri", [((iri,), value, 0)])
            memo[value] = result
            return result
        doc = _Text(value)
        matches = self._scan(doc, self._subject, fold=True, coordinate=True)
        if matches and all(key == _PUNCT or key in _CONNECTORS or any(
                m[1] <= j <= m[2] for m in matches) for j, key in enumerate(doc.lower)):
            result = ("subject", self._found(doc, matches))
        else:
            result = ("text", self._found(doc, self._scan(doc, self._text, coordinate=True, cues=True)))
        if len(memo) >= _CACHE_LIMIT:
            memo.clear()
        memo[value] = result
        return result

    # -- tagging -----------------------------------------------------------
    def tag(self, *, title: str | None = None, summary: str | None = None, keywords: Sequence[str] = (),
            subjects: Sequence[Subject] = (), instruments: Sequence[str] = (),
            facility: str | None = None) -> list[TechniqueTag]:
        hits: list[_Hit] = []
        append = hits.append

        # 1. PaNET IRIs given in the record; 2. subjects and keywords that are technique
        # names; 3. names inside longer ones (keywords repeating a subject are skipped)
        if subjects or keywords:
            seen: set[str] = set()
            n = 0
            for order, field, values in ((0, "subjects", subjects), (1, "keywords", keywords)):
                for position, item in enumerate(values):
                    if order == 0:
                        uri, value = item.value_uri, item.value  # type: ignore[union-attr]
                        if uri and (given := self._given(uri)) is not None:
                            append((0, 0, position, given, "iri", field, uri))
                            continue
                    else:
                        value = item  # type: ignore[assignment]
                    if not value or value in seen:
                        continue
                    seen.add(value)
                    method, found = self._subject_memo.get(value) or self._subject_names(value)
                    strength = STRENGTH[method]
                    for iris, text, pos in found:
                        for iri in iris:
                            append((strength, order, position if method == "iri" else n * 10_000 + pos,
                                    iri, method, field, text))
                    n += 1

        # 3. names and acronyms in the title and the abstract, read in one pass
        title_tokens: list[str] = []
        if title or summary:
            if title and summary:
                if _FIELD_SEP in title or _FIELD_SEP in summary:
                    title, summary = title.replace(_FIELD_SEP, " "), summary.replace(_FIELD_SEP, " ")
                doc = _Text(f"{title}{_FIELD_SEP}{summary}")
                boundary = 2 * doc.tokens.index(_FIELD_SEP)
                title_tokens = doc.tokens[:boundary // 2]
            else:
                doc = _Text(title or summary)  # type: ignore[arg-type]
                boundary = 1 << 62 if title else 0
                title_tokens = doc.tokens if title else []
            for iris, text, pos in self._find(self._text, doc, context=True):
                order, field = (2, "title") if pos < boundary else (3, "summary")
                for iri in iris:
                    append((2, order, pos, iri, "text", field, text))

        # 4. instruments; 5. the facility's single probe, when nothing else was found
        facility_key, probe = (self._facility_memo.get(facility) or self._facility(facility)) if facility \
            else (None, None)
        for position, instrument in enumerate(instruments):
            if instrument:
                hints = self._instrument_memo.get((instrument, facility_key))
                if hints is None:
                    hints = self._instrument_hints(instrument, facility_key)
                for iris, text in hints:
                    for iri in iris:
                        append((3, 4, position, iri, "instrument", "instrument", text))
        if title_tokens and facility_key in self._title_instruments \
                and not self._title_instrument_words[facility_key].isdisjoint(title_tokens):
            for m in self._title_instruments[facility_key].finditer(title):  # type: ignore[arg-type]
                if iris := self._instrument_iris[facility_key].get(_instrument_key(m.group())):
                    for iri in iris:
                        append((3, 2, m.start(), iri, "instrument", "title", m.group()))
        if probe and not hits:
            append((4, 5, 0, probe, "facility", "facility", facility.strip()))  # type: ignore[union-attr]
        if not hits:
            return []
        refinable = self._refinable
        if any(hit[4] == "text" and hit[3] in refinable for hit in hits):
            hits = self._with_probe(hits, probe, (title, summary, *keywords, *instruments))
        modes = self._modes
        if any(hit[3] in modes for hit in hits):
            hits = self._in_mode(hits, (title, summary, *keywords))
        # A generic technique, or an acronym that means other things elsewhere, needs a
        # photon, neutron or muon context in the record: a known facility, an instrument,
        # a specific technique, or a probe or source named.
        if facility_key is None:
            generic, ambiguous = self._needs_context, self._ambiguous_acronyms
            for hit in hits:
                if (hit[3] not in generic and hit[6] not in ambiguous) or hit[4] == "iri" or hit[0] >= 3:
                    break  # most records: the first hit is specific
            else:
                if not any(_BEAM_CONTEXT.search(value) for value in (
                        title, summary, *keywords, *(s.value for s in subjects), *instruments) if value):
                    return []
        return self._resolve(hits)

    def _given(self, value: str) -> str | None:
        """The IRI when ``value`` is a PaNET technique IRI or id ("PaNET01188", a purl)."""
        if ("NET" in value or "net" in value) and (t := self.ontology.technique(value)):
            return t.iri
        return None

    def _facility(self, facility: str) -> tuple[str | None, str | None]:
        found = self._facility_memo.get(facility)
        if found is None:
            keys, probes = self.knowledge.facility_keys, self._facility_probe
            name = norm_name(facility)
            if name in keys or not _FACILITY_PARTS.search(facility):
                found = (keys.get(name), probes.get(name))
            else:
                # "DESY (PETRA III)", "PSI (SLS)", "ESRF; DESY": the first known part gives
                # the instrument table, and the probe is kept when every known part has it
                known = [n for part in _FACILITY_PARTS.split(facility) if (n := norm_name(part)) in keys]
                found = (keys[known[0]], probes.get(known[0])) if known else (None, None)
                if len({probes.get(n) for n in known}) > 1:
                    found = (found[0], None)
            if len(self._facility_memo) >= _CACHE_LIMIT:
                self._facility_memo.clear()
            self._facility_memo[facility] = found
        return found

    def _instrument_hints(self, instrument: str, facility_key: str | None) -> list[tuple[tuple[str, ...], str]]:
        memo_key = (instrument, facility_key)
        out = self._instrument_memo.get(memo_key)
        if out is not None:
            return out
        out = []
        head = re.split(r"\s+[-–:]\s+|\s*[(,;]", instrument.strip(), maxsplit=1)[0].strip()
        candidates = dict.fromkeys([instrument.strip(), head, *head.split()])
        tables = ([self._instrument_iris[facility_key]] if facility_key in self._instrument_iris
                  else list(self._instrument_iris.values()))
        for name in candidates:
            key = _instrument_key(name)
            found = {t[key] for t in tables if key in t}
            if len(found) == 1:  # unknown facility: only when every facility agrees
                out.append((found.pop(), name))
                break
        out.extend((iris, text) for iris, text, _ in self._find(self._instrument, instrument))
        if len(self._instrument_memo) >= _CACHE_LIMIT:
            self._instrument_memo.clear()
        self._instrument_memo[memo_key] = out
        return out

    def _resolve(self, hits: list[_Hit]) -> list[TechniqueTag]:
        """One tag per technique (strongest evidence), minus ancestors of equal or stronger tags."""
        hits.sort()
        best: dict[str, _Hit] = {}
        for hit in hits:
            best.setdefault(hit[3], hit)
        kept = list(best.values()) if len(hits) > 1 else hits
        if len(kept) > 1:
            ancestors = self._ancestors
            kept = [hit for hit in kept if hit[4] == "iri" or not any(
                hit[3] in ancestors[other[3]] for other in kept if other[0] <= hit[0] and other is not hit)]
            # Nor a weak guess more specific than a specific technique the record itself
            # names: a beamline known for USAXS on a record that says SAXS would override
            # it. An umbrella the record names ("neutron scattering data from IN20") is
            # refined by the instrument (a triple-axis spectrometer: INS).
            umbrellas = self._umbrellas
            kept = [hit for hit in kept if hit[0] < 3 or not any(
                other[0] < 3 and other[3] in ancestors[hit[3]] and other[3] not in umbrellas
                for other in kept)]
            if len(kept) > 1:  # what is left of names a longer one covers
                kept = _drop_back_references(kept)
            laboratory = self._laboratory
            if any(hit[3] in laboratory and hit[5] == "summary" for hit in kept) and any(
                    hit[0] <= 2 and hit[3] not in laboratory for hit in kept):
                kept = [hit for hit in kept if hit[3] not in laboratory or hit[5] != "summary"]
        fields = self._tag_fields
        return [_new_tag({"iri": iri, "id": fields[iri][0], "label": fields[iri][1], "method": method,
                          "field": field, "text": text, "weak": strength >= 3})
                for strength, _, _, iri, method, field, text in kept]

    def tag_document(self, doc: Document) -> Document:
        """A copy of ``doc`` with ``techniques`` and ``ontology_version`` set."""
        facility = doc.facility or next((i.facility for i in doc.instruments if i.facility), None) or doc.publisher
        tags = self.tag(title=doc.title, summary=doc.summary, keywords=doc.keywords, subjects=doc.subjects,
                        instruments=[i.name for i in doc.instruments], facility=facility)
        return _copy(doc, {"techniques": tags, "ontology_version": self.ontology.version})
