"""Cues: the words around a technique's name that say the record did not use it.

"compared to SAXS", "unlike neutron scattering", "with potential for X-ray Raman
spectroscopy" (before the name), "X-ray imaging is not suitable" (after it), and
whole background sentences ("Conventionally, phonons are measured by INS"). The
phrases are data (`ontology/stoplist.toml`: not_used_after, not_used_before,
not_used_in_sentence); this module reads a tokenised text with them. Pure: the
Tagger hands over tokens and matches, and gets back what stays.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from harvester.phrases import _BREAKS, _CONNECTORS, _PUNCT, _cased, _indices, _Match, _Text

_SENTENCE_END = re.compile(r"[.;!?](?=\s|$)|\x00")

# a cue's words, its anchor (longest word: rare words make a cheap first test) and window
_Cue = tuple[tuple[str, ...], int, int]


def _by_anchor(phrases: Mapping[str, int]) -> dict[str, list[_Cue]]:
    """Cue phrases by their longest word ("in contrast to" -> "contrast")."""
    out: dict[str, list[_Cue]] = {}
    for phrase, window in phrases.items():
        cue = tuple(_Text(phrase).lower)
        if cue:
            anchor = max(range(len(cue)), key=lambda i: len(cue[i]))
            out.setdefault(cue[anchor], []).append((cue, anchor, window))
    return out


def _found_at(low: list[str], word: str, cues: Mapping[str, list[_Cue]]) -> Iterable[tuple[int, _Cue]]:
    """Where each cue anchored on `word` starts in `low`."""
    for at in _indices(low, word):
        for cue in cues[word]:
            i = at - cue[1]
            if i >= 0 and tuple(low[i:i + len(cue[0])]) == cue[0]:
                yield i, cue


class Cues:
    def __init__(self, before_name: Mapping[str, int], after_name: Mapping[str, int],
                 in_sentence: Iterable[str]) -> None:
        """`before_name`: cue -> words that may stand between it and the name
        (stoplist not_used_after); `after_name`: the same after the name
        (not_used_before); `in_sentence`: words that make their sentence background."""
        self._before = _by_anchor(before_name)
        self._after = _by_anchor(after_name)
        self._before_words = frozenset(self._before)
        self._after_words = frozenset(self._after)
        # every cue word as running text writes it: the Tagger's cheap first test
        self.words = _cased(self._before.keys() | self._after.keys())
        background = sorted(in_sentence, key=len, reverse=True)
        self._background_words = _cased(max(_Text(c).lower, key=len) for c in background if _Text(c).tokens)
        self._background = re.compile(
            r"(?<!\w)(?:" + "|".join(re.escape(c).replace(r"\ ", r"\s+") for c in background) + r")(?!\w)",
            re.IGNORECASE) if background else None

    def drop(self, low: list[str], matches: list[_Match]) -> list[_Match]:
        """The matches minus names that follow "compared to", "unlike", "instead of"...
        in the same clause, or come just before "is not suitable", "will be available"...

        "Unlike NMR or neutron scattering, muons ...": the record compares with
        neutron scattering, it did not use it. The name must start within the
        cue's window of words, with no punctuation in between; after a dropped
        name only "and"/"or"/"/" carries the scope on to the next name. A comma
        ends it ("Unlike SAXS, SANS sees hydrogen": SANS stays).
        """
        starts = {m[1]: m for m in matches}
        dropped: set[int] = set()
        for word in self._before_words.intersection(low):
            for i, (cue, _, window) in _found_at(low, word, self._before):
                j, limit = i + len(cue), i + len(cue) + window
                if j < len(low) and low[j][:1].isdigit():
                    continue  # a quantity, not a technique: "more than 20 SAXS frames"
                while j < len(low) and j <= limit and low[j] not in _BREAKS:
                    m = starts.get(j)
                    if m is not None:
                        dropped.add(j)
                        j = m[2]
                        # a list goes on ("unlike NMR or neutron scattering"), a clause does
                        # not ("instead of SAXS we used SANS")
                        limit = m[2] + 2 if low[j + 1:j + 2] and low[j + 1] in _CONNECTORS else m[2]
                    j += 1
        # Cues after the name: "X-ray imaging is not suitable because", "with neutron
        # scattering is extremely difficult". A list before it goes too.
        if not self._after_words.isdisjoint(low):
            ends = {m[2]: m for m in matches}
            for word in self._after_words.intersection(low):
                for i, (_, _, window) in _found_at(low, word, self._after):
                    j, lowest = i - 1, i - 1 - window
                    while j >= 0 and j >= lowest and low[j] not in _BREAKS:
                        m = ends.get(j)
                        if m is not None:
                            dropped.add(m[1])
                            j = m[1]
                            if j >= 2 and low[j - 1] in _CONNECTORS:
                                lowest = j - 2
                        j -= 1
        # The acronym a dropped name defines goes with it: "compared to small-angle X-ray
        # scattering (SAXS)" (a one-token name between two punctuation tokens).
        # Used again later ("... than inelastic neutron scattering (INS); ... resemble INS
        # data"), it still names the compared technique.
        acronyms: set[str] = set()
        for j in list(dropped):
            after = starts[j][2] + 2
            m = starts.get(after)
            if (m is not None and m[1] == m[2] and low[after - 1] == _PUNCT
                    and low[after + 1:after + 2] in ([], [_PUNCT])):
                dropped.add(after)
                acronyms.add(low[after])
        if acronyms:
            dropped.update(m[1] for m in matches if m[1] == m[2] and low[m[1]] in acronyms)
        return [m for m in matches if m[1] not in dropped] if dropped else matches

    def background_spans(self, doc: _Text) -> list[tuple[int, int]]:
        """Character spans of the sentences holding a background cue ("Conventionally,
        phonons are measured by INS or by IXS"): what they name is how others do it,
        not what this record did. A sentence ends at ". ", "; ", "? ", "! " or
        between title and abstract."""
        if self._background is None or self._background_words.isdisjoint(doc.tokens):
            return []
        text = doc.text
        spans = []
        for cue in self._background.finditer(text):
            start = 0
            for end in _SENTENCE_END.finditer(text, 0, cue.start()):
                start = end.end()
            stop = _SENTENCE_END.search(text, cue.end())
            spans.append((start, stop.start() if stop else len(text)))
        return spans
