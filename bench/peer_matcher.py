"""The peer the tagger is measured against: a plain keyword matcher.

What a harvester without a tagger of its own does (B2FIND maps keywords by
lists, portals grep labels): every PaNET label and alternative label, matched
case-insensitively on word boundaries in the title, abstract, keywords and
subjects, longest name first. No synonyms beyond PaNET's, no acronym case, no
cues, no instrument or facility knowledge. `tag` takes the same arguments as
`Tagger.tag` and returns objects with the attributes the benchmarks read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harvester.ontology import Ontology


@dataclass(frozen=True)
class PeerTag:
    iri: str
    label: str
    field: str
    text: str
    method: str = "keyword"
    weak: bool = False


class LabelMatcher:
    def __init__(self, ontology: Ontology) -> None:
        self.ontology = ontology
        self._by_name: dict[str, Any] = {}
        for name, technique, _ in ontology.names():
            self._by_name.setdefault(name.lower(), technique)
        names = sorted(self._by_name, key=len, reverse=True)
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)", re.IGNORECASE)

    def tag(self, *, title: str | None = None, summary: str | None = None, keywords: Iterable[str] = (),
            subjects: Sequence[Any] = (), **_ignored: Any) -> list[PeerTag]:
        fields = [("title", title or ""), ("summary", summary or "")]
        fields += [("keywords", k) for k in keywords]
        fields += [("subjects", getattr(s, "value", s) or "") for s in subjects]
        out: dict[str, PeerTag] = {}
        for field, text in fields:
            for m in self._pattern.finditer(text):
                technique = self._by_name[m.group().lower()]
                out.setdefault(technique.iri, PeerTag(technique.iri, technique.label, field, m.group()))
        return list(out.values())
