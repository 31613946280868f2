"""The commands: `index sync|rebuild|status`, `search`, `stats`, and the index part of
`harvest` (a real OAI-PMH server on loopback -> store -> index -> search)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from harvester.cli import AppContext, main
from harvester.index.sync import sync_after_harvest
from harvester.store import Store
from tests.conftest_index import CORPUS, PANET_OWL, fill, index_settings
from tests.helpers import closed_port, esrf_config
from tests.oaiserver import OAIServer
from tests.recordgen import make_records


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in ("PAN_HARVESTER_ES_URL", "PAN_HARVESTER_INDEX_ALIAS", "PAN_HARVESTER_CONFIG",
                "PAN_HARVESTER_ONTOLOGY"):
        monkeypatch.delenv(key, raising=False)
    return {"PAN_HARVESTER_DATA": str(tmp_path / "data"), "PAN_HARVESTER_ONTOLOGY": str(PANET_OWL)}


def run(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


@pytest.fixture
def filled(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    with Store(tmp_path / "data" / "harvester.sqlite") as store:
        fill(store)
    return env


def test_every_command_has_help() -> None:
    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}")

    for name in ("index", "search", "stats"):
        for path, command in walk(main.commands[name], name):
            assert command.help and len(command.help) > 40, path
            for param in command.params:
                if isinstance(param, click.Option):
                    assert param.help, f"{path} {param.opts}"


def test_sync_then_search_and_stats_on_the_embedded_index(filled: dict[str, str]) -> None:
    report = as_json(run(filled, "index", "sync", "--json"))
    assert report["ok"] is True and report["backend"] == "embedded"
    assert (report["indexed"], report["behind"], report["alias"]) == (len(CORPUS), 0, "pan-datasets")

    found = as_json(run(filled, "search", "small", "angle", "scattering", "--json"))
    assert found["total"] == 3
    for hit in found["hits"]:
        assert {"pid", "title", "facility", "techniques"} <= set(hit)
    assert {h["pid"] for h in found["hits"]} == {"10.5555/1", "10.5555/2", "10.5555/3"}

    by_technique = as_json(run(filled, "search", "--technique", "small angle scattering", "--json"))
    assert {h["pid"] for h in by_technique["hits"]} == {"10.5555/1", "10.5555/2", "10.5555/3"}
    narrowed = as_json(run(filled, "search", "-t", "SAS", "--facility", "ill", "--year", "2019..2020", "--json"))
    assert [h["pid"] for h in narrowed["hits"]] == ["10.5555/2"]
    assert as_json(run(filled, "search", "--limit", "2", "--json"))["total"] == len(CORPUS)
    assert len(as_json(run(filled, "search", "--limit", "2", "--json"))["hits"]) == 2

    stats = as_json(run(filled, "stats", "--by", "facility,year", "--by", "licence", "--json"))
    assert set(stats) == {"total", "facility", "year", "licence", "completeness"}
    assert stats["facility"][0] == {"key": "ESRF", "count": 3}
    assert stats["year"][0] == {"key": 2018, "count": 1}
    esrf = next(r for r in stats["completeness"] if r["key"] == "ESRF")
    assert esrf["licence"] == 1.0 and esrf["count"] == 3

    text = run(filled, "stats").stdout
    assert "ESRF" in text and "small angle x-ray scattering (PaNET01188)" in text and "completeness" in text
    table = run(filled, "search", "lysozyme").stdout
    assert "1 dataset(s)" in table and "Lysozyme in solution" in table


def test_rebuild_and_status(filled: dict[str, str]) -> None:
    first = as_json(run(filled, "index", "sync", "--json"))
    rebuilt = as_json(run(filled, "index", "rebuild", "--json"))
    assert rebuilt["mode"] == "rebuild" and rebuilt["replaced"] == [first["index"]]
    status = as_json(run(filled, "index", "status", "--json"))
    assert status["index"] == rebuilt["index"]
    assert (status["documents"], status["behind"], status["failures"]) == (len(CORPUS), 0, [])
    assert "0 change(s) behind" in run(filled, "index", "status").stdout


@pytest.mark.parametrize("args, message", [
    (["search", "--year", "soon"], "not a year range"),
    (["search", "--technique", "telepathy"], "unknown technique"),
    (["stats", "--by", "colour"], "choose from"),
])
def test_bad_input_is_a_usage_error(filled: dict[str, str], args: list[str], message: str) -> None:
    run(filled, "index", "sync", "-q")
    result = run(filled, *args, code=2)
    assert message in result.output


def test_search_before_any_sync_says_what_to_do(env: dict[str, str]) -> None:
    result = run(env, "search", "anything", code=1)
    assert "index sync" in result.output


def test_elasticsearch_down_the_command_says_the_index_is_behind(filled: dict[str, str]) -> None:
    down = {**filled, "PAN_HARVESTER_ES_URL": f"http://127.0.0.1:{closed_port()}"}
    result = run(down, "index", "sync", code=1)
    assert f"behind the record store by {len(CORPUS)} change(s)" in " ".join(result.output.split())
    report = as_json(run(down, "index", "sync", "--json", code=1))
    assert report["ok"] is False and report["behind"] == len(CORPUS)


def test_after_a_harvest_an_unreachable_index_is_a_warning_not_a_failure(filled: dict[str, str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in filled.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PAN_HARVESTER_ES_URL", f"http://127.0.0.1:{closed_port()}")
    note = sync_after_harvest(AppContext(None, {}))
    assert note["ok"] is False and note["behind"] == len(CORPUS)
    assert "nothing is lost" in note["message"]
    monkeypatch.delenv("PAN_HARVESTER_ES_URL")
    note = sync_after_harvest(AppContext(None, {}))
    assert note["ok"] is True and note["indexed"] == len(CORPUS)


@pytest.mark.parametrize("backend", ["embedded", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
def test_harvest_index_search_stats(backend: str, env: dict[str, str], tmp_path: Path,
                                    request: pytest.FixtureRequest) -> None:
    records = make_records(300, seed=3, deleted_every=30)
    settings = index_settings(backend, request)
    with OAIServer(records, page_size=50) as server:
        config = esrf_config(tmp_path, server, **settings)
        out = run(env, "--config", str(config), "harvest", "esrf").output
        assert "indexed" in out
    try:
        live = [r for r in records if not r.deleted]
        total = as_json(run(env, "--config", str(config), "search", "--json"))["total"]
        assert total == len(live)
        saxs = [r for r in live if r.technique in ("small angle x-ray scattering", "small angle neutron scattering")]
        found = as_json(run(env, "--config", str(config), "search", "-t", "small angle scattering",
                            "--limit", "1000", "--json"))
        assert found["total"] >= len(saxs) > 0
        assert {r.doi.lower() for r in saxs} <= {h["pid"] for h in found["hits"]}
        stats = as_json(run(env, "--config", str(config), "stats", "--by", "facility", "--json"))
        assert stats["facility"] == [{"key": "ESRF", "count": len(live)}]
        status = as_json(run(env, "--config", str(config), "index", "status", "--json"))
        assert status["behind"] == 0 and status["documents"] == len(live)
    finally:
        if backend == "elasticsearch":
            from harvester.index.elastic import ElasticBackend

            with ElasticBackend(settings["es_url"], settings["index_alias"]) as es:
                for name in es.indexes():
                    es.drop_index(name)
