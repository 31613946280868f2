"""Pure normalisation of the values records carry: DOIs, ORCIDs, ROR ids, names,
licences, access rights and dates. Strings in, strings (or None) out; no XML here.

Every function accepts the messy forms seen in real records (resolver prefixes,
stray whitespace, mixed case) and returns None rather than guessing when the
value is not what it claims to be. The costlier ones are memoised: the same
licences, dates, instrument DOIs and people come back record after record.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Literal
from urllib.parse import unquote

AccessRight = Literal["open", "embargoed", "restricted", "closed"]


def collapse(value: str | None) -> str:
    """Trim and collapse every run of whitespace (newlines included) to one space.
    xmltext._text inlines this for element text: a change here goes there too."""
    if not value:
        return ""
    value = value.strip()
    # Most values are clean already: four C-speed scans beat a split/join of a long abstract.
    if "  " in value or "\n" in value or "\t" in value or "\r" in value:
        return " ".join(value.split())
    return value


# --- DOI -------------------------------------------------------------------------

# Resolver and scheme prefixes seen in the wild, longest first so "https://dx.doi.org/"
# wins over "doi.org/". Matched case-insensitively on the start of the value.
_DOI_PREFIX = re.compile(
    r"^(?:https?://(?:dx\.|www\.)?doi\.org/|(?:dx\.)?doi\.org/|info:doi/|urn:doi:|doi:\s*)",
    re.IGNORECASE,
)
# Directory indicator "10." then a registrant code (may have sub-divisions: 10.1000.10),
# then any suffix without whitespace.
_DOI = re.compile(r"^10\.\d{4,9}(?:\.\d+)*/\S+$")


@lru_cache(maxsize=4096)
def normalize_doi(value: str | None) -> str | None:
    """Bare lower-case DOI ("10.5442/ni000001") or None when `value` is not a DOI.

    DOIs are case-insensitive by definition, so lower case gives one key per DOI.
    A trailing "/" (seen in DataCite's own kernel-4.7 example) is junk and dropped.
    """
    if not value:
        return None
    doi = value.strip()
    match = _DOI_PREFIX.match(doi)
    if match:
        doi = doi[match.end():]
        if "%" in doi:  # doi.org URLs may percent-encode the suffix
            doi = unquote(doi)
    doi = doi.strip().rstrip("/")
    return doi.lower() if _DOI.match(doi) else None


def find_doi(values: list[str]) -> str | None:
    """The first value that is a DOI in any of its spellings."""
    for value in values:
        doi = normalize_doi(value)
        if doi:
            return doi
    return None


# --- ORCID -----------------------------------------------------------------------

_ORCID = re.compile(r"(\d{4})-?(\d{4})-?(\d{4})-?(\d{3}[\dX])", re.IGNORECASE)
# How nearly every ORCID in a record is written: the bare id or its orcid.org URL.
_ORCID_PLAIN = re.compile(
    r"(?:https?://orcid\.org/)?([0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9Xx])")
_ORCID_CHECK_CHARS = "0123456789X"  # the check character for each remainder 0..10


def _orcid_checksum_ok(digits: str) -> bool:
    # ISO 7064 MOD 11-2, as specified by ORCID: total = sum(d_i * 2**(15-i)) over the
    # 15 body digits. 13 = 2 (mod 11), so that sum is 2 * int(body, base 13) modulo 11,
    # computed in C rather than in a 15-step Python loop (every ORCID is a cache miss).
    return digits[15] == _ORCID_CHECK_CHARS[(12 - 2 * int(digits[:15], 13) % 11) % 11]


@lru_cache(maxsize=4096)
def normalize_orcid(value: str | None) -> str | None:
    """Bare "0000-0002-1825-0097" from a bare id or any orcid.org URL; None if invalid."""
    if not value:
        return None
    # The usual spellings skip the search below (which would find the same).
    match = _ORCID_PLAIN.fullmatch(value)
    if match:
        orcid = match.group(1).upper()
        return orcid if _orcid_checksum_ok(orcid.replace("-", "")) else None
    match = _ORCID.search(value)
    if not match:
        return None
    digits = "".join(match.groups()).upper()
    if not _orcid_checksum_ok(digits):
        return None
    return f"{digits[0:4]}-{digits[4:8]}-{digits[8:12]}-{digits[12:16]}"


# --- ROR -------------------------------------------------------------------------

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_ROR = re.compile(r"(?:^|ror\.org/|^ror:)(0[0-9a-hjkmnp-tv-z]{6}\d{2})\s*/?$", re.IGNORECASE)


@lru_cache(maxsize=4096)
def normalize_ror(value: str | None) -> str | None:
    """"https://ror.org/02aj13c28" from a bare id, "ror:..." or a ror.org URL; None if invalid.

    A ROR id is "0", six Crockford base-32 characters and a two-digit ISO 7064
    MOD 97-10 checksum; checking it keeps arbitrary 9-character strings out.
    """
    if not value:
        return None
    match = _ROR.search(value.strip())
    if not match:
        return None
    ror = match.group(1).lower()
    number = 0
    for ch in ror[:7]:
        number = number * 32 + _CROCKFORD.index(ch)
    if f"{98 - (number * 100) % 97:02d}" != ror[7:]:
        return None
    return f"https://ror.org/{ror}"


# --- Names -----------------------------------------------------------------------

# DataCite's standard values for unknown information (ISIS writes ":null", HZB ":unav").
_PLACEHOLDERS = frozenset(
    {"", ":unac", ":unal", ":unap", ":unas", ":unav", ":unkn", ":none", ":null", ":tba",
     ":etal", "null", "none", "n/a", "unknown"}
)


def is_placeholder(value: str) -> bool:
    return value.strip().lower() in _PLACEHOLDERS


@lru_cache(maxsize=4096)
def split_name(full_name: str) -> tuple[str | None, str | None]:
    """(given, family) from "Family, Given"; (None, None) when the form is not that one."""
    family, sep, given = full_name.partition(",")
    if not sep or "," in given:
        return None, None
    family, given = family.strip(), given.strip()
    if not family or not given:
        return None, None
    return given, family


# --- Dates -----------------------------------------------------------------------

_ISO = re.compile(
    r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
    r"(Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)


# The forms iso_date returns unchanged: most dates in records are already written so.
_CANONICAL_ISO = re.compile(
    r"\d{4}(?:-(?:0[1-9]|1[0-2])(?:-(?:0[1-9]|[12]\d|3[01])(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?)?)?)?"
)


def iso_date(value: str | None) -> str | None:
    """ISO 8601 date or date-time, partial dates kept partial ("2021", "2021-05"); None
    when the value is not a date. Single-digit months and days are zero-padded."""
    if not value:
        return None
    value = value.strip()
    if _CANONICAL_ISO.fullmatch(value):
        return value
    match = _ISO.match(value)
    if not match and "/" in value:  # "2020/01/31": slashes as separators, not a range
        match = _ISO.match(value.replace("/", "-"))
    if not match:
        return None
    year, month, day, time, zone = match.groups()
    if month is None:
        return year
    if not 1 <= int(month) <= 12:
        return None
    if day is None:
        return f"{year}-{int(month):02d}"
    if not 1 <= int(day) <= 31:
        return None
    date = f"{year}-{int(month):02d}-{int(day):02d}"
    if time is None:
        return date
    return f"{date}T{time}{zone or ''}"


@lru_cache(maxsize=4096)
def date_range(value: str | None) -> tuple[str | None, str | None]:
    """(start, end) of a DataCite date: "a/b" is a range (either side may be open), a
    single date is both start and end. Unparseable sides are None."""
    if not value:
        return None, None
    value = value.strip()
    if value.count("/") == 1:
        start, end = value.split("/")
        return iso_date(start), iso_date(end)
    single = iso_date(value)
    return single, single


@lru_cache(maxsize=4096)
def year_of(value: str | None) -> int | None:
    """The year of a date or a "publicationYear" value; None if there is none."""
    if not value:
        return None
    value = value.strip()
    if len(value) >= 4 and value[:4].isdigit() and (len(value) == 4 or not value[4].isdigit()):
        year = int(value[:4])
        return year if 1000 <= year <= 2999 else None
    return None


# --- Licences and access rights ----------------------------------------------------


def _url_key(url: str) -> str:
    """A URL reduced to what identifies a licence: no scheme, no www, no trailing
    legalcode/deed page, no trailing slash, lower case."""
    key = url.strip().lower()
    key = re.sub(r"^https?://", "", key)
    key = key.removeprefix("www.")
    key = re.sub(r"/(?:legalcode|deed)(?:\.[a-z-]+)?$", "", key)
    key = re.sub(r"\.(?:html?|php|txt)$", "", key)
    return key.rstrip("/")


def _name_key(text: str) -> str:
    """Licence names compared without case and punctuation: "CC-BY-4.0", "CC BY 4.0"
    and "cc_by 4.0" are one key."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


class _LicenseTable:
    def __init__(self, data: dict) -> None:
        self.canonical_uri: dict[str, str] = {}
        self.by_url: dict[str, str] = {}
        self.by_name: dict[str, str] = {}
        for entry in data["licenses"]:
            spdx = entry["id"]
            self.canonical_uri[spdx] = entry["uri"]
            self.by_name[_name_key(spdx)] = spdx
            for name in entry.get("names", []):
                self.by_name[_name_key(name)] = spdx
            for url in [entry["uri"], *entry.get("urls", [])]:
                self.by_url[_url_key(url)] = spdx
        self.access: dict[str, AccessRight] = {
            key.lower(): value for key, value in data["access_rights"].items()
        }


@lru_cache(maxsize=1)
def _licenses() -> _LicenseTable:
    text = resources.files("harvester").joinpath("data/licenses.json").read_text("utf-8")
    return _LicenseTable(json.loads(text))


_URL_IN_TEXT = re.compile(r"https?://\S+")


@lru_cache(maxsize=4096)
def license_id(value: str | None) -> str | None:
    """SPDX id for a licence given as an SPDX id, a URL, a name, or a text containing a
    licence URL; None when it is not a licence we know (an access right is not one)."""
    if not value:
        return None
    table = _licenses()
    value = value.strip()
    spdx = table.by_name.get(_name_key(value))
    if spdx:
        return spdx
    spdx = table.by_url.get(_url_key(value))
    if spdx:
        return spdx
    for url in _URL_IN_TEXT.findall(value):
        spdx = table.by_url.get(_url_key(url.rstrip(".,;)")))
        if spdx:
            return spdx
    return None


def license_uri(spdx: str) -> str | None:
    """The canonical URL of a licence known by SPDX id."""
    return _licenses().canonical_uri.get(spdx)


@lru_cache(maxsize=4096)
def access_right(value: str | None) -> AccessRight | None:
    """"open", "embargoed", "restricted" or "closed" from an info:eu-repo/semantics or
    COAR access-right URI (or its bare label, e.g. "OpenAccess"); None otherwise."""
    if not value:
        return None
    key = value.strip().lower()
    access = _licenses().access
    if key in access:
        return access[key]
    return access.get(key.rsplit("/", 1)[-1].replace(" ", ""))


def is_bare_url(value: str) -> bool:
    """True when a text is nothing but one URL (ESS puts such a link where the abstract goes)."""
    value = value.strip()
    return bool(value) and " " not in value and value.lower().startswith(("http://", "https://"))
