"""Harvest throughput and memory, side by side with sickle, in one run.

    python bench/bench_harvest.py [--records 20000] [--page-size 500] [--memory 10000,100000]

Starts the loopback OAI-PMH server of the tests (gzip, pages of --page-size)
as a subprocess, then on the same server:

1. sickle 0.7's bare `ListRecords` iteration (parses and maps records, stores nothing);
2. `pan-harvester`'s full harvest into a fresh SQLite store (durable: every
   page committed with its checkpoint);

and prints records/s for both and their ratio. Then the peak resident memory
of a harvest of each size in --memory, each in a fresh process: memory must
not grow with the size of a harvest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@contextmanager
def oai_server(records: int, page_size: int):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.oaiserver", "--records", str(records), "--page-size", str(page_size)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"server did not start: {url!r}")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def sickle_iteration(url: str) -> tuple[int, float]:
    from sickle import Sickle

    started = time.perf_counter()
    n = sum(1 for _ in Sickle(url).ListRecords(metadataPrefix="oai_datacite", ignore_deleted=False))
    return n, time.perf_counter() - started


def harvester_run(url: str, data_dir: Path) -> tuple[int, float]:
    from harvester.config import Settings, Source
    from harvester.harvest import Harvester, HarvestRequest

    settings = Settings(data_dir=data_dir, sources={"bench": Source(name="bench", url=url)})
    settings.http.delay = 0
    harvester = Harvester(settings)
    started = time.perf_counter()
    result = harvester.harvest_source(settings.sources["bench"], HarvestRequest(full=True))
    elapsed = time.perf_counter() - started
    harvester.http.close()
    if result.status != "ok":
        raise RuntimeError(result.error)
    return result.new + result.updated + result.deleted + result.unchanged, elapsed


def child_harvest(url: str) -> None:
    """Run in a fresh process: harvest, then report the peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        n, elapsed = harvester_run(url, Path(tmp))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": n, "seconds": elapsed, "peak_rss_mib": peak_kib / 1024}))


def memory_profile(size: int, page_size: int) -> dict:
    with oai_server(size, page_size) as url:
        out = subprocess.run([sys.executable, __file__, "--child", url], cwd=ROOT, capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--memory", default="10000,100000", help="harvest sizes for the memory profile")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_harvest(args.child)
        return

    print(f"loopback OAI-PMH server: {args.records} oai_datacite records, gzip, pages of {args.page_size}")
    with oai_server(args.records, args.page_size) as url:
        sickle_iteration(url)  # warm-up: the server renders and caches its pages
        n_sickle, t_sickle = sickle_iteration(url)
        with tempfile.TemporaryDirectory() as tmp:
            n_ours, t_ours = harvester_run(url, Path(tmp))
    rate_sickle, rate_ours = n_sickle / t_sickle, n_ours / t_ours
    print(f"{'':34}{'records':>9}{'seconds':>9}{'records/s':>11}")
    print(f"{'sickle 0.7 bare ListRecords':34}{n_sickle:>9}{t_sickle:>9.2f}{rate_sickle:>11.0f}")
    print(f"{'pan-harvester harvest -> SQLite':34}{n_ours:>9}{t_ours:>9.2f}{rate_ours:>11.0f}")
    print(f"ratio pan-harvester / sickle: {rate_ours / rate_sickle:.2f} (goal >= 1.0)")

    sizes = [int(s) for s in args.memory.split(",") if s]
    if sizes:
        print("\npeak resident memory of a full harvest, fresh process each:")
        results = [(size, memory_profile(size, args.page_size)) for size in sizes]
        for size, r in results:
            print(f"  {size:>7} records: {r['peak_rss_mib']:7.1f} MiB  ({r['records'] / r['seconds']:.0f} records/s)")
        if len(results) > 1:
            growth = results[-1][1]["peak_rss_mib"] / results[0][1]["peak_rss_mib"]
            print(f"  growth {results[-1][0]} vs {results[0][0]}: {growth:.2f}x (goal <= 1.2x)")


if __name__ == "__main__":
    main()
