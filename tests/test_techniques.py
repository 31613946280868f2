"""Technique tagging: the matcher's tricky cases, evidence order, samples, the CLI."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from lxml import etree

from harvester.cli.techniques import ontology as ontology_group
from harvester.cli.techniques import techniques as techniques_group
from harvester.document import Document, Instrument, Subject
from harvester.ontology import load_ontology
from harvester.techniques import Tagger, default_knowledge_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OWL = SHARED / "ontology" / "PaNET.owl"
PANET = "http://purl.org/pan-science/PaNET/"

pytestmark = pytest.mark.skipif(not OWL.is_file(), reason="../shared/ontology missing")


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(load_ontology(OWL))


def labels(tags) -> list[str]:
    return [t.label for t in tags]


# -- free text ---------------------------------------------------------------

TEXT_CASES = [
    # (text, expected technique labels, in order of appearance)
    ("Small-angle neutron scattering on micelles", ["small angle neutron scattering"]),
    ("small angle  x ray scattering of proteins", ["small angle x-ray scattering"]),
    ("Small Angle X-Ray Scattering of proteins", ["small angle x-ray scattering"]),
    ("SMALL ANGLE X-RAY SCATTERING OF PROTEINS", ["small angle x-ray scattering"]),
    ("SANS on micelles", ["small angle neutron scattering"]),
    ("XAS at the Fe K-edge", ["x-ray absorption spectroscopy"]),
    ("Xray diffraction of steel", ["x-ray diffraction"]),
    ("X-rays diffraction of steel", ["x-ray diffraction"]),
    ("Polarised neutron reflectometry of multilayers", ["polarized neutron reflectometry"]),
    ("quasi-elastic neutron scattering of water", ["quasielastic scattering", "neutron scattering"]),
    ("µCT of bone", ["x-ray microtomography"]),  # micro sign, NFKC-folded to Greek mu
    ("SAXS/WAXS on fibres", ["small angle x-ray scattering", "wide angle x-ray scattering"]),
    # the more specific of overlapping names wins, and the shorter is not reported too
    ("Grazing incidence small angle x-ray scattering of films", ["grazing incidence small angle x-ray scattering"]),
    ("GISAXS of block copolymer films", ["grazing incidence small angle x-ray scattering"]),
    ("resonant inelastic x-ray scattering", ["resonant inelastic x-ray scattering"]),
    # an ancestor named next to its descendant is dropped
    ("Small angle scattering (SAXS) of gold", ["small angle x-ray scattering"]),
    # two techniques
    ("XPS and EXAFS of catalysts", ["x-ray photoelectron spectroscopy", "extended x-ray absorption fine structure"]),
]


@pytest.mark.parametrize(("text", "expected"), TEXT_CASES)
def test_text_matches(tagger, text, expected):
    tags = tagger.tag(title=text)
    assert labels(tags) == expected
    assert all(t.method == "text" and t.field == "title" and not t.weak for t in tags)


NO_MATCH = [
    "Des échantillons sans traitement thermique",          # French "sans" is not SANS
    "Sans serif fonts in figures",
    "saxs",                                                # acronyms match case in free text
    "The diffraction limit of the new source",             # stoplist
    "diffraction-limited storage ring design",
    "Neutron star mergers and x-ray binaries",
    "An x-ray tube and a detector",
    "PhD thesis data in PDF format",                       # ambiguous acronyms
    "x-ray",                                               # specifier labels are not techniques
    "neutron photon scattering",
    "Imaging and spectroscopy of the brain",               # too generic in free text
    "NMR spectroscopy of small molecules",
    "Optical coherence tomography of the retina",
    "testing the therapy",
    "XASPECT XRDX SAXSY",                                  # word boundaries
    "the scattering length density profile",
    # acronyms that mean other things outside a beam context
    "Mail EXchanger (MX) record of a domain",
    "Sound Effects (SFX) for a game",
    "GNSS/INS integrated navigation",
]


@pytest.mark.parametrize("text", NO_MATCH)
def test_look_alikes_do_not_match(tagger, text):
    assert tagger.tag(title=text, summary=text) == []


# -- how facility text names techniques ------------------------------------------

COORDINATED = [
    # a modifier or a head shared across "and", "or", "/": both names
    ("small angle neutron and X-ray scattering", ["small angle neutron scattering", "small angle x-ray scattering"]),
    ("X-ray and neutron reflectometry", ["x-ray reflectivity", "neutron reflectometry"]),
    ("small angle neutron & X-ray scattering", ["small angle neutron scattering", "small angle x-ray scattering"]),
    ("neutron and X-ray diffraction", ["neutron diffraction", "x-ray diffraction"]),
    ("X-ray/neutron reflectivity", ["x-ray reflectivity", "neutron reflectometry"]),
    ("X-ray absorption and emission spectroscopy", ["x-ray absorption spectroscopy", "x-ray emission spectroscopy"]),
    ("Small- and wide-angle X-ray scattering", ["small angle x-ray scattering", "wide angle x-ray scattering"]),
    ("single crystal and powder X-ray diffraction", ["x-ray single crystal diffraction", "x-ray powder diffraction"]),
    ("grazing-incidence wide- and small-angle X-ray scattering",
     ["grazing incidence wide angle x-ray scattering", "grazing incidence small angle x-ray scattering"]),
    ("neutron imaging and diffraction", ["imaging", "neutron diffraction"]),  # the probe is ND's ancestor
    # two whole names need no rule; unrelated words are not names
    ("SANS and SAXS", ["small angle neutron scattering", "small angle x-ray scattering"]),
    ("temperature and pressure dependent diffraction at the beamline", ["diffraction"]),
    ("neutron and photon sources", []),
]


@pytest.mark.parametrize(("text", "expected"), COORDINATED)
def test_coordinated_names(tagger, text, expected):
    assert labels(tagger.tag(title=text)) == expected


def test_coordinated_names_share_their_evidence(tagger):
    tags = tagger.tag(summary="Data by small angle neutron and X-ray scattering.")
    assert {t.text for t in tags} == {"small angle neutron and X-ray scattering"}


NOT_USED = [
    # a technique named to compare with, contrast, or replace is not evidence
    ("Unlike NMR or neutron scattering, muons probe weak fields", []),
    ("Compared to X-ray diffraction, neutron diffraction locates hydrogen", ["neutron diffraction"]),
    ("Unlike SAXS, SANS sees hydrogen", ["small angle neutron scattering"]),   # a comma ends the scope
    ("SANS data were compared with SAXS data", ["small angle neutron scattering"]),
    ("instead of SAXS we used SANS", ["small angle neutron scattering"]),      # so does a new clause
    ("compared to SAXS and WAXS", []),                                          # a list goes on
    ("a resolution comparable to that of optical microscopy", []),
    ("muSR is not a diffraction technique", ["muon spin resonance"]),
    ("the data were collected without SANS", []),
    ("complementary SAXS measurements", ["small angle x-ray scattering"]),      # bare "complementary": used
    ("measurements similar to quick-EXAFS", ["extended x-ray absorption fine structure"]),
    # a possibility is not what was done
    ("a cell with potential for techniques such as X-ray Raman spectroscopy", []),
    ("this paves the way for time-resolved SAXS", []),
    ("samples kept for future SANS", []),
    ("the Bragg diffraction peaks of the stack", []),
    ("X-ray diffraction peaks were indexed", ["x-ray diffraction"]),  # the longer name wins
    # the acronym a dropped name defines goes with it; a new sentence does not
    ("Compared to small-angle X-ray scattering (SAXS), SANS sees hydrogen", ["small angle neutron scattering"]),
    ("compared to SAXS. SANS data were taken", ["small angle neutron scattering"]),
    # data no beam produced
    ("100,000 synthetic powder X-ray diffraction patterns", []),
    ("simulated SAXS curves were fitted to the measured SANS data", ["small angle neutron scattering"]),
    ("X-ray computed tomography of a rock", ["x-ray tomography"]),        # a name starting with the cue word
]


@pytest.mark.parametrize(("text", "expected"), NOT_USED)
def test_names_after_comparison_and_negation_cues(tagger, text, expected):
    assert labels(tagger.tag(summary=text)) == expected


BACKGROUND = [
    # a background cue makes its whole sentence how others do it, commas included
    ("Conventionally, phonons are measured by inelastic neutron scattering on triple-axis "
     "spectrometers, or by inelastic X-ray scattering. We used time-of-flight neutron spectroscopy.",
     ["time of flight spectrometry"]),
    ("Traditionally SAXS needs large samples; here SANS was used.", ["small angle neutron scattering"]),
    # the next sentence is not background
    ("Traditionally done otherwise. SAXS data of micelles.", ["small angle x-ray scattering"]),
]


@pytest.mark.parametrize(("text", "expected"), BACKGROUND)
def test_names_in_background_sentences(tagger, text, expected):
    assert labels(tagger.tag(summary=text)) == expected


NEEDS_CONTEXT = [
    # a generic technique alone is a PaN technique only in a photon/neutron/muon context
    ({"title": "Relative arrival-time upper-mantle tomography"}, []),
    ({"title": "Water content by time domain reflectometry"}, []),
    ({"title": "NMR crystallography of a polymorph"}, []),
    ({"title": "Tomography of a battery", "facility": "ESRF"}, ["x-ray tomography"]),  # a known x-ray facility
    ({"title": "Tomography of a battery at the beamline"}, ["tomography"]),           # a source named
    ({"title": "Tomography of a battery", "keywords": ["synchrotron"]}, ["tomography"]),
    ({"title": "Tomography and SAXS of a battery"}, ["x-ray tomography", "small angle x-ray scattering"]),
    ({"title": "X-ray tomography of a battery"}, ["x-ray tomography"]),               # specific
    ({"title": "Computed tomography of the chest"}, ["x-ray tomography"]),            # CT is X-rays
]


def test_a_name_ending_a_longer_one_said_before_refers_back_to_it(tagger):
    text = ("High-efficiency X-ray emission spectroscopy at high pressure. Spin-state imaging via "
            "Kβ1,3 emission spectroscopy takes seconds.")
    assert labels(tagger.tag(summary=text)) == ["x-ray emission spectroscopy"]
    # said first (a title's "X-ray diffraction" before the abstract's GIXRD), it stands
    tags = tagger.tag(title="HAXPES and X-ray diffraction at once",
                      summary="A set-up combines grazing incidence X-ray diffraction (GIXRD) and HAXPES.")
    assert "x-ray diffraction" in labels(tags)


CUES_AFTER_BATCH_7 = [
    # set against the record's method with "than"; the acronym stays the compared one
    ("RIXS has been harder to interpret than inelastic neutron scattering (INS); the RIXS magnon "
     "intensities closely resemble INS data.", ["resonant inelastic x-ray scattering"]),
    # ... but a number after "than" is a quantity
    ("More than 20 SAXS frames were averaged.", ["small angle x-ray scattering"]),
    # cues after the name
    ("X-ray imaging is not suitable because hydrogen is nearly invisible; neutron radiography shows "
     "the water.", ["neutron transmission radiography"]),
    ("Studying magnons in iridates with neutron scattering is extremely difficult, so RIXS supplies them.",
     ["resonant inelastic x-ray scattering"]),
    ("The beamline is built for XES; XANES and resonant XAS techniques will be available later.",
     ["x-ray emission spectroscopy"]),
    ("Ptychography of a cathode, with prospects for XANES imaging.", ["ptychography"]),
    # electron methods and geophysics that share a name's words
    ("Off-axis electron holography of magnetite grains", []),
    ("Computerized ionospheric tomography from GPS, with EUV and x-ray radiation as the source of "
     "ionisation", []),
    # X-ray fluorescence microscopy at a synchrotron is scanning XRF; bare "fluorescence
    # microscopy" in running text is mostly the optical one
    ("X-ray fluorescence microscopy of hyperaccumulator leaves", ["scanning x-ray fluorescence"]),
    ("GISANS, as well as fluorescence microscopy of the colloids",
     ["grazing incidence small angle neutron scattering"]),
]


VOCABULARY_AFTER_BATCH_6 = [
    ("Specular neutron reflection from adsorbed casein", ["neutron reflectometry"]),
    ("coherent X-ray diffractive imaging (CXDI) of gold colloids", ["coherent diffraction imaging"]),
    ("polychromatic X-ray microdiffraction of strain", ["microfocus diffraction", "x-ray diffraction"]),
    ("Scanning X-ray Diffraction Microscopy of cathode particles", ["x-ray diffraction imaging"]),
    ("Dark-field X-ray microscopy (DFXM) of dislocations", ["x-ray diffraction imaging", "x-ray microscopy"]),
    ("nuclear resonance vibrational spectroscopy (NRVS) of FeOEP", ["nuclear resonant scattering"]),
    ("tomography in a scanning transmission X-ray microscope",
     ["x-ray tomography", "scanning transmission x-ray microscopy"]),
    ("wavelength resolved neutron transmission imaging of Bragg edges", ["neutron transmission radiography"]),
    ("synchrotron radiation circular dichroism (SRCD) of proteins", ["UV circular dichroism"]),
]


@pytest.mark.parametrize(("text", "expected"), VOCABULARY_AFTER_BATCH_6 + CUES_AFTER_BATCH_7)
def test_rules_written_after_batches_6_and_7(tagger, text, expected):
    assert sorted(labels(tagger.tag(summary=text))) == sorted(expected)


RULES_AFTER_BATCH_8 = [
    # a lab method in an abstract beside a beam technique is the complementary one ...
    ({"summary": "Soft X-ray tomography of cells, bridging electron microscopy and light microscopy."},
     ["x-ray tomography", "soft x-ray imaging"]),
    ({"summary": "NRVS of FeOEP; Raman and infrared spectroscopies see other modes."},
     ["nuclear resonant scattering"]),
    # ... but counts alone, or in a title
    ({"summary": "Cryo-EM of a membrane protein"}, ["electron microscopy"]),
    ({"title": "Raman spectroscopy and XRD of pigments"}, ["raman spectroscopy", "x-ray diffraction"]),
    # what the record's method is set against
    ({"summary": "RIXS is the only alternative tool to inelastic neutron scattering for spin dynamics"},
     ["resonant inelastic x-ray scattering"]),
    ({"summary": "A method that narrows the gap between SAXS and crystallography"}, []),
    ({"summary": "Neutron and X-ray radiography are complementary"}, []),
    # a name read with the mode its record speaks of: XRF of elemental maps is scanning XRF
    ({"title": "XRF", "summary": "Elemental maps of a leaf"}, ["scanning x-ray fluorescence"]),
    ({"summary": "X-ray fluorescence of a glass, then a grid scan by XRD"}, ["scanning x-ray fluorescence",
                                                                            "x-ray diffraction"]),
    ({"summary": "X-ray fluorescence of a glass"}, ["x-ray fluorescence"]),
    # neutron spin echo spectroscopy is the quasielastic kind; bare "spin echo" stays generic
    ({"summary": "neutron spin-echo spectroscopy (NSE) of polymer melts"},
     ["quasielastic neutron spin echo scattering"]),
    ({"summary": "Grazing incidence neutron spin echo spectroscopy (GINSES) of membranes"},
     ["spin echo resolved grazing incidence scattering"]),
]


@pytest.mark.parametrize(("record", "expected"), RULES_AFTER_BATCH_8)
def test_rules_written_after_batch_8(tagger, record, expected):
    assert sorted(labels(tagger.tag(**record))) == sorted(expected)


RULES_AFTER_BATCHES_9_AND_10 = [
    # an acronym the record defines names what its definition names ...
    ({"summary": "in situ surface X-ray diffraction (SXRD) of Cu(100); the SXRD rods"}, ["surface x-ray diffraction"]),
    ({"summary": "SXRD of a crystal"}, ["x-ray single crystal diffraction"]),
    # ... a definition short of its acronym's letters takes the acronym's class ...
    ({"summary": "small-angle scattering (SAXS) and wide-angle scattering (WAXS)"},
     ["small angle x-ray scattering", "wide angle x-ray scattering"]),
    # ... and a broader acronym does not undo a more specific definition
    ({"summary": "High-resolution angle-resolved photoemission (ARPES) of kagome metals"},
     ["high resolution angle resolved photoemission spectroscopy"]),
    # the process, not a technique
    ({"summary": "the parity-violating asymmetry in the elastic scattering of electrons from 208Pb"}, []),
    ({"summary": "Positron annihilation spectroscopy of defects"}, ["positron probe technique"]),
    ({"summary": "a neutron grating interferometer for dark-field imaging"}, ["grating interferometry"]),
    ({"summary": "multiwavelength anomalous dispersion (MAD) phasing"}, ["multi wavelength anomalous diffraction"]),
    # after batches 11 and 12: prompt gamma activation analysis, cold and thermal spectrometers
    ({"summary": "Prompt gamma activation analysis (PGAA) of bronzes"},
     ["gamma spectroscopy", "neutron probe technique"]),
    ({"title": "Magnons in MnF2", "instruments": ["ThALES"], "facility": "ILL"}, ["cold neutron spectroscopy"]),
    ({"title": "Phonons in MnF2", "instruments": ["IN8"], "facility": "ILL"}, ["thermal neutron spectroscopy"]),
    ({"title": "Recurrent CDI risk factors in a cohort"}, []),
]


@pytest.mark.parametrize(("record", "expected"), RULES_AFTER_BATCHES_9_AND_10)
def test_rules_written_after_batches_9_and_10(tagger, record, expected):
    assert sorted(labels(tagger.tag(**record))) == sorted(expected)


PROBE_READINGS = [
    # a generic name, read with the record's one probe: named in the text, ...
    ({"title": "Reflectometry of lipid bilayers", "summary": "Neutrons at two contrasts."},
     ["neutron reflectometry"]),
    ({"title": "Small-angle scattering of micelles", "keywords": ["X-rays"]}, ["small angle x-ray scattering"]),
    # ... implied by another technique of the record, or by its facility
    ({"title": "Powder diffraction and INS of a hydride"}, ["neutron powder diffraction",
                                                            "inelastic neutron spectroscopy"]),
    ({"title": "Powder diffraction of a hydride", "facility": "ILL"}, ["neutron powder diffraction"]),
    # two probes: no reading
    ({"title": "Reflectometry of films with X-rays and neutrons"}, ["reflectometry"]),
    # a generic name a specific one of the record covers is not read again
    ({"title": "Diffraction data", "summary": "X-ray powder diffraction of a hydride"}, ["x-ray powder diffraction"]),
    # a guess that the reading covers does not stop it; one that narrows it further does
    ({"title": "ID22: the high-resolution powder diffraction beamline", "facility": "ESRF"},
     ["x-ray powder diffraction"]),
    ({"title": "Tomography of a rock", "instruments": ["TOMCAT"], "facility": "PSI"},
     ["tomography", "x-ray microtomography"]),
    # a facility field naming more than the facility; two facilities with two probes
    ({"title": "Powder diffraction of a salt", "facility": "ESRF (Grenoble)"}, ["x-ray powder diffraction"]),
    ({"title": "Powder diffraction of a salt", "facility": "ILL; ESRF"}, ["powder diffraction"]),
    # PaNET has no class for the reading: the name stays as written
    ({"title": "Tomography of a steel weld", "summary": "with neutrons"}, ["tomography"]),
]


@pytest.mark.parametrize(("record", "expected"), PROBE_READINGS)
def test_generic_names_are_read_with_the_records_probe(tagger, record, expected):
    assert labels(tagger.tag(**record)) == expected


@pytest.mark.parametrize(("record", "expected"), NEEDS_CONTEXT)
def test_generic_techniques_need_a_beam_context(tagger, record, expected):
    assert labels(tagger.tag(**record)) == expected


def test_instrument_refines_an_umbrella_but_not_a_specific_technique(tagger):
    # "neutron scattering" is an umbrella: IN20, a thermal triple-axis spectrometer, says which
    tags = tagger.tag(summary="IN20 neutron scattering data", instruments=["IN20"], facility="ILL")
    assert "thermal neutron spectroscopy" in labels(tags)


def test_background_sentence_ends_at_the_title(tagger):
    tags = tagger.tag(title="Conventionally prepared films", summary="SAXS of the films.")
    assert [(t.label, t.field, t.text) for t in tags] == [("small angle x-ray scattering", "summary", "SAXS")]
    tags = tagger.tag(title="SAXS of films", summary="Conventionally prepared.")
    assert [(t.label, t.field) for t in tags] == [("small angle x-ray scattering", "title")]


def test_comparison_cues_leave_subjects_alone(tagger):
    assert labels(tagger.tag(keywords=["compared to SAXS"])) == []
    assert labels(tagger.tag(keywords=["SAXS"], summary="compared to SAXS")) == ["small angle x-ray scattering"]


PHRASES = [
    # common facility phrasing that PaNET does not list (ontology/synonyms.toml) or
    # spells differently (word forms, fillers)
    ("X-ray tomograms of sandstone", ["x-ray tomography"]),          # the data names the method
    ("neutron radiographs of a fuel cell", ["neutron transmission radiography"]),
    ("chest radiographs", []),                                         # bare radiography names nothing
    ("HiP-CT of a human brain", ["x-ray propagation phase contrast tomography"]),
    ("inelastic neutron scattering", ["inelastic neutron spectroscopy"]),
    ("neutron spin echo spectroscopy", ["quasielastic neutron spin echo scattering"]),
    ("time-of-flight neutron spectroscopy", ["time of flight spectrometry"]),
    ("µSR", ["muon spin resonance"]),
    ("muSR", ["muon spin resonance"]),
    ("MuSR", ["muon spin resonance"]),
    ("muon spin rotation/relaxation", ["muon spin resonance"]),
    ("USAXS", ["ultra small angle x-ray scattering"]),
    ("single-crystal X-ray diffraction", ["x-ray single crystal diffraction"]),
    ("protein crystallography", ["macromolecular crystallography"]),
    ("MX at a synchrotron", ["macromolecular crystallography"]),
    ("total neutron scattering", ["total scattering", "neutron scattering"]),
    ("atomic pair distribution function from synchrotron data", ["pair distribution function"]),
    ("phase-contrast microtomography", ["phase contrast imaging", "microtomography"]),
    ("phase-contrast synchrotron tomography", ["phase contrast imaging", "tomography"]),   # a filler word
    ("propagation-based phase contrast tomography", ["propagation phase contrast tomography"]),
    ("angle-resolved photoemission", ["angle resolved photoemission spectroscopy"]),
    ("MA-XRF", ["scanning x-ray fluorescence"]),
    ("X-rays diffractions", ["x-ray diffraction"]),
]


@pytest.mark.parametrize(("text", "expected"), PHRASES)
def test_facility_phrasing(tagger, text, expected):
    assert labels(tagger.tag(title=text)) == expected


@pytest.mark.parametrize("text", [
    "Samples patterned by e-beam lithography",          # how the sample was made
    "LEED and electron diffraction of the surface",     # not a photon or neutron method
    "above the x-ray absorption edge",                  # the process, not the technique
    "the inelastic scattering process in the sample",
])
def test_process_words_are_not_techniques(tagger, text):
    assert tagger.tag(summary=text) == []


def test_title_and_abstract_are_read_apart(tagger):
    tags = tagger.tag(title="SAXS of proteins", summary="SANS too. And SAXS again.")
    assert [(t.label, t.field, t.text) for t in tags] == [
        ("small angle x-ray scattering", "title", "SAXS"),
        ("small angle neutron scattering", "summary", "SANS"),
    ]
    # a name cannot run from the title into the abstract, nor a NUL byte confuse the split
    assert tagger.tag(title="small angle x-ray", summary="scattering") == []
    assert labels(tagger.tag(title="SAXS\x00 data", summary="SANS")) == [
        "small angle x-ray scattering", "small angle neutron scattering"]


def test_evidence_text_is_the_written_occurrence(tagger):
    # the second "x-ray" is the one that names the technique
    tags = tagger.tag(summary="An x-ray tube; then X-Ray  Diffraction of it")
    assert [(t.label, t.text) for t in tags] == [("x-ray diffraction", "X-Ray  Diffraction")]
    # non-ASCII text takes the regex path and gives the same tags
    ascii_tags = tagger.tag(title="Small-angle X-ray scattering of Mueller samples")
    other_tags = tagger.tag(title="Small-angle X-ray scattering of Müller samples")
    assert [(t.iri, t.text) for t in ascii_tags] == [(t.iri, t.text) for t in other_tags]
    assert [t.text for t in tagger.tag(title="Zürich: µSR and μSR")] == ["μSR"]


def test_repeated_calls_give_the_same_tags(tagger):
    record = dict(title="SANS on micelles", keywords=["SAXS", "soft matter"], instruments=["D22"], facility="ILL")
    first = tagger.tag(**record)
    assert [t.model_dump() for t in tagger.tag(**record)] == [t.model_dump() for t in first]


def test_matched_text_and_positions(tagger):
    tags = tagger.tag(summary="Data were collected by neutron diffraction. Later, SAXS.")
    assert [(t.label, t.field, t.text) for t in tags] == [
        ("neutron diffraction", "summary", "neutron diffraction"),
        ("small angle x-ray scattering", "summary", "SAXS"),
    ]


def test_names_do_not_span_sentences(tagger):
    assert tagger.tag(summary="We used x-ray. Scattering was weak.") == []


# -- subjects, keywords, IRIs --------------------------------------------------

def test_iri_in_subject(tagger):
    tags = tagger.tag(subjects=[
        Subject(value="SAXS", scheme="PaNET", value_uri=PANET + "PaNET01188"),
        Subject(value="x-ray", scheme="PaNET", value_uri=PANET + "PaNET2020009"),  # a specifier: ignored
        Subject(value="PaNET01189", scheme="PaNET"),
    ])
    assert [(t.id, t.method, t.text) for t in tags] == [
        ("PaNET01188", "iri", PANET + "PaNET01188"),
        ("PaNET01189", "iri", "PaNET01189"),
    ]


def test_subject_equality_is_case_and_hyphen_insensitive(tagger):
    tags = tagger.tag(keywords=["saxs", "Small-Angle Neutron Scattering", "X-ray diffraction (XRD)",
                                "XPS and XANES", "imaging"])
    assert [(t.label, t.method, t.field) for t in tags] == [
        ("small angle x-ray scattering", "subject", "keywords"),
        ("small angle neutron scattering", "subject", "keywords"),
        ("x-ray diffraction", "subject", "keywords"),
        ("x-ray photoelectron spectroscopy", "subject", "keywords"),
        ("x-ray absorption near edge structure", "subject", "keywords"),
        ("imaging", "subject", "keywords"),
    ]


def test_longer_keyword_is_text_evidence(tagger):
    tags = tagger.tag(keywords=["in situ SAXS of polymers", "sans"], subjects=[Subject(value="testing")])
    assert [(t.label, t.method, t.field) for t in tags] == [
        ("small angle neutron scattering", "subject", "keywords"),
        ("small angle x-ray scattering", "text", "keywords"),
    ]


def test_strongest_evidence_wins_and_ancestors_give_way(tagger):
    tags = tagger.tag(
        title="Small angle scattering of SAXS standards",
        summary="SAXS data",
        keywords=["small angle x-ray scattering"],
        subjects=[Subject(value="x", value_uri=PANET + "PaNET01124")],  # SAS given as an IRI: kept
        facility="ESRF",
    )
    assert [(t.label, t.method) for t in tags] == [
        ("small angle scattering", "iri"),
        ("small angle x-ray scattering", "subject"),
    ]


# -- weak evidence -------------------------------------------------------------

def test_facility_probe_is_weak_and_only_a_fallback(tagger):
    tags = tagger.tag(title="Magnetic order in TbCd6", facility="ILL")
    assert [(t.label, t.method, t.field, t.weak) for t in tags] == [
        ("neutron probe technique", "facility", "facility", True)]
    assert labels(tagger.tag(title="SANS of micelles", facility="Institut Laue-Langevin")) == [
        "small angle neutron scattering"]
    # any technique, even an instrument's or an unrelated one, leaves no room for the probe
    assert labels(tagger.tag(title="Micelles", instruments=["D22"], facility="ILL")) == [
        "small angle neutron scattering"]
    assert labels(tagger.tag(title="Macromolecular crystallography", facility="ESRF")) == [
        "macromolecular crystallography"]
    # facilities with several probes give no facility tag
    assert tagger.tag(title="Magnetic order", facility="ISIS") == []
    assert tagger.tag(title="Magnetic order", facility="PSI") == []
    assert labels(tagger.tag(title="Catalysts", facility="ESRF")) == ["x-ray probe technique"]


def test_instruments(tagger):
    tags = tagger.tag(title="Micelles", instruments=["D22"], facility="ILL")
    assert [(t.label, t.method, t.text, t.weak) for t in tags] == [
        ("small angle neutron scattering", "instrument", "D22", True)]
    # the leading name of a described instrument; unknown facility but an unambiguous name
    assert labels(tagger.tag(instruments=["E2 - Flat-Cone Diffractometer"], facility="HZB")) == [
        "neutron diffraction"]
    assert labels(tagger.tag(instruments=["ID02"])) == ["small angle x-ray scattering"]
    # instrument-type words in the description
    assert labels(tagger.tag(instruments=["Some powder diffractometer"])) == ["powder diffraction"]
    # an instrument named in the title of a record from that facility
    assert labels(tagger.tag(title="Sample Data from NMX", facility="ESS")) == [
        "macromolecular crystallography", "neutron single crystal diffraction"]
    assert tagger.tag(title="Sample Data from NMX") == []  # facility unknown: no guess
    # SLS and SINQ are at PSI: their records use PSI's table, where PEARL is not ISIS's
    # powder diffractometer, and their titles name PSI's instruments
    assert labels(tagger.tag(title="Adsorbed molecules on Cu(111)", instruments=["PEARL"], facility="SLS")) == [
        "x-ray photoelectron diffraction"]
    assert labels(tagger.tag(title="Beamtime on TOMCAT", facility="Swiss Light Source")) == [
        "x-ray microtomography"]
    # a time-of-flight spectrometer always measures inelastic scattering (IN6: of cold neutrons)
    assert labels(tagger.tag(title="Liquid water", instruments=["IN6"], facility="ILL")) == [
        "time of flight spectrometry", "cold neutron spectroscopy"]


def test_a_weak_guess_never_narrows_what_the_record_says(tagger):
    # ESRF ID02 is known for USAXS; a record there that says SAXS is SAXS.
    tags = tagger.tag(title="Small-angle X-ray scattering (SAXS) of Bi2Se3 single crystals",
                      instruments=["ID02 - Time-Resolved Ultra Small-Angle X-Ray Scattering"], facility="ESRF")
    assert [t.label for t in tags] == ["small angle x-ray scattering"]
    # With nothing in the record itself, the instrument's technique stands, marked weak.
    tags = tagger.tag(title="Beamtime 12345", instruments=["ID02 - Time-Resolved Ultra Small-Angle X-Ray Scattering"],
                      facility="ESRF")
    assert [(t.label, t.weak) for t in tags] == [("ultra small angle x-ray scattering", True)]


def test_tag_document(tagger):
    doc = Document(source="ill", oai_identifier="oai:x", datestamp="2024-01-01", pid="10.5291/ILL-DATA.1",
                   title="Hydration of clays", summary="Inelastic neutron scattering on IN5.",
                   instruments=[Instrument(name="IN5")], facility="ILL")
    tagged = tagger.tag_document(doc)
    assert tagged is not doc and doc.techniques == []
    assert tagged.ontology_version == "1.3.0-48-g7011e6b"
    assert [(t.label, t.method) for t in tagged.techniques] == [
        ("inelastic neutron spectroscopy", "text"), ("time of flight spectrometry", "instrument")]


# -- knowledge files -------------------------------------------------------------

def test_every_id_in_the_knowledge_files_is_a_panet_13_technique(tagger):
    assert tagger.unknown_ids == set()
    knowledge = default_knowledge_dir()
    facilities = tomllib.loads((knowledge / "facilities.toml").read_text())
    instruments = tomllib.loads((knowledge / "instruments.toml").read_text())
    assert set(instruments["instrument"]) <= set(facilities["facility"])
    for probe in facilities["probes"].values():
        assert tagger.ontology.technique(probe) is not None
    for entry in facilities["facility"].values():
        assert set(entry["probes"]) <= set(facilities["probes"]) | {"electron"}


@pytest.mark.parametrize(("name", "old", "new", "message"), [
    ("facilities.toml", 'instruments = "PSI"', 'instruments = "PIS"',
     r"\[facility.SLS\] instruments: no instrument table 'PIS'"),
    ("synonyms.toml", '{ to = "PaNET01288", words', '{ into = "PaNET01288", words',
     r"\[modes\] PaNET01177: expected \{ to = id, words = \[...\] \}"),
])
def test_a_malformed_knowledge_file_is_a_clear_error(tmp_path, name, old, new, message):
    from harvester.errors import OntologyError
    from harvester.knowledge import load_knowledge

    for f in default_knowledge_dir().glob("*.toml"):
        (tmp_path / f.name).write_text(f.read_text())
    broken = tmp_path / name
    assert old in broken.read_text()
    broken.write_text(broken.read_text().replace(old, new, 1))
    with pytest.raises(OntologyError, match=message):
        load_knowledge(tmp_path)


@pytest.fixture(scope="module")
def old_tagger() -> Tagger:
    return Tagger(load_ontology(SHARED / "ontology" / "PaNET-v1.0.owl"))


def test_older_ontology_skips_ids_it_lacks(old_tagger):
    assert labels(old_tagger.tag(title="SAXS of proteins")) == ["small angle x-ray scattering"]
    assert {"PaNET01333", "PaNET01334"} <= old_tagger.unknown_ids  # classes added after v1.0
    assert labels(old_tagger.tag(title="small angle neutron and X-ray scattering")) == [
        "small angle neutron scattering", "small angle x-ray scattering"]


# -- the shared samples ------------------------------------------------------------

def _sample_fields(path: Path) -> dict:
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()

    def texts(name: str, under=root) -> list[str]:
        return [" ".join(e.text.split()) for e in under.iter() if etree.QName(e).localname == name and e.text]

    items = [e for e in root.iter() if etree.QName(e).localname == "relatedItem"]
    instruments = [t for e in items if e.get("relatedItemType") == "Instrument" for t in texts("title", e)]
    for e in items:
        e.getparent().remove(e)
    return {"title": " ".join(texts("title")) or None, "summary": "\n".join(texts("description")) or None,
            "subjects": [Subject(value=v) for v in texts("subject")], "instruments": instruments,
            "facility": (texts("publisher") or [None])[0]}


SAMPLES = {
    # file: techniques the record names (text) or implies (weak evidence)
    "hzb_inv_oai_datacite_record__b2find.xml": [("neutron diffraction", "text")],
    "datacite_kernel-4.7_example_instrument.xml": [("macromolecular crystallography", "text")],  # "MX station"
    "ess_openaire_oai_record__b2find.xml": [("neutron time of flight technique", "instrument")],  # V20
    "ess_openaire_oai_record_broken_id__b2find.xml": [("macromolecular crystallography", "instrument"),
                                                      ("neutron single crystal diffraction", "instrument")],
    "datacite_kernel-4.7_example_dataset.xml": [],
    "datacite_kernel-4.7_example_full.xml": [],
    "datacite_oai_oai_getrecord_datacite__viringo.xml": [],
    "datacite_oai_oai_getrecord_dc__viringo.xml": [],
    "datacite_oai_oai_getrecord_oaidatacite__viringo.xml": [],
    "datacite_oai_oai_listrecords_dc__viringo.xml": [],
}


def test_every_record_sample_is_covered():
    with_records = {p.name for p in (SHARED / "samples").glob("*.xml")
                    if b"title>" in p.read_bytes()}
    assert with_records == set(SAMPLES)


@pytest.mark.parametrize(("name", "expected"), SAMPLES.items())
def test_samples(tagger, name, expected):
    tags = tagger.tag(**_sample_fields(SHARED / "samples" / name))
    assert [(t.label, t.method) for t in tags] == expected


def test_samples_with_the_older_ontology(tagger, old_tagger):
    for name in SAMPLES:
        fields = _sample_fields(SHARED / "samples" / name)
        assert [(t.id, t.method) for t in old_tagger.tag(**fields)] == [
            (t.id, t.method) for t in tagger.tag(**fields)], name


# -- CLI ---------------------------------------------------------------------------

@pytest.fixture()
def app(tmp_path):
    return SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path, ontology=str(OWL)))


def test_cli_match_table_and_json(app):
    runner = CliRunner()
    result = runner.invoke(techniques_group, ["match", "GISAXS and SANS of films"], obj=app)
    assert result.exit_code == 0, result.output
    assert "PaNET01162" in result.output and "PaNET01189" in result.output and "SANS" in result.output
    # Piped (as here), a table is not squeezed into 80 columns: each row stays one line.
    assert "│ grazing incidence small angle x-ray scattering │ PaNET01162 │" in result.output
    result = runner.invoke(techniques_group, ["match", "--json", "--facility", "ESRF", "XRD data"], obj=app)
    data = json.loads(result.output)
    assert data["ontology_version"] == "1.3.0-48-g7011e6b"
    assert [(t["id"], t["method"]) for t in data["techniques"]] == [("PaNET01216", "text")]
    result = runner.invoke(techniques_group, ["match"], obj=app)
    assert result.exit_code == 2


def test_cli_jsonl_keeps_order_and_reports_bad_lines(app):
    lines = [
        {"id": "a", "title": "SAXS of proteins"},
        "this is not json",
        {"id": "c", "description": "Neutron diffraction at E2", "facility": "HZB", "instrument": "E2"},
        {"id": "d", "subjects": ["sans", {"value": "x", "valueURI": PANET + "PaNET01188", "scheme": "PaNET"}]},
        ["a", "list"],
        {"id": "f"},
        {"id": "g", "keywords": 5},
    ]
    stdin = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    result = CliRunner().invoke(techniques_group, ["match", "--jsonl"], obj=app, input=stdin)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.output.splitlines()]
    assert len(out) == len(lines)
    assert out[0]["id"] == "a" and [t["id"] for t in out[0]["techniques"]] == ["PaNET01188"]
    assert out[1]["line"] == 2 and "error" in out[1]
    assert [(t["label"], t["method"], t["field"]) for t in out[2]["techniques"]] == [
        ("neutron diffraction", "text", "summary")]
    assert [(t["id"], t["method"]) for t in out[3]["techniques"]] == [("PaNET01188", "iri"), ("PaNET01189", "subject")]
    assert "error" in out[4] and out[5] == {"id": "f", "techniques": []} and "error" in out[6]
    assert set(out[0]["techniques"][0]) >= {"iri", "label", "method", "field", "text"}


def test_cli_ontology_info_and_missing_ontology(app, tmp_path):
    runner = CliRunner()
    result = runner.invoke(ontology_group, ["info", "--json"], obj=app)
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["version"] == "1.3.0-48-g7011e6b" and info["techniques"] == 380 and info["edges"] > 600
    result = runner.invoke(ontology_group, ["lookup", "SAXS"], obj=app)
    assert result.exit_code == 0 and "PaNET01188" in result.output and "small angle scattering" in result.output
    none = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path / "empty", ontology=None))
    result = runner.invoke(ontology_group, ["info"], obj=none)
    assert result.exit_code == 1 and "pan-harvester ontology fetch" in result.output


def test_cli_ontology_fetch(tmp_path):
    from tests.helpers import serve_ontology

    app = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path, ontology=None))
    with serve_ontology() as server:
        result = CliRunner().invoke(ontology_group, ["fetch", f"{server}/PaNET.owl"], obj=app)
    assert result.exit_code == 0, result.output
    assert "1.3.0-48-g7011e6b" in result.output and (tmp_path / "ontology" / "PaNET.owl").is_file()
    result = CliRunner().invoke(ontology_group, ["info"], obj=app)
    assert result.exit_code == 0 and "380" in result.output


def test_every_command_has_help():
    for group in (techniques_group, ontology_group):
        assert group.help
        for command in group.commands.values():
            assert command.help, command.name


# -- the labelled evaluation set -----------------------------------------------------

def test_evaluation_set_figures(tagger):
    from bench.eval_techniques import evaluate, load_entries
    from harvester.cli.techniques import record_arguments

    entries = load_entries()
    sizes = {1: 100, 2: 60, 3: 80, 4: 70, 5: 60, 6: 70, 7: 68, 8: 69, 9: 70, 10: 69, 11: 68, 12: 65}
    batches = {b: [e for e in entries if e.get("batch", 1) == b] for b in sizes}
    assert {b: len(batches[b]) >= n for b, n in sizes.items()} == dict.fromkeys(sizes, True)
    assert sum(1 for e in entries if not e["gold"]) >= 172
    assert len({e["id"] for e in entries}) == len(entries)
    assert all(e["source"] and e["basis"] and all(tagger.ontology.technique(g) for g in e["gold"]) for e in entries)
    # floors a little under today's figures per batch (tests/data/README.md has them):
    # batch 1 holds the goal; batches 3 to 12, held out, are the honest estimate
    # (their first runs are in the README; rules were written after each)
    floors = ((1, 0.95, 0.85, 0.85), (2, 0.94, 0.85, 0.83), (3, 0.90, 0.69, 0.65), (4, 0.89, 0.66, 0.51),
              (5, 0.81, 0.72, 0.71), (6, 0.84, 0.76, 0.64), (7, 0.80, 0.74, 0.63),
              (8, 0.75, 0.72, 0.69), (9, 0.80, 0.64, 0.55), (10, 0.77, 0.64, 0.64), (11, 0.80, 0.66, 0.60),
              (12, 0.77, 0.60, 0.57))
    for batch, precision, recall, strong_recall in floors:
        for weak in (True, False):
            result = evaluate(tagger, batches[batch], weak=weak)
            assert result["precision"] >= precision and result["recall"] >= (recall if weak else strong_recall), {
                k: v for k, v in result.items() if k != "errors"}
    tagged = [e["id"] for e in entries if not e["gold"] and tagger.tag(**record_arguments(e))]
    # the known ones: texts about a technique without a measurement (simulations, computed
    # or synthetic data, design reports and proposals), seismic "coherent diffraction
    # imaging", muon radiography of a volcano that cites X-ray CT, EBSD set against X-ray
    # diffraction, undulator engineering at EuXFEL (the facility's probe), the X-ray
    # transform of integral geometry, a Laue-lens telescope with an "X-ray diffraction" keyword,
    # a reactor's closing news naming its SANS, a theory of the neutron Hall effect, method papers
    # without a measurement (SAXS on model systems, a PNR phase method)
    assert set(tagged) <= {"neg-muon-magnets-simulation", "neg-qensmodels-reference-data",
                           "neg-ess-odin-mcstas-bragg-edge-simulation", "neg-materialsproject-computed-xas",
                           "neg-hf-cod-synthetic-xrd-patterns", "neg-iospress-highness-cdr",
                           "neg-copernicus-se-11-1891-seismic-cdi", "neg-pmc5577107-bcdi-guided-phasing-simulations",
                           "neg-copernicus-gi-7-307-muon-radiography-fbp", "neg-ebsd-beginners-texture-analysis",
                           "neg-iucr-wz5037-scu-hall-probe-correction", "neg-iucr-ig5066-heps-pes-beamline-proposal",
                           "neg-ar5iv-1702.07625-abel-transforms-x-ray-tomography",
                           "neg-ar5iv-1711.03475-laue-lens-bent-crystals", "neg-llb-orphee-reactor-final-shutdown",
                           "neg-arxiv-vanity-1405.0626-neutron-hall-effect-theory",
                           "neg-cyberleninka-saxs-tangent-technique-model-systems",
                           "neg-tomesphere-1108.5653-pnr-phase-method-proposal"}, tagged


def test_the_tagger_beats_a_plain_keyword_matcher_on_every_batch(tagger):
    """The peer: PaNET labels and alternative labels matched as keywords, what a
    harvester without a tagger of its own does (bench/peer_matcher.py)."""
    from bench.eval_techniques import evaluate, load_entries
    from bench.peer_matcher import LabelMatcher

    entries = load_entries()
    peer = LabelMatcher(tagger.ontology)
    for batch in sorted({e.get("batch", 1) for e in entries}):
        part = [e for e in entries if e.get("batch", 1) == batch]
        ours, theirs = evaluate(tagger, part), evaluate(peer, part)
        # strict precision: a tag broader than the gold counts against. Lenient precision
        # is not compared per batch: the peer's tags are mostly broad ancestors ("scattering"),
        # which lenient counting takes as correct, and on batch 8 it comes out above ours.
        assert ours["precision_strict"] > theirs["precision_strict"] and ours["recall"] > theirs["recall"], (
            batch, ours, theirs)
        assert theirs["predicted"] > 0  # the peer does find things: the comparison is not empty
    ours, theirs = evaluate(tagger, entries), evaluate(peer, entries)
    assert ours["precision"] > theirs["precision"] and ours["recall"] > theirs["recall"]
