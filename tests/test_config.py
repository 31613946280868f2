from pathlib import Path

import pytest

from harvester.config import load_settings, parse_schedule
from harvester.errors import ConfigError

FACILITIES = {"ESRF", "ILL", "PSI", "ESS", "HZB", "ISIS", "CERIC-ERIC", "HZDR", "EuXFEL", "MAX IV", "DESY",
              "Elettra", "ALBA", "SOLEIL", "Diamond", "DataCite"}


def test_registry_has_every_facility_with_reason_when_disabled():
    settings = load_settings(environ={})
    assert {s.facility for s in settings.sources.values()} == FACILITIES
    for source in settings.sources.values():
        if source.enabled:
            assert source.url and source.url.startswith("https://")
        else:
            assert source.disabled_reason, source.name
    assert settings.sources["hzb"].sets == ["pub", "raw_inv"]
    assert settings.sources["desy"].metadata_prefix == "oai_dc"


def test_operator_adds_source_with_minimal_entry(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sources.mylab]\nurl = "https://data.mylab.eu/oai"\nsets = ["open"]\n')
    settings = load_settings(cfg, environ={})
    mylab = settings.sources["mylab"]
    assert (mylab.url, mylab.metadata_prefix, mylab.sets, mylab.facility, mylab.enabled) == (
        "https://data.mylab.eu/oai", "oai_datacite", ["open"], "mylab", True)


def test_operator_overrides_builtin_key_by_key(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sources.ill]\nschedule = "0 3 * * *"\n[sources.soleil]\nenabled = false\n')
    settings = load_settings(cfg, environ={})
    assert settings.sources["ill"].schedule == "0 3 * * *"
    assert settings.sources["ill"].url == "https://data.ill.fr/openaire/oai"


@pytest.mark.parametrize("body, source, key", [
    ('[sources.mylab]\nurl = "ftp://x"\n', "mylab", "url"),
    ('[sources.mylab]\nurl = "https://x.eu/oai"\nsetz = ["a"]\n', "mylab", "setz"),
    ('[sources.mylab]\nurl = "https://x.eu/oai"\nschedule = "every often"\n', "mylab", "schedule"),
    ('[sources.mylab]\nfacility = "X"\n', "mylab", None),
    ('[sources.mylab]\nurl = "https://x.eu/oai"\n[sources.mylab.set_facilities]\n"A" = ""\n', "mylab",
     "set_facilities"),
    ('[http]\nretries = -1\n', None, "http.retries"),
])
def test_bad_entry_names_file_source_and_key(tmp_path: Path, body, source, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    message = str(info.value)
    assert str(cfg) in message
    if source:
        assert repr(source) in message
    if key:
        assert repr(key) in message


def test_aggregator_names_a_facility_per_set(tmp_path: Path):
    settings = load_settings(environ={})
    datacite = settings.sources["datacite"]
    # set names compare case-insensitively; a set not listed leaves the record to say
    assert datacite.facility_rule()["inist.ill"] == "ILL"
    assert datacite.facility_rule()["inist.esrf"] == "ESRF"
    assert settings.sources["ill"].facility_rule() == "ILL"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sources.agg]\nurl = "https://agg.eu/oai"\n[sources.agg.set_facilities]\n"Lab.A" = "A"\n')
    assert load_settings(cfg, environ={}).sources["agg"].facility_rule() == {"lab.a": "A"}


def test_invalid_toml_and_missing_file(tmp_path: Path):
    bad = tmp_path / "x.toml"
    bad.write_text("[sources\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_environment_overrides(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('contact = "file@x.eu"\n')
    env = {"PAN_HARVESTER_CONFIG": str(cfg), "PAN_HARVESTER_DATA": str(tmp_path / "d"),
           "PAN_HARVESTER_CONTACT": "env@x.eu", "PAN_HARVESTER_HTTP_RETRIES": "2",
           "PAN_HARVESTER_ES_URL": "http://127.0.0.1:9"}
    settings = load_settings(environ=env)
    assert settings.data_dir == tmp_path / "d"
    assert settings.contact == "env@x.eu"
    assert settings.http.retries == 2
    assert settings.es_url == "http://127.0.0.1:9"
    # Command-line options win over the environment.
    assert load_settings(environ=env, overrides={"data_dir": tmp_path / "cli"}).data_dir == tmp_path / "cli"


def test_select_unknown_source():
    settings = load_settings(environ={})
    with pytest.raises(ConfigError, match="unknown source"):
        settings.select(["nope"])
    assert [s.name for s in settings.select([])] == [s.name for s in settings.enabled_sources()]


@pytest.mark.parametrize("text, expected", [
    ("every 30s", ("interval", 30)), ("every 6h", ("interval", 21600)), ("every 2d", ("interval", 172800)),
    ("0 3 * * *", ("cron", "0 3 * * *")),
])
def test_parse_schedule(text, expected):
    assert parse_schedule(text) == expected


@pytest.mark.parametrize("text", ["every 0s", "3am", "61 3 * * *"])
def test_parse_schedule_rejects(text):
    with pytest.raises(ValueError):
        parse_schedule(text)
