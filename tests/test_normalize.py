"""Table-driven tests for the pure normalisation functions."""

from __future__ import annotations

import pytest

from harvester.normalize import (
    access_right,
    collapse,
    date_range,
    find_doi,
    is_bare_url,
    is_placeholder,
    iso_date,
    license_id,
    license_uri,
    normalize_doi,
    normalize_orcid,
    normalize_ror,
    split_name,
    year_of,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("10.5442/NI000001", "10.5442/ni000001"),
    ("https://doi.org/10.17199/BRIGHTNESS/V200111", "10.17199/brightness/v200111"),
    ("http://dx.doi.org/10.1000/xyz", "10.1000/xyz"),
    ("doi.org/10.1000/xyz", "10.1000/xyz"),
    ("doi:10.5072/not-a-real-doi", "10.5072/not-a-real-doi"),
    ("DOI: 10.5072/ABC", "10.5072/abc"),
    ("info:doi/10.1234/abc", "10.1234/abc"),
    ("urn:doi:10.1234/abc", "10.1234/abc"),
    ("  \n 10.1234/abc \n", "10.1234/abc"),
    ("10.1080/00393630.2018.1504449/", "10.1080/00393630.2018.1504449"),  # kernel-4.7 example
    ("https://doi.org/10.1000%2Fxyz", "10.1000/xyz"),
    ("10.1000.10/xyz", "10.1000.10/xyz"),  # registrant code with a sub-division
    ("21.11151/74ix-jvpa", None),  # HZB Handle: not a DOI
    ("https://hdl.handle.net/21.11151/74ix-jvpa", None),
    ("https://example.org/10.1234/abc", None),
    ("10.12/abc", None),  # registrant code too short
    ("10.1234/", None),
    ("10.1234/a b", None),
    ("", None),
    (None, None),
])
def test_normalize_doi(raw, expected):
    assert normalize_doi(raw) == expected


def test_find_doi_takes_the_first_doi_among_identifiers():
    values = ["https://hdl.handle.net/21.11151/x", "info:doi/10.1234/ABC", "10.9999/other"]
    assert find_doi(values) == "10.1234/abc"
    assert find_doi(["urn:nbn:de:1", "http://example.org"]) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://orcid.org/0000-0003-1419-2405", "0000-0003-1419-2405"),
    ("\n            https://orcid.org/0000-0002-8599-0773", "0000-0002-8599-0773"),
    ("http://orcid.org/0000-0002-2572-6428/", "0000-0002-2572-6428"),
    ("0000-0001-5727-2427", "0000-0001-5727-2427"),
    ("0000000157272427", "0000-0001-5727-2427"),
    ("orcid:0000-0002-1694-233x", "0000-0002-1694-233X"),  # check digit X
    ("0000-0002-1825-0097", "0000-0002-1825-0097"),  # ORCID's own example
    ("0000-0002-1825-0098", None),  # bad checksum
    ("1234", None),
    ("", None),
    (None, None),
])
def test_normalize_orcid(raw, expected):
    assert normalize_orcid(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://ror.org/04wxnsj81", "https://ror.org/04wxnsj81"),
    ("http://ror.org/02aj13c28/", "https://ror.org/02aj13c28"),
    ("ror.org/043kfff89", "https://ror.org/043kfff89"),
    (" https://ror.org/03yrm5c26", "https://ror.org/03yrm5c26"),
    ("04Z8JG394", "https://ror.org/04z8jg394"),
    ("ror:02aj13c28", "https://ror.org/02aj13c28"),
    ("https://ror.org/02aj13c29", None),  # bad checksum
    ("https://ror.org/0ilo12345", None),  # i, l, o are not Crockford base 32
    ("grid.424048.e", None),
    ("ESS", None),
    (None, None),
])
def test_normalize_ror(raw, expected):
    assert normalize_ror(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("  Tucker,   Gregory \n", "Tucker, Gregory"),
    ("\nHelmholtz-Zentrum Berlin für Materialien und Energie\n",
     "Helmholtz-Zentrum Berlin für Materialien und Energie"),
    ("a\tb\r\nc", "a b c"),
    ("clean", "clean"),
    ("", ""),
    (None, ""),
])
def test_collapse(raw, expected):
    assert collapse(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("Kreyßig, Andreas", ("Andreas", "Kreyßig")),
    ("Fenner, Martin", ("Martin", "Fenner")),
    ("Tobias Richter", (None, None)),  # no comma: not guessed
    ("Smith, John, Jr.", (None, None)),
    ("Smith,", (None, None)),
    (", John", (None, None)),
])
def test_split_name(raw, expected):
    assert split_name(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (":null", True), (":unav", True), (" :UNAS ", True), ("", True), ("null", True),
    ("Tobias Richter", False), (":)", False),
])
def test_is_placeholder(raw, expected):
    assert is_placeholder(raw) is expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("2021", "2021"),
    ("2021-05", "2021-05"),
    ("2021-5-3", "2021-05-03"),
    ("2018-01-18", "2018-01-18"),
    ("2016-06-14T06:00:00Z", "2016-06-14T06:00:00Z"),
    ("2016-06-14 06:00:00", "2016-06-14T06:00:00"),
    ("2016-06-14T06:00:00.123+02:00", "2016-06-14T06:00:00.123+02:00"),
    ("2020/01/31", "2020-01-31"),
    ("2021-13-01", None),
    ("2021-02-32", None),
    ("May 2021", None),
    ("", None),
])
def test_iso_date(raw, expected):
    assert iso_date(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("2016-06-14T06:00:00Z/2016-07-05T06:18:54Z", ("2016-06-14T06:00:00Z", "2016-07-05T06:18:54Z")),
    ("2021-05-01/2021-05-03", ("2021-05-01", "2021-05-03")),
    ("2010/2020", ("2010", "2020")),
    ("2020-01-01/", ("2020-01-01", None)),
    ("/2020-01-01", (None, "2020-01-01")),
    ("2024-01-01", ("2024-01-01", "2024-01-01")),
    ("2020/01/31", ("2020-01-31", "2020-01-31")),
    ("soon", (None, None)),
])
def test_date_range(raw, expected):
    assert date_range(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("2021", 2021), (" 2018 ", 2018), ("2016-06-14T06:00:00Z", 2016), ("20210", None),
    ("21", None), ("", None), (None, None), ("0999", None),
])
def test_year_of(raw, expected):
    assert year_of(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("CC-BY-4.0", "CC-BY-4.0"),
    ("cc-by-4.0", "CC-BY-4.0"),
    ("CC BY 4.0", "CC-BY-4.0"),
    ("Creative Commons Attribution 4.0 International", "CC-BY-4.0"),
    ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/by/4.0/legalcode", "CC-BY-4.0"),
    ("https://creativecommons.org/licenses/by/4.0/deed.de", "CC-BY-4.0"),
    ("Creative Commons Zero v1.0 Universal", "CC0-1.0"),  # HZB
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("CC0", "CC0-1.0"),
    ("Creative Commons Attribution-ShareAlike 4.0 International", "CC-BY-SA-4.0"),
    ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("Creative Commons Attribution Non Commercial 4.0 International", "CC-BY-NC-4.0"),
    ("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International", "CC-BY-NC-ND-4.0"),
    ("https://creativecommons.org/licenses/by-nc-sa/3.0/", "CC-BY-NC-SA-3.0"),
    ("http://creativecommons.org/licenses/by-nd-nc/1.0/", "CC-BY-NC-ND-1.0"),
    ("https://www.creativecommons.org/licenses/by/2.5", "CC-BY-2.5"),
    ("Licensed under https://creativecommons.org/licenses/by/4.0/.", "CC-BY-4.0"),
    ("https://opendatacommons.org/licenses/odbl/1-0/", "ODbL-1.0"),
    ("Open Government Licence v3.0", "OGL-UK-3.0"),
    ("MIT License", "MIT"),
    ("info:eu-repo/semantics/openAccess", None),  # an access right, not a licence
    ("OpenAccess", None),
    ("All rights reserved", None),
    ("https://creativecommons.org/licenses/by/3.0/de/", None),  # a port is another licence
    ("", None),
    (None, None),
])
def test_license_id(raw, expected):
    assert license_id(raw) == expected


def test_license_uri_is_canonical():
    assert license_uri("CC0-1.0") == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert license_uri("CC-BY-4.0") == "https://creativecommons.org/licenses/by/4.0/"
    assert license_uri("Not-A-Licence") is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("info:eu-repo/semantics/openAccess", "open"),
    ("info:eu-repo/semantics/embargoedAccess", "embargoed"),
    ("info:eu-repo/semantics/restrictedAccess", "restricted"),
    ("info:eu-repo/semantics/closedAccess", "closed"),
    ("OpenAccess", "open"),
    ("Open Access", "open"),
    ("http://purl.org/coar/access_right/c_abf2", "open"),
    ("http://purl.org/coar/access_right/c_f1cf", "embargoed"),
    ("https://creativecommons.org/licenses/by/4.0/", None),
    ("Creative Commons Zero v1.0 Universal", None),
    (None, None),
])
def test_access_right(raw, expected):
    assert access_right(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://github.com/ess-dmsc/ess_file_formats/wiki/HDF5", True),
    (" http://example.org/x ", True),
    ("See https://example.org for the data", False),
    ("Our group has recently discovered", False),
    ("", False),
])
def test_is_bare_url(raw, expected):
    assert is_bare_url(raw) is expected
