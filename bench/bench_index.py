"""Index benchmarks, both backends, one run:

- documents/s of `index rebuild` from the record store (parse + tag + bulk write
  + alias swap), for the embedded index and for Elasticsearch;
- median and 95th percentile latency of a faceted search (hits + facility,
  technique, year and licence buckets, with and without text and filters) over
  the same documents (default 100k, generated synthetically into a store);
- documents/s of a full harvest from a loopback OAI-PMH server into
  Elasticsearch beside sickle's bare iteration of the same server.

    python bench/bench_index.py [--docs N] [--queries Q] [--es-url URL | --no-es] [--json]

Elasticsearch: --es-url, else PAN_HARVESTER_TEST_ES_URL, else
`scripts/elasticsearch start` (left running). The store and the embedded index
live in a temporary directory (or --work DIR, reused when it already holds N records).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harvester.index import IndexBackend  # noqa: E402
from harvester.index.embedded import EmbeddedBackend  # noqa: E402
from harvester.index.query import SearchQuery, resolve_techniques  # noqa: E402
from harvester.index.sync import rebuild  # noqa: E402
from harvester.ontology import load_ontology  # noqa: E402
from harvester.store import IncomingRecord, Store  # noqa: E402
from harvester.techniques import Tagger  # noqa: E402
from tests.conftest_index import oai_record  # noqa: E402
from tests.recordgen import make_records  # noqa: E402

DEFAULT_ONTOLOGY = REPO.parent / "shared" / "ontology" / "PaNET.owl"
FACETS = ("facility", "technique", "year", "licence")


def build_store(path: Path, n: int, *, seed: int = 7, batch: int = 5000) -> Store:
    """A record store holding n generated oai_datacite records (one source per facility
    is not needed: the facility comes from each record's publisher)."""
    store = Store(path)
    have = store.max_seq()
    if have >= n:
        return store
    started = time.perf_counter()
    for first in range(have + 1, n + 1, batch):
        count = min(batch, n - first + 1)
        page = [IncomingRecord(r.identifier, r.datestamp, False, r.sets,
                               oai_record(r.identifier, r.datestamp, r.metadata_xml, r.sets))
                for r in make_records(count, seed=seed, first=first)]
        store.commit_page("bench", "oai_datacite", page, None)
    print(f"  generated {n - have} records into {path} in {time.perf_counter() - started:.1f}s",
          file=sys.stderr)
    return store


def bench_rebuild(store: Store, backend: IndexBackend, tagger: Any, ontology: Any) -> dict[str, Any]:
    started = time.perf_counter()
    report = rebuild(store, backend, tagger=tagger, ontology=ontology, chunk_size=1000)
    seconds = time.perf_counter() - started
    if report.failed or report.unparsable:
        print(f"  warning: {report.failed} refused, {report.unparsable} unparsable", file=sys.stderr)
    return {"documents": report.handled, "seconds": round(seconds, 2),
            "docs_per_s": round(report.handled / seconds, 1)}


def search_mix(ontology: Any) -> list[SearchQuery]:
    sas = resolve_techniques(["small angle scattering"], ontology)
    return [
        SearchQuery(size=10, facets=FACETS),
        SearchQuery(text="small angle scattering", size=10, facets=FACETS),
        SearchQuery(text="lysozyme", size=10, facets=FACETS, year_from=2018),
        SearchQuery(facilities=("European Synchrotron Radiation Facility",), size=10, facets=FACETS),
        SearchQuery(technique_iris=sas, year_from=2017, year_to=2020, size=10, facets=FACETS),
        SearchQuery(text="diffraction battery", size=10, facets=FACETS),
    ]


def bench_search(backend: IndexBackend, queries: list[SearchQuery], rounds: int) -> dict[str, Any]:
    for q in queries * 3:  # warm caches
        backend.search(q)
    timings = []
    totals = {}
    for i in range(rounds):
        q = queries[i % len(queries)]
        started = time.perf_counter()
        result = backend.search(q)
        timings.append((time.perf_counter() - started) * 1000)
        totals[i % len(queries)] = result.total
    timings.sort()
    return {"queries": rounds, "median_ms": round(statistics.median(timings), 2),
            "p95_ms": round(timings[max(0, int(len(timings) * 0.95) - 1)], 2),
            "totals": [totals[k] for k in sorted(totals)]}


def bench_harvest(url: str, records: int, ontology: str) -> dict[str, Any]:
    """Documents/s of a full harvest from a loopback OAI-PMH server into
    Elasticsearch, timed around the `pan-harvester harvest` command itself (run
    in this process): the harvest into the store with the index following it,
    then catching up. Beside it, sickle's bare iteration of the same server
    (goal: at least half of it)."""
    from click.testing import CliRunner

    from bench.bench_harvest import oai_server, sickle_iteration
    from harvester.cli import main
    from harvester.config import load_settings
    from harvester.index.elastic import ElasticBackend
    from harvester.ontology import default_ontology

    alias = f"bench-{uuid.uuid4().hex[:8]}"
    with oai_server(records, 500) as oai_url, tempfile.TemporaryDirectory() as tmp:
        sickle_iteration(oai_url)  # warm-up: the server renders and caches its pages
        n_sickle, t_sickle = sickle_iteration(oai_url)
        data = Path(tmp) / "data"
        lines = [f'data_dir = "{data}"', f'ontology = "{ontology}"', f'es_url = "{url}"',
                 f'index_alias = "{alias}"', "[http]", "delay = 0"]
        for name in load_settings(environ={}).sources:
            lines += [f"[sources.{name}]", "enabled = false"]
        lines += ["[sources.bench]", f'url = "{oai_url}"', 'facility = "bench"']
        config = Path(tmp) / "config.toml"
        config.write_text("\n".join(lines) + "\n")
        default_ontology(data, ontology)  # an installed harvester has PaNET compiled already
        # The configuration file says it all: no PAN_HARVESTER_* of the caller's.
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PAN_HARVESTER_")}
        try:
            started = time.perf_counter()
            out = CliRunner().invoke(main, ["--config", str(config), "harvest", "bench", "--full", "--json"],
                                     env=env, catch_exceptions=False)
            total = time.perf_counter() - started
            if out.exit_code != 0:
                raise RuntimeError(f"pan-harvester harvest exited {out.exit_code}: {out.output[-2000:]}")
            answer = json.loads(out.stdout)
            [source] = answer["sources"]
            note = answer["index"]
            if not note or not note.get("ok"):
                raise RuntimeError(f"the index sync failed: {note}")
        finally:
            with ElasticBackend(url, alias) as backend:
                indexed = backend.count() if backend.current() else 0
                for index in backend.indexes():
                    backend.drop_index(index)
    return {"records": records, "sickle_docs_per_s": round(n_sickle / t_sickle, 1),
            "seconds": round(total, 2), "harvest_seconds": source["seconds"],
            "sync_seconds": note["seconds"], "indexed": indexed,
            "docs_per_s": round(note["handled"] / total, 1),
            "ratio": round((note["handled"] / total) / (n_sickle / t_sickle), 3)}


def es_url(args: argparse.Namespace) -> str | None:
    if args.no_es:
        return None
    url = args.es_url or os.environ.get("PAN_HARVESTER_TEST_ES_URL")
    if url:
        return url
    script = REPO / "scripts" / "elasticsearch"
    started = subprocess.run([str(script), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        sys.exit(f"Elasticsearch did not start:\n{started.stderr[-3000:]}")
    return subprocess.run([str(script), "url"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000, help="documents (default 100000)")
    parser.add_argument("--queries", type=int, default=300, help="timed searches per backend")
    parser.add_argument("--es-url", help="Elasticsearch to use")
    parser.add_argument("--no-es", action="store_true", help="embedded backend only")
    parser.add_argument("--ontology", default=str(DEFAULT_ONTOLOGY), help="PaNET file")
    parser.add_argument("--work", type=Path, help="directory for the store and embedded index (kept)")
    parser.add_argument("--harvest-records", type=int, default=20_000,
                        help="records of the harvest-into-Elasticsearch run (0: skip it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="pan-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ontology = load_ontology(args.ontology, cache_dir=work / "ontology")
    tagger = Tagger(ontology)
    store = build_store(work / "harvester.sqlite", args.docs)
    queries = search_mix(ontology)
    results: dict[str, Any] = {"docs": args.docs}

    backends: list[tuple[str, IndexBackend]] = [
        ("embedded", EmbeddedBackend(work / "index.sqlite", f"bench-{uuid.uuid4().hex[:8]}"))]
    url = es_url(args)
    if url:
        from harvester.index.elastic import ElasticBackend

        backends.append(("elasticsearch", ElasticBackend(url, f"bench-{uuid.uuid4().hex[:8]}",
                                                         request_timeout=120)))
    try:
        for name, backend in backends:
            print(f"{name}: rebuild from the store...", file=sys.stderr)
            results[name] = {"rebuild": bench_rebuild(store, backend, tagger, ontology)}
            print(f"{name}: faceted search...", file=sys.stderr)
            results[name]["search"] = bench_search(backend, queries, args.queries)
        results["harvest"] = None
        if url and args.harvest_records:
            print("elasticsearch: full harvest from a loopback OAI-PMH server...", file=sys.stderr)
            results["harvest"] = bench_harvest(url, args.harvest_records, args.ontology)
    finally:
        for name, backend in backends:
            if name == "elasticsearch":
                for index in backend.indexes():
                    backend.drop_index(index)
            backend.close()
        store.close()

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"index benchmark, {args.docs} documents (generated oai_datacite records)")
    for name, _ in backends:
        r, s = results[name]["rebuild"], results[name]["search"]
        print(f"  {name:<14} index rebuild {r['docs_per_s']:>9,.0f} docs/s ({r['documents']} in {r['seconds']}s)"
              f"   faceted search median {s['median_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms"
              f" ({s['queries']} queries)")
    if url and results["embedded"]["search"]["totals"] != results["elasticsearch"]["search"]["totals"]:
        print("  warning: the backends disagree on totals:", results["embedded"]["search"]["totals"],
              results["elasticsearch"]["search"]["totals"])
    h = results["harvest"]
    if h is None:
        print("  harvest into Elasticsearch vs sickle: not measured (needs Elasticsearch)")
    else:
        print(f"  full harvest into Elasticsearch, {h['records']} records (gzip, pages of 500):"
              f" {h['docs_per_s']:,.0f} docs/s (`pan-harvester harvest` {h['seconds']}s in all: harvest"
              f" {h['harvest_seconds']:.2f}s, index sync {h['sync_seconds']:.2f}s following it;"
              f" {h['indexed']} indexed)\n  sickle 0.7 bare ListRecords of the same server: "
              f"{h['sickle_docs_per_s']:,.0f} records/s; ratio {h['ratio']:.2f} (goal >= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
