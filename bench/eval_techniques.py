"""Precision and recall of the technique tagger on tests/data/techniques_eval.jsonl.

A predicted technique is *correct* when it is a gold technique or a descendant
of one (more specific and still right), *broader* when it is an ancestor of a
gold technique (true but vague), and *wrong* otherwise. A gold technique is
*found* when a correct prediction covers it. Precision is reported strict
(broader counts against) and lenient (broader counts for).

The set comes in batches (field ``batch``, 1 when absent): batch 1 is the
original set, the later batches were added as held-out checks of the
tagger's rules (see tests/data/README.md). Figures are printed for all entries, for
each batch, and with the weak (instrument, facility) tags left out, next to the
same figures for a plain keyword matcher (PaNET labels
and alternative labels, see bench/peer_matcher.py), the peer. Usage:

    .venv/bin/python bench/eval_techniques.py [--ontology PATH] [--batch N] [--quiet] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harvester.cli.techniques import record_arguments  # noqa: E402
from harvester.ontology import Ontology, load_ontology  # noqa: E402
from harvester.techniques import Tagger  # noqa: E402
from bench.peer_matcher import LabelMatcher  # noqa: E402

EVAL = ROOT / "tests" / "data" / "techniques_eval.jsonl"
BATCH_NAMES = {1: "original"}  # the others: "batch N"


def load_entries(path: Path = EVAL) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def evaluate(tagger: Tagger | LabelMatcher, entries: list[dict], *, weak: bool = True) -> dict:
    onto: Ontology = tagger.ontology
    verdicts: Counter[tuple[str, str]] = Counter()  # (method, verdict)
    found = gold_total = 0
    errors: list[str] = []
    for entry in entries:
        # an older PaNET may lack a gold class: that technique cannot be found with it
        gold = [t.iri for t in map(onto.technique, entry["gold"]) if t is not None]
        tags = [t for t in tagger.tag(**record_arguments(entry)) if weak or not t.weak]
        for t in tags:
            if any(t.iri == g or t.iri in onto.descendants(g) for g in gold):
                verdict = "correct"
            elif any(t.iri in onto.ancestors(g) for g in gold):
                verdict = "broader"
            else:
                verdict = "wrong"
                errors.append(f"  wrong   {entry['id']}: {t.label} ({t.method} {t.field}: {t.text!r})")
            verdicts[(t.method, verdict)] += 1
        for g in gold:
            gold_total += 1
            if any(t.iri == g or t.iri in onto.descendants(g) for t in tags):
                found += 1
            else:
                errors.append(f"  missed  {entry['id']}: {onto.technique(g).label}")
    total: Counter[str] = Counter()
    for (_, verdict), n in verdicts.items():
        total[verdict] += n
    predicted = sum(total.values())
    return {
        "entries": len(entries),
        "negatives": sum(1 for e in entries if not e["gold"]),
        "predicted": predicted,
        "precision_strict": total["correct"] / predicted if predicted else 1.0,
        "precision": (total["correct"] + total["broader"]) / predicted if predicted else 1.0,
        "recall": found / gold_total if gold_total else 1.0,
        "gold": gold_total,
        "found": found,
        "by_method": {
            method: {v: verdicts[(method, v)] for v in ("correct", "broader", "wrong")}
            for method in sorted({m for m, _ in verdicts})
        },
        "errors": errors,
    }


def _line(name: str, r: dict, peer: dict | None = None) -> str:
    line = (f"{name:<26} {r['entries']:>4} records {r['negatives']:>3} neg  {r['predicted']:>4} tags  "
            f"precision {r['precision']:.3f} (strict {r['precision_strict']:.3f})  "
            f"recall {r['recall']:.3f} ({r['found']}/{r['gold']})")
    if peer is not None:
        line += f"  | peer P {peer['precision']:.3f} R {peer['recall']:.3f}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ontology", default=str(ROOT.parent / "shared" / "ontology" / "PaNET.owl"))
    parser.add_argument("--batch", type=int, help="evaluate one batch only (1, 2, ...)")
    parser.add_argument("--quiet", action="store_true", help="do not list the errors")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    entries = load_entries()
    if args.batch is not None:
        entries = [e for e in entries if e.get("batch", 1) == args.batch]
    tagger = Tagger(load_ontology(args.ontology))
    peer = None if args.json else LabelMatcher(tagger.ontology)
    rows = {"all": evaluate(tagger, entries), "all, strong tags only": evaluate(tagger, entries, weak=False)}
    peer_rows = {"all": evaluate(peer, entries)} if peer else {}
    for b in sorted({e.get("batch", 1) for e in entries}):
        part = [e for e in entries if e.get("batch", 1) == b]
        name = BATCH_NAMES.get(b, f"batch {b}")
        rows[name] = evaluate(tagger, part)
        rows[f"{name}, strong only"] = evaluate(tagger, part, weak=False)
        if peer:
            peer_rows[name] = evaluate(peer, part)
    if args.json:
        print(json.dumps({name: {k: v for k, v in r.items() if k != "errors"} for name, r in rows.items()},
                         indent=2))
        return
    print(f"PaNET {tagger.ontology.version}; peer: PaNET labels matched as keywords (bench/peer_matcher.py)")
    for name, r in rows.items():
        print(_line(name, r, peer_rows.get(name)))
    print("by method (all records):")
    for method, counts in rows["all"]["by_method"].items():
        n = sum(counts.values())
        print(f"  {method:<10} {n:>4} tags  correct {counts['correct']:>3}  broader {counts['broader']:>3}  "
              f"wrong {counts['wrong']:>3}  precision {(counts['correct'] + counts['broader']) / n:.3f}")
    if not args.quiet and rows["all"]["errors"]:
        print("errors:")
        print("\n".join(rows["all"]["errors"]))


if __name__ == "__main__":
    main()
