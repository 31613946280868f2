"""`pan-harvester show`: the document built from one stored record."""

from __future__ import annotations

import json

import click
from rich.table import Table

from harvester.cli import AppContext, console, handle_errors
from harvester.errors import HarvesterError, OntologyError, RecordError
from harvester.pipeline import to_document


@click.command()
@click.argument("source")
@click.argument("identifier")
@click.option("--json", "as_json", is_flag=True, help="Print the document as JSON (the Document model).")
@click.option("--raw", is_flag=True, help="Print the stored raw OAI record XML instead.")
@click.option("--no-techniques", is_flag=True, help="Do not load PaNET; show the document untagged.")
@click.pass_obj
@handle_errors
def show(app: AppContext, source: str, identifier: str, as_json: bool, raw: bool, no_techniques: bool) -> None:
    """Show the document built from the stored record IDENTIFIER of SOURCE."""
    settings = app.settings
    with app.store() as store:
        rec = store.get_record(source, identifier)
    if rec is None:
        raise HarvesterError(f"no record {identifier!r} of source {source!r} in the store")
    if raw:
        click.echo((rec.raw or b"").decode("utf-8"))
        return
    if rec.deleted:
        raise HarvesterError(f"record {identifier!r} was deleted at the source (datestamp {rec.datestamp})")
    tagger, note = None, None
    if not no_techniques:
        try:
            tagger = app.tagger()
        except OntologyError as exc:
            note = f"techniques not tagged: {exc}"
    facility = settings.sources[source].facility_rule() if source in settings.sources else None
    try:
        doc = to_document(rec, facility=facility, tagger=tagger)
    except RecordError as exc:
        raise HarvesterError(f"record {identifier!r} cannot become a document: {exc}") from None
    if as_json:
        click.echo(json.dumps(doc.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False))
        return
    table = Table(show_header=False, title=f"{source} {identifier}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in doc.model_dump(mode="json", exclude_none=True).items():
        if value in ([], "", None):
            continue
        if name == "techniques":
            value = "\n".join(f"{t['label']} ({t['id']}) by {t['method']} in {t['field']}: {t['text']!r}"
                              for t in value)
        elif name in ("creators", "contributors"):
            value = "\n".join(p["full_name"] + (f" [{p['orcid']}]" if p.get("orcid") else "") for p in value)
        elif isinstance(value, list | dict):
            value = json.dumps(value, ensure_ascii=False)
        table.add_row(name, str(value))
    console.print(table)
    if note:
        console.print(f"[yellow]{note}[/]")
