"""`pan-harvester techniques ...` and `pan-harvester ontology ...`: thin wrappers.

Each command gets the application object through ``@click.pass_obj``; it needs
only ``obj.settings.data_dir`` (Path) and ``obj.settings.ontology`` (path/URL
or None). Library errors become CLI errors here and nowhere else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import click

from harvester.cli import console
from harvester.document import Subject
from harvester.errors import HarvesterError
from harvester.ontology import DEFAULT_URL, Ontology, default_ontology, fetch_ontology
from harvester.techniques import Tagger


def _ontology(obj: Any) -> Ontology:
    try:
        if callable(getattr(obj, "ontology", None)):  # the app context caches it
            return obj.ontology()
        settings = obj.settings
        return default_ontology(settings.data_dir, getattr(settings, "ontology", None))
    except HarvesterError as exc:
        raise click.ClickException(str(exc)) from exc


def _strings(value: Any, *keys: str) -> list[str]:
    """A string, a list of strings, or objects holding one of ``keys`` -> list of strings."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict):
            item = next((item[k] for k in keys if isinstance(item.get(k), str)), None)
        if isinstance(item, str):
            out.append(item)
        elif item is not None:
            raise ValueError(f"expected a string, got {type(item).__name__}")
    return out


def _subjects(value: Any) -> list[Subject]:
    out = []
    for item in value if isinstance(value, list) else ([] if value is None else [value]):
        if isinstance(item, str):
            out.append(Subject(value=item))
        elif isinstance(item, dict):
            out.append(Subject(
                value=str(item.get("value") or item.get("subject") or ""),
                scheme=item.get("scheme") or item.get("subjectScheme"),
                scheme_uri=item.get("schemeURI") or item.get("scheme_uri"),
                value_uri=item.get("valueURI") or item.get("value_uri"),
            ))
        else:
            raise ValueError(f"subject must be a string or an object, got {type(item).__name__}")
    return out


def record_arguments(record: Any) -> dict[str, Any]:
    """Tagger.tag keyword arguments from one JSON record (fields may be missing)."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    descriptions = _strings(record.get("description", record.get("summary")), "description", "value")
    titles = _strings(record.get("title"), "title", "value")
    facility = record.get("facility")
    if facility is not None and not isinstance(facility, str):
        raise ValueError("facility must be a string")
    return {
        "title": " ".join(titles) or None,
        "summary": "\n".join(descriptions) or None,
        "keywords": _strings(record.get("keywords"), "value", "keyword"),
        "subjects": _subjects(record.get("subjects")),
        "instruments": _strings(record.get("instrument", record.get("instruments")), "name", "title"),
        "facility": facility,
    }


def tag_lines(tagger: Tagger, lines: Iterable[str]) -> Iterator[str]:
    """One output JSON line per input line, in order; a bad line gives an ``error`` line."""
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            tags = tagger.tag(**record_arguments(record))
        except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
            yield json.dumps({"line": number, "error": str(exc).splitlines()[0]})
            continue
        out: dict[str, Any] = {}
        for key in ("id", "pid", "doi"):
            if isinstance(record.get(key), str):
                out[key] = record[key]
        out["techniques"] = [t.model_dump(mode="json") for t in tags]
        yield json.dumps(out, ensure_ascii=False)


@click.group()
def techniques() -> None:
    """Find PaNET techniques in text and records."""


@techniques.command("match")
@click.argument("text", required=False)
@click.option("--title", help="Tag this as the title (TEXT is tagged as the abstract).")
@click.option("--keyword", "keywords", multiple=True, help="A keyword or subject (repeatable).")
@click.option("--instrument", "instruments", multiple=True, help="An instrument name (repeatable).")
@click.option("--facility", help="The facility the record comes from, e.g. ILL.")
@click.option("--json", "as_json", is_flag=True, help="Print the tags as JSON.")
@click.option("--jsonl", is_flag=True,
              help="Read JSON records (title, description, keywords, subjects, instrument, facility) "
                   "one per line from stdin; write one JSON line per record, in order.")
@click.pass_obj
def match(obj: Any, text: str | None, title: str | None, keywords: tuple[str, ...],
          instruments: tuple[str, ...], facility: str | None, as_json: bool, jsonl: bool) -> None:
    """Tag TEXT (or JSON lines from stdin) with PaNET techniques, showing the evidence."""
    tagger = Tagger(_ontology(obj))
    if jsonl:
        if text or title or keywords or instruments or facility:
            raise click.UsageError("--jsonl reads records from stdin; give no TEXT or record options")
        stdout = sys.stdout
        for line in tag_lines(tagger, sys.stdin):
            stdout.write(line + "\n")
        stdout.flush()
        return
    if not (text or title or keywords or instruments or facility):
        raise click.UsageError("give TEXT to tag (or --title/--keyword/--instrument/--facility, or --jsonl)")
    tags = tagger.tag(title=title, summary=text, keywords=keywords, instruments=instruments, facility=facility)
    if as_json:
        click.echo(json.dumps({"ontology_version": tagger.ontology.version,
                               "techniques": [t.model_dump(mode="json") for t in tags]}, indent=2,
                              ensure_ascii=False))
        return
    if not tags:
        click.echo("no technique found")
        return
    from rich.table import Table

    table = Table(title=f"PaNET {tagger.ontology.version}")
    for column in ("technique", "id", "method", "field", "text"):
        table.add_column(column, no_wrap=column in ("id", "method"))
    for t in tags:
        table.add_row(t.label, t.id, t.method + (" (weak)" if t.weak else ""), t.field, t.text)
    console.print(table)


@click.group()
def ontology() -> None:
    """Fetch and inspect the PaNET ontology."""


@ontology.command("fetch")
@click.argument("url", default=DEFAULT_URL)
@click.pass_obj
def fetch(obj: Any, url: str) -> None:
    """Download PaNET from URL into the data directory and compile it."""
    try:
        path = fetch_ontology(url, obj.settings.data_dir)
        onto = default_ontology(obj.settings.data_dir, None)
    except HarvesterError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"fetched PaNET {onto.version} ({len(onto)} techniques) from {url} into {path}")


@ontology.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def info(obj: Any, as_json: bool) -> None:
    """Show the ontology in use: version, source, counts."""
    onto = _ontology(obj)
    data = {"version": onto.version, "version_iri": onto.version_iri, "source": onto.source,
            "sha256": onto.sha256, **onto.stats()}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if value is not None:
            click.echo(f"{key + ':':<12} {value}")


@ontology.command("lookup")
@click.argument("name")
@click.pass_obj
def lookup(obj: Any, name: str) -> None:
    """Resolve NAME (label, acronym, id or IRI) to techniques, with parents and descendants."""
    onto = _ontology(obj)
    found = onto.resolve(name)
    if not found:
        raise click.ClickException(f"no PaNET technique named {name!r}")
    for t in found:
        click.echo(f"{t.id}  {t.label}" + (f"  ({', '.join(t.alt_labels)})" if t.alt_labels else ""))
        click.echo(f"  {t.iri}")
        parents = [onto.technique(p) for p in t.parents]
        click.echo("  parents: " + ", ".join(p.label for p in parents if p))
        click.echo(f"  descendants: {len(onto.descendants(t.iri))}")
