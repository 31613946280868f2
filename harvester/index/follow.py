"""Index what a harvest commits while it runs, in a process of its own.

`pan-harvester harvest` used to harvest, then sync the index: two stages, one
after the other. Building documents (parse + tag + map: CPU-bound Python) is the
slower of the two, so once the harvest has committed `FOLLOW_AFTER` changes a
follower process starts syncing, follows the store while the harvest goes on
(`sync(..., until=...)`), catches up with the last pages once told the harvest is
over, and hands back its report.

A process, not a thread: harvesting a fast server is CPU-bound Python too, and
two threads share one interpreter lock (on the loopback bench a follower thread
was slower than no follower at all; a process took the harvest + index time of
20k records from ~7.2 s to ~6 s on 2 cores). A plain `python -c` child rather
than multiprocessing's spawn, which re-imports the parent's main script in the
child (costly, and a script without a `__main__` guard would run again there).

The follower is an optimisation, never a new way to fail: when it cannot start,
finds the index unreachable or its lock held, or dies, `finish()` returns None
and the caller syncs after the harvest as it always did (`sync_after_harvest`),
which says how far behind the index is.

The protocol, over two pipes: the parent writes one pickle (settings, tagger,
ontology, logging) and keeps its end open while the harvest runs; closing it
means "the harvest is over". The child writes back one pickle: ("ok", report),
or ("behind" | "failed", why).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from harvester.errors import IndexError_, LockedError
from harvester.index.sync import SyncReport, _enrichment, run_for_app
from harvester.store import Store

log = logging.getLogger(__name__)

# Changes a harvest commits before a follower is worth its start (a fresh
# interpreter: ~0.3 s of CPU); smaller harvests are synced after, as before.
FOLLOW_AFTER = 2000
_WATCH = 0.1  # seconds between two looks at how far the harvest got
# The child gets this process's sys.path (as multiprocessing's spawn does), then its orders.
_CHILD = ("import json, sys; sys.path[:] = json.loads(sys.argv[3]); "
          "from harvester.index.follow import _child; _child(int(sys.argv[1]), int(sys.argv[2]))")

Outcome = tuple[SyncReport, str | None]  # what run_for_app returns: report, warning


class Follower:
    """Start with `start()` before the harvest; `finish()` after it returns the
    follower's (report, warning), or None when the caller should sync itself;
    `abort()` when the harvest raised."""

    def __init__(self, app: Any, *, start_after: int | None = None) -> None:
        self.app = app
        self.start_after = FOLLOW_AFTER if start_after is None else start_after
        self._stop = threading.Event()
        self._spawning = threading.Lock()  # the watcher starts the process, finish() reads it
        self._watcher: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._to_child: IO[bytes] | None = None
        self._from_child: IO[bytes] | None = None

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        # PaNET is loaded here, in this process, as the sync after the harvest
        # would: the follower gets a copy (the warning, when it is missing, stays here).
        self._enrichment = _enrichment(self.app)
        with Store(self.app.settings.db_path) as store:
            self._base = store.max_seq()
        # Started from a thread, so that the harvest never waits for it.
        self._watcher = threading.Thread(target=self._watch, name="index-follower-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        with Store(self.app.settings.db_path) as own:  # its own connection: never shared
            while own.max_seq() - self._base < self.start_after:
                if self._stop.wait(_WATCH):
                    return
        self._spawn()

    def _spawn(self) -> None:
        with self._spawning:
            if self._stop.is_set():
                return
            tagger, ontology, _warning = self._enrichment
            root = logging.getLogger()
            try:
                payload = pickle.dumps((self.app.settings, tagger, ontology, root.getEffectiveLevel(),
                                        _log_format()))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                log.warning("indexing after the harvest: cannot hand the tagger to a follower (%s)", exc)
                return
            down_r, down_w = os.pipe()  # parent -> child
            up_r, up_w = os.pipe()  # child -> parent
            try:
                # stdout: never into the command's own output (`harvest --json`).
                proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(down_r), str(up_w),
                                         json.dumps([str(p) for p in sys.path])],
                                        pass_fds=(down_r, up_w), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL)
            except OSError as exc:
                log.warning("indexing after the harvest: the index follower did not start (%s)", exc)
                for fd in (down_w, up_r):
                    os.close(fd)
                return
            finally:
                # The child has its own copies (or there is no child).
                os.close(down_r)
                os.close(up_w)
            self._proc = proc
            self._to_child = os.fdopen(down_w, "wb")
            self._from_child = os.fdopen(up_r, "rb")
            log.info("index follower started (pid %s)", proc.pid)
            try:
                self._to_child.write(payload)  # blocks until the child has read most of it
                self._to_child.flush()
            except OSError as exc:  # it died at once; finish() finds no answer
                log.info("the index follower did not take its orders: %s", exc)

    def _halt_watcher(self) -> None:
        self._stop.set()
        with self._spawning:  # a spawn under way completes first
            pass
        if self._watcher is not None:
            self._watcher.join()

    def finish(self) -> Outcome | None:
        """Tell the follower the harvest is over and wait for it to catch up."""
        self._halt_watcher()
        if self._proc is None or self._to_child is None or self._from_child is None:
            return None
        try:
            self._to_child.close()  # the harvest is over
        except OSError:  # it died: the answer tells
            pass
        with self._from_child:
            data = self._from_child.read()  # until the child exits
        code = self._proc.wait()
        try:
            answer = pickle.loads(data) if data else None
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            answer = ("failed", f"unreadable answer: {exc}")
        if not answer or answer[0] != "ok":
            # "behind": the index unreachable or its lock held, as the sync after the
            # harvest will say; anything else is unexpected.
            level = logging.INFO if answer and answer[0] == "behind" else logging.WARNING
            why = answer[1] if answer else f"it exited with code {code} without an answer"
            log.log(level, "the index follower stopped (%s): syncing after the harvest instead", why)
            return None
        return answer[1], self._enrichment[2]

    def abort(self) -> None:
        """The harvest failed: stop following now. The position the follower saved
        covers only confirmed writes, so the next sync resumes from there."""
        self._halt_watcher()
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._to_child, self._from_child):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


def _log_format() -> logging.Formatter | None:
    """The formatter of this process's first log handler (text or JSON lines), for
    the follower to log alike; None when it cannot be sent."""
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    try:
        pickle.dumps(formatter)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None
    return formatter


@contextmanager
def index_follower(app: Any, *, enabled: bool = True,
                   start_after: int | None = None) -> Iterator[Follower | None]:
    """Around a harvest: a started Follower (None when not `enabled`), aborted if
    the harvest raises. Pass it to `sync_after_harvest` after the harvest."""
    if not enabled:
        yield None
        return
    follower = Follower(app, start_after=start_after)
    follower.start()
    try:
        yield follower
    except BaseException:
        follower.abort()
        raise


# -- the follower process -------------------------------------------------------


class _Given:
    """The app of the follower process: the parent's settings, tagger and ontology
    (None when PaNET could not be loaded: the parent holds that warning)."""

    def __init__(self, settings: Any, tagger: Any, ontology: Any) -> None:
        self.settings, self._tagger, self._ontology = settings, tagger, ontology

    def store(self) -> Store:
        return Store(self.settings.db_path)

    def tagger(self) -> Any:
        return self._tagger

    def ontology(self) -> Any:
        return self._ontology


def _child(down: int, up: int) -> None:
    """Sync until the parent closes `down` (the harvest is over), then write the
    answer to `up`."""
    with os.fdopen(down, "rb") as orders, os.fdopen(up, "wb") as answer:
        settings, tagger, ontology, level, formatter = pickle.load(orders)
        handler = logging.StreamHandler()
        if formatter is not None:
            handler.setFormatter(formatter)
        logging.basicConfig(level=level, handlers=[handler])

        def over() -> bool:
            # Readable means closed: the parent writes nothing after its orders.
            return bool(select.select([down], [], [], 0)[0])

        result: tuple[Any, ...]
        try:
            report, _warning = run_for_app(_Given(settings, tagger, ontology), until=over)
            result = ("ok", report)
        except (IndexError_, LockedError) as exc:
            result = ("behind", str(exc))
        except Exception as exc:  # the parent syncs itself and meets the same error, with its traceback
            pickle.dump(("failed", f"{type(exc).__name__}: {exc}"), answer)
            raise
        pickle.dump(result, answer)
