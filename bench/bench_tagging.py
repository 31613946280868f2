"""Tags per second of the Tagger over synthetic records (issue 4: 100k inputs quickly).

Records are built from realistic pieces: a title with or without a technique
name, an abstract of 80-200 words of filler vocabulary with technique names,
acronyms and stoplisted look-alikes mixed in, a few keywords, sometimes an
instrument and a facility. Usage:

    .venv/bin/python bench/bench_tagging.py [--records 100000] [--ontology PATH]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harvester.ontology import load_ontology  # noqa: E402
from harvester.techniques import Tagger  # noqa: E402

FILLER = ("the of and in to a we with for on by at from sample samples measured structure temperature "
          "phase transition magnetic order thin film crystal protein membrane catalyst battery electrode "
          "data analysis beamtime proposal experiment high resolution pressure dependence dynamics "
          "nanoparticles polymer solution interface surface kinetics in-situ operando Fe K-edge").split()
NAMES = ["small-angle X-ray scattering", "SAXS", "SANS", "neutron diffraction", "XANES", "EXAFS",
         "X-ray photoelectron spectroscopy", "XPS", "powder diffraction", "GISAXS", "tomography",
         "inelastic neutron scattering", "ARPES", "XRF", "diffraction limit", "sans", "PhD", "x-ray tube",
         "muon spin rotation", "neutron reflectometry", "macromolecular crystallography", "µCT"]
INSTRUMENTS = ["D22", "ID02", "E2 - Flat-Cone Diffractometer", "LoKI", "I22", "BioMAX", "unknown beamline"]
FACILITIES = ["ILL", "ESRF", "ESS", "HZB", "ISIS", "MAX IV", "Diamond", None]


def records(n: int, seed: int = 4) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rnd.choice(FILLER) for _ in range(rnd.randint(80, 200))]
        for _ in range(rnd.randint(0, 4)):
            words.insert(rnd.randrange(len(words)), rnd.choice(NAMES))
        title = " ".join(rnd.choice(FILLER) for _ in range(rnd.randint(5, 14)))
        if rnd.random() < 0.4:
            title += " by " + rnd.choice(NAMES)
        out.append({
            "title": title.capitalize(),
            "summary": " ".join(words).capitalize() + ".",
            "keywords": rnd.sample(FILLER, 2) + ([rnd.choice(NAMES)] if rnd.random() < 0.3 else []),
            "instruments": [rnd.choice(INSTRUMENTS)] if rnd.random() < 0.5 else [],
            "facility": rnd.choice(FACILITIES),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--ontology", default=str(ROOT.parent / "shared" / "ontology" / "PaNET.owl"))
    args = parser.parse_args()

    started = time.perf_counter()
    tagger = Tagger(load_ontology(args.ontology))
    build = time.perf_counter() - started
    inputs = records(args.records)
    chars = sum(len(r["title"]) + len(r["summary"]) for r in inputs)
    started = time.perf_counter()
    tags = 0
    for record in inputs:
        tags += len(tagger.tag(**record))
    elapsed = time.perf_counter() - started
    print(f"ontology load + tagger build: {build:.2f} s")
    print(f"{args.records} records ({chars / args.records:.0f} chars each): {elapsed:.1f} s, "
          f"{args.records / elapsed:,.0f} records/s, {tags / args.records:.2f} tags/record")


if __name__ == "__main__":
    main()
