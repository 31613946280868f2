"""Settings and the source registry: one validated object, loaded once, passed down.

Precedence, lowest first: built-in defaults and the shipped registry
(`sources.toml` beside this module) < the operator's TOML file (`--config` /
`PAN_HARVESTER_CONFIG`) < environment variables `PAN_HARVESTER_<SETTING>` <
command-line options. An operator's `[sources.NAME]` table is merged key by key
over a built-in entry of the same name, or adds a new source.
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harvester.errors import ConfigError

ENV_PREFIX = "PAN_HARVESTER_"
DEFAULT_DB_NAME = "harvester.sqlite"

_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_INTERVAL = re.compile(r"^every\s+(\d+)\s*(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(text: str) -> tuple[Literal["interval"], int] | tuple[Literal["cron"], str]:
    """'every 6h' -> ('interval', 21600); '0 3 * * *' -> ('cron', '0 3 * * *')."""
    text = text.strip()
    match = _INTERVAL.match(text)
    if match:
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds <= 0:
            raise ValueError("an interval must be positive")
        return "interval", seconds
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{text!r} is neither 'every N(s|m|h|d)' nor a 5-field cron expression")
    # APScheduler validates the fields themselves; import lazily so config stays light.
    from apscheduler.triggers.cron import CronTrigger

    CronTrigger.from_crontab(text)
    return "cron", text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Source(_Strict):
    """One OAI-PMH endpoint: a row of data, not a class."""

    name: str
    url: str | None = None
    metadata_prefix: str = "oai_datacite"
    sets: list[str] = Field(default_factory=list)
    facility: str = ""
    # An aggregator (DataCite's provider) serves many facilities: the facility of the
    # records of each set ("INIST.ILL" = "ILL"). A record in none of them takes the
    # facility its metadata names (hosting institution, else publisher), not `facility`.
    set_facilities: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    disabled_reason: str | None = None
    schedule: str | None = None  # None: the global default_schedule
    delay: float | None = Field(default=None, ge=0)  # politeness delay for this host, seconds

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SOURCE_NAME.match(value):
            raise ValueError("use lower-case letters, digits, '-', '_' or '.'")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            parse_schedule(value)
        return value

    @field_validator("set_facilities")
    @classmethod
    def _set_facilities(cls, value: dict[str, str]) -> dict[str, str]:
        empty = [k for k, v in value.items() if not k.strip() or not v.strip()]
        if empty:
            raise ValueError(f"set and facility names must not be empty: {empty}")
        return value

    def facility_rule(self) -> str | dict[str, str]:
        """What pipeline.to_document takes as `facility` for this source's records (set
        names in lower case: DataCite's symbols compare case-insensitively)."""
        if self.set_facilities:
            return {name.lower(): facility for name, facility in self.set_facilities.items()}
        return self.facility  # never empty: it defaults to the source's name

    @model_validator(mode="after")
    def _consistent(self) -> "Source":
        if not self.facility:
            self.facility = self.name
        if self.enabled and not self.url:
            raise ValueError("an enabled source needs a url (or set enabled = false with a disabled_reason)")
        return self


class HTTPSettings(_Strict):
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=120.0, gt=0)
    retries: int = Field(default=6, ge=0)
    backoff: float = Field(default=2.0, ge=0)  # first retry waits about this long, doubling
    backoff_max: float = Field(default=300.0, ge=0)
    retry_after_max: float = Field(default=900.0, ge=0)  # cap on a server's Retry-After
    delay: float = Field(default=1.0, ge=0)  # minimum gap between two requests to one host


class DaemonSettings(_Strict):
    listen: str = "127.0.0.1:9464"  # health and metrics; empty string disables
    max_concurrent: int = Field(default=4, ge=1)
    jitter: int = Field(default=300, ge=0)  # seconds of random delay added to each scheduled run
    misfire_grace: int = Field(default=3600, ge=1)
    stop_timeout: float = Field(default=20.0, gt=0)
    log_format: Literal["text", "json"] = "text"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value and not re.match(r"^[\w.\-\[\]:]+:\d+$", value):
            raise ValueError("use HOST:PORT, e.g. 127.0.0.1:9464")
        return value


class Settings(_Strict):
    data_dir: Path = Field(default_factory=lambda: default_data_dir())
    contact: str | None = None  # sent as the From header; facilities ask harvesters for one
    user_agent: str = "pan-harvester/0.1 (+https://github.com/pan-harvester)"
    ontology: str | None = None  # path or URL of PaNET; None: the cached copy in data_dir
    ontology_autofetch: bool = True  # no ontology configured or cached: fetch the official one on first use
    es_url: str | None = None  # None: the embedded SQLite index
    index_alias: str = "pan-datasets"
    es_mapping: str | None = None  # an operator's richer Elasticsearch mapping file; None: the shipped one
    workers: int = Field(default=4, ge=1)  # sources harvested in parallel
    identify_ttl: int = Field(default=86400, ge=0)  # seconds an Identify answer is reused
    default_schedule: str = "every 24h"
    http: HTTPSettings = Field(default_factory=HTTPSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    sources: dict[str, Source] = Field(default_factory=dict)

    @field_validator("default_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @property
    def db_path(self) -> Path:
        return self.data_dir / DEFAULT_DB_NAME

    def enabled_sources(self) -> list[Source]:
        return [s for s in self.sources.values() if s.enabled]

    def select(self, names: list[str] | tuple[str, ...]) -> list[Source]:
        """The named sources (enabled or not: naming one is an operator's choice),
        or every enabled source when none is named."""
        if not names:
            return self.enabled_sources()
        unknown = [n for n in names if n not in self.sources]
        if unknown:
            raise ConfigError(
                f"unknown source(s) {', '.join(unknown)}; known: {', '.join(sorted(self.sources))}"
            )
        return [self.sources[n] for n in names]

    def schedule_of(self, source: Source) -> str:
        return source.schedule or self.default_schedule


def default_data_dir() -> Path:
    # systemd's StateDirectory= sets STATE_DIRECTORY; honour it so the unit needs no extra setting.
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "pan-harvester"


def builtin_registry() -> dict[str, dict[str, Any]]:
    text = resources.files("harvester").joinpath("sources.toml").read_text(encoding="utf-8")
    return tomllib.loads(text).get("sources", {})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("configuration file not found", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """PAN_HARVESTER_<SETTING> for top-level scalar settings, and
    PAN_HARVESTER_HTTP_<KEY> / PAN_HARVESTER_DAEMON_<KEY> for the nested ones."""
    out: dict[str, Any] = {}
    aliases = {"DATA": "data_dir"}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):]
        if name == "CONFIG":
            continue
        name = aliases.get(name, name.lower())
        for group in ("http", "daemon"):
            if name.startswith(group + "_"):
                out.setdefault(group, {})[name[len(group) + 1:]] = value
                break
        else:
            if name in Settings.model_fields and name not in ("sources", "http", "daemon"):
                out[name] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _explain(exc: ValidationError, file: str | None) -> ConfigError:
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    source = key = None
    if len(loc) >= 2 and loc[0] == "sources":
        source, key = loc[1], ".".join(loc[2:]) or None
    else:
        key = ".".join(loc) or None
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown setting"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, file=file, source=source, key=key)


def load_settings(
    config: str | Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build the Settings: shipped registry, then the config file, then the
    environment, then explicit overrides (command-line options)."""
    environ = dict(os.environ if environ is None else environ)
    config = config or environ.get(ENV_PREFIX + "CONFIG") or None
    data: dict[str, Any] = {"sources": builtin_registry()}
    file = str(config) if config else None
    if config:
        data = _merge(data, _read_toml(Path(config)))
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    sources = data.get("sources", {})
    if not isinstance(sources, dict):
        raise ConfigError("[sources] must be a table of tables", file=file)
    for name, entry in sources.items():
        if not isinstance(entry, dict):
            raise ConfigError("must be a table", file=file, source=name)
        entry.setdefault("name", name)
        if entry["name"] != name:
            raise ConfigError("'name' must match the table name", file=file, source=name, key="name")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, file) from None
