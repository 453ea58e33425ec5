"""Refusals beside the OAuth checks (issue 11): the forms' CSRF check and
anti-framing, callbacks that would split a header, bodies too large for an
OAuth endpoint, HTTP-level errors in the shape each client parses, journal
entries bounded whatever a client sends, HasErrors on invalid elements, and
a big save that never stalls other clients."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mockxero import MockXero, api_data, oauth
from mockxero.api_data import Batch

from .helpers import CSRF_COOKIE, Partner, Tokens, assert_problem, csrf_form
from .oauth_support import rsa_key

JSON = {"Accept": "application/json"}


@pytest.fixture
def browser(xero: MockXero) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(xero.ca_path)
        yield session


# -- the forms -------------------------------------------------------------------------------

def test_allow_without_the_csrf_token_is_refused_and_decides_nothing(
        xero: MockXero, partner: Partner, browser: requests.Session) -> None:
    rt = partner.get_request_token()
    page = browser.get(xero.url + "/oauth/Authorize", params={"oauth_token": rt.oauth_token})
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    assert "SameSite=Strict" in page.headers["Set-Cookie"] and "HttpOnly" in page.headers["Set-Cookie"]
    forged = [{"oauth_token": rt.oauth_token, "action": "allow"},  # a cross-site form knows no token
              {"oauth_token": rt.oauth_token, "action": "allow", "csrf_token": "x" * 43}]
    for form in forged:
        refused = browser.post(xero.url + "/oauth/Authorize", data=form, allow_redirects=False)
        assert refused.status_code == 403 and "CSRF" in refused.text
    with requests.Session() as stranger:  # the right token, but not this browser's cookie
        stranger.trust_env, stranger.verify = False, str(xero.ca_path)
        form = {"oauth_token": rt.oauth_token, "action": "allow",
                "csrf_token": str(browser.cookies[CSRF_COOKIE])}
        assert stranger.post(xero.url + "/oauth/Authorize", data=form).status_code == 403
    assert xero.store.request_token(rt.oauth_token).state == "pending"  # type: ignore[union-attr]
    allowed = browser.post(xero.url + "/oauth/Authorize", allow_redirects=False,
                           data=csrf_form(browser, xero, oauth_token=rt.oauth_token, action="allow"))
    assert allowed.status_code == 200 and 'id="verifier"' in allowed.text


def test_disconnect_without_the_csrf_token_is_refused(
        xero: MockXero, partner: Partner, tokens: Tokens, browser: requests.Session) -> None:
    form = {"session_handle": str(tokens.oauth_session_handle)}
    refused = browser.post(xero.url + "/addons/disconnect", data=form, allow_redirects=False)
    assert refused.status_code == 403
    assert partner.api(tokens, "Organisation").status_code == 200  # still connected
    done = browser.post(xero.url + "/addons/disconnect", data=csrf_form(browser, xero, **form),
                        allow_redirects=False)
    assert done.status_code == 303
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_rejected")


def test_the_pages_refuse_to_be_framed(xero: MockXero, partner: Partner, browser: requests.Session) -> None:
    rt = partner.get_request_token()
    for path, params in (("/oauth/Authorize", {"oauth_token": rt.oauth_token}), ("/addons", {}),
                         ("/oauth/Authorize", {"oauth_token": "NOSUCH"})):
        page = browser.get(xero.url + path, params=params)
        assert page.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"], path


# -- callbacks and bodies on /oauth/* ----------------------------------------------------------

@pytest.mark.parametrize("callback", ["http://localhost/cb\r\nSet-Cookie: x=1", "http://localhost/cb\n",
                                      "http://localhost/\x00", "http://localhost/" + "a" * 3000])
def test_a_callback_that_could_split_a_header_is_parameter_rejected(
        xero: MockXero, partner: Partner, callback: str) -> None:
    response = partner.request_token(callback)
    assert_problem(response, 401, "parameter_rejected", advice_contains="oauth_callback")
    assert not xero.connections() and xero.store.sizes()["request_tokens"] == 0


def test_an_oversized_oauth_body_is_a_xero_shaped_413(xero: MockXero, partner: Partner) -> None:
    body = b"padding=" + b"x" * (200 * 1024)
    response = partner.request("POST", "/oauth/RequestToken", auth=partner.auth(), data=body,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, 413, "parameter_rejected", advice_contains="64 KB")
    assert xero.journal()[-1]["status"] == 413


def test_an_oversized_chunked_oauth_body_is_a_xero_shaped_413(xero: MockXero, partner: Partner) -> None:
    """Chunked bodies are decoded by the listener and reach the app with
    their length: the same limit holds (unsigned: requests-oauthlib cannot
    sign a streamed body, and the size is refused first)."""
    body = b"padding=" + b"x" * (200 * 1024)
    response = partner.session.post(xero.url + "/oauth/RequestToken", data=iter([body[:1000], body[1000:]]),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, 413, "parameter_rejected", advice_contains="64 KB")


def test_a_method_oauth_does_not_take_is_a_xero_shaped_405(partner: Partner) -> None:
    response = partner.request("PUT", "/oauth/RequestToken", auth=partner.auth())
    assert_problem(response, 405, "parameter_rejected", advice_contains="use GET or POST")
    assert response.headers["Allow"] == "GET, POST"


def test_http_level_errors_on_the_api_are_api_exceptions(partner: Partner, tokens: Tokens) -> None:
    response = partner.api(tokens, "Contacts", method="TRACE")
    assert response.status_code == 501
    assert ET.fromstring(response.content).findtext("Type") == "ApiMethodNotImplementedException"


# -- the journal ---------------------------------------------------------------------------------

def test_a_huge_bad_request_leaves_a_small_journal_entry(xero: MockXero, partner: Partner,
                                                         tokens: Tokens) -> None:
    partner.rsa_key = rsa_key("not the registered one")
    body = "x=" + "%25" * 300_000  # ~900 KB, and three times that in the base string
    response = partner.api(tokens, "Contacts", method="POST", data=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, 401, "signature_invalid")
    entry = xero.journal()[-1]
    assert entry["oauth_problem"] == "signature_invalid"
    assert entry["base_string"].startswith("POST&https%3A%2F%2F")
    assert len(entry["base_string"]) < 4200 and entry["base_string"].endswith("more characters)")


# -- saving --------------------------------------------------------------------------------------

def test_invalid_elements_say_has_errors_in_json_and_xml(partner: Partner, tokens: Tokens) -> None:
    bad = {"Type": "ACCREC", "Contact": {"Name": "ABC Furniture"}, "LineItems": [], "Date": "not a date"}
    kept = partner.api(tokens, "Invoices", method="PUT", json={"Invoices": [bad]},
                       params={"summarizeErrors": "false"}, headers=JSON)
    [invoice] = kept.json()["Invoices"]
    assert invoice["HasErrors"] is True and invoice["ValidationErrors"]
    atomic = partner.api(tokens, "Invoices", method="PUT", json={"Invoices": [bad]}, headers=JSON)
    assert atomic.status_code == 400
    [element] = atomic.json()["Elements"]
    assert element["HasErrors"] is True
    as_xml = partner.api(tokens, "Invoices", method="PUT", json={"Invoices": [bad]},
                         params={"summarizeErrors": "false"})
    [node] = ET.fromstring(as_xml.content).iter("Invoice")
    assert node.findtext("HasErrors") == "true"
    good = partner.api(tokens, "Invoices", method="PUT", headers=JSON, json={"Invoices": [
        {"Type": "ACCREC", "Contact": {"Name": "ABC Furniture"},
         "LineItems": [{"Description": "Chair", "Quantity": 1, "UnitAmount": 10, "AccountCode": "200"}]}]})
    assert good.json()["Invoices"][0]["HasErrors"] is False


def test_validation_is_linear_in_the_size_of_the_request(xero: MockXero,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every invalid element used to make the next one rebuild the name
    index: n elements cost n² index entries. Count them."""
    calls = [0]
    index = Batch._index

    def counting(self: Batch, *args: Any) -> None:
        calls[0] += 1
        index(self, *args)

    monkeypatch.setattr(Batch, "_index", counting)
    org = xero.store.organisation(None)
    for n in (200, 800):
        calls[0] = 0
        duplicates = [{"Name": "ABC Furniture"} for _ in range(n)]  # each clashes with the stored one
        outcomes, _ = api_data.save(
            org, xero.store.collections(org.organisation_id), "Contacts", duplicates, xero.now(),
            allow_update=False, atomic=False)
        assert all(o.messages for o in outcomes)
        assert calls[0] < 20 * n, (n, calls[0])


def test_a_big_save_never_stalls_another_client(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    xero.load_data(contacts=[{"Name": f"Stored {i}"} for i in range(3000)])
    other = Partner(xero, xero.certs.consumer_key, xero.certs.consumer_secret,
                    rsa_key=xero.certs.application_key, cert=xero.client_cert)
    other_tokens = other.connect(org=xero.organisations()[1]["short_code"])
    body = {"Contacts": [{"Name": f"Stored {i}"} for i in range(3000)]}  # 3000 clashes to report
    done = threading.Event()
    answers: list[int] = []

    def save() -> None:
        answers.append(partner.api(tokens, "Contacts", method="PUT", json=body,
                                   params={"summarizeErrors": "false"}, headers=JSON).status_code)
        done.set()

    saver = threading.Thread(target=save)
    saver.start()
    try:
        served_during = 0
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            assert other.api(other_tokens, "Organisation").status_code == 200
            if not done.is_set():
                served_during += 1
        saver.join(60)
        assert answers == [200]
        # several answers while the save ran: not one just before it took a lock
        assert served_during >= 3, served_during
    finally:
        other.close()


def test_the_base_string_uri_cache_remembers_only_short_uris(partner: Partner, tokens: Tokens) -> None:
    """Paths and Host headers are the client's to choose: long ones are
    worked out every time and never fill the cache."""
    cache = oauth._cached_base_string_uri
    partner.api(tokens, "Organisation")
    before = cache.cache_info().currsize
    for i in range(20):
        response = partner.api(tokens, f"Contacts/{'x' * 600}{i}")
        assert response.status_code == 404  # signed correctly: past the checks, to the router
    assert cache.cache_info().currsize == before
