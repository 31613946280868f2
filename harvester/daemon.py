"""The long-running service: scheduled harvests, operator requests, clean stops.

    main thread      signals (TERM/INT: stop, HUP: reload), operator requests
                     (handoff), the state file, the systemd watchdog
    scheduler        APScheduler, one job per source on its own schedule, run
                     in a pool of `daemon.max_concurrent` threads
    request threads  one per operator request (`pan-harvester reharvest`)
    status-http      /health and /metrics (service.py)

Never two harvests of one source at once: every harvest, scheduled or asked
for, takes the per-source lock (locks.py) and waits for it, so a reharvest
asked while a scheduled harvest runs starts when that one ends, and a CLI
harvest in another process is waited for the same way.

Stopping: the stop event makes running harvests end after the page they are
on (a page and its checkpoint are committed together); the daemon waits up
to `daemon.stop_timeout` for them, then leaves. A harvest still stuck in a
request to a slow server is abandoned: nothing of its page was committed, so
the next run resumes from the last checkpoint.

`DATA_DIR/daemon.lock` is flocked while a daemon runs (one daemon per data
directory; the CLI uses it to find the daemon) and `DATA_DIR/daemon.json` is
the daemon's view for `pan-harvester status`, rewritten atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import undefined

from harvester import handoff, sdnotify
from harvester.config import Settings, parse_schedule
from harvester.errors import HarvesterError
from harvester.harvest import Harvester, HarvestRequest, Progress, SourceResult
from harvester.http import HTTPClient
from harvester.locks import exclusive_lock, holder
from harvester.service import Metrics, StateCollector, StatusServer
from harvester.store import Store, parse_utc, utcnow

log = logging.getLogger(__name__)

LOCK_FILE = "daemon.lock"
STATE_FILE = "daemon.json"
JOB_PREFIX = "harvest:"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED_SIGNALS = {*STOP_SIGNALS, signal.SIGHUP}
STATE_REFRESH = 5.0  # seconds between state file rewrites when nothing happened
PRUNE_EVERY = 3600.0  # seconds between sweeps of old request results


# -- finding a running daemon (used by the CLI) -------------------------------

def daemon_pid(data_dir: Path) -> int | None:
    """The pid of the daemon running on this data directory, or None."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def daemon_info(data_dir: Path) -> dict[str, Any] | None:
    """The running daemon's whole state file, or None when no daemon runs."""
    if daemon_pid(data_dir) is None:
        return None
    try:
        return json.loads((Path(data_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None  # the daemon is starting and has not written it yet


def read_daemon_state(data_dir: Path) -> dict[str, dict[str, Any]] | None:
    """Per source, the running daemon's view (`next_run`, `schedule`,
    `running`, `last_result`, `healthy`, ...), for `pan-harvester status`.
    None when no daemon runs."""
    info = daemon_info(data_dir)
    return None if info is None else info.get("sources", {})


def _daemon_lock(data_dir: Path) -> contextlib.AbstractContextManager[None]:
    """One daemon per data directory; the CLI finds it by this lock."""
    return exclusive_lock(Path(data_dir) / LOCK_FILE, wait=0, content=f"{os.getpid()}\n",
                          busy=f"a daemon already runs on {data_dir}: pid")


# -- schedules ----------------------------------------------------------------

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _cron_day_of_week(spec: str) -> str:
    """Crontab numbers days from Sunday (0 or 7); APScheduler 3 from Monday.
    Give APScheduler names so '1-5' keeps meaning Monday to Friday."""
    parts = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d)(?:-(\d))?", part)
        if not m:
            parts.append(part)  # '*', names, steps: same in both
            continue
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if first == 0 and last >= 6:
            parts.append("*")
        elif first == 0:  # Sunday first would be a backwards range for APScheduler
            parts.append("sun" if last == 0 else f"sun,mon-{_DOW_NAMES[last]}")
        else:
            parts.append(_DOW_NAMES[first] if first == last else f"{_DOW_NAMES[first]}-{_DOW_NAMES[last]}")
    return ",".join(parts)


def make_trigger(schedule: str, jitter: int) -> BaseTrigger:
    """'every 6h' or a 5-field cron expression (server's local time) as an
    APScheduler trigger with `jitter` seconds of random delay per run."""
    kind, value = parse_schedule(schedule)
    if kind == "interval":
        return IntervalTrigger(seconds=int(value), jitter=jitter or None, timezone=UTC)
    minute, hour, day, month, dow = str(value).split()
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_cron_day_of_week(dow),
                       jitter=jitter or None)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def first_run_time(schedule: str, *, last_started: str | None, unfinished: bool, jitter: int,
                   now: datetime | None = None) -> datetime | None:
    """When a source's first harvest after a daemon start is due. An
    unfinished harvest (a checkpoint left by a stop) resumes soon; an interval
    schedule continues from the last run instead of restarting its clock, so
    restarts neither postpone harvests nor hammer a server; a cron schedule
    keeps its own times (None)."""
    now = now or datetime.now(UTC)
    soon = now + timedelta(seconds=random.uniform(0, jitter))
    if unfinished:
        return soon
    kind, value = parse_schedule(schedule)
    if kind == "cron":
        return None
    if last_started is None:
        return soon
    due = parse_utc(last_started) + timedelta(seconds=int(value))
    return max(due, soon)


# -- the daemon ----------------------------------------------------------------

@dataclass
class SourceView:
    """What the daemon knows about one source, as /health and status show it."""

    source: str
    schedule: str | None = None  # None: not scheduled here (operator requests only)
    healthy: bool = True
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    last_result: dict[str, Any] | None = None
    running: list[dict[str, Any]] = field(default_factory=list)


class Daemon:
    """`run()` blocks until stopped. `load_settings` is called again on SIGHUP;
    `sync` brings the search index up to date after harvests (its failures are
    logged and counted, never fatal)."""

    def __init__(self, load_settings: Callable[[], Settings], names: Sequence[str] = (), *,
                 listen: str | None = None, sync: Callable[[], Any] | None = None,
                 poll_interval: float = 0.5) -> None:
        self._load = load_settings
        self.settings = load_settings()
        self.names = tuple(names)
        self.settings.select(list(self.names))  # unknown names fail now, not at the first reload
        self.data_dir = self.settings.data_dir
        self.listen = self.settings.daemon.listen if listen is None else listen
        self.sync = sync
        self.poll_interval = poll_interval
        self.stop = threading.Event()
        self.abandoned = 0  # harvests still running when the stop timeout ran out
        self.address: str | None = None  # where /health and /metrics are served
        self.started_at = utcnow()

        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._views: dict[str, SourceView] = {}
        self._dirty = threading.Event()
        self._index: dict[str, Any] = {"last_sync": None, "last_error": None, "last_error_at": None}
        self._sync_lock = threading.Lock()
        self._local = threading.local()  # which source this thread harvests, for retries and page times
        self._reload_asked = False
        self._job_keys: dict[str, str] = {}  # source -> what its job was scheduled with
        self._request_error: str | None = None
        self._next_prune = 0.0

        self.metrics = Metrics()
        self._collector = StateCollector(self.snapshot, self.settings.db_path,
                                         lambda: self.settings.index_alias)
        self.metrics.add_collector(self._collector)
        self._clients: list[HTTPClient] = []
        self._harvester = self._make_harvester(self.settings)
        daemon = self.settings.daemon
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(daemon.max_concurrent)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": daemon.misfire_grace})
        self._server: StatusServer | None = None

    # -- wiring ---------------------------------------------------------------

    def _make_harvester(self, settings: Settings) -> Harvester:
        client = HTTPClient(settings.http, contact=settings.contact, user_agent=settings.user_agent,
                            stop=self.stop, on_retry=self._on_retry)
        self._clients.append(client)
        # lock_wait=None: wait for whoever harvests the source (the other job, a CLI), stop-aware.
        return Harvester(settings, http=client, stop=self.stop, progress=self._on_progress, lock_wait=None)

    def _on_retry(self, host: str, problem: str) -> None:
        source = getattr(self._local, "source", None)
        if source:
            self.metrics.retries.labels(source).inc()

    def _on_progress(self, p: Progress) -> None:
        now = time.monotonic()
        clock = getattr(self._local, "clock", None)
        if clock is not None:
            self.metrics.page_seconds.labels(p.source).observe(now - clock)
        self._local.clock = now
        entry = getattr(self._local, "entry", None)
        if entry is not None:
            with self._lock:
                entry.update(state="harvesting", set=p.set_spec, pages=p.pages, records=p.records, total=p.total)
            self._dirty.set()

    def _view(self, name: str) -> SourceView:
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = SourceView(name)
            self.metrics.declare(name)
        return view

    # -- lifecycle ------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or `request_stop()`). Returns the exit code."""
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            # Signals are taken synchronously by the main loop (sigtimedwait):
            # no handler runs in the middle of a lock, and threads started
            # from here on inherit the mask, so the main thread gets them all.
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            with _daemon_lock(self.data_dir):
                # Made by the daemon, so it owns it even when operators' commands run as root.
                handoff.requests_dir(self.data_dir).mkdir(parents=True, exist_ok=True)
                requeued = handoff.requeue_claimed(self.data_dir)
                if requeued:
                    log.info("requeued %d operator request(s) a previous daemon had not finished", requeued)
                self._load_views()
                self._schedule()
                if self.listen:
                    try:
                        self._server = StatusServer(self.listen, self.health, self.metrics.render)
                    except (OSError, ValueError) as exc:
                        raise HarvesterError(f"cannot serve /health and /metrics on {self.listen}: {exc}"
                                             ) from None
                    self.address = self._server.start()
                scheduled = sum(1 for v in self._views.values() if v.schedule)
                log.info("daemon starting: pid %d, %d source(s) scheduled, status on %s", os.getpid(),
                         scheduled, self.address or "(disabled)",
                         extra={"event": "started", "listen": self.address})
                self.scheduler.start()
                self._write_state()
                sdnotify.notify("READY=1", f"STATUS=harvesting {scheduled} source(s)", f"MAINPID={os.getpid()}")
                try:
                    self._main_loop(in_main)
                finally:
                    self._shutdown()
        finally:
            if in_main:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        return 0

    def request_stop(self) -> None:
        self.stop.set()

    def request_reload(self) -> None:
        self._reload_asked = True

    def _main_loop(self, in_main: bool) -> None:
        watchdog = sdnotify.watchdog_interval()
        next_ping = 0.0
        next_state = 0.0
        while not self.stop.is_set():
            if self._reload_asked:
                self._reload_asked = False
                self.reload()
            self._take_requests()
            now = time.monotonic()
            if watchdog and now >= next_ping and self.scheduler.running:
                # Only a loop that still turns pings: a stuck daemon gets restarted.
                sdnotify.notify("WATCHDOG=1")
                next_ping = now + watchdog
            if self._dirty.is_set() or now >= next_state:
                self._dirty.clear()
                self._write_state()
                next_state = now + STATE_REFRESH
            wait = self.poll_interval if not watchdog else min(self.poll_interval, max(next_ping - now, 0.01))
            if in_main:
                info = signal.sigtimedwait(HANDLED_SIGNALS, wait)
                if info is not None:
                    self._on_signal(info.si_signo)
            else:
                self.stop.wait(wait)

    def _on_signal(self, signo: int) -> None:
        name = signal.Signals(signo).name
        if signo == signal.SIGHUP:
            log.info("SIGHUP: reloading the configuration", extra={"event": "reload"})
            self.reload()
        else:
            log.info("%s: stopping (harvests stop after their current page)", name, extra={"event": "stopping"})
            self.stop.set()

    def _shutdown(self) -> None:
        sdnotify.notify("STOPPING=1", "STATUS=stopping: waiting for running harvests to commit their page")
        self.stop.set()
        self.scheduler.shutdown(wait=False)
        timeout = self.settings.daemon.stop_timeout
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            self.abandoned = self._active
        if self.abandoned:
            log.warning("%d harvest(s) still running after %.0fs (a slow server): abandoning them; "
                        "they resume from their last committed page", self.abandoned, timeout,
                        extra={"event": "abandoned", "count": self.abandoned})
        if self._server is not None:
            self._server.close()
        self._collector.close()
        self._write_state()
        if not self.abandoned:  # an abandoned harvest may still be inside its session
            for client in self._clients:
                client.close()
        log.info("daemon stopped", extra={"event": "stopped"})

    # -- configuration and schedules -----------------------------------------

    def reload(self) -> None:
        """SIGHUP: read the configuration again and reschedule. A broken file
        leaves the running configuration in place."""
        try:
            new = self._load()
            new.select(list(self.names))
        except HarvesterError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc, extra={"event": "reload"})
            return
        if new.data_dir != self.data_dir:
            log.warning("data_dir changed to %s: restart the daemon to move there", new.data_dir)
            new = new.model_copy(update={"data_dir": self.data_dir})
        if new.daemon.max_concurrent != self.settings.daemon.max_concurrent or (
                new.daemon.listen != self.settings.daemon.listen):
            log.warning("daemon.max_concurrent and daemon.listen take effect at the next restart")
        self.settings = new
        self._harvester = self._make_harvester(new)  # running harvests finish with the old one
        self._schedule()
        self._dirty.set()
        log.info("configuration reloaded", extra={"event": "reloaded"})

    def _wanted(self) -> dict[str, str]:
        wanted = {}
        for source in self.settings.select(list(self.names)):
            if source.url:
                wanted[source.name] = self.settings.schedule_of(source)
            else:
                log.warning("%s has no url (%s): not scheduled", source.name, source.disabled_reason or "disabled")
        return wanted

    def _schedule(self) -> None:
        wanted = self._wanted()
        jitter = self.settings.daemon.jitter
        for job in self.scheduler.get_jobs():
            name = job.id[len(JOB_PREFIX):]
            if job.id.startswith(JOB_PREFIX) and name not in wanted:
                self.scheduler.remove_job(job.id)
                self._job_keys.pop(name, None)
                with self._lock:
                    self._view(name).schedule = None
                log.info("%s: no longer scheduled", name)
        with Store(self.settings.db_path) as store:
            for name, schedule in wanted.items():
                job_id = JOB_PREFIX + name
                view = self._view(name)
                key = f"{schedule} jitter {jitter}"
                job = self.scheduler.get_job(job_id)
                if job is not None and self._job_keys.get(name) == key:
                    continue
                trigger = make_trigger(schedule, jitter)
                if job is not None:
                    self.scheduler.reschedule_job(job_id, trigger=trigger)
                    log.info("%s: rescheduled: %s", name, schedule)
                else:
                    last = self._last_decisive_run(store, name)
                    first = first_run_time(schedule, last_started=last["started_at"] if last else None,
                                           unfinished=bool(store.checkpoints(name)), jitter=jitter)
                    self.scheduler.add_job(self._scheduled_harvest, trigger, id=job_id, name=f"harvest {name}",
                                           args=[name], next_run_time=first if first is not None else undefined)
                self._job_keys[name] = key
                with self._lock:
                    view.schedule = schedule

    @staticmethod
    def _last_decisive_run(store: Store, name: str) -> dict[str, Any] | None:
        return next((r for r in store.runs(name, limit=50) if r["status"] in ("ok", "failed")), None)

    def _load_views(self) -> None:
        """Health as the store remembers it, so a restart does not forget a
        failing source (nor call a healthy one failing)."""
        with Store(self.settings.db_path) as store:
            for source in self.settings.select(list(self.names)):
                view = self._view(source.name)
                view.last_success = store.source_state(source.name)["last_success"]
                last = self._last_decisive_run(store, source.name)
                if last and last["status"] == "failed":
                    view.healthy = False
                    view.last_error, view.last_error_at = last["error"], last["finished_at"]

    # -- harvests ---------------------------------------------------------------

    def _scheduled_harvest(self, name: str) -> None:
        self.harvest(name, HarvestRequest(), kind="scheduled")

    def harvest(self, name: str, request: HarvestRequest, *, kind: str, request_id: str | None = None
                ) -> SourceResult:
        """One harvest of one source, waiting for its lock if it is taken."""
        other = holder(self.data_dir, name)
        state = f"waiting for the harvest running now to finish ({other})" if other else "starting"
        entry: dict[str, Any] = {"kind": kind, "mode": request.mode, "request": request_id,
                                 "since": utcnow(), "pages": 0, "records": 0, "total": None, "state": state}
        with self._lock:
            if self.stop.is_set():
                return SourceResult(name, status="skipped", error="the daemon is stopping")
            self._active += 1
            view = self._view(name)
            view.running.append(entry)
        self._dirty.set()
        self._local.source, self._local.entry, self._local.clock = name, entry, time.monotonic()
        log.info("%s: %s harvest (%s) starting%s", name, kind, request.mode, f", {entry['state']}" if other else "",
                 extra={"event": "harvest_start", "source": name, "kind": kind, "mode": request.mode,
                        "request": request_id})
        try:
            result = self._harvest_one(name, request)
            self._record(name, result, kind, request_id)
            if not self.stop.is_set() and result.status != "skipped":
                self._sync_index()
            return result
        finally:
            self._local.source = self._local.entry = self._local.clock = None
            with self._lock:
                view.running = [e for e in view.running if e is not entry]
                self._active -= 1
                self._idle.notify_all()
            self._dirty.set()

    def _harvest_one(self, name: str, request: HarvestRequest) -> SourceResult:
        source = self.settings.sources.get(name)
        if source is None:
            return SourceResult(name, status="failed", error="not in the configuration any more")
        try:
            result = self._harvester.harvest_source(source, request)
        except Exception as exc:  # a bug or a full disk must mark the source, not kill the pool thread
            log.exception("%s: harvest crashed", name)
            return SourceResult(name, status="failed", error=f"{type(exc).__name__}: {exc}")
        return result

    def _record(self, name: str, result: SourceResult, kind: str, request_id: str | None) -> None:
        now = utcnow()
        with self._lock:
            view = self._view(name)
            view.last_result = {**result.as_dict(), "kind": kind, "request": request_id, "finished_at": now}
            if result.status == "ok":
                view.healthy, view.last_success, view.last_error, view.last_error_at = True, now, None, None
            elif result.status == "failed":
                view.healthy, view.last_error, view.last_error_at = False, result.error, now
        self.metrics.observe(result)
        level = logging.WARNING if result.status == "failed" else logging.INFO
        log.log(level, "%s: %s harvest %s: %d new, %d updated, %d deleted, %d kept aside, %d pages in %.1fs%s",
                name, kind, result.status, result.new, result.updated, result.deleted, result.kept_aside,
                result.pages, result.seconds, f" ({result.error})" if result.error else "",
                extra={"event": "harvest_end", "kind": kind, "request": request_id, **result.as_dict()})

    def _sync_index(self) -> None:
        if self.sync is None:
            return
        # One sync at a time: a harvest ending during another's sync waits,
        # then finds little left to do.
        with self._sync_lock:
            if self.stop.is_set():
                return
            try:
                note = self.sync()
            except Exception as exc:  # the index being down must never stop the harvesting
                self.metrics.index_sync_failures.inc()
                with self._lock:
                    self._index.update(last_error=f"{type(exc).__name__}: {exc}", last_error_at=utcnow())
                log.error("index sync failed (harvesting goes on): %s", exc, exc_info=True,
                          extra={"event": "index_sync_failed"})
                return
            with self._lock:
                self._index.update(last_sync=utcnow(), last_result=note)
                if isinstance(note, dict) and note.get("ok") is False:  # index down: the store keeps all
                    self.metrics.index_sync_failures.inc()
                    self._index.update(last_error=note.get("message"), last_error_at=utcnow())
                    log.warning("index sync incomplete: %s", note.get("message"),
                                extra={"event": "index_sync_failed"})

    # -- operator requests -------------------------------------------------------

    def _take_requests(self) -> None:
        try:
            claimed = handoff.claim_pending(self.data_dir)
            if time.monotonic() >= self._next_prune:  # results live a week: no need to look every poll
                handoff.prune(self.data_dir)
                self._next_prune = time.monotonic() + PRUNE_EVERY
        except OSError as exc:  # e.g. a requests folder made by root: say so (once), keep running
            if str(exc) != self._request_error:
                log.error("cannot take operator requests from %s: %s", handoff.requests_dir(self.data_dir), exc)
            self._request_error = str(exc)
            return
        self._request_error = None
        for req in claimed:
            log.info("%s: operator request %s (%s) from %s", req.source, req.id, req.harvest_request().mode,
                     req.requested_by, extra={"event": "request", "source": req.source, "request": req.id})
            threading.Thread(target=self._carry_out, args=(req,), name=f"request-{req.source}",
                             daemon=True).start()

    def _carry_out(self, req: handoff.Request) -> None:
        source = self.settings.sources.get(req.source)
        if source is None or not source.url:
            why = "unknown source" if source is None else f"source has no url ({source.disabled_reason})"
            handoff.finish(self.data_dir, req.id, {"id": req.id, "source": req.source, "status": "failed",
                                                   "error": why, "finished_at": utcnow()})
            return
        result = self.harvest(req.source, req.harvest_request(), kind="request", request_id=req.id)
        if result.status in ("skipped", "interrupted") and self.stop.is_set():
            # Left claimed: the next daemon requeues it and resumes from the checkpoint.
            return
        handoff.finish(self.data_dir, req.id, {"id": req.id, "source": req.source, "status": result.status,
                                               "result": result.as_dict(), "finished_at": utcnow(),
                                               "index": dict(self._index)})

    # -- what the outside sees ---------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        next_runs = {}
        if self.scheduler.running:
            for job in self.scheduler.get_jobs():
                if job.id.startswith(JOB_PREFIX):
                    next_runs[job.id[len(JOB_PREFIX):]] = _iso(job.next_run_time)
        with self._lock:
            sources = {
                name: {"source": name, "schedule": v.schedule, "next_run": next_runs.get(name),
                       "healthy": v.healthy, "last_success": v.last_success, "last_error": v.last_error,
                       "last_error_at": v.last_error_at, "running": [dict(e) for e in v.running],
                       "last_result": v.last_result}
                for name, v in self._views.items()
            }
            index = dict(self._index)
        return {"pid": os.getpid(), "started_at": self.started_at, "updated_at": utcnow(),
                "listen": self.address, "stopping": self.stop.is_set(), "data_dir": str(self.data_dir),
                "sources": sources, "index": index}

    def health(self) -> tuple[int, dict[str, Any]]:
        snap = self.snapshot()
        sources = [
            {key: view[key] for key in ("source", "healthy", "last_success", "last_error", "last_error_at",
                                        "next_run", "schedule")}
            | {"running": bool(view["running"]),
               "last_status": (view["last_result"] or {}).get("status")}
            for view in snap["sources"].values()
        ]
        failing = [s["source"] for s in sources if not s["healthy"]]
        ok = not failing and not snap["stopping"]
        body = {"status": "ok" if ok else ("stopping" if snap["stopping"] else "failing"),
                "failing": failing, "pid": snap["pid"], "started_at": snap["started_at"],
                "sources": sources, "index": snap["index"]}
        return (200 if ok else 503), body

    def _write_state(self) -> None:
        try:
            handoff.write_json_atomic(self.data_dir / STATE_FILE, self.snapshot())
        except OSError as exc:  # a full disk should show in the log, not stop the harvests
            log.error("could not write %s: %s", STATE_FILE, exc)
