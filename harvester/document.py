"""The document model: one clean dataset description, whatever the record format.

Field names follow the PaNOSC data model where it has one (pid, title, summary,
keywords, license, releaseDate -> release_date, instruments, techniques...), so
consumers of the PaNOSC search API recognise them. Every model is a plain
pydantic object: no I/O, `model_dump(mode="json")` for output.

Two ways in: `Model.model_validate(data)` (or the constructor) for anything from
outside, and `Model.trusted(values)` for the record mapper, which builds thousands
of documents per second from values it has just typed itself.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

_new = object.__new__
# BaseModel's own slots (__dict__ included), set through their descriptors as pydantic's
# model_construct does, minus the attribute lookups (this runs ~10 times per mapped record).
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> Self:
        """An instance holding `values` as they are, without validation.

        `values` must give EVERY field of the model (defaults included), each already
        of its declared type, nested models as model instances; the dict becomes the
        instance's own. This is what pydantic's `model_construct` does, minus its
        per-field default and alias handling: ~0.6 us per instance against ~2 us
        (model_construct) or ~1 us (validation) for a small model, and ~8 us less than
        validating a whole Document. The record mapper builds its output this way,
        and tests/test_document_build.py checks that output against model_validate.
        """
        model = _new(cls)
        _set_dict(model, values)
        _set_fields_set(model, set(values))
        _set_extra(model, None)
        _set_private(model, None)
        return model


class Affiliation(_Model):
    name: str
    ror: str | None = None  # bare ROR id URL, e.g. "https://ror.org/02aj13c28"


class Person(_Model):
    full_name: str
    given_name: str | None = None
    family_name: str | None = None
    orcid: str | None = None  # bare "0000-0002-1825-0097", no resolver
    affiliations: list[Affiliation] = Field(default_factory=list)
    role: str | None = None  # DataCite contributorType for contributors; None for creators
    kind: Literal["person", "organization"] | None = None


class Instrument(_Model):
    name: str
    pid: str | None = None  # DOI (normalised) or other identifier of the instrument
    facility: str | None = None


class DateInfo(_Model):
    type: str  # DataCite dateType: Collected, Available, Issued, Created, ...
    start: str | None = None  # ISO 8601, possibly partial ("2021", "2021-05")
    end: str | None = None  # for ranges ("start/end"); equal to start for single dates
    raw: str


class RelatedIdentifier(_Model):
    identifier: str
    type: str | None = None  # relatedIdentifierType
    relation: str | None = None  # relationType


class Subject(_Model):
    value: str
    scheme: str | None = None
    scheme_uri: str | None = None
    value_uri: str | None = None


class TechniqueTag(_Model):
    """One PaNET technique on a document, with the evidence for it."""

    iri: str  # http://purl.org/pan-science/PaNET/PaNET01188
    id: str  # PaNET01188
    label: str
    # Most certain first: "iri" (PaNET IRI given in the record), "subject" (a
    # subject/keyword equal to a label or synonym), "text" (name or acronym in
    # title/abstract), "instrument" and "facility" (implied: weaker evidence).
    method: Literal["iri", "subject", "text", "instrument", "facility"]
    field: str  # where the evidence was found: subjects, keywords, title, summary, instrument, facility
    text: str  # the matched text
    weak: bool = False  # True for implied techniques (instrument / facility)


class Document(_Model):
    # Provenance: where the record came from.
    source: str
    oai_identifier: str
    datestamp: str
    metadata_prefix: str | None = None
    format: str | None = None  # detected payload: datacite, oai_dc, openaire

    # PaNOSC Dataset/Document fields.
    pid: str  # DOI when there is one, else the record's own identifier
    doi: str | None = None
    title: str
    summary: str | None = None
    keywords: list[str] = Field(default_factory=list)
    subjects: list[Subject] = Field(default_factory=list)
    license: str | None = None  # SPDX id where recognised
    license_uri: str | None = None
    rights: list[str] = Field(default_factory=list)
    access_rights: Literal["open", "embargoed", "restricted", "closed"] | None = None
    is_public: bool | None = None
    release_date: str | None = None  # ISO date, possibly partial
    publication_year: int | None = None
    creators: list[Person] = Field(default_factory=list)
    contributors: list[Person] = Field(default_factory=list)
    publisher: str | None = None
    facility: str | None = None
    instruments: list[Instrument] = Field(default_factory=list)
    resource_type: str | None = None
    resource_type_general: str | None = None
    dates: list[DateInfo] = Field(default_factory=list)
    collection_start: str | None = None
    collection_end: str | None = None
    related_identifiers: list[RelatedIdentifier] = Field(default_factory=list)
    sizes: list[str] = Field(default_factory=list)
    formats: list[str] = Field(default_factory=list)
    language: str | None = None

    # Enrichment.
    techniques: list[TechniqueTag] = Field(default_factory=list)
    ontology_version: str | None = None
