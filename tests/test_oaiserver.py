"""The test OAI-PMH servers themselves: protocol, faults, third-party servers, CLI."""

from __future__ import annotations

import email.utils
import gzip
import math
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from lxml import etree
from sickle import Sickle

from tests.oaiserver import (
    DAY,
    BrokenPage,
    BrokenRecord,
    DropConnection,
    EmptyPageWithToken,
    ExpiredToken,
    IllegalChars,
    LoopToken,
    OAIServer,
    Slow,
    Status,
    http_date,
)
from tests.recordgen import (
    SAMPLE_KERNEL_FILES,
    SAMPLE_RECORD_FILES,
    SAMPLES_DIR,
    FakeRecord,
    make_records,
    sample_payload,
)
from tests.thirdparty import payload_element, serve_with_oai_repo, serve_with_oaipmh

OAI = "{http://www.openarchives.org/OAI/2.0/}"
ROOT = Path(__file__).resolve().parents[1]
STRICT = etree.XMLParser(resolve_entities=False, no_network=True, recover=False)


def call(url: str, session: requests.Session | None = None, **params: str) -> requests.Response:
    params = {k.rstrip("_"): v for k, v in params.items()}  # from_ -> from
    return (session or requests).get(url, params=params, timeout=10)


def xml(resp: requests.Response) -> etree._Element:
    assert resp.status_code == 200, resp.text[:300]
    return etree.fromstring(resp.content, STRICT)


def error_code(root: etree._Element) -> str | None:
    err = root.find(f"{OAI}error")
    return None if err is None else err.get("code")


def page_ids(root: etree._Element) -> list[str]:
    return [h.findtext(f"{OAI}identifier") for h in root.iter(f"{OAI}header")]


def token_of(root: etree._Element) -> etree._Element | None:
    return root.find(f".//{OAI}resumptionToken")


def harvest_responses(url: str, verb: str = "ListRecords", **params: str
                      ) -> list[requests.Response]:
    """Every page of a list, following tokens with plain requests."""
    out = []
    with requests.Session() as s:
        resp = call(url, s, verb=verb, **params)
        out.append(resp)
        while (tok := token_of(xml(resp))) is not None and tok.text:
            resp = call(url, s, verb=verb, resumptionToken=tok.text)
            out.append(resp)
    return out


def harvest(url: str, verb: str = "ListRecords", **params: str) -> list[etree._Element]:
    return [xml(r) for r in harvest_responses(url, verb, **params)]


def all_ids(pages: list[etree._Element]) -> list[str]:
    return [i for p in pages for i in page_ids(p)]


def visible(records: list[FakeRecord]) -> list[str]:
    return [r.identifier for r in records]


# --- generated records ---------------------------------------------------------


def test_generator_is_deterministic_and_prefix_stable():
    assert make_records(50, seed=3) == make_records(50, seed=3)
    assert make_records(20)[:10] == make_records(10)
    assert make_records(10, seed=1) != make_records(10, seed=2)
    later = make_records(5, first=1001)
    assert later[0].identifier == "oai:example.org:10.5442/ni001001"


def test_generated_payloads_are_real_shaped():
    recs = make_records(300, deleted_every=10)
    assert sum(r.deleted for r in recs) == 30
    techniques = {r.technique for r in recs}
    assert {"small angle x-ray scattering", "small angle neutron scattering", "x-ray diffraction",
            "angle resolved photoemission spectroscopy", "tomography", None} <= techniques
    ns = {"d": "http://datacite.org/schema/kernel-4"}
    orcids = rors = cc_by = instruments = 0
    for r in recs:
        el = payload_element(r)  # parses: well-formed
        assert el.tag == "{http://schema.datacite.org/oai/oai-1.1/}oai_datacite"
        assert el.findtext(".//d:identifier", namespaces=ns) == r.doi
        assert el.findtext(".//d:title", namespaces=ns)
        for oid in el.xpath(".//d:nameIdentifier[@nameIdentifierScheme='ORCID']/text()",
                            namespaces=ns):
            digits = oid.rsplit("/", 1)[1].replace("-", "")
            total = 0
            for d in digits[:-1]:
                total = (total + int(d)) * 2
            check = (12 - total % 11) % 11
            assert digits[-1] == ("X" if check == 10 else str(check))
            orcids += 1
        rors += len(el.xpath(".//d:affiliation[@affiliationIdentifierScheme='ROR']",
                             namespaces=ns))
        cc_by += len(el.xpath(".//d:rights[@rightsIdentifier='CC-BY-4.0']", namespaces=ns))
        instruments += len(el.xpath(".//d:relatedItem[@relatedItemType='Instrument']",
                                    namespaces=ns))
        collected = el.findtext(".//d:date[@dateType='Collected']", namespaces=ns)
        assert collected and "/" in collected
        if r.technique is None:
            title = el.findtext(".//d:title", namespaces=ns).lower()
            assert not any(w in title for w in ("scattering", "diffraction", "arpes", "tomogra"))
    assert orcids > 100 and rors > 100 and instruments > 100
    assert 200 < cc_by < 300
    dc = make_records(3, prefix="oai_dc")[0]
    assert dc.prefix == "oai_dc" and b"<dc:title>" in dc.metadata_xml


def test_sample_records_keep_the_file_bytes(samples):
    assert len(samples) == len(SAMPLE_RECORD_FILES) + len(SAMPLE_KERNEL_FILES)
    for rec in samples:
        raw = (SAMPLES_DIR / rec.source).read_bytes()
        assert sample_payload(rec.source) in raw
        assert sample_payload(rec.source) in rec.metadata_xml
        payload_element(rec)  # well-formed inside an OAI envelope
    by_source = {r.source: r for r in samples}
    hzb = by_source["hzb_inv_oai_datacite_record__b2find.xml"]
    assert hzb.identifier == "9beb3749-a078-5f7c-949a-e6da71f6185f"
    assert hzb.datestamp == "2023-05-08T10:30:43Z" and hzb.sets == ("hzb",)
    assert by_source["ess_openaire_oai_record_broken_id__b2find.xml"].identifier == ""
    assert by_source["ess_openaire_oai_record__b2find.xml"].datestamp == "2020-01-01T00:00:00Z"
    viringo = by_source["datacite_oai_oai_getrecord_oaidatacite__viringo.xml"]
    assert viringo.sets == ("DATACITE", "DATACITE.DATACITE")


# --- protocol ----------------------------------------------------------------------


def test_paging_reaches_every_record_exactly_once(oai_server, records_1k):
    server = oai_server(records_1k, page_size=97)
    pages = harvest(server.url, metadataPrefix="oai_datacite")
    assert len(pages) == math.ceil(1000 / 97)
    assert all_ids(pages) == visible(records_1k)
    for n, page in enumerate(pages):
        tok = token_of(page)
        assert tok.get("cursor") == str(97 * n)
        assert tok.get("completeListSize") == "1000"
        if n < len(pages) - 1:
            assert tok.text and tok.get("expirationDate")
    assert not token_of(pages[-1]).text  # the empty final token
    deleted = [r for r in pages[3].iter(f"{OAI}record")
               if r.find(f"{OAI}header").get("status") == "deleted"]
    assert deleted and all(r.find(f"{OAI}metadata") is None for r in deleted)
    assert [r.verb for r in server.requests] == ["ListRecords"] * len(pages)
    assert all(r.status == 200 for r in server.requests)
    assert server.requests[-1].token == ""


def test_sickle_sees_every_record_and_deletion(oai_server, records_1k):
    server = oai_server(records_1k, page_size=100)
    got = list(Sickle(server.url).ListRecords(metadataPrefix="oai_datacite",
                                              ignore_deleted=False))
    assert [r.header.identifier for r in got] == visible(records_1k)
    assert sum(r.header.deleted for r in got) == 100
    heads = list(Sickle(server.url).ListIdentifiers(metadataPrefix="oai_datacite",
                                                    ignore_deleted=False))
    assert len(heads) == 1000


def test_deleted_record_no_hides_deletions(oai_server, records_1k):
    server = oai_server(records_1k, deleted_record="no", page_size=500)
    pages = harvest(server.url, metadataPrefix="oai_datacite")
    assert all_ids(pages) == [r.identifier for r in records_1k if not r.deleted]
    gone = next(r for r in records_1k if r.deleted)
    root = xml(call(server.url, verb="GetRecord", identifier=gone.identifier,
                    metadataPrefix="oai_datacite"))
    assert error_code(root) == "idDoesNotExist"
    identify = xml(call(server.url, verb="Identify"))
    assert identify.findtext(f".//{OAI}deletedRecord") == "no"


def test_one_page_list_has_no_token_and_tokens_replay(oai_server, records_100):
    small = oai_server(records_100, page_size=100)
    assert token_of(xml(call(small.url, verb="ListRecords", metadataPrefix="oai_datacite"))) is None
    server = oai_server(records_100, page_size=30)
    with requests.Session() as s:
        first = xml(call(server.url, s, verb="ListIdentifiers", metadataPrefix="oai_datacite"))
        tok = token_of(first).text
        a = call(server.url, s, verb="ListIdentifiers", resumptionToken=tok)
        b = call(server.url, s, verb="ListIdentifiers", resumptionToken=tok)
        assert a.content == b.content  # re-sending a token is allowed and gives the same page
        assert page_ids(xml(a)) == visible(records_100)[30:60]
        wrong_verb = xml(call(server.url, s, verb="ListRecords", resumptionToken=tok))
        assert error_code(wrong_verb) == "badResumptionToken"
        garbage = xml(call(server.url, s, verb="ListRecords", resumptionToken="nonsense!"))
        assert error_code(garbage) == "badResumptionToken"
        server.advance(hours=2)  # past the one-hour expirationDate, on the server's clock
        assert error_code(xml(call(server.url, s, verb="ListIdentifiers",
                                   resumptionToken=tok))) == "badResumptionToken"


def test_response_date_comes_from_the_server_clock(oai_server):
    server = oai_server(now="2031-02-03T04:05:06Z")
    root = xml(call(server.url, verb="Identify"))
    assert root.findtext(f"{OAI}responseDate") == "2031-02-03T04:05:06Z"
    server.advance(days=1)
    root = xml(call(server.url, verb="Identify"))
    assert root.findtext(f"{OAI}responseDate") == "2031-02-04T04:05:06Z"


def test_identify_and_formats_and_sets(oai_server, records_100):
    server = oai_server(records_100 + make_records(5, prefix="oai_dc", first=501),
                        granularity=DAY, earliest_datestamp="2019-06-01")
    ident = xml(call(server.url, verb="Identify")).find(f"{OAI}Identify")
    assert ident.findtext(f"{OAI}baseURL") == server.url
    assert ident.findtext(f"{OAI}granularity") == "YYYY-MM-DD"
    assert ident.findtext(f"{OAI}earliestDatestamp") == "2019-06-01"
    assert ident.findtext(f"{OAI}deletedRecord") == "persistent"
    assert ident.findtext(f"{OAI}compression") == "gzip"
    formats = xml(call(server.url, verb="ListMetadataFormats"))
    assert [e.text for e in formats.iter(f"{OAI}metadataPrefix")] == ["oai_datacite", "oai_dc"]
    one = xml(call(server.url, verb="ListMetadataFormats", identifier=records_100[0].identifier))
    assert [e.text for e in one.iter(f"{OAI}metadataPrefix")] == ["oai_datacite"]
    sets = xml(call(server.url, verb="ListSets"))
    assert [e.text for e in sets.iter(f"{OAI}setSpec")] == ["pub", "raw"]
    dc = harvest(server.url, metadataPrefix="oai_dc")
    assert len(all_ids(dc)) == 5
    # day granularity: datestamps are served as days
    assert all(len(d.text) == 10 for d in dc[0].iter(f"{OAI}datestamp"))
    rec = xml(call(server.url, verb="GetRecord", identifier=records_100[5].identifier,
                   metadataPrefix="oai_datacite"))
    assert page_ids(rec) == [records_100[5].identifier]


@pytest.mark.parametrize("granularity", [DAY, "YYYY-MM-DDThh:mm:ssZ"])
def test_from_until_are_inclusive(oai_server, granularity):
    records = make_records(300, step_seconds=1800)
    server = oai_server(records, granularity=granularity, page_size=50)
    if granularity == DAY:
        lo, hi = "2020-01-02", "2020-01-03"
        expected = [r.identifier for r in records if lo <= r.datestamp[:10] <= hi]
    else:
        lo, hi = records[40].datestamp, records[120].datestamp
        expected = [r.identifier for r in records if lo <= r.datestamp <= hi]
        assert records[39].datestamp < lo  # the boundaries are real datestamps
    got = all_ids(harvest(server.url, metadataPrefix="oai_datacite", from_=lo, until=hi))
    assert got == expected and len(expected) > 50
    assert all_ids(harvest(server.url, metadataPrefix="oai_datacite", from_=lo)) == [
        r.identifier for r in records if r.datestamp[:len(lo)] >= lo]


def test_bad_dates_are_bad_arguments(oai_server):
    day = oai_server(granularity=DAY)
    seconds = oai_server()
    cases = [
        (day, {"from_": "2020-01-01T00:00:00Z"}),  # finer than the granularity
        (seconds, {"from_": "2020-01-01", "until": "2020-01-02T00:00:00Z"}),  # mixed
        (seconds, {"from_": "2020-01-05", "until": "2020-01-01"}),  # from after until
        (seconds, {"from_": "2020-13-01"}),
        (seconds, {"until": "yesterday"}),
    ]
    for server, args in cases:
        root = xml(call(server.url, verb="ListRecords", metadataPrefix="oai_datacite", **args))
        assert error_code(root) == "badArgument", args
        assert root.find(f"{OAI}request").get("verb") is None  # badArgument: no echo
    assert error_code(xml(call(seconds.url, verb="ListRecords", metadataPrefix="oai_datacite",
                               from_="2099-01-01"))) == "noRecordsMatch"


def test_set_filtering(oai_server):
    records = make_records(200, sets=("pub", "raw", "raw:hzb"))
    server = oai_server(records, page_size=40)
    for spec in ("pub", "raw:hzb"):
        got = all_ids(harvest(server.url, metadataPrefix="oai_datacite", set=spec))
        assert got == [r.identifier for r in records if spec in r.sets]
    # "raw" holds its subset raw:hzb too
    raw = all_ids(harvest(server.url, metadataPrefix="oai_datacite", set="raw"))
    assert raw == [r.identifier for r in records if {"raw", "raw:hzb"} & set(r.sets)]
    assert error_code(xml(call(server.url, verb="ListRecords", metadataPrefix="oai_datacite",
                               set="nope"))) == "noRecordsMatch"
    flat = oai_server(make_records(10, sets=()))
    assert error_code(xml(call(flat.url, verb="ListSets"))) == "noSetHierarchy"
    assert error_code(xml(call(flat.url, verb="ListRecords", metadataPrefix="oai_datacite",
                               set="pub"))) == "noSetHierarchy"


def test_protocol_errors(oai_server, records_100):
    server = oai_server(records_100)
    url = server.url
    assert error_code(xml(call(url, verb="Fetch"))) == "badVerb"
    assert error_code(xml(call(url))) == "badVerb"
    assert error_code(xml(call(url, verb="ListRecords"))) == "badArgument"
    assert error_code(xml(call(url, verb="ListRecords", metadataPrefix="marc21"))) == \
        "cannotDisseminateFormat"
    assert error_code(xml(call(url, verb="ListRecords", metadataPrefix="oai_datacite",
                               resumptionToken="x"))) == "badArgument"
    assert error_code(xml(call(url, verb="Identify", extra="1"))) == "badArgument"
    assert error_code(xml(call(url, verb="GetRecord", identifier="oai:nope",
                               metadataPrefix="oai_datacite"))) == "idDoesNotExist"
    assert error_code(xml(call(url, verb="GetRecord", identifier=records_100[0].identifier,
                               metadataPrefix="oai_dc"))) == "cannotDisseminateFormat"
    repeated = requests.get(url + "?verb=Identify&verb=Identify", timeout=10)
    assert error_code(xml(repeated)) == "badArgument"
    assert requests.get(url.replace("/oai", "/other"), timeout=10).status_code == 404
    assert [r.oai_error for r in server.requests[:3]] == ["badVerb", "badVerb", "badArgument"]


def test_post_form_is_answered_like_get(oai_server, records_100):
    server = oai_server(records_100, page_size=30)
    params = {"verb": "ListRecords", "metadataPrefix": "oai_datacite", "set": "pub"}
    got = requests.post(server.url, data=params, timeout=10)
    assert got.content == requests.get(server.url, params=params, timeout=10).content
    assert server.requests[0].params == params


def test_gzip_only_when_asked(oai_server, records_100):
    server = oai_server(records_100, page_size=50)
    zipped = requests.get(server.url, params={"verb": "ListRecords",
                                              "metadataPrefix": "oai_datacite"},
                          headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
    assert zipped.headers["Content-Encoding"] == "gzip"
    raw = zipped.raw.read(decode_content=False)
    assert int(zipped.headers["Content-Length"]) == len(raw)
    body = gzip.decompress(raw)
    plain = requests.get(server.url, params={"verb": "ListRecords",
                                             "metadataPrefix": "oai_datacite"},
                         headers={"Accept-Encoding": "identity"}, timeout=10)
    assert "Content-Encoding" not in plain.headers
    assert plain.content == body and len(raw) * 4 < len(body)
    off = oai_server(records_100, gzip=False)
    resp = requests.get(off.url, params={"verb": "Identify"}, timeout=10)
    assert "Content-Encoding" not in resp.headers
    assert xml(resp).find(f".//{OAI}compression") is None


def test_incremental_changes_between_harvests(oai_server, records_100):
    server = oai_server(records_100, page_size=40)
    first = xml(call(server.url, verb="ListRecords", metadataPrefix="oai_datacite"))
    since = first.findtext(f"{OAI}responseDate")
    server.advance(60)
    changed = server.update(records_100[3].identifier, sets=("pub", "raw"))
    gone = server.delete(records_100[7].identifier)
    new = make_records(2, first=9001, start=changed.datestamp)
    server.add(*new)
    assert changed.datestamp == gone.datestamp > since
    got = harvest(server.url, metadataPrefix="oai_datacite", from_=since)
    assert all_ids(got) == [changed.identifier, gone.identifier] + visible(new)
    assert got[0].find(f".//{OAI}header[@status='deleted']") is not None
    server.records[0] = FakeRecord("oai:x:1", since, metadata_xml=b"<a/>")  # plain list edits count
    assert all_ids(harvest(server.url, metadataPrefix="oai_datacite", from_=since))[0] == "oai:x:1"


def test_sample_records_are_served_byte_for_byte(oai_server, samples):
    server = oai_server(samples, page_size=3)
    pages = harvest_responses(server.url, metadataPrefix="oai_datacite")
    roots = [xml(p) for p in pages]  # strict parse: the HZB payload needs the envelope's xsi
    assert all_ids(roots) == [r.identifier for r in samples]
    raw = b"".join(p.content for p in pages)
    for rec in samples:
        assert b"<metadata>" + rec.metadata_xml + b"</metadata>" in raw


# --- faults ------------------------------------------------------------------------


def test_status_faults_with_retry_after_both_forms(oai_server):
    server = oai_server(page_size=50)
    when = http_date(2)
    server.faults += [Status(503, retry_after="2"), Status(503, retry_after=when), Status(429),
                      Status(503, retry_after=lambda: http_date(5))]
    args = {"verb": "ListRecords", "metadataPrefix": "oai_datacite"}
    with requests.Session() as s:
        first = s.get(server.url, params=args, timeout=10)
        assert first.status_code == 503 and first.headers["Retry-After"] == "2"
        second = s.get(server.url, params=args, timeout=10)
        assert second.status_code == 503 and second.headers["Retry-After"] == when
        retry_at = email.utils.parsedate_to_datetime(second.headers["Retry-After"])
        sent_at = email.utils.parsedate_to_datetime(second.headers["Date"])
        assert timedelta(seconds=1) <= retry_at - sent_at <= timedelta(seconds=3)
        assert s.get(server.url, params=args, timeout=10).status_code == 429
        assert s.get(server.url, params={"verb": "Identify"}, timeout=10).status_code == 200
        late = s.get(server.url, params=args, timeout=10)  # a date computed when it fires
        retry_at = email.utils.parsedate_to_datetime(late.headers["Retry-After"])
        assert retry_at - email.utils.parsedate_to_datetime(late.headers["Date"]) >= \
            timedelta(seconds=4)
        assert s.get(server.url, params=args, timeout=10).status_code == 200
    assert [r.status for r in server.requests] == [503, 503, 429, 200, 503, 200]
    assert not server.faults and len(server.fired) == 4


@pytest.mark.parametrize("code", [500, 403, 404])
def test_status_fault_on_a_given_page(oai_server, code):
    server = oai_server(page_size=20)  # 100 records: 5 pages
    server.faults.append(Status(code, page=3))
    with pytest.raises(AssertionError):
        harvest(server.url, metadataPrefix="oai_datacite")
    assert [r.status for r in server.requests] == [200, 200, code]
    # consumed: the same request now succeeds and the harvest can go on
    verb, params, _ = server.requests[-1]
    assert call(server.url, **params).status_code == 200


def test_fault_nth_and_times_and_any_verb(oai_server):
    server = oai_server(page_size=10)
    server.faults.append(Status(500, verb=None, nth=2, times=2))
    codes = [call(server.url, verb="Identify").status_code for _ in range(4)]
    assert codes == [200, 500, 500, 200]
    server.faults.append(Status(503, times=None))
    for _ in range(3):
        resp = call(server.url, verb="ListRecords", metadataPrefix="oai_datacite")
        assert resp.status_code == 503
    assert len(server.faults) == 1


def test_drop_connection(oai_server):
    server = oai_server(page_size=50)
    server.faults += [DropConnection(), DropConnection(mid_body=True)]
    args = {"verb": "ListRecords", "metadataPrefix": "oai_datacite"}
    with requests.Session() as s:
        with pytest.raises(requests.ConnectionError):
            s.get(server.url, params=args, timeout=10)
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
            s.get(server.url, params=args, timeout=10)
        assert s.get(server.url, params=args, timeout=10).status_code == 200
    assert [r.status for r in server.requests] == [0, 0, 200]


def test_illegal_characters_land_in_one_record(oai_server, records_100):
    server = oai_server(records_100, page_size=25, gzip=False)
    target = records_100[30].identifier
    server.faults += [IllegalChars(identifier=target), IllegalChars(as_refs=True, page=3)]
    pages = [call(server.url, verb="ListRecords", metadataPrefix="oai_datacite")]
    tok = token_of(xml(pages[0])).text
    raw = call(server.url, verb="ListRecords", resumptionToken=tok).content
    for bad in (b"\x0b", b"\x1a", b"\x00", "\ufffe".encode()):
        assert bad in raw
    assert server.fired[0].hits == [target]
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(raw, STRICT)
    # the rest of the page is untouched
    clean = records_100[31].metadata_xml
    assert clean in raw
    tok = token_of(etree.fromstring(raw.replace(b"\x00", b"").replace(b"\x0b", b"")
                                    .replace(b"\x1a", b"").replace("\ufffe".encode(), b""),
                                    STRICT)).text
    refs = call(server.url, verb="ListRecords", resumptionToken=tok).content
    assert b"&#xB;&#x1A;&#x0;&#xFFFE;" in refs


def test_broken_page_is_truncated_mid_element(oai_server):
    server = oai_server(page_size=50)
    server.faults.append(BrokenPage())
    resp = call(server.url, verb="ListRecords", metadataPrefix="oai_datacite")
    assert resp.status_code == 200
    assert not resp.content.rstrip().endswith(b"</OAI-PMH>")
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(resp.content, STRICT)


@pytest.mark.parametrize("kind", ["no_title", "no_header_identifier", "empty_metadata"])
def test_broken_record_leaves_the_page_well_formed(oai_server, records_100, kind):
    server = oai_server(records_100, page_size=50)
    target = records_100[10]
    server.faults.append(BrokenRecord(target.identifier, kind=kind))
    root = xml(call(server.url, verb="ListRecords", metadataPrefix="oai_datacite"))
    records = root.findall(f".//{OAI}record")
    assert len(records) == 50
    broken = records[10]
    titles = broken.findall(".//{*}title")
    if kind == "no_header_identifier":
        assert broken.find(f"{OAI}header/{OAI}identifier") is None and titles
    elif kind == "empty_metadata":
        assert len(broken.find(f"{OAI}metadata")) == 0
    else:
        assert not titles and broken.find(f"{OAI}metadata/{OAI}resource") is not None
    assert all(r.findall(".//{*}title") for r in records[11:])
    assert server.fired[0].hits == [target.identifier]


def test_expired_token(oai_server):
    server = oai_server(page_size=30)
    server.faults.append(ExpiredToken())
    with requests.Session() as s:
        first = xml(call(server.url, s, verb="ListRecords", metadataPrefix="oai_datacite"))
        tok = token_of(first).text
        assert error_code(xml(call(server.url, s, verb="ListRecords",
                                   resumptionToken=tok))) == "badResumptionToken"
        assert page_ids(xml(call(server.url, s, verb="ListRecords", resumptionToken=tok)))
    assert [r.oai_error for r in server.requests] == [None, "badResumptionToken", None]


def test_loop_token_and_repeated_page(oai_server, records_100):
    server = oai_server(records_100, page_size=20)
    server.faults += [LoopToken(), LoopToken(repeat="page")]
    with requests.Session() as s:
        p1 = xml(call(server.url, s, verb="ListRecords", metadataPrefix="oai_datacite"))
        t1 = token_of(p1).text
        p2 = xml(call(server.url, s, verb="ListRecords", resumptionToken=t1))
        assert token_of(p2).text == t1  # the server hands the same token back
        assert page_ids(p2) == visible(records_100)[20:40]
        p2b = xml(call(server.url, s, verb="ListRecords", resumptionToken=t1))
        assert page_ids(p2b) == visible(records_100)[0:20]  # the previous page again
        t2 = token_of(p2b).text
        assert t2 != t1
        assert page_ids(xml(call(server.url, s, verb="ListRecords", resumptionToken=t2))) == \
            visible(records_100)[20:40]


def test_empty_page_with_token(oai_server, records_100):
    server = oai_server(records_100, page_size=50)
    server.faults.append(EmptyPageWithToken())
    pages = harvest(server.url, metadataPrefix="oai_datacite")
    assert [len(page_ids(p)) for p in pages] == [0, 50, 50]
    assert all_ids(pages) == visible(records_100)
    assert token_of(pages[0]).get("cursor") == "0"


def test_slow_response_and_slow_stream(oai_server):
    server = oai_server(page_size=50)
    server.faults += [Slow(0.4), Slow(0.4, stream=True)]
    for _ in range(2):
        started = time.monotonic()
        root = xml(call(server.url, verb="ListRecords", metadataPrefix="oai_datacite"))
        assert time.monotonic() - started >= 0.35
        assert len(page_ids(root)) == 50
    call(server.url, verb="ListRecords", metadataPrefix="oai_datacite")
    # each fault fired once and left the queue: the third answer is not delayed
    assert server.faults == [] and server.requests[-1].fault is None


def test_stop_does_not_wait_for_a_slow_response(records_100):
    server = OAIServer(records_100).start()
    server.faults.append(Slow(30, stream=True))
    with requests.Session() as s:
        resp = s.get(server.url, params={"verb": "ListRecords", "metadataPrefix": "oai_datacite"},
                     stream=True, timeout=10)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3
        resp.close()


# --- third-party servers -------------------------------------------------------------


def _content(el: etree._Element) -> list[tuple[str, str, dict[str, str]]]:
    """Elements, their text and attributes: what survives re-serialisation and pretty-printing."""
    return [(e.tag, (e.text or "").strip(), dict(e.attrib)) for e in el.iter()
            if isinstance(e.tag, str)]


@pytest.mark.parametrize("serve", [serve_with_oaipmh, serve_with_oai_repo])
def test_third_party_servers_serve_every_record(serve, samples):
    records = make_records(120, deleted_every=10) + samples
    with serve(records, page_size=25) as url:
        got = list(Sickle(url).ListRecords(metadataPrefix="oai_datacite", ignore_deleted=False))
        last = requests.get(url, params={"verb": "ListRecords", "metadataPrefix": "oai_datacite",
                                         "set": "datacite-examples"}, timeout=10)
    expected = records if serve is serve_with_oaipmh else [r for r in records if not r.deleted]
    # sickle reads the ESS sample's empty <identifier/> as None
    assert [r.header.identifier or "" for r in got] == [r.identifier for r in expected]
    by_id = {r.identifier: r for r in expected}
    for rec in got:
        fake = by_id[rec.header.identifier or ""]
        assert rec.header.deleted == fake.deleted
        if not fake.deleted:  # same content, re-serialised by the library
            served = rec.xml.find(f"{OAI}metadata")[0]
            assert _content(served) == _content(payload_element(fake))
    # a one-page list: neither sends a token
    assert token_of(xml(last)) is None and len(page_ids(xml(last))) == 3


def test_third_party_conventions_differ():
    records = make_records(30)
    with serve_with_oaipmh(records, page_size=20) as url:
        pages = harvest(url, metadataPrefix="oai_datacite")
        assert len(pages) == 2 and token_of(pages[-1]) is None  # no final token at all
    with serve_with_oai_repo(records, page_size=20) as url:
        pages = harvest(url, metadataPrefix="oai_datacite")
        tok = token_of(pages[-1])
        assert len(pages) == 2 and tok is not None and not tok.text
        assert tok.get("completeListSize") == "30" and tok.get("cursor") == "20"
        # oai-repo reads a day-granularity until as that day's midnight
        day = records[5].datestamp[:10]
        later_that_day = [r for r in records if r.datestamp[:10] == day
                          and r.datestamp > day + "T00:00:00Z"]
        assert later_that_day
        got = all_ids(harvest(url, metadataPrefix="oai_datacite", until=day))
        assert not set(got) & {r.identifier for r in later_that_day}


# --- command line ---------------------------------------------------------------------


def test_command_line_server():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.oaiserver", "--records", "60", "--page-size", "25",
         "--deleted-every", "6", "--sets", "a,b"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/oai")
        got = list(Sickle(url).ListRecords(metadataPrefix="oai_datacite", ignore_deleted=False))
        assert len(got) == 60 and sum(r.header.deleted for r in got) == 10
        sets = [s.setSpec for s in Sickle(url).ListSets()]
        assert sets == ["a", "b"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
