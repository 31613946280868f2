"""The one XML parser configuration for everything that comes from outside."""

from __future__ import annotations

import threading

from lxml import etree

# lxml parsers keep per-parse state and must not be shared between threads; one per
# thread, built on first use. (Measured: building one costs ~1 us against ~20 us to
# parse an HZB record, so this is about safety more than speed.)
_local = threading.local()

# libxml2 refuses a text node over 10 MB unless told XML_PARSE_HUGE: a record with
# a data table or an image pasted into its abstract. Such a page is real and must
# not stop its source forever, so it is parsed again with that limit lifted, when
# the document is no larger than this (its tree then stays within a few times it).
HUGE_DOCUMENT_LIMIT = 256 * 1024 * 1024


def safe_parser(*, huge: bool = False) -> etree.XMLParser:
    """This thread's XML parser: strict (no `recover`, which drops records
    silently), no entity expansion (XXE), no DTD, no network, and no huge
    text nodes unless `huge`. Use it for every page or record parsed from the
    outside."""
    name = "huge_parser" if huge else "parser"
    parser = getattr(_local, name, None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 dtd_validation=False, huge_tree=huge, recover=False)
        setattr(_local, name, parser)
    return parser


def parse_xml(content: bytes) -> etree._Element:
    """Parse strictly; a document refused only for a huge text node is parsed
    again with that limit lifted (see HUGE_DOCUMENT_LIMIT). Raises
    etree.XMLSyntaxError."""
    try:
        return etree.fromstring(content, safe_parser())
    except etree.XMLSyntaxError as exc:
        if "XML_PARSE_HUGE" not in str(exc) or len(content) > HUGE_DOCUMENT_LIMIT:
            raise
    return etree.fromstring(content, safe_parser(huge=True))
