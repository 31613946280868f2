"""Pure parts of the HTTP and OAI layers: Retry-After, repair, granularity."""

from datetime import UTC, datetime

import pytest

from harvester.errors import PageError
from harvester.harvest import to_granularity
from harvester.http import parse_retry_after
from harvester.oai import parse_page, repair

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), (" 5 ", 5.0), ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
    ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # a date in the past: go now
    ("Fri, 02 Jan 2026 12:00:00 GMT", 900.0),  # a day: capped
    ("99999", 900.0), ("soon", None), ("", None), (None, None),
])
def test_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW, cap=900.0) == expected


def test_repair_counts_illegal_characters():
    page = "<a><b>x\x0by\x1a</b><c>&#x0B;&#11;&#x1F;ok&#x9;</c>".encode() + b"<d>\xef\xbf\xbe</d></a>"
    fixed, count = repair(page)
    assert count == 6
    root, repaired = parse_page(page)
    assert repaired == 6
    assert root.findtext("c") == "\ufffd\ufffd\ufffdok\t"


def test_repair_invalid_utf8():
    root, repaired = parse_page(b"<?xml version='1.0' encoding='UTF-8'?><a>caf\xe9</a>")
    assert repaired == 1 and root.text == "caf\ufffd"


def test_unrepairable_page_raises_with_url():
    with pytest.raises(PageError) as info:
        parse_page(b"<a><b></a>", url="http://x/oai?verb=ListRecords")
    assert info.value.url == "http://x/oai?verb=ListRecords"


def test_no_entity_expansion_no_dtd(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file://{secret}">]>'
           "<a>&e;</a>").encode()
    root, _ = parse_page(xxe)
    assert b"TOPSECRET" not in __import__("lxml.etree", fromlist=["etree"]).tostring(root)


@pytest.mark.parametrize("value, granularity, end, expected", [
    ("2024-01-05", "YYYY-MM-DDThh:mm:ssZ", False, "2024-01-05T00:00:00Z"),
    ("2024-01-05", "YYYY-MM-DDThh:mm:ssZ", True, "2024-01-05T23:59:59Z"),
    ("2024-01-05T10:11:12Z", "YYYY-MM-DD", False, "2024-01-05"),
    ("2024-01-05T10:11:12+00:00", "YYYY-MM-DDThh:mm:ssZ", False, "2024-01-05T10:11:12Z"),
    ("2024-01-05T10:11:12Z", "YYYY-MM-DDThh:mm:ssZ", False, "2024-01-05T10:11:12Z"),
])
def test_to_granularity(value, granularity, end, expected):
    assert to_granularity(value, granularity, end=end) == expected


def test_to_granularity_rejects_garbage():
    with pytest.raises(Exception, match="not a date"):
        to_granularity("yesterday", "YYYY-MM-DD")
