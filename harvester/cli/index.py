"""`pan-harvester index sync|rebuild|status`, `pan-harvester search`, `pan-harvester stats`.

Thin: each command opens the configured backend (Elasticsearch when
PAN_HARVESTER_ES_URL / es_url is set, else the embedded index in the data
directory) and calls one library function. Errors become messages and exit
codes in `handle_errors`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from harvester.cli import console, err_console, handle_errors
from harvester.errors import IndexError_
from harvester.index import COMPLETENESS_FLAGS, DIMENSIONS, open_backend
from harvester.index.query import SearchQuery, parse_year_range, resolve_techniques
from harvester.index.sync import SyncReport, describe, run_for_app

_FLAG_LABELS = {"orcid": "ORCID", "ror": "ROR"}  # completeness column headings other than the flag's name


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _progress(report: SyncReport) -> None:
    err_console.print(f"  {report.handled} records, in step up to change {report.position}",
                      highlight=False)


def _run(app: Any, mode: str, as_json: bool, quiet: bool) -> None:
    try:
        report, warning = run_for_app(app, mode=mode, on_progress=None if (as_json or quiet) else _progress)
    except IndexError_ as exc:
        report = getattr(exc, "report", None)
        if as_json and report is not None:
            _echo_json({"ok": False, "message": str(exc), **report.to_json()})
            raise SystemExit(1) from exc
        raise
    if as_json:
        _echo_json({"ok": True, "warning": warning, **report.to_json()})
        return
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(describe(report), highlight=False)


@click.group("index")
def index_group() -> None:
    """Keep the search index in step with the record store.

    The index is Elasticsearch when PAN_HARVESTER_ES_URL (es_url) is set, else an
    embedded SQLite index in the data directory. Consumers query the alias
    (default pan-datasets), behind which sits a versioned concrete index."""


@index_group.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print the sync report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.pass_obj
@handle_errors
def sync_cmd(app: Any, as_json: bool, quiet: bool) -> None:
    """Write what changed in the record store since the last sync (tombstones become deletes).

    Safe to repeat and to interrupt: the datestamp is the document version.
    Documents the index refused are recorded and retried on the next sync. When
    the index cannot be reached, exits 1 saying how far behind it is; nothing
    is lost, the next sync catches up."""
    _run(app, "sync", as_json, quiet)


@index_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print the rebuild report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.pass_obj
@handle_errors
def rebuild_cmd(app: Any, as_json: bool, quiet: bool) -> None:
    """Build a new index from every record in the store and swap the alias to it.

    For a new mapping or a new PaNET version; no facility is asked again. Searches
    use the old index until the new one is complete, then the alias moves in one
    atomic step and the old index is deleted."""
    _run(app, "rebuild", as_json, quiet)


@index_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@handle_errors
def status_cmd(app: Any, as_json: bool) -> None:
    """Where the index stands: backend, concrete index, documents, changes not yet indexed."""
    settings = app.settings
    store = app.store()
    try:
        position = store.index_position(settings.index_alias)
        info: dict[str, Any] = {
            "alias": settings.index_alias,
            "backend": "elasticsearch" if settings.es_url else "embedded",
            "url": settings.es_url,
            "position": position,
            "behind": store.count_changes_since(position),
            "failures": [dict(zip(("source", "identifier", "seq", "error", "attempts"), f))
                         for f in store.index_failures(settings.index_alias)],
        }
    finally:
        store.close()
    with open_backend(settings) as backend:
        try:
            info["index"] = backend.current()
            info["documents"] = backend.count() if info["index"] else 0
            info["reachable"] = True
        except IndexError_ as exc:
            info.update(index=None, documents=None, reachable=False, error=str(exc))
    if as_json:
        _echo_json(info)
        return
    console.print(f"alias {info['alias']} ({info['backend']}{' ' + info['url'] if info['url'] else ''}): "
                  f"index {info['index'] or '(none yet)'}, {info['documents']} documents", highlight=False)
    console.print(f"in step with store change {position}; {info['behind']} change(s) behind; "
                  f"{len(info['failures'])} record(s) waiting for a retry", highlight=False)
    if not info["reachable"]:
        console.print(f"[red]unreachable:[/] {info['error']}", highlight=False)
    for f in info["failures"][:20]:
        console.print(f"  {f['source']} {f['identifier']}: {f['error']} ({f['attempts']} attempts)",
                      highlight=False)


# -- search and stats ------------------------------------------------------------


def _query(app: Any, words: Sequence[str], facilities: Sequence[str], techniques: Sequence[str],
           year: str | None, **extra: Any) -> SearchQuery:
    start = end = None
    if year:
        try:
            start, end = parse_year_range(year)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--year") from exc
    iris = None
    if techniques:
        try:
            iris = resolve_techniques(techniques, app.ontology())
        except LookupError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--technique") from exc
    return SearchQuery(text=" ".join(words) or None, facilities=tuple(facilities), technique_iris=iris,
                       year_from=start, year_to=end, **extra)


_filters = [
    click.option("--facility", "-f", "facilities", multiple=True, metavar="F",
                 help="Only this facility (repeat for any of several; case-insensitive)."),
    click.option("--technique", "-t", "techniques", multiple=True, metavar="T",
                 help="Only this PaNET technique or any of its descendants: label, synonym or "
                      "acronym ('small angle scattering', SAXS), id or IRI (repeat for any of several)."),
    click.option("--year", "-y", metavar="A..B",
                 help="Publication years, inclusive: 2020, 2018..2021, 2019.., ..2015."),
]


def _with_filters(fn: Any) -> Any:
    for option in reversed(_filters):
        fn = option(fn)
    return fn


@click.command("search")
@click.argument("words", metavar="[QUERY]", nargs=-1)
@_with_filters
@click.option("--limit", "-n", default=10, show_default=True, type=click.IntRange(0, 10000),
              help="How many hits to show.")
@click.option("--offset", default=0, type=click.IntRange(0), help="Skip this many hits (paging).")
@click.option("--json", "as_json", is_flag=True, help="JSON: {total, hits: [{pid, title, facility, techniques, ...}]}.")
@click.pass_obj
@handle_errors
def search_cmd(app: Any, words: tuple[str, ...], facilities: tuple[str, ...], techniques: tuple[str, ...],
               year: str | None, limit: int, offset: int, as_json: bool) -> None:
    """Search the datasets: free text (every word must match; "quoted phrases"),
    and/or filters. A technique matches its descendants: -t 'small angle scattering'
    finds SAXS, SANS and GISAXS datasets."""
    query = _query(app, words, facilities, techniques, year, size=limit, offset=offset)
    with open_backend(app.settings) as backend:
        result = backend.search(query)
    if as_json:
        _echo_json(result.to_json())
        return
    table = Table(title=f"{result.total} dataset(s)", title_justify="left", show_lines=False)
    for column in ("pid", "year", "facility", "title", "techniques"):
        table.add_column(column, overflow="fold")
    for h in result.hits:
        table.add_row(h.get("pid") or "", str(h.get("publication_year") or ""), h.get("facility") or "",
                      h.get("title") or "", ", ".join(t["label"] for t in h.get("techniques") or ()))
    console.print(table)


def _dimensions(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    dims = [d.strip() for v in value for d in v.split(",") if d.strip()]
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: choose from {', '.join(DIMENSIONS)}")
    return tuple(dict.fromkeys(dims)) or ("facility", "technique", "year")


@click.command("stats")
@click.argument("words", metavar="[QUERY]", nargs=-1)
@click.option("--by", "by", multiple=True, callback=_dimensions, metavar="DIM",
              help=f"Count per dimension (repeat, or comma-separate): {', '.join(DIMENSIONS)}. "
                   "Default: facility, technique, year (publication year).")
@_with_filters
@click.option("--top", default=1000, show_default=True, type=click.IntRange(1, 10000),
              help="At most this many buckets per dimension.")
@click.option("--no-completeness", is_flag=True, help="Leave out the metadata completeness report.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {total, DIM: [{key, count}], completeness: [{key, count, licence, ...}]}.")
@click.pass_obj
@handle_errors
def stats_cmd(app: Any, words: tuple[str, ...], by: tuple[str, ...], facilities: tuple[str, ...],
              techniques: tuple[str, ...], year: str | None, top: int, no_completeness: bool,
              as_json: bool) -> None:
    """How many datasets per facility, technique, year, licence, instrument...,
    and how complete each facility's metadata is (share of records with a
    licence, ORCID creators, ROR affiliations, an abstract, an instrument, a
    technique named in the record). The same filters as `search` narrow it down."""
    query = _query(app, words, facilities, techniques, year)
    with open_backend(app.settings) as backend:
        stats = backend.stats(by, query, limit=top, with_completeness=not no_completeness)
    if as_json:
        _echo_json(stats)
        return
    console.print(f"{stats['total']} dataset(s)", highlight=False)
    for dim in by:
        table = Table(title=f"by {dim}", title_justify="left")
        table.add_column(dim, overflow="fold")
        table.add_column("datasets", justify="right")
        for b in stats[dim]:
            key = f"{b['label']} ({b['key']})" if dim == "technique" and b.get("label") else str(b["key"])
            table.add_row(key, str(b["count"]))
        console.print(table)
    if not no_completeness:
        table = Table(title="metadata completeness (share of records)", title_justify="left")
        table.add_column("facility", justify="left")
        table.add_column("records", justify="right")
        for flag in COMPLETENESS_FLAGS:
            table.add_column(_FLAG_LABELS.get(flag, flag), justify="right")
        for row in stats["completeness"]:
            table.add_row(str(row["key"]), str(row["count"]),
                          *(f"{row[f] * 100:.0f}%" for f in COMPLETENESS_FLAGS))
        console.print(table)


COMMANDS = [index_group, search_cmd, stats_cmd]
