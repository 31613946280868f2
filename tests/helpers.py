"""What several test modules need: configuration files, ports nothing listens on, waiting."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harvester.config import Settings, load_settings
from harvester.harvest import Harvester, HarvestRequest, SourceResult
from harvester.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Test-speed HTTP: no politeness delay, a tiny backoff, short timeouts.
TEST_HTTP = {"delay": 0, "backoff": 0.01, "retries": 4, "connect_timeout": 2, "read_timeout": 10}


def toml_value(value: Any) -> str:
    """A TOML value for strings, numbers, booleans and lists of them (JSON writes
    those the way TOML reads them)."""
    return json.dumps(value)


def write_config(tmp_path: Path, sources: dict[str, dict[str, Any]], *, top: dict[str, Any] | None = None,
                 http: dict[str, Any] | None = None, daemon: dict[str, Any] | None = None,
                 name: str = "config.toml") -> Path:
    """A configuration file enabling only `sources`: the built-in registry is switched
    off, so no test reaches the internet. `top`, `http` and `daemon` add settings
    (`http` over TEST_HTTP)."""
    lines = [f"{key} = {toml_value(value)}"
             for key, value in {"contact": "tests@pan-harvester.invalid", **(top or {})}.items()]
    for section, values in (("http", {**TEST_HTTP, **(http or {})}), ("daemon", daemon or {})):
        if values:
            lines.append(f"[{section}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    for builtin in load_settings(environ={}).sources:
        if builtin not in sources:
            lines += [f"[sources.{builtin}]", "enabled = false"]
    for source, entry in sources.items():
        lines.append(f"[sources.{source}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in entry.items()]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def settings_for(tmp_path: Path, sources: dict[str, dict[str, Any]], **top: Any) -> tuple[Settings, Path]:
    """Settings (data in tmp_path/data) from a write_config file, and its path."""
    cfg = write_config(tmp_path, sources, top=top)
    return load_settings(cfg, environ={}, overrides={"data_dir": tmp_path / "data"}), cfg


def harvest(settings: Settings, name: str = "lab", request: HarvestRequest = HarvestRequest()) -> SourceResult:
    """One source harvested in this process."""
    harvester = Harvester(settings)
    try:
        return harvester.harvest_source(settings.sources[name], request)
    finally:
        harvester.http.close()


def esrf_config(tmp_path: Path, server: Any, **settings: str) -> Path:
    """Only the registry's esrf source, served by `server` (an OAIServer); `settings`
    at the top level."""
    return write_config(tmp_path, {"esrf": {"url": server.url, "enabled": True, "facility": "ESRF"}}, top=settings)


def daemon_config(tmp_path: Path, sources: dict[str, dict[str, Any]], *, schedule: str = "every 2s",
                  stop_timeout: float = 5, name: str = "config.toml", top: dict[str, Any] | None = None) -> Path:
    """A write_config file for a daemon under test: no retries (a failure shows at
    once), no jitter, `schedule` for every source."""
    return write_config(tmp_path, sources, top={"default_schedule": schedule, **(top or {})},
                        http={"retries": 0, "read_timeout": 60},
                        daemon={"jitter": 0, "max_concurrent": 4, "stop_timeout": stop_timeout}, name=name)


def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused_url() -> str:
    """An OAI-PMH base URL on a closed_port."""
    return f"http://127.0.0.1:{closed_port()}/oai"


def wait_for(check: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """The first true value of check(); AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def runs(data: Path, source: str) -> list[dict[str, Any]]:
    """The harvest runs of `source` in the store under `data`, oldest first."""
    with Store(data / "harvester.sqlite") as store:
        return sorted(store.runs(source, limit=1000), key=lambda r: r["id"])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass


@contextlib.contextmanager
def serve_ontology() -> Iterator[str]:
    """A real HTTP server on loopback serving ../shared/ontology; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(SHARED / "ontology"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
