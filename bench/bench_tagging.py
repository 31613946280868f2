"""Speed of the technique Tagger: microseconds per record and tags per second.

Two workloads, the same records on every run:

* ``typical``: records as a harvest maps them (tests/recordgen: a title, a short
  abstract, keywords, sometimes an instrument, the facility), read the way
  ``Tagger.tag_document`` reads a Document;
* ``long``: abstracts of 80-200 words of filler vocabulary with technique names,
  acronyms and stoplisted look-alikes mixed in (about 1,100 characters).

Each workload is tagged once to warm the tagger's memos, then timed (process
CPU time, best of ``--repeat`` runs: other processes on the machine add noise),
next to the peer, a plain keyword matcher of PaNET labels (bench/peer_matcher.py;
its precision and recall are in bench/eval_techniques.py).
``--baseline DIR`` runs the same records through the Tagger of another checkout
(for example ``git worktree add /tmp/base HEAD``) in a subprocess and prints
both side by side. Usage:

    .venv/bin/python bench/bench_tagging.py [--records 20000] [--ontology PATH] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package and bench.peer_matcher

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


def long_records(n: int, seed: int = 4) -> list[dict]:
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


def typical_records(n: int) -> list[dict]:
    """Tagger.tag arguments of n generated records, as tag_document takes them from a Document."""
    from lxml import etree

    from harvester.records import parse_element
    from tests.recordgen import make_records

    oai = b"http://www.openarchives.org/OAI/2.0/"
    out = []
    for r in make_records(n, seed=1):
        if r.deleted:
            continue
        xml = (b'<record xmlns="%s"><header><identifier>%s</identifier><datestamp>%s</datestamp></header>'
               b"<metadata>%s</metadata></record>") % (oai, r.identifier.encode(), r.datestamp.encode(),
                                                       r.metadata_xml)
        doc = parse_element(etree.fromstring(xml), source="bench")
        facility = doc.facility or next((i.facility for i in doc.instruments if i.facility), None) or doc.publisher
        out.append({"title": doc.title, "summary": doc.summary, "keywords": list(doc.keywords),
                    "subjects": [s.model_dump(mode="json") for s in doc.subjects],
                    "instruments": [i.name for i in doc.instruments], "facility": facility})
    return out


def _time(tag: Any, args: list[dict], repeat: int) -> tuple[float, int]:
    """Best CPU seconds of tagging every record, and the tags of one pass."""
    tags = sum(len(tag(**a)) for a in args)  # warms the memos
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for a in args:
            tag(**a)
        best = min(best, time.process_time() - t0)
    return best, tags


def run(root: Path, ontology: str, workloads: dict[str, list[dict]], repeat: int, *, peer: bool = False) -> dict:
    """Time Tagger.tag of the checkout at ``root`` on each workload (this process),
    and the peer's matcher when ``peer``."""
    sys.path.insert(0, str(root))
    from harvester.document import Subject
    from harvester.ontology import load_ontology
    from harvester.techniques import Tagger

    started = time.perf_counter()
    tagger = Tagger(load_ontology(ontology))
    out: dict = {"build_s": time.perf_counter() - started, "version": tagger.ontology.version}
    matcher = None
    if peer:
        from bench.peer_matcher import LabelMatcher

        matcher = LabelMatcher(tagger.ontology)
    for name, recs in workloads.items():
        args = [dict(r, subjects=[Subject(**s) for s in r.get("subjects", ())]) for r in recs]
        best, tags = _time(tagger.tag, args, repeat)
        chars = sum(len(r.get("title") or "") + len(r.get("summary") or "") for r in recs)
        out[name] = {"records": len(recs), "chars": chars / len(recs), "us": best / len(recs) * 1e6,
                     "tags": tags / len(recs)}
        if matcher is not None:
            best, tags = _time(matcher.tag, args, repeat)
            out[name]["peer"] = {"us": best / len(recs) * 1e6, "tags": tags / len(recs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="typical records (long: a third)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ontology", default=str(ROOT.parent / "shared" / "ontology" / "PaNET.owl"))
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)  # used by --baseline's subprocess
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.inputs:  # the baseline's half: time the given records, print JSON
        workloads = json.loads(args.inputs.read_text())
        print(json.dumps(run(args.root, args.ontology, workloads, args.repeat)))
        return
    workloads = {"typical": typical_records(args.records), "long": long_records(max(1, args.records // 3))}
    results = {"this checkout": run(ROOT, args.ontology, workloads, args.repeat, peer=True)}
    if args.baseline:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
            json.dump(workloads, fh)
            fh.flush()
            done = subprocess.run([sys.executable, __file__, "--inputs", fh.name, "--root", str(args.baseline),
                                   "--ontology", args.ontology, "--repeat", str(args.repeat)],
                                  check=True, capture_output=True, text=True)
        results[f"baseline {args.baseline}"] = json.loads(done.stdout)
    for label, r in results.items():
        print(f"{label}: PaNET {r['version']}, tagger build {r['build_s']:.2f} s")
        for name in workloads:
            w = r[name]
            print(f"  {name:<8} {w['records']:>6} records, {w['chars']:>5.0f} chars: {w['us']:6.1f} us/record, "
                  f"{1e6 / w['us']:>8,.0f} records/s, {w['tags'] * 1e6 / w['us']:>8,.0f} tags/s "
                  f"({w['tags']:.2f} tags/record)")
            if "peer" in w:
                p = w["peer"]
                print(f"  {'  peer':<8} {'':>6}  keyword matcher of PaNET labels: {p['us']:6.1f} us/record, "
                      f"{1e6 / p['us']:>8,.0f} records/s ({p['tags']:.2f} tags/record)")


if __name__ == "__main__":
    main()
