"""XML text: the small helpers every metadata mapping walks a record with.

Local names whatever the namespace (`_LOCAL`), element children without comments,
processing instructions or entity references (`_elements`, `_first_child`), and
trimmed, whitespace-collapsed text (`_text`). They run for nearly every element of
every record, hence the care. A module of their own so that records.py (the entry
point) and the mappings it dispatches to (datacite.py, dublincore.py) share them
without importing each other.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from harvester.normalize import collapse


class _LocalNames(dict[Any, str]):
    """Clark tag ("{ns}title") -> local name ("title"), memoised: one C-level dict
    lookup per element. Comments, processing instructions and (unexpanded) entity
    references have a function as their tag: they map to "", which names nothing.
    Bounded: a hostile page could invent endless tags."""

    def __missing__(self, tag: str) -> str:
        name = tag[tag.rfind("}") + 1:]
        if len(self) < 4096:
            self[tag] = name
        return name


_LOCAL = _LocalNames({etree.Comment: "", etree.PI: "", etree.Entity: ""})


_ELEMENT = etree._Element
_NOT_ELEMENTS = (etree._Comment, etree._ProcessingInstruction, etree._Entity)


def _elements(el: etree._Element) -> list[etree._Element]:
    """Element children only: no comments, processing instructions or (unexpanded)
    entity references. Told apart by class, not by tag: the first `.tag` of a fresh
    proxy formats a new "{namespace}name" string, the costliest lxml call here."""
    children = el[:]  # one C call; iterating `el` costs more per child
    for child in children:
        if child.__class__ is not _ELEMENT and isinstance(child, _NOT_ELEMENTS):
            return [c for c in children if not isinstance(c, _NOT_ELEMENTS)]
    return children


def _first_child(el: etree._Element) -> etree._Element | None:
    children = _elements(el)
    return children[0] if children else None


def _deep_text(el: etree._Element) -> str:
    parts = [el.text or ""]
    for child in el[:]:
        if not isinstance(child, _NOT_ELEMENTS):  # <br/> in descriptions; an entity ref is skipped, its tail kept
            parts.append(_deep_text(child))
        parts.append(child.tail or "")
    return " ".join(parts)


def _text(el: etree._Element) -> str:
    """Element text, trimmed and whitespace-collapsed (normalize.collapse, inlined: this
    runs for nearly every element of every record)."""
    if len(el):
        return collapse(_deep_text(el))
    text = el.text
    if not text:
        return ""
    text = text.strip()
    if "  " in text or "\n" in text or "\t" in text or "\r" in text:
        return " ".join(text.split())
    return text
