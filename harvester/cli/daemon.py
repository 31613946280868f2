"""Service commands: `run` (the daemon) and `reharvest` (an operator's request,
carried out by the daemon when one runs, here otherwise)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import fields
from typing import Any

import click

from harvester import handoff
from harvester.cli import AppContext, console, handle_errors, setup_logging
from harvester.cli.harvest import harvest_request, print_summary, run_harvest
from harvester.daemon import Daemon, daemon_info, daemon_pid
from harvester.harvest import HarvestRequest, SourceResult
from harvester.index.sync import sync_after_harvest

_RESULT_FIELDS = {f.name for f in fields(SourceResult)}


@click.command()
@click.argument("names", metavar="[SOURCE]...", nargs=-1)
@click.option("--http", "listen", metavar="HOST:PORT",
              help="Serve /health and /metrics here (default: daemon.listen, 127.0.0.1:9464; "
                   "'' disables; port 0 picks a free one, written to DATA_DIR/daemon.json).")
@click.pass_context
@handle_errors
def run(ctx: click.Context, names: tuple[str, ...], listen: str | None) -> None:
    """Run as a service: harvest the named sources (all enabled sources when
    none is named), each on its own schedule, until SIGTERM.

    Schedules come from the configuration (`schedule = "every 6h"` or a cron
    expression, per source, else `default_schedule`), with `daemon.jitter`
    seconds of random delay, at most `daemon.max_concurrent` harvests at once.
    The search index is synced after harvests. SIGTERM/SIGINT: harvests stop
    after their current page and the daemon exits within `daemon.stop_timeout`
    seconds; SIGHUP: reload the configuration. `pan-harvester reharvest` hands
    its requests to this daemon."""
    app: AppContext = ctx.obj
    settings = app.settings
    # A daemon logs what it does: at least INFO, in the configured format unless --log-format says.
    verbose = max(ctx.meta.get("verbose", 0), 1)
    setup_logging(verbose, ctx.meta.get("log_format") or settings.daemon.log_format)
    if verbose < 2:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # "Running job ..." per run
    if listen and ":" not in listen:
        raise click.BadParameter("use HOST:PORT, e.g. 127.0.0.1:9464", param_hint="--http")
    daemon = Daemon(app.reload, names, listen=listen, sync=lambda: sync_after_harvest(app))
    code = daemon.run()
    if daemon.abandoned:
        # Pool threads blocked in a read from a slow server would keep the
        # interpreter alive at exit; their page was never committed, so leave now.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


@click.command()
@click.argument("source")
@click.option("--full", is_flag=True,
              help="Harvest everything again, and mark deleted the records the server no longer lists "
                   "(a ListIdentifiers sweep, for servers that do not keep deletions).")
@click.option("--from", "from_", metavar="DATE", help="Harvest records changed on or after DATE (YYYY-MM-DD).")
@click.option("--until", metavar="DATE", help="Harvest records changed on or before DATE.")
@click.option("--no-wait", is_flag=True, help="With a running daemon: hand the request over and return.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
@handle_errors
def reharvest(app: AppContext, source: str, full: bool, from_: str | None, until: str | None,
              no_wait: bool, as_json: bool) -> None:
    """Harvest SOURCE now: incrementally, everything (--full) or a window
    (--from/--until).

    When a daemon runs on this data directory it carries the request out (after
    any harvest of SOURCE it is running: one waits for the other) and this
    command waits for the result; otherwise the harvest runs here. Exits 1 when
    the harvest failed."""
    request = harvest_request(full, from_, until)  # a bad date fails here, not in the daemon's log
    settings = app.settings
    settings.select([source])
    data_dir = settings.data_dir
    pid = daemon_pid(data_dir)
    outcome: dict[str, Any] | None = None
    if pid is not None:
        req = handoff.submit(data_dir, source, request)
        _say(as_json, f"handed to the running daemon (pid {pid}) as request {req.id}")
        if no_wait:
            if as_json:
                click.echo(json.dumps({"handled_by": "daemon", "request": req.id, "status": "submitted"}))
            return
        outcome = _wait_for_daemon(app, req, as_json)
        if outcome is None:  # the daemon stopped before taking the request: do it here
            _say(as_json, "the daemon stopped before taking the request; harvesting here")
    if outcome is None:
        outcome = _harvest_here(app, source, request)
    result = SourceResult(**{k: v for k, v in (outcome.get("result") or {}).items() if k in _RESULT_FIELDS}) \
        if outcome.get("result") else SourceResult(source, status=outcome["status"], error=outcome.get("error"))
    if as_json:
        click.echo(json.dumps(outcome, indent=2, default=str))
    else:
        print_summary([result])
        note = outcome.get("index") or {}
        if note.get("message"):
            console.print(note["message"], highlight=False)
    if result.status != "ok":
        raise SystemExit(1)


def _say(as_json: bool, text: str) -> None:
    # Progress goes to stderr with --json, so stdout stays one JSON document.
    click.echo(text, err=as_json)


def _harvest_here(app: AppContext, source: str, request: HarvestRequest) -> dict[str, Any]:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # lock_wait=None: a harvest of SOURCE running elsewhere is waited for, not raced.
        results = run_harvest(app, (source,), request, stop=stop, lock_wait=None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = results[0]
    index = sync_after_harvest(app) if result.status == "ok" else None
    return {"handled_by": "cli", "source": source, "status": result.status, "result": result.as_dict(),
            "index": index}


def _wait_for_daemon(app: AppContext, req: handoff.Request, as_json: bool) -> dict[str, Any] | None:
    """Wait for the daemon's answer, showing what it is doing. None when the
    daemon went away before claiming the request (it was taken back)."""
    data_dir = app.settings.data_dir
    last_line = ""
    live = console.status("waiting for the daemon", spinner="dots") if console.is_terminal else None
    if live:
        live.start()
    try:
        while True:
            result = handoff.result_of(data_dir, req.id)
            if result is not None:
                return {"handled_by": "daemon", "request": req.id, **result}
            if daemon_pid(data_dir) is None:
                if handoff.withdraw(data_dir, req.id):
                    return None
                result = handoff.result_of(data_dir, req.id)  # it may have finished as it stopped
                if result is not None:
                    return {"handled_by": "daemon", "request": req.id, **result}
                return {"handled_by": "daemon", "request": req.id, "source": req.source, "status": "interrupted",
                        "error": "the daemon stopped while carrying out the request; the next daemon "
                                 "takes it up again and resumes from the last committed page"}
            line = _describe(daemon_info(data_dir), req)
            if line and line != last_line:
                if live:
                    live.update(line)
                else:
                    _say(as_json, line)
                last_line = line
            time.sleep(0.3)
    except KeyboardInterrupt:
        _say(as_json, f"stopped waiting; the daemon carries on with request {req.id} "
                      "(see `pan-harvester status`)")
        raise SystemExit(130) from None
    finally:
        if live:
            live.stop()


def _describe(info: dict[str, Any] | None, req: handoff.Request) -> str:
    if not info:
        return ""
    view = (info.get("sources") or {}).get(req.source) or {}
    mine = next((e for e in view.get("running", []) if e.get("request") == req.id), None)
    if mine is None:
        return "queued"
    if mine["state"] != "harvesting":
        return f"{req.source}: {mine['state']}"
    total = f"/{mine['total']}" if mine.get("total") else ""
    return f"{req.source}: harvesting, {mine['records']}{total} records, {mine['pages']} pages"


COMMANDS = [run, reharvest]
