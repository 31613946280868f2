"""OAI-PMH over our HTTP layer: sickle for the protocol, one safe parse per page.

sickle 0.7 knows the verbs, the paging by resumptionToken and the error codes;
it also calls `requests.get` per request, retries only on 503, crashes on a
date-form Retry-After and re-parses a page each time `.xml` is read, with
`recover=True` (which drops records silently). `OAIClient` keeps sickle's
protocol parts and replaces those: `Sickle.harvest` goes through `HTTPClient`,
and `Page.xml` is parsed once, strictly, by a parser that resolves no entities,
loads no DTD and touches no network. Characters illegal in XML 1.0 are
repaired and counted; a page that still does not parse raises `PageError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree
from sickle import Sickle, oaiexceptions
from sickle.iterator import OAIResponseIterator
from sickle.models import ResumptionToken

from harvester.errors import OAI_ERRORS, OAIError, PageError
from harvester.http import HTTPClient, Response
from harvester.safexml import parse_xml

OAI_NS = "{http://www.openarchives.org/OAI/2.0/}"


# Control characters XML 1.0 forbids (all but tab, LF, CR), raw or as character
# references, and the non-characters U+FFFE/U+FFFF (UTF-8 EF BF BE/BF).
_ILLEGAL_RAW = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|\xef\xbf[\xbe\xbf]")
_ILLEGAL_REF = re.compile(
    rb"&#(?:x0*(?:[0-8bcef]|1[0-9a-f]|fff[ef]|d[89a-f][0-9a-f]{2})|0*(?:[0-8]|1[1249]|2[0-9]|3[01]|6553[45]|5[5-7][0-9]{3}))\s*;",
    re.IGNORECASE)


def repair(content: bytes) -> tuple[bytes, int]:
    """Replace characters illegal in XML 1.0 (raw or as references) and bytes
    that are not UTF-8 by U+FFFD. Returns the repaired bytes and the count."""
    content, n_raw = _ILLEGAL_RAW.subn(b"\xef\xbf\xbd", content)
    content, n_ref = _ILLEGAL_REF.subn(b"&#xFFFD;", content)
    n_enc = 0
    head = content[:200].lower()
    declared = re.search(rb"encoding=[\"']([a-z0-9_.-]+)", head)
    if declared is None or declared.group(1) in (b"utf-8", b"utf8"):
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            text = content.decode("utf-8", errors="replace")
            n_enc = text.count("\ufffd") - content.count(b"\xef\xbf\xbd")
            content = text.encode("utf-8")
    return content, n_raw + n_ref + max(n_enc, 0)


def parse_page(content: bytes, url: str | None = None) -> tuple[etree._Element, int]:
    """Parse strictly; on failure repair once and parse again. Returns the root
    and the number of characters repaired. Raises PageError."""
    try:
        return parse_xml(content), 0
    except etree.XMLSyntaxError as first:
        repaired, count = repair(content)
        if count == 0:
            raise PageError(f"page does not parse: {first}", url=url) from None
        try:
            return parse_xml(repaired), count
        except etree.XMLSyntaxError as second:
            raise PageError(f"page does not parse even after repairing {count} characters: {second}",
                            url=url) from None


class Page:
    """One OAI-PMH response. Duck-types sickle's OAIResponse (`params`, `xml`)
    so sickle's iterators can drive it, but parses exactly once."""

    def __init__(self, response: Response, params: Mapping[str, str]) -> None:
        self.params = dict(params)
        self.url = response.url
        try:
            self.xml, self.repaired = parse_page(response.content, response.url)
        except PageError as exc:
            exc.raw = response.content  # kept aside by the harvest, with the URL and reason
            raise

    @property
    def response_date(self) -> str | None:
        el = self.xml.find(f"{OAI_NS}responseDate")
        return el.text.strip() if el is not None and el.text else None

    def records(self) -> Iterator[etree._Element]:
        return self.xml.iterfind(f".//{OAI_NS}record")

    def headers(self) -> Iterator[etree._Element]:
        return self.xml.iterfind(f".//{OAI_NS}header")

    def token(self) -> Token | None:
        el = self.xml.find(f".//{OAI_NS}resumptionToken")
        if el is None:
            return None
        return Token(
            value=(el.text or "").strip() or None,
            cursor=_int(el.get("cursor")),
            complete_list_size=_int(el.get("completeListSize")),
            expiration_date=el.get("expirationDate"),
        )


@dataclass(frozen=True)
class Token:
    value: str | None  # None: the empty final token that ends the list
    cursor: int | None
    complete_list_size: int | None
    expiration_date: str | None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


class _Sickle(Sickle):
    """sickle with our transport: every request goes through HTTPClient."""

    def __init__(self, endpoint: str, http: HTTPClient) -> None:
        super().__init__(endpoint, iterator=OAIResponseIterator)
        self.http = http

    def harvest(self, **kwargs: Any) -> Page:  # type: ignore[override]
        return Page(self.http.get(self.endpoint, params=kwargs), kwargs)


@dataclass(frozen=True)
class Identify:
    repository_name: str | None
    base_url: str | None
    protocol_version: str | None
    granularity: str  # "YYYY-MM-DD" or "YYYY-MM-DDThh:mm:ssZ"
    deleted_record: str  # no, transient, persistent
    earliest_datestamp: str | None
    compression: tuple[str, ...]
    response_date: str | None

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


class OAIClient:
    """The OAI-PMH verbs the harvester needs, for one endpoint."""

    def __init__(self, base_url: str, http: HTTPClient, *, source: str | None = None) -> None:
        self.base_url = base_url
        self.source = source
        self._sickle = _Sickle(base_url, http)

    def identify(self) -> Identify:
        page = self._sickle.harvest(verb="Identify")
        self._raise_error(page)
        node = page.xml.find(f"{OAI_NS}Identify")
        if node is None:
            raise PageError("Identify response without an <Identify> element", url=page.url)

        def text(name: str) -> str | None:
            el = node.find(f"{OAI_NS}{name}")
            return el.text.strip() if el is not None and el.text else None

        return Identify(
            repository_name=text("repositoryName"),
            base_url=text("baseURL"),
            protocol_version=text("protocolVersion"),
            granularity=text("granularity") or "YYYY-MM-DD",
            deleted_record=text("deletedRecord") or "no",
            earliest_datestamp=text("earliestDatestamp"),
            compression=tuple(el.text.strip() for el in node.iterfind(f"{OAI_NS}compression") if el.text),
            response_date=page.response_date,
        )

    def _raise_error(self, page: Page) -> None:
        """Raise the page's OAI error, under the server's own code; an empty
        result (noRecordsMatch) is not an error."""
        for el in page.xml.iterfind(f"{OAI_NS}error"):
            code = el.get("code", "")
            if code == "noRecordsMatch":
                continue
            cls = OAI_ERRORS.get(code, OAIError)
            raise cls((el.text or "").strip(), source=self.source, url=page.url,
                      code=None if cls is not OAIError else code or "unknown")

    def pages(self, verb: str, *, token: str | None = None, **params: str) -> Iterator[Page]:
        """Yield the pages of a list request, following tokens. Starts from
        `token` when given (a resumed harvest). An empty result
        (noRecordsMatch) yields one page with no records and no token."""
        request = {"verb": verb, "resumptionToken": token} if token else {"verb": verb, **params}
        yield from _PageIterator(self, request)


class _PageIterator(OAIResponseIterator):
    """sickle's page iterator, reading each response our way: sickle raises
    only the first <error> and turns a code it does not know (tooBusy...)
    into a nameless OAIError; and it sends a token's text as is, so a
    whitespace-only final token costs a request and a padded one is refused."""

    def __init__(self, client: OAIClient, request: dict[str, str]) -> None:
        self.client = client
        super().__init__(client._sickle, request)

    def _next_response(self) -> None:
        try:
            super()._next_response()
        except Exception as exc:  # sickle raises one class per code, with no common base
            if type(exc).__module__ != oaiexceptions.__name__:
                raise
            self.client._raise_error(self.oai_response)
            if not isinstance(exc, oaiexceptions.NoRecordsMatch):  # an <error> off the top level
                raise OAIError(str(exc), source=self.client.source, url=self.oai_response.url,
                               code="unknown") from None
            self.resumption_token = None  # noRecordsMatch: one empty page ends the list

    def _get_resumption_token(self) -> ResumptionToken | None:
        token = super()._get_resumption_token()
        if token is not None and token.token is not None:
            token.token = token.token.strip() or None
        return token
