"""The operator's command line, through click's runner and a real loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harvester.cli import main
from tests.helpers import settings_for
from tests.oaiserver import OAIServer
from tests.recordgen import make_records

STATUS_KEYS = {"source", "records", "deleted", "last_success", "watermark", "last_error"}


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


def test_every_command_and_option_has_help():
    for path, cmd in _commands(main):
        assert cmd.help or cmd.short_help, f"{' '.join(path)} has no help text"
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"


def test_sources_lists_the_registry(tmp_path):
    result = invoke("--data-dir", str(tmp_path), "sources", "--json")
    rows = json.loads(result.output)
    assert {r["source"] for r in rows} >= {"esrf", "ill", "soleil", "diamond", "datacite"}
    soleil = next(r for r in rows if r["source"] == "soleil")
    assert soleil["enabled"] is False and soleil["disabled_reason"]
    table = invoke("--data-dir", str(tmp_path), "sources").output
    assert "icatplus.esrf.fr" in table and "SOLEIL" in table


def test_harvest_then_status_json(tmp_path):
    with OAIServer(make_records(230, seed=11, deleted_every=10), page_size=100) as srv:
        # Port 9 (discard) on loopback: nothing listens, the connection is refused.
        _, cfg = settings_for(tmp_path, {"lab": {"url": srv.url}, "gone": {"url": "http://127.0.0.1:9/oai"}})
        base = ("--config", str(cfg), "--data-dir", str(tmp_path / "data"))
        result = CliRunner().invoke(main, [*base, "harvest", "--no-index"])
        assert result.exit_code == 1, result.output  # one source failed
        assert "lab" in result.output and "failed" in result.output
        rows = {r["source"]: r for r in json.loads(invoke(*base, "status", "--json").output)}
        assert STATUS_KEYS <= set(rows["lab"])
        dead = sum(1 for r in srv.records if r.deleted)
        assert (rows["lab"]["records"], rows["lab"]["deleted"]) == (230 - dead, dead)
        assert rows["lab"]["last_success"] and rows["lab"]["watermark"] and rows["lab"]["last_error"] is None
        assert rows["gone"]["last_success"] is None and "attempts" in rows["gone"]["last_error"]
        assert rows["gone"]["records"] == 0
        # Naming only the healthy source succeeds.
        assert CliRunner().invoke(main, [*base, "harvest", "lab", "--no-index"]).exit_code == 0


def test_configuration_error_exits_2_and_names_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[sources.mylab]\nurl = "https://x.eu/oai"\nmetadata_prefx = "oai_dc"\n')
    result = CliRunner().invoke(main, ["--config", str(cfg), "--data-dir", str(tmp_path), "sources"])
    assert result.exit_code == 2
    assert "metadata_prefx" in result.output and "mylab" in result.output and str(cfg) in result.output


def test_unknown_source_is_an_error(tmp_path):
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "harvest", "nope", "--no-index"])
    assert result.exit_code == 2 and "unknown source" in result.output


@pytest.mark.parametrize("args, message", [
    (["--full", "--from", "2020-01-01"], "cannot be combined"),
    (["--from", "2024-13-01"], "'2024-13-01' is not a date"),
    (["--until", "yesterday"], "'yesterday' is not a date"),
    (["--from", "2024-05-01", "--until", "2024-01-31"], "later than --until"),
])
@pytest.mark.parametrize("command", [["harvest"], ["reharvest"]])
def test_harvest_rejects_bad_options_before_asking_any_server(tmp_path, command, args, message):
    with OAIServer(make_records(5, seed=3)) as srv:
        _, cfg = settings_for(tmp_path, {"lab": {"url": srv.url}})
        result = CliRunner().invoke(main, ["--config", str(cfg), "--data-dir", str(tmp_path / "data"),
                                           *command, "lab", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert srv.requests == []


def test_first_use_fetches_panet_once(tmp_path, monkeypatch):
    """A new machine: no ontology configured or cached; the first command that
    needs PaNET fetches it (here from loopback instead of purl.org)."""
    import functools
    import http.server
    import threading

    import harvester.ontology
    from harvester.ontology import fetched_path

    shared = Path(__file__).resolve().parents[1].parent / "shared" / "ontology"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(harvester.ontology, "DEFAULT_URL", f"http://127.0.0.1:{httpd.server_port}/PaNET.owl")
        monkeypatch.setenv("PAN_HARVESTER_ONTOLOGY_AUTOFETCH", "true")
        data = tmp_path / "data"
        result = invoke("--data-dir", str(data), "techniques", "match", "SAXS of a polymer melt", "--json")
        assert "PaNET01188" in result.output or "small angle x-ray scattering" in result.output.lower()
        assert fetched_path(data) is not None and fetched_path(data).is_file()
        monkeypatch.setenv("PAN_HARVESTER_ONTOLOGY_AUTOFETCH", "false")
        # Off, with nothing cached: a clear error naming what to do.
        result = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "other"), "techniques", "match", "SAXS"])
        assert result.exit_code != 0 and "ontology fetch" in result.output
    finally:
        httpd.shutdown()
        httpd.server_close()
