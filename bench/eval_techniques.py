"""Precision and recall of the technique tagger on tests/data/techniques_eval.jsonl.

A predicted technique is *correct* when it is a gold technique or a descendant
of one (more specific and still right), *broader* when it is an ancestor of a
gold technique (true but vague), and *wrong* otherwise. A gold technique is
*found* when a correct prediction covers it. Precision is reported strict
(broader counts against) and lenient (broader counts for). Usage:

    .venv/bin/python bench/eval_techniques.py [--ontology PATH] [--no-weak] [--quiet]
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

EVAL = ROOT / "tests" / "data" / "techniques_eval.jsonl"


def evaluate(tagger: Tagger, entries: list[dict], *, weak: bool = True) -> dict:
    onto: Ontology = tagger.ontology
    verdicts: Counter[tuple[str, str]] = Counter()  # (method, verdict)
    found = gold_total = 0
    errors: list[str] = []
    for entry in entries:
        gold = [onto.technique(g).iri for g in entry["gold"]]
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
    total = Counter()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ontology", default=str(ROOT.parent / "shared" / "ontology" / "PaNET.owl"))
    parser.add_argument("--no-weak", action="store_true", help="ignore instrument and facility tags")
    parser.add_argument("--quiet", action="store_true", help="do not list the errors")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    entries = [json.loads(line) for line in EVAL.read_text().splitlines() if line.strip()]
    result = evaluate(Tagger(load_ontology(args.ontology)), entries, weak=not args.no_weak)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "errors"}, indent=2))
        return
    print(f"{result['entries']} records ({result['negatives']} negatives), {result['gold']} gold techniques, "
          f"{result['predicted']} predicted tags{' (weak tags ignored)' if args.no_weak else ''}")
    print(f"precision {result['precision']:.3f} (strict, broader tags counted wrong: "
          f"{result['precision_strict']:.3f})   recall {result['recall']:.3f} ({result['found']}/{result['gold']})")
    for method, counts in result["by_method"].items():
        n = sum(counts.values())
        print(f"  {method:<10} {n:>4} tags  correct {counts['correct']:>3}  broader {counts['broader']:>3}  "
              f"wrong {counts['wrong']:>3}  precision {(counts['correct'] + counts['broader']) / n:.3f}")
    if not args.quiet and result["errors"]:
        print("errors:")
        print("\n".join(result["errors"]))


if __name__ == "__main__":
    main()
