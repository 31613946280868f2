"""Records/s of parse+map+tag, side by side with lxml alone parsing the same pages.

    python bench/bench_pipeline.py [--records 50000] [--page-size 500] [--repeat 2]
                                   [--ontology PATH] [--workers N]

Builds --records generated oai_datacite records (tests/recordgen.make_records:
real-shaped DataCite kernel-4 payloads) as OAI-PMH ListRecords pages of
--page-size, all in memory, then times on the same pages, in one process:

1. lxml alone: `etree.fromstring(page)`, nothing else (the yardstick);
2. the pipeline: `etree.fromstring(page)`, then for each record of the page
   `records.parse_element(record)` and `Tagger.tag_document(document)`, each
   stage timed on its own for the breakdown.

Both use the harvester's safe parser. Each is run --repeat times, alternately, and
the best run counts (the machine is shared; the best run is the least disturbed).
The goal (issue 4) is a pipeline at least a third as fast as lxml alone.

--workers N adds a separate figure: the pipeline spread over N processes (pages
sent to the workers, documents left there), for what a multi-core host gets. The
headline figure stays the single-process one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lxml import etree  # noqa: E402

from harvester.errors import RecordError  # noqa: E402
from harvester.ontology import load_ontology  # noqa: E402
from harvester.records import parse_element, safe_parser  # noqa: E402
from harvester.techniques import Tagger  # noqa: E402
from tests.recordgen import make_records  # noqa: E402

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
RECORD = f"{{{OAI_NS}}}record"
GOAL = 1 / 3
SOURCE = "bench"


def build_pages(n: int, page_size: int) -> list[bytes]:
    """n records as OAI-PMH ListRecords responses, the way a repository serves them."""
    records = make_records(n, seed=4)
    pages = []
    for start in range(0, n, page_size):
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<OAI-PMH xmlns="{OAI_NS}" '
                 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
                 "<responseDate>2024-01-01T00:00:00Z</responseDate>"
                 '<request verb="ListRecords" metadataPrefix="oai_datacite">http://localhost/oai</request>'
                 "<ListRecords>".encode()]
        for rec in records[start:start + page_size]:
            sets = "".join(f"<setSpec>{escape(s)}</setSpec>" for s in rec.sets)
            parts.append(f"<record><header><identifier>{escape(rec.identifier)}</identifier>"
                         f"<datestamp>{rec.datestamp}</datestamp>{sets}</header><metadata>".encode())
            parts.append(rec.metadata_xml)
            parts.append(b"</metadata></record>\n")
        token = f"page{start // page_size + 1}" if start + page_size < n else ""
        parts.append(f"<resumptionToken>{token}</resumptionToken></ListRecords></OAI-PMH>".encode())
        pages.append(b"".join(parts))
    return pages


def lxml_alone(pages: list[bytes]) -> tuple[int, float]:
    parser = safe_parser()
    started = time.perf_counter()
    for page in pages:
        etree.fromstring(page, parser)
    elapsed = time.perf_counter() - started
    # Counted outside the timing: lxml alone does not look at the records.
    return sum(page.count(b"<record>") for page in pages), elapsed


def pipeline(pages: list[bytes], tagger: Tagger) -> tuple[int, int, float, list[float]]:
    """(records, documents, wall-clock seconds, [seconds parsing, mapping, tagging]).

    Each record is mapped then tagged before the next one, as a streaming harvest
    would (documents are not collected per page); the clock is read around each
    stage of each record, which costs ~0.1 us against ~100 us per record."""
    parser = safe_parser()
    clock = time.perf_counter
    parse = map_ = tag = 0.0
    records = documents = 0
    started = clock()
    for page in pages:
        t0 = clock()
        root = etree.fromstring(page, parser)
        t1 = clock()
        parse += t1 - t0
        for record in root.iter(RECORD):
            records += 1
            t1 = clock()
            try:
                doc = parse_element(record, source=SOURCE)
            except RecordError:
                map_ += clock() - t1
                continue
            t2 = clock()
            tagger.tag_document(doc)
            t3 = clock()
            map_, tag = map_ + t2 - t1, tag + t3 - t2
            documents += 1
    return records, documents, clock() - started, [parse, map_, tag]


# --- process pool -------------------------------------------------------------------

_worker_tagger: Tagger | None = None


def _init_worker(ontology: str, cache_dir: str) -> None:
    global _worker_tagger
    _worker_tagger = Tagger(load_ontology(ontology, cache_dir=Path(cache_dir)))


def _ready(_: int) -> int:
    time.sleep(0.2)  # keeps this worker busy so that every worker gets started
    return os.getpid()


def _work(page: bytes) -> int:
    assert _worker_tagger is not None
    return pipeline([page], _worker_tagger)[1]


def pooled(pages: list[bytes], workers: int, ontology: str, cache_dir: str) -> tuple[int, float]:
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(ontology, cache_dir)) as pool:
        list(pool.map(_ready, range(workers)))  # start-up and ontology loading not timed
        started = time.perf_counter()
        documents = sum(pool.map(_work, pages))
        return documents, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measure; the best counts")
    parser.add_argument("--ontology", default=str(ROOT.parent / "shared" / "ontology" / "PaNET.owl"))
    parser.add_argument("--workers", type=int, default=0, help="also time a pool of N processes")
    args = parser.parse_args()

    started = time.perf_counter()
    pages = build_pages(args.records, args.page_size)
    megabytes = sum(map(len, pages)) / 1e6
    print(f"{args.records} generated oai_datacite records in {len(pages)} pages of {args.page_size} "
          f"({megabytes:.0f} MB), built in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as cache_dir:
        started = time.perf_counter()
        tagger = Tagger(load_ontology(args.ontology, cache_dir=Path(cache_dir)))
        print(f"ontology {tagger.ontology.version} loaded and compiled in {time.perf_counter() - started:.1f} s")

        best_lxml = best_pipe = float("inf")
        stages = [0.0, 0.0, 0.0]
        n_records = n_docs = 0
        for _ in range(max(1, args.repeat)):
            n_records, seconds = lxml_alone(pages)
            best_lxml = min(best_lxml, seconds)
            n, n_docs, seconds, times = pipeline(pages, tagger)
            if seconds < best_pipe:
                best_pipe, stages = seconds, times
        if n != n_records or n_docs != n_records:
            print(f"warning: {n} records on the pages, {n_docs} documents built", file=sys.stderr)

        def rate(seconds: float) -> float:
            return n_records / seconds

        print(f"\nsingle process, best of {args.repeat} ({n_docs} documents from {n_records} records):")
        print(f"  {'':28}{'records/s':>11}{'us/record':>11}")
        print(f"  {'lxml alone (fromstring)':28}{rate(best_lxml):>11,.0f}{best_lxml / n_records * 1e6:>11.1f}")
        print(f"  {'parse+map+tag (documents)':28}{rate(best_pipe):>11,.0f}{best_pipe / n_records * 1e6:>11.1f}")
        ratio = best_lxml / best_pipe
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(f"  ratio parse+map+tag / lxml alone: {ratio:.3f} (goal >= {GOAL:.2f}: {verdict})")
        parse, map_, tag = stages
        print(f"\n  breakdown of that pipeline run:{'':11}{'us/record':>11}{'share':>8}")
        for label, seconds in (("parse (lxml, in pipeline)", parse), ("map (parse_element)", map_),
                               ("tag (tag_document)", tag), ("parse+map", parse + map_),
                               ("loop and clocks", best_pipe - parse - map_ - tag)):
            print(f"  {label:28}{rate(seconds):>11,.0f}{seconds / n_records * 1e6:>11.1f}"
                  f"{seconds / best_pipe:>8.0%}")

        if args.workers > 0:
            docs, seconds = pooled(pages, args.workers, args.ontology, cache_dir)
            print(f"\nprocess pool of {args.workers} workers (separate figure; {os.cpu_count()} CPUs here):")
            print(f"  {'parse+map+tag, pooled':28}{docs / seconds:>11,.0f}{seconds / docs * 1e6:>11.1f}")


if __name__ == "__main__":
    main()
