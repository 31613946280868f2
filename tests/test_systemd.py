"""The systemd unit and the daemon's side of systemd's protocols."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester import handoff, sdnotify
from harvester.config import Settings, load_settings
from harvester.daemon import daemon_info
from harvester.harvest import HarvestRequest
from tests.oaiserver import OAIServer
from tests.recordgen import make_records
from tests.helpers import REPO, daemon_config, refused_url, runs, wait_for

UNIT = REPO / "systemd" / "pan-harvester.service"
EXEC = "/opt/pan-harvester/bin/pan-harvester"


def unit_settings(text: str) -> dict[str, list[str]]:
    """'Section.Key' -> every value it is given (keys may repeat, as in systemd)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing in CI (.ci/run installs systemd)")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return path


def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here:
    verify checks it, and the install path exists only on a server."""
    stub = tmp_path / "bin" / "pan-harvester"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text()
    assert text.count(EXEC) == 1
    unit = tmp_path / "pan-harvester.service"
    unit.write_text(text.replace(EXEC, str(stub)))
    return unit


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    tool = systemd_analyze()
    done = subprocess.run([tool, "verify", str(unit_copy(tmp_path))], capture_output=True, text=True,
                          timeout=60)
    # verify exits 0 even for unknown keys or unparsable values: it only warns.
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr


def test_security_exposure_is_low(tmp_path):
    tool = systemd_analyze()
    version = re.search(r"systemd (\d+)", subprocess.run([tool, "--version"], capture_output=True,
                                                          text=True).stdout)
    if not version or int(version.group(1)) < 250:
        pytest.skip("`systemd-analyze security --offline` needs systemd 250+")
    # The threshold is on the 0-100 scale behind the 0.0-10.0 level printed.
    done = subprocess.run([tool, "security", "--offline=yes", "--threshold=20", "--no-pager",
                           str(unit_copy(tmp_path))], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    level = float(re.search(r"exposure level for \S+: ([\d.]+)", done.stdout).group(1))
    assert level <= 2.0


def test_unit_runs_the_daemon_sandboxed_and_supervised():
    keys = unit_settings(UNIT.read_text())
    expected = {
        "Service.Type": ["notify"],
        "Service.ExecStart": [f"{EXEC} run"],
        "Service.DynamicUser": ["yes"],
        "Service.StateDirectory": ["pan-harvester"],
        "Service.Restart": ["on-failure"],
        "Service.KillSignal": ["SIGTERM"],
        "Service.ProtectSystem": ["strict"],
        "Service.ProtectHome": ["yes"],
        "Service.PrivateTmp": ["yes"],
        "Service.PrivateDevices": ["yes"],
        "Service.NoNewPrivileges": ["yes"],
        "Service.CapabilityBoundingSet": [""],
        "Service.RestrictNamespaces": ["yes"],
        "Service.MemoryDenyWriteExecute": ["yes"],
        "Service.ProtectKernelTunables": ["yes"],
        "Service.ProtectKernelModules": ["yes"],
        "Service.ProtectKernelLogs": ["yes"],
        "Service.ProtectControlGroups": ["yes"],
        "Service.LockPersonality": ["yes"],
        "Service.RestrictSUIDSGID": ["yes"],
        "Service.SystemCallArchitectures": ["native"],
    }
    for key, value in expected.items():
        assert keys.get(key) == value, key
    assert keys["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in keys["Service.SystemCallFilter"]
    assert "network-online.target" in keys["Unit.After"] and "network-online.target" in keys["Unit.Wants"]
    # Stopping: the unit must give the daemon longer than its own stop timeout.
    assert int(keys["Service.TimeoutStopSec"][0]) > Settings().daemon.stop_timeout
    assert int(keys["Service.WatchdogSec"][0]) >= 10
    assert keys["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # No data_dir in the unit: config.py reads systemd's STATE_DIRECTORY.
    assert not any("PAN_HARVESTER_DATA" in v for v in keys.get("Service.Environment", []))
    assert keys["Install.WantedBy"] == ["multi-user.target"]


def test_example_configuration_and_environment_are_valid(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/pan-harvester")  # what StateDirectory= sets
    settings = load_settings(REPO / "systemd" / "config.example.toml", environ={})
    assert settings.data_dir == Path("/var/lib/pan-harvester")
    assert settings.daemon.log_format == "json" and settings.daemon.listen.startswith("127.0.0.1:")
    env = {}
    for line in (REPO / "systemd" / "pan-harvester.env.example").read_text().splitlines():
        if m := re.match(r"#\s*(PAN_HARVESTER_\w+)=(.*)", line):
            env[m.group(1)] = m.group(2)
    assert len(env) >= 4
    overridden = load_settings(environ=env)  # every example variable is a setting, with a valid value
    assert overridden.es_url == env["PAN_HARVESTER_ES_URL"]
    assert overridden.daemon.max_concurrent == int(env["PAN_HARVESTER_DAEMON_MAX_CONCURRENT"])


# -- sd_notify -------------------------------------------------------------------------

@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    # A short directory: unix socket paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn") as folder:
        path = os.path.join(folder, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(10)
            yield path, sock


def test_notify_sends_datagrams_to_path_and_abstract_sockets(notify_socket):
    path, sock = notify_socket
    assert sdnotify.notify("READY=1", "STATUS=harvesting 3 source(s)", environ={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1\nSTATUS=harvesting 3 source(s)"
    name = f"pan-harvester-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        abstract.settimeout(5)
        assert sdnotify.notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert abstract.recv(4096) == b"WATCHDOG=1"
    assert not sdnotify.notify("READY=1", environ={})  # not under systemd: nothing to do
    os.unlink(path)  # the manager went away: a warning, never an exception
    assert not sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": path})


def test_watchdog_interval_is_half_of_watchdog_sec():
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "120000000"}) == 60.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_daemon_notifies_ready_watchdog_and_stopping(tmp_path, notify_socket):
    path, sock = notify_socket
    cfg = daemon_config(tmp_path, {"lab": {"url": "http://127.0.0.1:9/oai", "schedule": "0 0 1 1 *"}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "harvester", "--config", str(cfg), "--data-dir", str(tmp_path / "data"),
         "run", "lab", "--http", ""],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1\n") and "STATUS=" in first and f"MAINPID={proc.pid}" in first
        started = time.monotonic()
        pings = [sock.recv(4096) for _ in range(3)]
        assert pings == [b"WATCHDOG=1"] * 3
        assert time.monotonic() - started < 2  # every 0.2 s (half of WATCHDOG_USEC)
        proc.send_signal(signal.SIGTERM)
        while (message := sock.recv(4096)) == b"WATCHDOG=1":
            pass
        assert message.startswith(b"STOPPING=1")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()


# -- does the sandbox fit a real daemon? -------------------------------------------------

def _syscall_group(tool: str, group: str, cache: dict[str, set[str]]) -> set[str]:
    if group not in cache:
        out = subprocess.run([tool, "syscall-filter", "--no-pager", group], capture_output=True, text=True,
                             check=True).stdout
        names: set[str] = set()
        for line in out.splitlines()[1:]:
            item = line.strip()
            if item.startswith("@"):
                names |= _syscall_group(tool, item, cache)
            elif re.fullmatch(r"[a-z0-9_]+", item):
                names.add(item)
        cache[group] = names
    return cache[group]


def test_daemon_stays_inside_the_units_sandbox(tmp_path):
    """Trace a daemon that harvests, syncs the index, answers /health and
    /metrics, takes an operator request and stops: every system call it makes
    is allowed by the unit's SystemCallFilter, it never maps memory writable
    and executable (MemoryDenyWriteExecute) and opens only the socket
    families of RestrictAddressFamilies."""
    tool = systemd_analyze()
    strace = shutil.which("strace")
    if strace is None:
        if os.environ.get("CI"):
            pytest.fail("strace is missing in CI (.ci/run installs it)")
        pytest.skip("strace is not installed")
    keys = unit_settings(UNIT.read_text())
    cache: dict[str, set[str]] = {}
    allowed: set[str] = set()
    for line in keys["Service.SystemCallFilter"]:
        deny = line.startswith("~")
        for group in line.lstrip("~").split():
            names = _syscall_group(tool, group, cache) if group.startswith("@") else {group}
            allowed = allowed - names if deny else allowed | names
    families = set(keys["Service.RestrictAddressFamilies"][0].split())

    trace = tmp_path / "trace"
    data = tmp_path / "data"
    with OAIServer(make_records(40, seed=8), page_size=10) as server:
        cfg = daemon_config(tmp_path, {"lab": {"url": server.url}, "down": {"url": refused_url()}},
                           schedule="every 1s")
        proc = subprocess.Popen(
            [strace, "-f", "-qq", "-o", str(trace), sys.executable, "-m", "harvester", "--config", str(cfg),
             "--data-dir", str(data), "run", "lab", "down", "--http", "127.0.0.1:0"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            info = wait_for(lambda: daemon_info(data) or proc.poll() is not None, 30, "the traced daemon")
            if info is True:  # strace exited: typically ptrace is not permitted in this container
                pytest.skip(f"strace could not run the daemon (exit {proc.returncode})")
            wait_for(lambda: any(r["status"] == "ok" for r in runs(data, "lab")), 30, "a harvest")
            for path in ("/health", "/metrics"):
                try:
                    urllib.request.urlopen(f"http://{info['listen']}{path}", timeout=10).read()
                except urllib.error.HTTPError as err:  # 503: 'down' is failing, as it should
                    assert err.code == 503
            req = handoff.submit(data, "lab", HarvestRequest(full=True))
            wait_for(lambda: handoff.result_of(data, req.id), 30, "the operator request")
        finally:
            # SIGTERM to the daemon, not to strace (strace would detach and leave it running).
            pid = (daemon_info(data) or {}).get("pid")
            if pid:
                os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
    text = trace.read_text(errors="replace")
    used = set(re.findall(r"^\d+ +([a-z0-9_]+)\(", text, re.MULTILINE))
    assert {"socket", "connect", "rt_sigtimedwait", "fdatasync"} <= used  # the trace saw the real work
    outside = used - allowed
    if os.geteuid() == 0:
        # SQLite gives its journal files to the database's owner only when run as
        # root; the unit's DynamicUser never is.
        outside.discard("fchown")
    assert not outside, f"system calls the unit's SystemCallFilter would refuse: {sorted(outside)}"
    # MemoryDenyWriteExecute refuses writable+executable mappings and making memory executable later.
    assert not re.search(r"PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE", text)
    assert not re.search(r"mprotect\([^)]*PROT_EXEC", text)
    opened = set(re.findall(r"socket\((AF_[A-Z0-9]+)", text))
    assert opened and opened <= families, opened
