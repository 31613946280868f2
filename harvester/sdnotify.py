"""systemd's notification protocol (sd_notify(3)), without libsystemd.

A service of `Type=notify` tells the service manager it is ready, still alive
(the watchdog) and stopping by sending short `KEY=VALUE` datagrams to the
AF_UNIX socket named in `$NOTIFY_SOCKET`. A path starting with '@' names a
socket in the abstract namespace. Outside systemd the variable is unset and
every call is a no-op, so the daemon needs no special mode for a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(environ: Mapping[str, str]) -> str | None:
    path = environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    # vsock addresses (vsock:CID:PORT) are for VMs talking to a host; not needed here.
    log.debug("NOTIFY_SOCKET %r is not a unix socket path; not notifying", path)
    return None


def notify(*states: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send 'READY=1', 'WATCHDOG=1', 'STOPPING=1', 'STATUS=...' (several make
    one datagram). True when sent; False when not under systemd or the socket
    refused: notification must never take the daemon down."""
    address = _address(os.environ if environ is None else environ)
    if address is None or not states:
        return False
    message = "\n".join(states).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.warning("could not notify systemd at %r: %s", address.replace("\0", "@"), exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two WATCHDOG=1 pings: half of WatchdogSec, as
    sd_watchdog_enabled(3) advises. None when the watchdog is off or meant for
    another process (WATCHDOG_PID)."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID")
    try:
        if pid and int(pid) != os.getpid():
            return None
        value = int(usec)
    except ValueError:
        log.warning("ignoring unreadable WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec, pid)
        return None
    return value / 1e6 / 2 if value > 0 else None
