"""Deterministic, real-shaped OAI-PMH records for tests and benchmarks.

Two sources of records, one type (`FakeRecord`):

* `make_records(n, seed=...)` generates DataCite kernel-4 payloads wrapped in
  `oai_datacite` (or `oai_dc` with ``prefix="oai_dc"``), shaped after what
  photon and neutron facilities publish: DOIs in upper case, ORCID name
  identifiers (valid check digits) and ROR affiliations on some creators,
  techniques named in the title on most records (SAXS, SANS, X-ray
  diffraction, ARPES, tomography) and on none of the others, CC-BY-4.0 on most,
  a `Collected` date range, an instrument `relatedItem` on some, stray
  whitespace and non-ASCII names here and there. Record k is the same whatever
  n is, so ``make_records(10)[:5] == make_records(5)``.
* `sample_records()` serves the real files in ``../shared/samples``: the
  metadata bytes are sliced out of each file unchanged (see its docstring).

The server renders headers itself; a record only carries the payload that
goes inside ``<metadata>``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

SAMPLES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "samples"

OAI_DATACITE_NS = "http://schema.datacite.org/oai/oai-1.1/"
DATACITE_NS = "http://datacite.org/schema/kernel-4"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
PANET = "http://purl.org/pan-science/PaNET/"

# What each metadataPrefix is, for ListMetadataFormats.
FORMATS: dict[str, tuple[str, str]] = {
    "oai_datacite": ("http://schema.datacite.org/oai/oai-1.1/oai.xsd", OAI_DATACITE_NS),
    "oai_dc": ("http://www.openarchives.org/OAI/2.0/oai_dc.xsd",
               "http://www.openarchives.org/OAI/2.0/oai_dc/"),
    "datacite": ("http://schema.datacite.org/meta/kernel-4/metadata.xsd", DATACITE_NS),
}


@dataclass(frozen=True)
class FakeRecord:
    """One record as a repository holds it.

    ``technique`` is the PaNET label of the technique the title names (the
    truth a tagging test can check against), None when the record names none.
    ``source`` is the sample file a record came from ("" when generated).
    Frozen: change a record with `dataclasses.replace` (or the server's
    `update`/`delete` helpers), which keeps the server's caches honest.
    """

    identifier: str
    datestamp: str
    sets: tuple[str, ...] = ()
    deleted: bool = False
    metadata_xml: bytes = b""
    prefix: str = "oai_datacite"
    technique: str | None = None
    source: str = ""

    @property
    def doi(self) -> str | None:
        """The DOI the generator put in the payload, in either format (None for sample records)."""
        m = re.search(rb'<identifier identifierType="DOI">([^<]+)</identifier>'
                      rb'|<dc:identifier>https://doi\.org/([^<]+)</dc:identifier>', self.metadata_xml)
        return (m.group(1) or m.group(2)).decode() if m else None


# --- vocabulary -------------------------------------------------------------

# (short name, publisher name, ROR, DataCite client symbol)
_FACILITIES = {
    "ESRF": ("European Synchrotron Radiation Facility", "https://ror.org/02550n020", "INIST.ESRF"),
    "ILL": ("Institut Laue-Langevin", "https://ror.org/01xtjs520", "INIST.ILL"),
    "HZB": ("Helmholtz-Zentrum Berlin für Materialien und Energie", "https://ror.org/02aj13c28",
            "TIB.HZB"),
    "PSI": ("Paul Scherrer Institute", "https://ror.org/03eh3y714", "ETHZ.PSI"),
    "DESY": ("Deutsches Elektronen-Synchrotron DESY", "https://ror.org/01js2sh04", "TIB.DESY"),
    "ISIS": ("ISIS Neutron and Muon Source", "https://ror.org/057g20z61", "BL.STFC"),
    "MAXIV": ("MAX IV Laboratory", "https://ror.org/03q28x580", "SND.MAXIV"),
    "Elettra": ("Elettra-Sincrotrone Trieste", "https://ror.org/01c3rrh15", "ELETTRA.OPENDATA"),
    "ESS": ("European Spallation Source ERIC", "https://ror.org/01wv9cn34", "SCICAT.ESS"),
    "EuXFEL": ("European XFEL", "https://ror.org/01wp2jz98", "TIB.XFEL"),
}

# technique label (PaNET rdfs:label) -> (PaNET id, title templates, instruments (facility, name))
_TECHNIQUES: dict[str, tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "small angle x-ray scattering": (
        "PaNET01188",
        ("Small-angle X-ray scattering (SAXS) of {s}", "SAXS study of {s}",
         "Time-resolved SAXS on {s}"),
        (("ESRF", "ID02 - Time-resolved ultra small-angle X-ray scattering"),
         ("DESY", "P12 - BioSAXS beamline"), ("MAXIV", "CoSAXS")),
    ),
    "small angle neutron scattering": (
        "PaNET01189",
        ("Small-angle neutron scattering on {s}", "SANS investigation of {s}"),
        (("ILL", "D22 - Large dynamic range small-angle diffractometer"),
         ("ISIS", "SANS2D"), ("PSI", "SANS-I")),
    ),
    "x-ray diffraction": (
        "PaNET01216",
        ("X-ray diffraction of {s}", "In situ X-ray diffraction on {s}"),
        (("ESRF", "ID31 - High energy beamline for buried interface structures"),
         ("DESY", "P02.1 - Powder diffraction and total scattering beamline"),
         ("Elettra", "XRD1")),
    ),
    "angle resolved photoemission spectroscopy": (
        "PaNET01089",
        ("ARPES study of {s}", "Angle-resolved photoemission spectroscopy of {s}"),
        (("HZB", "UE112-PGM-2b - 1-cubed ARPES"), ("MAXIV", "BLOCH"), ("Elettra", "APE-LE")),
    ),
    "tomography": (
        "PaNET01129",
        ("Tomography of {s}", "Tomographic imaging of {s}"),
        (("PSI", "TOMCAT"), ("ESRF", "BM05"), ("HZB", "CONRAD-2")),
    ),
}
_NO_TECHNIQUE_TITLES = ("Beamtime {p}: {s}", "Experiment {p} on {s}", "Commissioning data, {s}")
_NEUTRAL_INSTRUMENTS = (("ESS", "V20 - Test beamline"), ("EuXFEL", "SPB/SFX"),
                        ("ILL", "CRYOPAD test stand"))

_SAMPLES = (
    "lysozyme in solution", "the TbCd6 quasicrystal approximant", "an NMC811 battery cathode",
    "MAPbI3 perovskite thin films", "trabecular bone", "block copolymer micelles",
    "graphene on SiC(0001)", "a CoCrFeMnNi high-entropy alloy", "Bi2Se3 single crystals",
    "cement paste during hydration", "Cu & Ni nanoparticles", "wood cell walls <100 nm",
)
_PEOPLE = (
    ("Kreyßig", "Andreas"), ("Müller", "Anna"), ("Nowak", "Łukasz"), ("Ørsted", "Hans"),
    ("García", "María"), ("Rossi", "Giulia"), ("Smith", "John"), ("Dubois", "Claire"),
    ("Andersson", "Erik"), ("Nakamura", "Yuki"), ("O'Brien", "Siobhan"),
    ("van der Berg", "Pieter"), ("Schmidt", "Lena"), ("Kowalski", "Jan"), ("Ferreira", "Inês"),
)
_AFFILIATIONS = (
    ("Technische Universität München", "https://ror.org/02kkvpp62"),
    ("Lund University", "https://ror.org/012a77v79"),
    ("University of Oxford", "https://ror.org/052gg0110"),
    ("Université Grenoble Alpes", "https://ror.org/02rx3b187"),
    ("ETH Zurich", "https://ror.org/05a28rw58"),
    ("Uppsala University", "https://ror.org/048a87296"),
)
_KEYWORDS = ("condensed matter", "materials science", "structural biology", "magnetism",
             "energy materials", "soft matter", "cultural heritage")
_CC_BY = ('<rights rightsURI="https://creativecommons.org/licenses/by/4.0/legalcode" '
          'rightsIdentifierScheme="SPDX" rightsIdentifier="CC-BY-4.0" '
          'schemeURI="https://spdx.org/licenses/">Creative Commons Attribution 4.0 International'
          '</rights>')
_CC0 = ('<rights rightsURI="https://creativecommons.org/publicdomain/zero/1.0/legalcode" '
        'rightsIdentifierScheme="SPDX" rightsIdentifier="CC0-1.0">CC0 1.0 Universal</rights>')
_EMBARGO = '<rights rightsURI="info:eu-repo/semantics/embargoedAccess">Embargoed</rights>'


def _orcid(rng: random.Random) -> str:
    """A random ORCID iD with a correct ISO 7064 11,2 check character."""
    body = f"{int(rng.random() * 10**15):015d}"
    total = 0
    for d in body:
        total = (total + ord(d) - 48) * 2
    check = (12 - total % 11) % 11
    s = body + ("X" if check == 10 else str(check))
    return f"https://orcid.org/{s[0:4]}-{s[4:8]}-{s[8:12]}-{s[12:16]}"


def _parse_stamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _stamp(value: datetime) -> str:
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}Z")


@dataclass(frozen=True)
class _Fields:
    """What one generated record says, before it becomes XML in one format."""

    doi: str
    title: str
    technique: str | None
    creators: tuple[tuple[str, str, str | None, tuple[str, str | None] | None], ...]
    facility: str
    year: int
    keywords: tuple[str, ...]
    panet_subject: bool
    rights: str
    abstract: str
    collected: tuple[str, str]
    instrument: tuple[str, str] | None  # (DOI, name)


def _fields(k: int, seed: int, datestamp: datetime) -> tuple[_Fields, random.Random]:
    rng = random.Random(seed * 1_000_003 + k)
    rnd = rng.random

    # random.choice/randint cost several Python calls each; benches draw 100k records x ~30.
    def pick(seq):
        return seq[int(rnd() * len(seq))]

    def between(lo: int, hi: int) -> int:
        return lo + int(rnd() * (hi - lo + 1))

    technique: str | None = pick((*_TECHNIQUES, None, None))
    sample = pick(_SAMPLES)
    proposal = f"{pick(('MA', 'SC', 'HC', 'LS'))}-{between(1000, 9998)}"
    if technique is None:
        title = pick(_NO_TECHNIQUE_TITLES).format(p=proposal, s=sample)
        facility, instr_name = pick(_NEUTRAL_INSTRUMENTS)
        abstract = (f"Data collected during proposal {proposal} on {sample}. "
                    "Raw data and processed files are available after the embargo period.")
    else:
        _, templates, instruments = _TECHNIQUES[technique]
        title = pick(templates).format(s=sample)
        facility, instr_name = pick(instruments)
        abstract = (f"We used {technique} to follow the structure of {sample} under operating "
                    f"conditions (proposal {proposal}).") if rnd() < 0.5 else (
                    f"Measurements on {sample} during proposal {proposal}.")
    creators = []
    for _ in range(between(1, 4)):
        family, given = pick(_PEOPLE)
        name = f"{family}, {given}"
        if rnd() < 0.1:  # HZB-style stray whitespace around names
            name = f" {name}\n"
        orcid = _orcid(rng) if rnd() < 0.6 else None
        aff = None
        r = rnd()
        if r < 0.5:
            aff = pick(_AFFILIATIONS)
        elif r < 0.7:
            aff = (_FACILITIES[facility][0], None)  # a plain-text affiliation, no ROR
        creators.append((name, given, orcid, aff))
    r = rnd()
    rights = _CC_BY if r < 0.8 else _CC0 if r < 0.9 else _EMBARGO
    start = datestamp - timedelta(days=between(200, 1500), hours=between(0, 23))
    end = start + timedelta(days=between(1, 6), minutes=between(0, 600))
    instrument = None
    if rnd() < 0.5:
        slug = re.sub(r"[^A-Z0-9]+", "-", instr_name.split(" - ")[0].upper()).strip("-")
        instrument = (f"10.5442/INSTR-{facility.upper()}-{slug}", instr_name)
    fields = _Fields(
        doi=f"10.5442/NI{k:06d}",
        title=title,
        technique=technique,
        creators=tuple(creators),
        facility=facility,
        year=min(datestamp.year, end.year + between(0, 3)),
        keywords=tuple(dict.fromkeys(pick(_KEYWORDS) for _ in range(between(0, 2)))),
        panet_subject=technique is not None and rnd() < 0.2,
        rights=rights,
        abstract=abstract,
        collected=(_stamp(start), _stamp(end)),
        instrument=instrument,
    )
    return fields, rng


def _datacite_xml(f: _Fields) -> bytes:
    pub_name, pub_ror, symbol = _FACILITIES[f.facility]
    out = [
        f'<oai_datacite xmlns="{OAI_DATACITE_NS}" xmlns:xsi="{XSI_NS}" '
        f'xsi:schemaLocation="{OAI_DATACITE_NS} http://schema.datacite.org/oai/oai-1.1/oai.xsd">'
        f"<schemaVersion>4.5</schemaVersion><datacentreSymbol>{symbol}</datacentreSymbol><payload>"
        f'<resource xmlns="{DATACITE_NS}" xsi:schemaLocation="{DATACITE_NS} '
        'http://schema.datacite.org/meta/kernel-4.5/metadata.xsd">\n'
        f'<identifier identifierType="DOI">{f.doi}</identifier>\n<creators>'
    ]
    for name, given, orcid, aff in f.creators:
        family = name.strip().split(",")[0]
        out.append(f'<creator><creatorName nameType="Personal">{escape(name)}</creatorName>'
                   f"<givenName>{escape(given)}</givenName>"
                   f"<familyName>{escape(family)}</familyName>")
        if orcid:
            out.append('<nameIdentifier nameIdentifierScheme="ORCID" schemeURI="https://orcid.org">'
                       f"{orcid}</nameIdentifier>")
        if aff is not None:
            aff_name, ror = aff
            if ror:
                out.append(f'<affiliation affiliationIdentifier="{ror}" '
                           'affiliationIdentifierScheme="ROR" schemeURI="https://ror.org">'
                           f"{escape(aff_name)}</affiliation>")
            else:
                out.append(f"<affiliation>{escape(aff_name)}</affiliation>")
        out.append("</creator>")
    out.append(f'</creators>\n<titles><title xml:lang="en">{escape(f.title)}</title></titles>\n'
               f"<publisher publisherIdentifier=\"{pub_ror}\" publisherIdentifierScheme=\"ROR\">"
               f"{escape(pub_name)}</publisher>\n<publicationYear>{f.year}</publicationYear>\n"
               '<resourceType resourceTypeGeneral="Dataset">Experimental data</resourceType>\n')
    if f.keywords or f.panet_subject:
        out.append("<subjects>")
        out.extend(f"<subject>{k}</subject>" for k in f.keywords)
        if f.panet_subject and f.technique:
            out.append(f'<subject subjectScheme="PaNET" schemeURI="{PANET}PaNET.owl" '
                       f'valueURI="{PANET}{_TECHNIQUES[f.technique][0]}">{f.technique}</subject>')
        out.append("</subjects>\n")
    out.append(f'<dates><date dateType="Collected">{f.collected[0]}/{f.collected[1]}</date>'
               f'<date dateType="Issued">{f.year}</date></dates>\n'
               f"<rightsList>{f.rights}</rightsList>\n"
               f'<descriptions><description descriptionType="Abstract">{escape(f.abstract)}'
               "</description></descriptions>\n")
    if f.instrument:
        doi, name = f.instrument
        out.append('<relatedItems><relatedItem relationType="IsCollectedBy" '
                   'relatedItemType="Instrument"><relatedItemIdentifier '
                   f'relatedItemIdentifierType="DOI">https://doi.org/{doi}</relatedItemIdentifier>'
                   f"<titles><title>{escape(name)}</title></titles></relatedItem></relatedItems>\n")
    out.append("</resource></payload></oai_datacite>")
    return "".join(out).encode()


def _dc_xml(f: _Fields) -> bytes:
    dc = "http://purl.org/dc/elements/1.1/"
    oai_dc = "http://www.openarchives.org/OAI/2.0/oai_dc/"
    out = [f'<oai_dc:dc xmlns:oai_dc="{oai_dc}" xmlns:dc="{dc}" xmlns:xsi="{XSI_NS}" '
           f'xsi:schemaLocation="{oai_dc} http://www.openarchives.org/OAI/2.0/oai_dc.xsd">'
           f"<dc:title>{escape(f.title)}</dc:title>"]
    out.extend(f"<dc:creator>{escape(name)}</dc:creator>" for name, *_ in f.creators)
    out.extend(f"<dc:subject>{k}</dc:subject>" for k in f.keywords)
    out.append(f"<dc:description>{escape(f.abstract)}</dc:description>"
               f"<dc:publisher>{escape(_FACILITIES[f.facility][0])}</dc:publisher>"
               f"<dc:date>{f.year}</dc:date><dc:type>Dataset</dc:type>"
               f"<dc:identifier>https://doi.org/{f.doi}</dc:identifier>")
    if f.rights != _EMBARGO:
        out.append("<dc:rights>" + ("https://creativecommons.org/licenses/by/4.0/"
                                    if f.rights == _CC_BY else
                                    "https://creativecommons.org/publicdomain/zero/1.0/")
                   + "</dc:rights>")
    out.append("</oai_dc:dc>")
    return "".join(out).encode()


_RENDER = {"oai_datacite": _datacite_xml, "oai_dc": _dc_xml}


@lru_cache(maxsize=8)
def _make_records(n: int, seed: int, sets: tuple[str, ...], start: str, deleted_every: int,
                  prefix: str, step_seconds: int, first: int) -> tuple[FakeRecord, ...]:
    if prefix not in _RENDER:
        raise ValueError(f"prefix must be one of {sorted(_RENDER)}, not {prefix!r}")
    render = _RENDER[prefix]
    stamp_rng = random.Random(seed)
    when = _parse_stamp(start)
    out = []
    for i in range(n):
        k = first + i
        fields, rng = _fields(k, seed, when)
        rec_sets: tuple[str, ...] = ()
        if sets:
            rec_sets = (sets[i % len(sets)],)
            if len(sets) > 1 and rng.random() < 0.1:  # a few records sit in two sets
                rec_sets = tuple(sorted({*rec_sets, sets[int(rng.random() * len(sets))]}))
        out.append(FakeRecord(
            identifier=f"oai:example.org:10.5442/ni{k:06d}",
            datestamp=_stamp(when),
            sets=rec_sets,
            deleted=bool(deleted_every) and (i + 1) % deleted_every == 0,
            metadata_xml=render(fields),
            prefix=prefix,
            technique=fields.technique,
        ))
        # Steps of 0 give runs of equal datestamps, as bulk updates do on real servers.
        when += timedelta(seconds=step_seconds * stamp_rng.choice((0, 1, 1, 2)))
    return tuple(out)


def make_records(n: int, *, seed: int = 0, sets: tuple[str, ...] = ("pub", "raw"),
                 start: str = "2020-01-01T00:00:00Z", deleted_every: int = 0,
                 prefix: str = "oai_datacite", step_seconds: int = 3600,
                 first: int = 1) -> list[FakeRecord]:
    """`n` records numbered from `first`, datestamps non-decreasing from `start`.

    Every `deleted_every`-th record (1-based) is deleted; 0 means none. Record
    i sits in ``sets[i % len(sets)]`` and, for about one in ten, in a second
    set too. Datestamps advance by 0, 1 or 2 × `step_seconds`, so some repeat.
    """
    return list(_make_records(n, seed, tuple(sets), start, deleted_every, prefix,
                              step_seconds, first))


# --- the real sample files ----------------------------------------------------

_METADATA_CHILD = re.compile(rb"<metadata>\s*(<.*>)\s*</metadata>", re.S)


def _metadata_child(raw: bytes) -> bytes:
    """The bytes of the element inside <metadata>, from its start tag to its end tag."""
    m = _METADATA_CHILD.search(raw)
    if m is None:
        raise ValueError("no <metadata> element")
    return m.group(1)


def _header(raw: bytes) -> tuple[str, str, tuple[str, ...]]:
    head = re.search(rb"<header>(.*?)</header>", raw, re.S)
    if head is None:
        raise ValueError("no <header> element")
    h = head.group(1)
    ident = re.search(rb"<identifier[^>]*?(?:/>|>([^<]*)</identifier>)", h)
    stamp = re.search(rb"<datestamp>([^<]*)</datestamp>", h)
    if ident is None or stamp is None:
        raise ValueError("header without identifier or datestamp")
    datestamp = stamp.group(1).decode().strip()
    if len(datestamp) == 10:
        datestamp += "T00:00:00Z"
    return ((ident.group(1) or b"").decode().strip(), datestamp,
            tuple(s.decode() for s in re.findall(rb"<setSpec>([^<]*)</setSpec>", h)))


def _wrap_kernel(resource: bytes, symbol: str) -> bytes:
    return (f'<oai_datacite xmlns="{OAI_DATACITE_NS}" xmlns:xsi="{XSI_NS}" '
            f'xsi:schemaLocation="{OAI_DATACITE_NS} '
            'http://schema.datacite.org/oai/oai-1.1/oai.xsd">'
            f"<schemaVersion>4.7</schemaVersion><datacentreSymbol>{symbol}</datacentreSymbol>"
            "<payload>").encode() + resource + b"</payload></oai_datacite>"


SAMPLE_RECORD_FILES = (
    "hzb_inv_oai_datacite_record__b2find.xml",
    "ess_openaire_oai_record__b2find.xml",
    "ess_openaire_oai_record_broken_id__b2find.xml",
    "datacite_oai_oai_getrecord_oaidatacite__viringo.xml",
)
SAMPLE_KERNEL_FILES = (
    "datacite_kernel-4.7_example_full.xml",
    "datacite_kernel-4.7_example_dataset.xml",
    "datacite_kernel-4.7_example_instrument.xml",
)


def sample_payload(name: str) -> bytes:
    """The exact bytes of a sample file that a `sample_records()` record carries.

    For the OAI record files: the element inside ``<metadata>``, start tag to
    end tag. For the kernel-4.7 examples: the ``<resource>`` element (the file
    less its XML declaration and leading comment); the record wraps these bytes
    in an ``oai_datacite``/``payload`` envelope of ours.
    """
    raw = (SAMPLES_DIR / name).read_bytes()
    if name in SAMPLE_KERNEL_FILES:
        start = raw.index(b"<resource")
        end = raw.rindex(b"</resource>") + len(b"</resource>")
        return raw[start:end]
    return _metadata_child(raw)


def sample_records() -> list[FakeRecord]:
    """FakeRecords built from the real sample files, metadata bytes untouched.

    Header identifier, datestamp and sets come from each file's header, with
    two normalisations the server's own header rendering would make anyway:
    a day-only datestamp (ESS) becomes ``...T00:00:00Z``, and attributes on
    the header identifier (ESS's ``identifierType``) are not kept. The ESS
    broken-id record keeps its empty identifier (a negative case). The
    kernel-4.7 examples get identifier ``oai:schema.datacite.org:<DOI>``,
    datestamps 2024-01-01..03 and set ``datacite-examples``.

    Note on namespaces: the HZB payload is a ``resource`` in the OAI default
    namespace using an ``xsi:`` prefix declared on the OAI envelope; it is
    well-formed only inside an envelope declaring both, as every OAI-PMH
    response here does.
    """
    out = []
    for name in SAMPLE_RECORD_FILES:
        raw = (SAMPLES_DIR / name).read_bytes()
        identifier, datestamp, sets = _header(raw)
        out.append(FakeRecord(identifier=identifier, datestamp=datestamp, sets=sets,
                              metadata_xml=sample_payload(name), source=name))
    for day, name in enumerate(SAMPLE_KERNEL_FILES, start=1):
        resource = sample_payload(name)
        m = re.search(rb'<identifier identifierType="DOI">([^<]+)</identifier>', resource)
        doi = m.group(1).decode() if m else name
        out.append(FakeRecord(identifier=f"oai:schema.datacite.org:{doi}",
                              datestamp=f"2024-01-{day:02d}T00:00:00Z",
                              sets=("datacite-examples",),
                              metadata_xml=_wrap_kernel(resource, "DATACITE.EXAMPLES"),
                              source=name))
    return out
