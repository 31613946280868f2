"""The `pan-harvester` command line: thin commands over library calls.

Library errors (HarvesterError) become messages and exit codes here and only
here: 0 success, 1 a source or operation failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from harvester import __version__
from harvester.config import Settings, load_settings
from harvester.errors import ConfigError, HarvesterError, OntologyError
from harvester.store import Store

F = TypeVar("F", bound=Callable[..., Any])

# A terminal's own width; piped output (a file, `less`, a CI log) gets wide
# lines rather than every table cell wrapped at rich's default of 80 columns.
# COLUMNS, when set, wins as rich reads it.
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_PIPED_WIDTH)
err_console = Console(stderr=True)


class AppContext:
    """What every command needs, built lazily from the global options."""

    def __init__(self, config: str | None, overrides: dict[str, Any]) -> None:
        self._config, self._overrides = config, overrides
        self._settings: Settings | None = None
        self._ontology: Any = None
        self._tagger: Any = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._config, overrides=self._overrides)
        return self._settings

    def reload(self) -> Settings:
        self._settings = None
        return self.settings

    def store(self) -> Store:
        return Store(self.settings.db_path)

    def ontology(self) -> Any:
        if self._ontology is None:
            from harvester.ontology import DEFAULT_URL, default_ontology, fetch_ontology, fetched_path

            settings = self.settings
            if settings.ontology_autofetch and not settings.ontology and fetched_path(settings.data_dir) is None:
                # First use on a new machine: do what `ontology fetch` would, once.
                logging.getLogger(__name__).warning("no PaNET ontology yet: fetching %s", DEFAULT_URL)
                try:
                    fetch_ontology(DEFAULT_URL, settings.data_dir)
                except HarvesterError as exc:
                    raise OntologyError(
                        f"no PaNET ontology configured or cached, and fetching {DEFAULT_URL} failed ({exc}); "
                        "set --ontology / PAN_HARVESTER_ONTOLOGY to a PaNET file or URL") from None
            self._ontology = default_ontology(settings.data_dir, settings.ontology)
        return self._ontology

    def tagger(self) -> Any:
        if self._tagger is None:
            from harvester.techniques import Tagger

            self._tagger = Tagger(self.ontology())
        return self._tagger


def handle_errors(fn: F) -> F:
    """Turn library errors into one clear line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            err_console.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
            sys.exit(2)
        except HarvesterError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: int, fmt: str = "text") -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    root.handlers.clear()
    if fmt == "json":
        from harvester.logs import JSONFormatter

        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pan-harvester")
@click.option("--config", "config", envvar="PAN_HARVESTER_CONFIG", type=click.Path(dir_okay=False),
              help="Operator TOML file with settings and [sources.NAME] entries (env PAN_HARVESTER_CONFIG).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the record store, checkpoints and caches live (env PAN_HARVESTER_DATA).")
@click.option("--ontology", help="PaNET file path or URL (env PAN_HARVESTER_ONTOLOGY).")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log line format on stderr; json for journald and log shippers.")
@click.pass_context
def main(ctx: click.Context, config: str | None, data_dir: Path | None, ontology: str | None,
         verbose: int, log_format: str | None) -> None:
    """Harvest photon & neutron facility metadata over OAI-PMH, tag PaNET techniques, index and search."""
    overrides = {"data_dir": data_dir, "ontology": ontology}
    ctx.obj = AppContext(config, overrides)
    setup_logging(verbose, log_format or "text")
    ctx.meta["log_format"] = log_format
    ctx.meta["verbose"] = verbose


def _register() -> None:
    from harvester.cli import harvest as harvest_cmds
    from harvester.cli import index as index_cmds
    from harvester.cli.records import show
    from harvester.cli.techniques import ontology, techniques

    for command in (*harvest_cmds.COMMANDS, *index_cmds.COMMANDS):
        main.add_command(command)
    for command in (show, techniques, ontology):
        main.add_command(command)

    from harvester.cli import daemon as daemon_cmds

    for command in daemon_cmds.COMMANDS:
        main.add_command(command)


_register()
