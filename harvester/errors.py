"""The one exception tree of pan-harvester.

    HarvesterError
    ├── ConfigError               bad settings or source entry (names file, source, key)
    ├── HTTPError                 a request that could not be completed
    │   ├── TransientHTTPError    retries exhausted (connection, timeout, 429, 5xx)
    │   └── FatalHTTPError        401/403/404 and friends: stop, do not retry
    ├── OAIError                  an OAI-PMH <error code="..."> (carries code, source, url);
    │   │                         a code outside the protocol (tooBusy...) keeps its own name
    │   ├── BadResumptionToken    expired/rejected token: restart the window, never "the end"
    │   ├── BadArgument, BadVerb, CannotDisseminateFormat, IdDoesNotExist,
    │   │   NoMetadataFormats, NoSetHierarchy
    │   (noRecordsMatch is not an error: it is an empty result)
    ├── PageError                 a page that would not parse even after repair (kept aside)
    ├── LoopError                 the server repeated a token or a page
    ├── RecordError               one record that cannot become a Document (kept aside)
    ├── OntologyError             PaNET could not be loaded
    ├── IndexError_               the search index refused or is unreachable
    ├── LockedError               another harvest of the same source holds the lock
    └── Interrupted               asked to stop: what was committed stays, the next run resumes
"""

from __future__ import annotations


class HarvesterError(Exception):
    """Root of every error pan-harvester raises on purpose."""


class ConfigError(HarvesterError):
    def __init__(self, message: str, *, file: str | None = None, source: str | None = None,
                 key: str | None = None) -> None:
        where = ", ".join(
            f"{label} {value!r}" for label, value in (("file", file), ("source", source), ("key", key))
            if value
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.source, self.key = file, source, key


class HTTPError(HarvesterError):
    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url, self.status = url, status


class TransientHTTPError(HTTPError):
    """The request kept failing in a way that may heal later; the checkpoint is kept."""


class FatalHTTPError(HTTPError):
    """The server refused in a way retrying will not change (401, 403, 404, 410...)."""


class OAIError(HarvesterError):
    code = "oaiError"

    def __init__(self, message: str = "", *, source: str | None = None, url: str | None = None,
                 code: str | None = None) -> None:
        if code is not None:
            self.code = code  # a code the protocol does not define: the server's word, kept
        super().__init__(f"{self.code}: {message}" if message else self.code)
        self.message, self.source, self.url = message, source, url


class BadArgument(OAIError):
    code = "badArgument"


class BadResumptionToken(OAIError):
    code = "badResumptionToken"


class BadVerb(OAIError):
    code = "badVerb"


class CannotDisseminateFormat(OAIError):
    code = "cannotDisseminateFormat"


class IdDoesNotExist(OAIError):
    code = "idDoesNotExist"


class NoMetadataFormats(OAIError):
    code = "noMetadataFormats"


class NoSetHierarchy(OAIError):
    code = "noSetHierarchy"


OAI_ERRORS: dict[str, type[OAIError]] = {
    cls.code: cls
    for cls in (BadArgument, BadResumptionToken, BadVerb, CannotDisseminateFormat,
                IdDoesNotExist, NoMetadataFormats, NoSetHierarchy)
}


class PageError(HarvesterError):
    def __init__(self, message: str, *, url: str | None = None, raw: bytes | None = None) -> None:
        super().__init__(message)
        self.url, self.raw = url, raw


class LoopError(HarvesterError):
    """The server sent a resumptionToken or a page it had sent before."""


class RecordError(HarvesterError):
    def __init__(self, message: str, *, identifier: str | None = None) -> None:
        super().__init__(message)
        self.identifier = identifier


class OntologyError(HarvesterError):
    pass


class IndexError_(HarvesterError):  # noqa: N801 - builtin IndexError is taken
    pass


class LockedError(HarvesterError):
    pass


class Interrupted(HarvesterError):
    """A stop was asked for (signal, daemon shutdown) while waiting or between pages."""
