"""Operator commands for harvesting: sources, harvest, status."""

from __future__ import annotations

import json
import threading
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harvester.cli import AppContext, console, handle_errors
from harvester.config import Settings
from harvester.errors import HarvesterError
from harvester.harvest import Harvester, HarvestRequest, SourceResult, failed
from harvester.index.sync import sync_after_harvest
from harvester.locks import holder
from harvester.store import Store


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@click.pass_obj
@handle_errors
def sources(app: AppContext, as_json: bool) -> None:
    """List the source registry: facility, endpoint, prefix, sets, schedule, enabled."""
    settings = app.settings
    rows = [
        {"source": s.name, "facility": s.facility, "set_facilities": s.set_facilities, "url": s.url,
         "metadata_prefix": s.metadata_prefix, "sets": s.sets, "enabled": s.enabled,
         "schedule": settings.schedule_of(s), "disabled_reason": s.disabled_reason}
        for s in settings.sources.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="pan-harvester sources")
    for col in ("source", "facility", "url", "prefix", "sets", "schedule", "enabled"):
        table.add_column(col, overflow="fold")
    for r in rows:
        enabled = "yes" if r["enabled"] else f"no: {r['disabled_reason'] or ''}"
        facility = "per set, else the record's" if r["set_facilities"] else r["facility"]
        table.add_row(r["source"], facility, r["url"] or "-", r["metadata_prefix"],
                      ", ".join(r["sets"]) or "-", r["schedule"], enabled)
    console.print(table)


def run_harvest(app: AppContext, names: tuple[str, ...], request: HarvestRequest, *,
                stop: threading.Event | None = None, lock_wait: float | None = 0.0) -> list[SourceResult]:
    """Harvest with a live progress display per source (when on a terminal)."""
    settings = app.settings
    chosen = settings.select(list(names))
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[pages]} pages"), TimeElapsedColumn(),
                  console=console, disable=not console.is_terminal, transient=False) as bar:
        tasks = {s.name: bar.add_task(s.name, total=None, pages=0) for s in chosen}

        def on_progress(p: Any) -> None:
            bar.update(tasks[p.source], completed=p.records, total=p.total, pages=p.pages)

        harvester = Harvester(settings, progress=on_progress, stop=stop, lock_wait=lock_wait)
        try:
            return harvester.harvest_many(chosen, request)
        finally:
            harvester.http.close()


def harvest_request(full: bool, from_: str | None, until: str | None) -> HarvestRequest:
    """The request the options ask for; a contradiction or a bad date is a usage error."""
    try:
        return HarvestRequest(full=full, from_=from_, until=until)
    except HarvesterError as exc:
        raise click.UsageError(str(exc)) from None


def print_summary(results: list[SourceResult]) -> None:
    table = Table(title="harvest summary")
    for col in ("source", "status", "new", "updated", "deleted", "unchanged", "kept aside", "repaired",
                "pages", "requests", "seconds", "error"):
        table.add_column(col, overflow="fold")
    for r in results:
        style = {"ok": "green", "failed": "red", "interrupted": "yellow"}.get(r.status, "")
        table.add_row(r.source, f"[{style}]{r.status}[/]" if style else r.status, str(r.new), str(r.updated),
                      str(r.deleted), str(r.unchanged), str(r.kept_aside), str(r.repaired), str(r.pages),
                      str(r.requests), f"{r.seconds:.1f}", r.error or "")
    console.print(table)


@click.command()
@click.argument("names", metavar="[SOURCE]...", nargs=-1)
@click.option("--full", is_flag=True, help="Ignore the watermark and harvest everything again.")
@click.option("--from", "from_", metavar="DATE", help="Harvest records changed on or after DATE.")
@click.option("--until", metavar="DATE", help="Harvest records changed on or before DATE.")
@click.option("--no-index", is_flag=True, help="Do not bring the search index up to date afterwards.")
@click.option("--wait", "wait", type=float, default=0.0, show_default=True,
              help="Seconds to wait for a source another process is harvesting (-1: forever).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.pass_obj
@handle_errors
def harvest(app: AppContext, names: tuple[str, ...], full: bool, from_: str | None, until: str | None,
            no_index: bool, wait: float, as_json: bool) -> None:
    """Harvest the named sources (all enabled sources when none is named).

    Incremental by default: from the server's responseDate of the last complete
    harvest. A harvest that was interrupted resumes from its last committed page.
    Exits 1 when a source failed."""
    request = harvest_request(full, from_, until)
    from harvester.index.follow import index_follower

    # The index follows the harvest as it commits (a process of its own), rather
    # than starting after it.
    with index_follower(app, enabled=not no_index) as follower:
        results = run_harvest(app, names, request, lock_wait=None if wait < 0 else wait)
    index_note = None
    if not no_index:
        index_note = sync_after_harvest(app, follower)
    if as_json:
        click.echo(json.dumps({"sources": [r.as_dict() for r in results], "index": index_note}, indent=2))
    else:
        print_summary(results)
        if index_note and index_note.get("message"):
            console.print(index_note["message"], highlight=False)
    if failed(results):
        raise SystemExit(1)


def status_rows(settings: Settings, store: Store) -> list[dict[str, Any]]:
    rows = []
    for source in settings.sources.values():
        live, dead = store.counts(source.name)
        state = store.source_state(source.name)
        last_run = (store.runs(source.name, limit=1) or [None])[0]
        cps = store.checkpoints(source.name)
        rows.append({
            "source": source.name,
            "facility": source.facility,
            "enabled": source.enabled,
            "records": live,
            "deleted": dead,
            "last_success": state["last_success"],
            "watermark": store.watermark_of(source.name),
            "last_error": state["last_error"],
            "last_error_at": state["last_error_at"],
            "kept_aside": len(store.kept_aside(source.name)),
            "running": holder(settings.data_dir, source.name),
            "resumable": [
                {"set": c.set_spec, "cursor": c.cursor, "complete_list_size": c.complete_list_size,
                 "pages": c.pages, "updated_at": c.updated_at}
                for c in cps
            ],
            "last_run": last_run,
        })
    return rows


@click.command()
@click.argument("names", metavar="[SOURCE]...", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (stable, see README).")
@click.pass_obj
@handle_errors
def status(app: AppContext, names: tuple[str, ...], as_json: bool) -> None:
    """Per source: records, deletions, last success, watermark, last error."""
    settings = app.settings
    with app.store() as store:
        rows = status_rows(settings, store)
    if names:
        settings.select(list(names))
        rows = [r for r in rows if r["source"] in names]
    daemon = daemon_view(app)
    if daemon:
        for row in rows:
            row["daemon"] = daemon.get(row["source"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="pan-harvester status")
    for col in ("source", "records", "deleted", "last success", "watermark", "running", "next run",
                "last error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if not r["enabled"] and not r["records"]:
            continue
        next_run = (r.get("daemon") or {}).get("next_run") or "-"
        table.add_row(r["source"], str(r["records"]), str(r["deleted"]), r["last_success"] or "-",
                      r["watermark"] or "-", r["running"] or "-", next_run,
                      (r["last_error"] or "")[:120])
    console.print(table)


def daemon_view(app: AppContext) -> dict[str, Any] | None:
    """The running daemon's view per source, when one runs (issue: daemon)."""
    try:
        from harvester.daemon import read_daemon_state
    except ImportError:
        return None
    return read_daemon_state(app.settings.data_dir)


COMMANDS = [sources, harvest, status]
