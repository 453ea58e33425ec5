"""SPEC.md §4: RequestToken, the Authorize consent page, the AccessToken
exchange, and the public and private app variants."""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mockxero import MockXero

from .helpers import HMAC, Control, Partner, Tokens, assert_problem, csrf_form, parse_form, race, tokens_from
from .oauth_support import (
    application_certificate,
    assert_form_success,
    key_pem,
    register,
    rsa_key,
)

EXCHANGE_FIELDS = ["oauth_token", "oauth_token_secret", "oauth_expires_in", "oauth_session_handle",
                   "oauth_authorization_expires_in", "xero_org_muid"]
TOKEN_SHAPE = re.compile(r"^[A-Z0-9]{30}$")


def request_token(partner: Partner, callback: str | None = None, **kwargs: Any) -> Tokens:
    response = partner.request_token(callback, **kwargs)
    fields = assert_form_success(response)
    assert [k for k, _ in fields] == ["oauth_token", "oauth_token_secret", "oauth_callback_confirmed"]
    data = dict(fields)
    assert data["oauth_callback_confirmed"] == "true"
    assert TOKEN_SHAPE.match(data["oauth_token"]) and TOKEN_SHAPE.match(data["oauth_token_secret"])
    return Tokens(data["oauth_token"], data["oauth_token_secret"], raw=data)


def authorize_page(xero: MockXero, anonymous: requests.Session, token: str) -> requests.Response:
    return anonymous.get(xero.url + "/oauth/Authorize", params={"oauth_token": token}, allow_redirects=False)


def decide(xero: MockXero, anonymous: requests.Session, token: str, action: str = "allow",
           org: str | None = None) -> requests.Response:
    form = csrf_form(anonymous, xero, oauth_token=token, action=action)
    if org is not None:
        form["org"] = org
    return anonymous.post(xero.url + "/oauth/Authorize", data=form, allow_redirects=False)


def redirect_params(response: requests.Response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    parts = urlsplit(location)
    return (f"{parts.scheme}://{parts.netloc}{parts.path}",
            {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()})


# -- RequestToken ------------------------------------------------------------------------
@pytest.mark.parametrize("callback", ["http://localhost:8000/xero/callback", "https://127.0.0.1/cb",
                                      "http://localhost/cb?state=a%20b"])
def test_request_token_with_a_callback_url(xero: MockXero, partner: Partner, callback: str) -> None:
    rt = request_token(partner, callback)
    stored = xero.store.request_token(rt.oauth_token)
    assert stored is not None and stored.callback == callback and stored.state == "pending"


@pytest.mark.parametrize("callback", ["oob", "OOB", None])
def test_request_token_oob_or_absent(xero: MockXero, partner: Partner, callback: str | None) -> None:
    rt = request_token(partner, callback)
    stored = xero.store.request_token(rt.oauth_token)
    assert stored is not None and stored.callback == "oob"


def test_request_token_with_an_empty_callback_is_oob(xero: MockXero, partner: Partner) -> None:
    auth = partner.auth(extra_oauth={"oauth_callback": ""})
    response = partner.request("POST", "/oauth/RequestToken", auth=auth)
    assert b'oauth_callback=""' in response.request.headers["Authorization"]
    data = dict(assert_form_success(response))
    stored = xero.store.request_token(data["oauth_token"])
    assert stored is not None and stored.callback == "oob"


@pytest.mark.parametrize("callback", ["https://evil.example.com/cb", "http://localhost.evil.com/cb",
                                      "https://xero.com.attacker.net/"])
def test_callback_on_a_foreign_domain(partner: Partner, callback: str) -> None:
    response = partner.request_token(callback)
    assert_problem(response, 401, "parameter_rejected",
                   advice="Callback url is not the registered callback domain")


def test_callback_domain_and_its_subdomains(xero: MockXero, control: Control,
                                            client_cert: tuple[str, str]) -> None:
    data = register(control, certificate=xero.certs.application_certificate, callback_domain="example.com")
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], rsa_key=xero.certs.application_key,
                cert=client_cert)
    try:
        for allowed in ("https://example.com/cb", "https://app.example.com/x?y=1", "http://localhost:3000/",
                        "http://127.0.0.1/cb"):
            assert_form_success(p.request_token(allowed))
        for refused in ("https://notexample.com/cb", "https://example.org/cb", "https://example.com.evil.io/"):
            assert_problem(p.request_token(refused), 401, "parameter_rejected",
                           advice="Callback url is not the registered callback domain")
    finally:
        p.close()


def test_callback_that_is_not_a_url(partner: Partner) -> None:
    assert_problem(partner.request_token("javascript:alert(1)"), 401, "parameter_rejected")


def test_request_token_over_get_and_post(partner: Partner) -> None:
    for method in ("GET", "POST"):
        assert_form_success(partner.request_token(method=method))


# -- Authorize page ------------------------------------------------------------------------
def test_authorize_page_shows_the_app_the_organisations_and_the_choices(
        xero: MockXero, partner: Partner, anonymous: requests.Session) -> None:
    rt = request_token(partner, "http://localhost:8000/cb")
    page = authorize_page(xero, anonymous, rt.oauth_token)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    html = page.text
    assert "mockxero demo partner app" in html
    assert "<select" in html
    for org in xero.organisations():
        assert org["name"] in html
        assert f'value="{org["short_code"]}"' in html
    assert 'value="allow"' in html and 'value="deny"' in html
    assert "Allow" in html and "Cancel" in html
    assert rt.oauth_token in html
    stored = xero.store.request_token(rt.oauth_token)
    assert stored is not None and stored.state == "pending"  # looking decides nothing


def test_the_picker_preselects_the_default_organisation(
        xero: MockXero, partner: Partner, anonymous: requests.Session) -> None:
    nz, au = (org["short_code"] for org in xero.organisations())
    rt = request_token(partner, "http://localhost:8000/cb")
    assert f'value="{nz}" selected' in authorize_page(xero, anonymous, rt.oauth_token).text
    xero.change_settings(organisation=au)
    html = authorize_page(xero, anonymous, rt.oauth_token).text
    assert f'value="{au}" selected' in html and f'value="{nz}" selected' not in html


def test_allow_redirects_to_the_callback_and_the_exchange_works(
        xero: MockXero, partner: Partner, anonymous: requests.Session) -> None:
    rt = request_token(partner, "http://localhost:8000/xero/cb")
    second = xero.organisations()[1]
    base, params = redirect_params(decide(xero, anonymous, rt.oauth_token, "allow", org=second["short_code"]))
    assert base == "http://localhost:8000/xero/cb"
    assert set(params) == {"oauth_token", "oauth_verifier", "org"}
    assert params["oauth_token"] == rt.oauth_token
    assert params["org"] == second["short_code"]
    assert TOKEN_SHAPE.match(params["oauth_verifier"])
    fields = assert_form_success(partner.exchange(rt, params["oauth_verifier"]))
    assert dict(fields)["xero_org_muid"] == second["org_muid"]


def test_callback_with_its_own_query_keeps_it(xero: MockXero, partner: Partner,
                                              anonymous: requests.Session) -> None:
    rt = request_token(partner, "http://localhost/cb?state=xyz")
    response = decide(xero, anonymous, rt.oauth_token)
    assert response.headers["Location"].startswith("http://localhost/cb?state=xyz&oauth_token=")
    _, params = redirect_params(response)
    assert params["state"] == "xyz"


def test_oob_allow_shows_the_code(xero: MockXero, partner: Partner, anonymous: requests.Session) -> None:
    rt = request_token(partner)
    page = authorize_page(xero, anonymous, rt.oauth_token)
    assert "out of band" in page.text
    response = decide(xero, anonymous, rt.oauth_token)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    found = re.search(r'id="verifier"[^>]*>([A-Z0-9]{30})<', response.text)
    assert found, response.text
    assert "Demo Company (NZ)" in response.text  # the default organisation
    assert_form_success(partner.exchange(rt, found.group(1)))


def test_cancel_redirects_with_access_denied(xero: MockXero, partner: Partner,
                                             anonymous: requests.Session) -> None:
    rt = request_token(partner, "http://localhost:8000/cb")
    response = decide(xero, anonymous, rt.oauth_token, "deny")
    assert response.status_code == 302
    assert response.headers["Location"] == (
        "http://localhost:8000/cb?error=access_denied&error_description=The+user+denied+your+request")
    stored = xero.store.request_token(rt.oauth_token)
    assert stored is not None and stored.state == "denied"
    assert_problem(partner.exchange(rt, None), 401, "permission_denied",
                   advice="The consumer was denied access to this resource.")
    assert_problem(partner.exchange(rt, "ANYVERIFIER"), 401, "permission_denied",
                   advice="The consumer was denied access to this resource.")


def test_oob_cancel_shows_a_page(xero: MockXero, partner: Partner, anonymous: requests.Session) -> None:
    rt = request_token(partner)
    response = decide(xero, anonymous, rt.oauth_token, "deny")
    assert response.status_code == 200 and 'id="denied"' in response.text


@pytest.mark.parametrize("case", ["unknown", "used", "expired", "denied", "missing"])
def test_authorize_page_for_a_token_it_cannot_use(xero: MockXero, partner: Partner,
                                                  anonymous: requests.Session, case: str) -> None:
    token = "NOSUCHREQUESTTOKEN000000000000"
    if case not in ("unknown", "missing"):
        rt = request_token(partner, "http://localhost/cb")
        token = rt.oauth_token
        if case == "used":
            verifier = xero.authorize(token)["oauth_verifier"]
            assert_form_success(partner.exchange(rt, verifier))
        elif case == "expired":
            xero.advance(xero.settings.request_token_ttl + 1)
        elif case == "denied":
            xero.authorize(token, deny=True)
    if case == "missing":
        token = ""
        page = anonymous.get(xero.url + "/oauth/Authorize", allow_redirects=False)
    else:
        page = authorize_page(xero, anonymous, token)
    assert page.status_code == 400
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert 'id="error"' in page.text
    assert "Allow" not in page.text
    # the form post cannot decide it either
    post = decide(xero, anonymous, token)
    assert post.status_code == 400 and 'id="error"' in post.text


def test_authorize_twice_is_refused(xero: MockXero, partner: Partner, anonymous: requests.Session) -> None:
    rt = request_token(partner, "http://localhost/cb")
    assert decide(xero, anonymous, rt.oauth_token).status_code == 302
    assert decide(xero, anonymous, rt.oauth_token).status_code == 400


def test_unknown_organisation_or_action_on_the_form(xero: MockXero, partner: Partner,
                                                    anonymous: requests.Session) -> None:
    rt = request_token(partner, "http://localhost/cb")
    assert decide(xero, anonymous, rt.oauth_token, org="!NOPE").status_code == 400
    assert decide(xero, anonymous, rt.oauth_token, action="maybe").status_code == 400
    stored = xero.store.request_token(rt.oauth_token)
    assert stored is not None and stored.state == "pending"


# -- auto-approve --------------------------------------------------------------------------
def test_auto_approve_through_the_settings_route(xero: MockXero, partner: Partner, control: Control,
                                                 anonymous: requests.Session) -> None:
    assert control.ok("POST", "/settings", json={"auto_approve": True})["auto_approve"] is True
    assert xero.auto_approve is True
    rt = request_token(partner, "http://localhost:8000/cb")
    _, params = redirect_params(authorize_page(xero, anonymous, rt.oauth_token))
    default = xero.organisations()[0]
    assert params["org"] == default["short_code"] and params["oauth_token"] == rt.oauth_token
    fields = dict(assert_form_success(partner.exchange(rt, params["oauth_verifier"])))
    assert fields["xero_org_muid"] == default["org_muid"]
    control.ok("POST", "/settings", json={"auto_approve": False})
    rt2 = request_token(partner, "http://localhost:8000/cb")
    assert authorize_page(xero, anonymous, rt2.oauth_token).status_code == 200


def test_auto_approve_attribute_and_oob(xero: MockXero, partner: Partner,
                                        anonymous: requests.Session) -> None:
    xero.change_settings(auto_approve=True)
    rt = request_token(partner)
    page = authorize_page(xero, anonymous, rt.oauth_token)
    assert page.status_code == 200
    found = re.search(r'id="verifier"[^>]*>([A-Z0-9]{30})<', page.text)
    assert found
    assert_form_success(partner.exchange(rt, found.group(1)))


def test_reset_turns_auto_approve_back_off(xero: MockXero) -> None:
    xero.change_settings(auto_approve=True)
    xero.reset()
    assert xero.auto_approve is False


# -- the exchange ----------------------------------------------------------------------------
def test_exchange_fields_in_xero_order(xero: MockXero, partner: Partner) -> None:
    rt = request_token(partner)
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    fields = assert_form_success(partner.exchange(rt, verifier))
    assert [k for k, _ in fields] == EXCHANGE_FIELDS
    data = dict(fields)
    assert data["oauth_expires_in"] == "1800"
    assert data["oauth_authorization_expires_in"] == str(xero.settings.authorization_ttl) == "31536000"
    for name in ("oauth_token", "oauth_token_secret", "oauth_session_handle"):
        assert TOKEN_SHAPE.match(data[name]), name
    assert data["xero_org_muid"] == xero.organisations()[0]["org_muid"]
    assert data["oauth_token"] != rt.oauth_token
    assert partner.api(tokens_from_fields(data), "Organisation").status_code == 200


def tokens_from_fields(data: dict[str, str]) -> Tokens:
    return Tokens(data["oauth_token"], data["oauth_token_secret"], data.get("oauth_session_handle"), raw=data)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_exchange_over_get_and_post(xero: MockXero, partner: Partner, method: str) -> None:
    rt = request_token(partner)
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    fields = assert_form_success(partner.exchange(rt, verifier, method=method))
    assert [k for k, _ in fields] == EXCHANGE_FIELDS


def test_wrong_verifier(xero: MockXero, partner: Partner) -> None:
    rt = request_token(partner)
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    assert_problem(partner.exchange(rt, "WRONGVERIFIER0000000000000000"), 401, "bad_verifier")
    # a wrong guess does not use the token up
    assert_form_success(partner.exchange(rt, verifier))


def test_missing_verifier(xero: MockXero, partner: Partner) -> None:
    rt = request_token(partner)
    xero.authorize(rt.oauth_token)
    data = assert_problem(partner.exchange(rt, None), 400, "parameter_absent")
    assert data["oauth_parameters_absent"] == "oauth_verifier"


def test_not_yet_authorised(partner: Partner) -> None:
    rt = request_token(partner)
    assert_problem(partner.exchange(rt, "ANYTHING"), 401, "permission_denied")


def test_denied_through_the_control_api(partner: Partner, control: Control) -> None:
    rt = request_token(partner, "http://localhost/cb")
    decision = control.ok("POST", "/authorize", json={"oauth_token": rt.oauth_token, "deny": True})
    assert decision["denied"] is True
    assert decision["redirect"].endswith("error=access_denied&error_description=The+user+denied+your+request")
    assert_problem(partner.exchange(rt, None), 401, "permission_denied",
                   advice="The consumer was denied access to this resource.")


def test_request_token_is_single_use(xero: MockXero, partner: Partner) -> None:
    rt = request_token(partner)
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    assert_form_success(partner.exchange(rt, verifier))
    assert_problem(partner.exchange(rt, verifier), 401, "token_rejected",
                   advice=f"Token {rt.oauth_token} does not match an expected REQUEST token")


def test_unknown_request_token(partner: Partner) -> None:
    token = "NOSUCHREQUESTTOKEN000000000000"
    assert_problem(partner.exchange(Tokens(token, "SECRET"), "VERIFIER"), 401, "token_rejected",
                   advice=f"Token {token} does not match an expected REQUEST token")


def test_another_consumers_request_token(xero: MockXero, partner: Partner, control: Control,
                                         client_cert: tuple[str, str]) -> None:
    rt = request_token(partner)
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    data = register(control, certificate=xero.certs.application_certificate)
    other = Partner(xero, data["consumer_key"], data["consumer_secret"], rsa_key=xero.certs.application_key,
                    cert=client_cert)
    try:
        assert_problem(other.exchange(rt, verifier), 401, "token_rejected",
                       advice=f"Token {rt.oauth_token} does not match an expected REQUEST token")
    finally:
        other.close()
    assert_form_success(partner.exchange(rt, verifier))  # still the owner's to use


def test_request_token_expires_on_the_mock_clock(xero: MockXero, partner: Partner, control: Control) -> None:
    rt = request_token(partner)
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    xero.advance(xero.settings.request_token_ttl + 1)
    assert_problem(partner.exchange(rt, verifier), 401, "token_expired")
    # and an expired pending one cannot be approved any more
    rt2 = request_token(partner)
    xero.advance(xero.settings.request_token_ttl + 1)
    response = control.post("/authorize", json={"oauth_token": rt2.oauth_token})
    assert response.status_code == 400 and "expired" in response.json()["error"]


def test_request_token_still_valid_just_before_expiry(xero: MockXero, partner: Partner) -> None:
    xero.move_clock(freeze=True)
    rt = request_token(partner)
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    xero.advance(xero.settings.request_token_ttl - 1)
    assert_form_success(partner.exchange(rt, verifier))


def test_authorising_again_replaces_the_connection(xero: MockXero, partner: Partner) -> None:
    first = partner.connect()
    second = partner.connect()
    assert second.oauth_session_handle != first.oauth_session_handle
    assert_problem(partner.api(first, "Organisation"), 401, "token_rejected")
    assert partner.api(second, "Organisation").status_code == 200
    conns = xero.connections(xero.certs.consumer_key)
    assert [c["oauth_token"] for c in conns] == [second.oauth_token]
    assert_problem(partner.renew(first), 401, "token_rejected")
    # a different organisation is a second, independent connection
    other = partner.connect(org=xero.organisations()[1]["short_code"])
    assert len(xero.connections(xero.certs.consumer_key)) == 2
    as_json = {"Accept": "application/json"}
    assert partner.api(second, "Organisation", headers=as_json).json()["Organisations"][0]["Name"] == (
        "Demo Company (NZ)")
    assert partner.api(other, "Organisation", headers=as_json).json()["Organisations"][0]["Name"] == (
        "Demo Company (AU)")


def test_two_exchanges_of_one_request_token_race(xero: MockXero, partner: Partner,
                                                 client_cert: tuple[str, str]) -> None:
    rt = request_token(partner)
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    clients = [Partner(xero, partner.consumer_key, partner.consumer_secret, rsa_key=partner.rsa_key,
                       cert=client_cert) for _ in range(8)]
    results = race([functools.partial(c.exchange, rt, verifier) for c in clients])
    for c in clients:
        c.close()
    winners = [r for r in results if r.status_code == 200]
    assert len(winners) == 1, [r.text for r in results]
    for loser in results:
        if loser is not winners[0]:
            assert_problem(loser, 401, "token_rejected",
                           advice=f"Token {rt.oauth_token} does not match an expected REQUEST token")
    won = tokens_from(winners[0])
    assert [c["oauth_token"] for c in xero.connections(xero.certs.consumer_key)] == [won.oauth_token]
    assert partner.api(won, "Organisation").status_code == 200


# -- public and private applications -----------------------------------------------------------
def test_public_app_dance_has_no_session_fields(xero: MockXero, control: Control) -> None:
    data = register(control, app_type="public", callback_domain="example.com")
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], signature_method=HMAC)
    try:
        rt = request_token(p, "https://www.example.com/cb")
        verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
        fields = assert_form_success(p.exchange(rt, verifier))
        assert [k for k, _ in fields] == ["oauth_token", "oauth_token_secret", "oauth_expires_in",
                                          "xero_org_muid"]
        tokens = tokens_from_fields(dict(fields))
        assert p.api(tokens, "Organisation").status_code == 200
        # a public app cannot renew
        response = p.request("POST", "/oauth/AccessToken", auth=p.auth(
            tokens.oauth_token, tokens.oauth_token_secret, extra_oauth={"oauth_session_handle": "X"}))
        assert_problem(response, 401, "permission_denied")
    finally:
        p.close()


def test_private_app_calls_the_api_without_the_dance(xero: MockXero, control: Control) -> None:
    key = rsa_key("private-flow")
    org = xero.organisations()[1]
    data = register(control, app_type="private", certificate=application_certificate(key),
                    organisation=org["short_code"])
    assert data["require_client_cert"] is False and data["organisation_id"] == org["organisation_id"]
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], rsa_key=key_pem(key))
    try:
        response = p.request("GET", "/api.xro/2.0/Organisation", headers={"Accept": "application/json"},
                             auth=p.auth(data["consumer_key"], data["consumer_secret"]))
        assert response.status_code == 200, response.text
        assert response.json()["Organisations"][0]["Name"] == org["name"]
        # ... any other token is refused, and the dance is not for it
        response = p.request("GET", "/api.xro/2.0/Organisation", auth=p.auth("SOMEOTHERTOKEN", "x"))
        assert_problem(response, 401, "token_rejected")
        assert_problem(p.request_token(), 401, "permission_denied")
    finally:
        p.close()


def test_request_token_response_body_is_plain_form(partner: Partner) -> None:
    response = partner.request_token()
    data = parse_form(response.text)
    assert set(data) == {"oauth_token", "oauth_token_secret", "oauth_callback_confirmed"}
    assert "&" in response.text and "=" in response.text and "\n" not in response.text


def test_authorize_page_ignores_scope(xero: MockXero, partner: Partner, anonymous: requests.Session) -> None:
    rt = request_token(partner, "http://localhost/cb")
    params = {"oauth_token": rt.oauth_token, "scope": "payroll.employees"}
    page = anonymous.get(xero.url + "/oauth/Authorize", params=params, allow_redirects=False)
    assert page.status_code == 200 and 'value="allow"' in page.text
