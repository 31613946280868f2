"""Operator requests handed to a running daemon, as files in DATA_DIR/requests/.

    ID.request.json   written by the CLI (temp file + rename: never seen half-written)
    ID.claimed.json   renamed by the daemon when it takes the request on
    ID.result.json    written by the daemon (temp + rename) when it is done

A rename is atomic, so a daemon claiming a request and a CLI taking it back
(the daemon stopped before claiming it) race safely: exactly one of them
wins. Files need no authentication beyond the data directory's permissions,
outlive a daemon restart (the next daemon requeues what the last one had
claimed but not finished) and can be read by an operator.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harvester.errors import HarvesterError
from harvester.harvest import HarvestRequest

log = logging.getLogger(__name__)

PENDING, CLAIMED, RESULT = ".request.json", ".claimed.json", ".result.json"
RESULT_TTL = 7 * 86400  # results an operator may still want to read


@dataclass(frozen=True)
class Request:
    id: str
    source: str
    full: bool = False
    from_: str | None = None
    until: str | None = None
    requested_at: str = ""
    requested_by: str = ""

    def harvest_request(self) -> HarvestRequest:
        return HarvestRequest(full=self.full, from_=self.from_, until=self.until)


def requests_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "requests"


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers see the old file or the new one, never a torn write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def submit(data_dir: Path, source: str, request: HarvestRequest) -> Request:
    now = datetime.now(UTC)
    # Sortable ids: the daemon takes requests in the order they were made.
    req = Request(id=f"{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}", source=source, full=request.full,
                  from_=request.from_, until=request.until, requested_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  requested_by=f"{_user()} pid {os.getpid()}")
    write_json_atomic(requests_dir(data_dir) / f"{req.id}{PENDING}", asdict(req))
    return req


def _user() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER") or str(os.getuid())


def withdraw(data_dir: Path, request_id: str) -> bool:
    """Take back a request nobody claimed. True when it was still pending."""
    pending = requests_dir(data_dir) / f"{request_id}{PENDING}"
    taken = pending.with_name(f".{request_id}.withdrawn")
    try:
        os.rename(pending, taken)
    except FileNotFoundError:
        return False
    taken.unlink()
    return True


def claim_pending(data_dir: Path) -> list[Request]:
    """Requests waiting for the daemon, oldest first, now claimed by it."""
    folder = requests_dir(data_dir)
    if not folder.is_dir():
        return []
    claimed: list[Request] = []
    for pending in sorted(folder.glob(f"*{PENDING}")):
        request_id = pending.name[: -len(PENDING)]
        target = folder / f"{request_id}{CLAIMED}"
        try:
            os.rename(pending, target)
        except FileNotFoundError:  # withdrawn in the meantime
            continue
        try:
            data = _read_json(target) or {}
            req = Request(**{**data, "id": request_id})
            req.harvest_request()  # a bad date is answered here, not raised in the daemon's loop
            claimed.append(req)
        except (ValueError, TypeError, OSError, HarvesterError) as exc:
            log.error("request file %s is unreadable (%s); answering it as failed", target.name, exc)
            finish(data_dir, request_id, {"id": request_id, "status": "failed",
                                          "error": f"unreadable request: {exc}"})
    return claimed


def finish(data_dir: Path, request_id: str, result: dict[str, Any]) -> None:
    folder = requests_dir(data_dir)
    write_json_atomic(folder / f"{request_id}{RESULT}", result)
    (folder / f"{request_id}{CLAIMED}").unlink(missing_ok=True)


def result_of(data_dir: Path, request_id: str) -> dict[str, Any] | None:
    return _read_json(requests_dir(data_dir) / f"{request_id}{RESULT}")


def is_claimed(data_dir: Path, request_id: str) -> bool:
    return (requests_dir(data_dir) / f"{request_id}{CLAIMED}").exists()


def requeue_claimed(data_dir: Path) -> int:
    """At daemon start: requests a previous daemon claimed but did not finish
    (it was stopped or killed) go back in the queue."""
    folder = requests_dir(data_dir)
    if not folder.is_dir():
        return 0
    count = 0
    for claimed in folder.glob(f"*{CLAIMED}"):
        os.replace(claimed, folder / (claimed.name[: -len(CLAIMED)] + PENDING))
        count += 1
    return count


def prune(data_dir: Path, *, ttl: float = RESULT_TTL) -> int:
    folder = requests_dir(data_dir)
    if not folder.is_dir():
        return 0
    cutoff = time.time() - ttl
    removed = 0
    for path in folder.glob(f"*{RESULT}"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
