"""Text as tokens, and technique names as token keys in a trie.

The machinery the Tagger (``harvester.techniques``) reads text with: ``_Text``
cuts a text into tokens (one bytes.translate and one split for ASCII text, a
regex otherwise), ``_Phrases`` holds names as token-tuple keys with the cheap
set tests that find where a name may begin, and ``_token_at`` turns a match
back into character offsets for the evidence text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

# Tokens: runs of letters and digits; "." for any punctuation a technique name
# never spans (a phrase must not run across "x-ray. Scattering" or "(SAXS)");
# "/" and "&", which join names ("SAXS/WAXS"). ASCII text (most records) is cut
# by one bytes.translate and a split, several times faster than a regex.
# "\x00" separates the title from the abstract when both are read in one pass.
_STOP_CHARS = ".,;:!?()[]{}"
_FIELD_SEP = "\x00"
_ASCII = bytes(c if chr(c).isalnum() or chr(c) in "/&\x00" else ord(".") if chr(c) in _STOP_CHARS else ord(" ")
               for c in range(128)) + bytes(128)
_STOPS = re.compile(f"[{re.escape(_STOP_CHARS)}]")
_TOKEN = re.compile(r"[^\W_]+|[./&\x00]")  # after _STOPS has turned stop characters into "."
_PUNCT = "."
_BREAKS = frozenset((_PUNCT, _FIELD_SEP))
_BREAK = "\x00"
_CONNECTORS = frozenset({"and", "or", "/", "&"})  # join names: "neutron and X-ray diffraction"
_SEP = "\x01"  # joins tokens for one lower() call; no token holds it
_END = ""  # trie slot of a name's entry; no key is empty


def _cased(words: Iterable[str]) -> frozenset[str]:
    """Words as running text writes them: lower case, Capitalized, UPPER CASE.

    The first tests on a text compare its tokens as written against these, which
    saves lower-casing every token of every text ("sMALL" is not looked at)."""
    return frozenset(v for w in words for v in (w, w.upper(), w[:1].upper() + w[1:]))


def _is_acronym(token: str) -> bool:
    """Acronym-like tokens ("SAXS", "MuSR", "3D", "ID02") keep their case when matched."""
    return len(token) >= 2 and (token.isupper() or sum(c.isupper() for c in token) >= 2)


def _nfkc(text: str) -> str:
    # NFKC folds the micro sign into Greek mu ("µCT" = "μCT") and full-width forms.
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


def _indices(seq: list[str], item: str) -> Iterator[int]:
    """Every position of ``item`` in ``seq`` (list.index: a C-level search each)."""
    i = -1
    try:
        while True:
            i = seq.index(item, i + 1)
            yield i
    except ValueError:
        return


def _token_at(text: str, token: str, nth: int, pos: int) -> int:
    """Offset of the nth (from 0) whole-token occurrence of ``token`` at or after ``pos``
    (whole: no letter or digit right before or after, so "ray" is not in "xray")."""
    size, stop = len(token), len(text)
    pos -= 1
    while True:
        pos = text.find(token, pos + 1)
        assert pos >= 0  # the tokens came from this text
        after = pos + size
        if (pos == 0 or not text[pos - 1].isalnum()) and (after == stop or not text[after].isalnum()):
            if not nth:
                return pos
            nth -= 1


class _Text:
    """One text cut into tokens (each a substring of ``text``); lower-case forms on demand."""

    __slots__ = ("text", "tokens", "_lower")

    def __init__(self, text: str) -> None:
        if text.isascii():
            spaced = text.encode().translate(_ASCII).decode()
            if "." in spaced:
                spaced = spaced.replace(".", " . ")
            if "/" in spaced or "&" in spaced or _FIELD_SEP in spaced:
                for char in "/&\x00":
                    spaced = spaced.replace(char, f" {char} ")
            self.tokens: list[str] = spaced.split()
        else:
            text = _nfkc(text)
            self.tokens = _TOKEN.findall(_STOPS.sub(".", text))
        self.text = text
        self._lower: list[str] | None = None

    @property
    def lower(self) -> list[str]:
        """Lower-case tokens (only texts that may hold a name need them)."""
        if self._lower is None:
            self._lower = _SEP.join(self.tokens).lower().split(_SEP) if self.tokens else []
        return self._lower


class _Entry(NamedTuple):
    iris: tuple[str, ...]  # empty for a stop phrase
    priority: int  # lower wins when two names give the same key


# A name found in a text: (iris, first token, last token (inclusive), order). The
# order sorts the tags of one field: token position, coordinated names side by
# side. A plain tuple: a NamedTuple costs a Python-level call per match.
_Match = tuple[tuple[str, ...], int, int, int]


class _Phrases:
    """Names as token-tuple keys, for longest-match lookup."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, ...], _Entry] = {}
        self.follow: dict[str, frozenset[str] | None] = {}  # see finish()
        self.starts: frozenset[str] = frozenset()
        self.singles: frozenset[str] = frozenset()  # tokens that may be a name alone ("SAXS", "Xray")
        self.pairs: frozenset[tuple[str, str]] = frozenset()  # token pairs that may begin a longer name
        self.trie: dict[str, Any] = {}  # key -> child node; _END -> the _Entry of the name ending here

    def add(self, key: tuple[str, ...], iris: tuple[str, ...], priority: int) -> None:
        if not key or _BREAK in key:  # a name never spans punctuation in text either
            return
        old = self.table.get(key)
        if old is None or priority < old.priority:
            self.table[key] = _Entry(iris, priority)
        elif priority == old.priority and iris and old.iris:
            self.table[key] = _Entry(tuple(dict.fromkeys(old.iris + iris)), priority)

    def finish(self, spelling: dict[str, tuple[str, ...]], fillers: frozenset[str]) -> None:
        """Build the cheap first test: which lower-case words can begin a name here,
        and which words may follow them (None: the word alone may be a name)."""
        keys = {tuple(k.lower() for k in key) for key in self.table}
        singles = {key[0] for key in keys if len(key) == 1}
        seconds: dict[str, set[str]] = {}
        for key in keys:
            if len(key) > 1:
                seconds.setdefault(key[0], set()).add(key[1])
        written: dict[str, set[str]] = {}  # key -> the words that spell it first ("xray" -> "x")
        for word in {key[0] for key in keys} | {key[1] for key in keys if len(key) > 1}:
            written.setdefault(word, set()).add(word)
        for word, spelled in spelling.items():
            written.setdefault(spelled[0], set()).add(word)
        self.follow = {}
        for first in singles | set(seconds):
            for word in written.get(first, ()):
                spelled = spelling.get(word, (word,))
                if len(spelled) > 1 or spelled[0] in singles:
                    self.follow[word] = None
                elif self.follow.get(word, ()) is not None:
                    after = {w for second in seconds.get(spelled[0], ()) for w in written.get(second, ())}
                    self.follow[word] = frozenset(after | fillers | set(self.follow.get(word) or ()))
        # the same sets in the case forms of running text, plus names as written ("μSR")
        written_firsts = {key[0] for key in self.table}
        self.starts = _cased(self.follow) | written_firsts
        self.singles = _cased(w for w, after in self.follow.items() if after is None) | {
            key[0] for key in self.table if len(key) == 1}
        self.pairs = frozenset((v, b) for w, after in self.follow.items() if after is not None
                               for v in _cased([w]) for b in _cased(after)) | {
            key[:2] for key in self.table if len(key) > 1}  # type: ignore[misc]
        self.trie = {}
        for key, entry in self.table.items():
            node = self.trie
            for part in key:
                node = node.setdefault(part, {})
            node[_END] = entry

    def candidates(self, tokens: list[str]) -> list[int]:
        """Positions where a name may begin, in order: a token that may be a name alone,
        or a pair of tokens that may begin a longer one (set lookups, no trie walk).
        Most tokens begin nothing: one C-level intersection finds the few that may."""
        present = self.starts.intersection(tokens)
        if not present:
            return []
        singles, pairs = self.singles, self.pairs
        last = len(tokens) - 1
        return [i for i, word in enumerate(tokens) if word in present and (
            word in singles or (i < last and (word, tokens[i + 1]) in pairs))]

    def names(self, key: tuple[str, ...]) -> tuple[str, ...]:
        """The techniques ``key`` names (empty for stop phrases and non-names)."""
        entry = self.table.get(key)
        return entry.iris if entry is not None else ()
