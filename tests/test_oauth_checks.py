"""SPEC.md §3: the ordered OAuth checks of every signed endpoint, driven by
real requests signed by requests-oauthlib over real mutual TLS."""

from __future__ import annotations

import base64
import datetime
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import oauthlib.oauth1
import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mockxero import MockXero
from mockxero.oauth import OAuthVerifier, SignedRequest
from mockxero.problems import OAuthProblem
from mockxero.settings import Settings
from mockxero.store import Consumer, Store

from .helpers import BODY, HEADER, HMAC, QUERY, RSA, Control, Partner, Tokens, assert_problem, parse_form
from .oauth_support import (
    application_certificate,
    assert_form_success,
    key_pem,
    protocol_auth,
    register,
    rsa_key,
)

REQUIRED = ["oauth_consumer_key", "oauth_signature_method", "oauth_signature", "oauth_timestamp",
            "oauth_nonce"]


@pytest.fixture
def public(xero: MockXero, control: Control) -> Iterator[Partner]:
    """A public (HMAC-SHA1, no client certificate) consumer, registered
    through the control API."""
    data = register(control, app_type="public", name="public test app")
    assert data["require_client_cert"] is False
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], signature_method=HMAC)
    yield p
    p.close()


def no_cert(partner: Partner, consumer_key: str | None = None) -> Partner:
    """The same consumer (or another key) with the same RSA key, but no
    client certificate."""
    return Partner(partner.xero, consumer_key or partner.consumer_key, partner.consumer_secret,
                   rsa_key=partner.rsa_key, cert=None)


def request_token(p: Partner, method: str = "POST", **auth_kwargs: Any) -> requests.Response:
    return p.request(method, "/oauth/RequestToken", auth=p.auth(**auth_kwargs))


def sent_oauth(response: requests.Response) -> dict[str, str]:
    """The oauth_* parameters the client put into the Authorization header."""
    raw = response.request.headers["Authorization"]
    header = raw.decode() if isinstance(raw, bytes) else raw
    assert header.startswith("OAuth ")
    pairs = [item.strip().split("=", 1) for item in header[6:].split(",")]
    return {k: unquote(v.strip('"')) for k, v in pairs}


# -- 1. missing parameters ------------------------------------------------------------
def test_no_oauth_parameters_at_all(xero: MockXero, anonymous: requests.Session) -> None:
    response = anonymous.post(xero.url + "/oauth/RequestToken")
    data = assert_problem(response, 400, "parameter_absent")
    assert data["oauth_parameters_absent"] == "&".join(REQUIRED)


def test_some_parameters_missing_are_listed(xero: MockXero, anonymous: requests.Session) -> None:
    header = f'OAuth oauth_consumer_key="{xero.certs.consumer_key}", oauth_nonce="abc", oauth_signature=""'
    response = anonymous.get(xero.url + "/oauth/RequestToken", headers={"Authorization": header})
    data = assert_problem(response, 400, "parameter_absent")
    # an empty value counts as absent
    assert data["oauth_parameters_absent"] == "oauth_signature_method&oauth_signature&oauth_timestamp"
    assert "oauth_signature_method" in data["oauth_problem_advice"]


def test_missing_token_on_a_signed_access_token_request(partner: Partner) -> None:
    response = partner.request("POST", "/oauth/AccessToken", auth=partner.auth())
    data = assert_problem(response, 400, "parameter_absent")
    assert data["oauth_parameters_absent"] == "oauth_token"


def test_missing_parameters_come_before_the_client_certificate(partner: Partner) -> None:
    bare = no_cert(partner)
    try:
        response = bare.request("POST", "/oauth/RequestToken",
                                headers={"Authorization": 'OAuth oauth_consumer_key="X"'})
        assert_problem(response, 400, "parameter_absent")
    finally:
        bare.close()


# -- 2. version -------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.0", "1.0a", "1.0A", None])
def test_versions_xero_accepted(partner: Partner, version: str | None) -> None:
    response = partner.request("POST", "/oauth/RequestToken", auth=protocol_auth(partner, version))
    fields = dict(assert_form_success(response))
    assert fields["oauth_callback_confirmed"] == "true"
    sent = sent_oauth(response)
    assert sent.get("oauth_version") == version


@pytest.mark.parametrize("version", ["2.0", "1.1", "1"])
def test_other_versions_are_rejected(partner: Partner, version: str) -> None:
    response = partner.request("POST", "/oauth/RequestToken", auth=protocol_auth(partner, version))
    assert_problem(response, 400, "version_rejected")


def test_version_comes_before_the_consumer_and_the_certificate(partner: Partner) -> None:
    stranger = no_cert(partner, "NOSUCHCONSUMERKEY0000000000000")
    try:
        response = stranger.request("POST", "/oauth/RequestToken", auth=protocol_auth(stranger, "2.0"))
        assert_problem(response, 400, "version_rejected")
    finally:
        stranger.close()


# -- 3. consumer ---------------------------------------------------------------------------
def test_unknown_consumer(partner: Partner) -> None:
    stranger = Partner(partner.xero, "NOSUCHCONSUMERKEY0000000000000", rsa_key=partner.rsa_key,
                       cert=partner.xero.client_cert)
    try:
        assert_problem(request_token(stranger), 401, "consumer_key_unknown",
                       advice="Consumer key was not recognised")
    finally:
        stranger.close()


def test_unknown_consumer_without_certificate_is_still_consumer_key_unknown(partner: Partner) -> None:
    stranger = no_cert(partner, "NOSUCHCONSUMERKEY0000000000000")
    try:
        assert_problem(request_token(stranger), 401, "consumer_key_unknown",
                       advice="Consumer key was not recognised")
    finally:
        stranger.close()


# -- 4. client certificate -------------------------------------------------------------
def assert_403(response: requests.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "HTTP Error 403.7 - Forbidden" in response.text
    assert "oauth_problem" not in response.headers.get("WWW-Authenticate", "")


def test_known_consumer_without_certificate_gets_403(partner: Partner) -> None:
    bare = no_cert(partner)
    try:
        response = request_token(bare)
        assert_403(response)
        assert "missing" in response.text
    finally:
        bare.close()


@pytest.mark.parametrize("later_problem", ["signature_method", "timestamp", "signature"])
def test_certificate_403_comes_before_the_later_checks(partner: Partner, later_problem: str) -> None:
    bare = no_cert(partner)
    try:
        if later_problem == "signature_method":
            auth = bare.auth(signature_method=HMAC)
            bare.consumer_secret = "x"
        elif later_problem == "timestamp":
            auth = bare.auth(timestamp=str(int(time.time()) - 86400))
        else:
            bare.rsa_key = rsa_key("other")
            auth = bare.auth()
        assert_403(bare.request("POST", "/oauth/RequestToken", auth=auth))
    finally:
        bare.close()


def test_public_consumer_needs_no_certificate(public: Partner) -> None:
    assert_form_success(request_token(public))


# -- 5. signature method ------------------------------------------------------------------
def test_partner_must_use_rsa(partner: Partner) -> None:
    partner.consumer_secret = partner.xero.certs.consumer_secret
    response = request_token(partner, signature_method=HMAC)
    assert_problem(response, 401, "signature_method_rejected", advice_contains="RSA-SHA1")


def test_partner_plaintext_is_rejected(partner: Partner) -> None:
    response = request_token(partner, signature_method="PLAINTEXT")
    assert_problem(response, 401, "signature_method_rejected")


def test_public_must_use_hmac(public: Partner) -> None:
    public.rsa_key = rsa_key("other")
    response = request_token(public, signature_method=RSA)
    assert_problem(response, 401, "signature_method_rejected", advice_contains="HMAC-SHA1")


def test_private_must_use_rsa(xero: MockXero, control: Control) -> None:
    key = rsa_key("private")
    data = register(control, app_type="private", certificate=application_certificate(key))
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], signature_method=HMAC)
    try:
        response = p.request("GET", "/api.xro/2.0/Organisation",
                             auth=p.auth(data["consumer_key"], data["consumer_secret"]))
        assert_problem(response, 401, "signature_method_rejected")
    finally:
        p.close()


@pytest.mark.parametrize("app_type", ["partner", "private"])
def test_rsa_without_application_certificate(xero: MockXero, control: Control, client_cert: tuple[str, str],
                                             app_type: str) -> None:
    data = register(control, app_type=app_type)
    assert data["has_certificate"] is False
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], rsa_key=xero.certs.application_key,
                cert=client_cert)
    try:
        token = data["consumer_key"] if app_type == "private" else None
        path = "/api.xro/2.0/Organisation" if app_type == "private" else "/oauth/RequestToken"
        response = p.request("GET", path, auth=p.auth(token))
        assert_problem(response, 400, "signature_method_rejected",
                       advice="No certificates have been registered for the consumer")
    finally:
        p.close()


# -- 6. timestamp ---------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [-1700, -60, 0, 200])
def test_timestamps_inside_the_window(partner: Partner, offset: int) -> None:
    assert_form_success(request_token(partner, timestamp=str(int(time.time()) + offset)))


@pytest.mark.parametrize("offset", [-1900, -86400, 400, 86400])
def test_timestamps_outside_the_window(partner: Partner, offset: int) -> None:
    response = request_token(partner, timestamp=str(int(time.time()) + offset))
    assert_problem(response, 401, "timestamp_refused")


@pytest.mark.parametrize("timestamp", ["abc", "1.5e9", "-", "1700000000.5"])
def test_non_numeric_timestamp(partner: Partner, timestamp: str) -> None:
    response = request_token(partner, timestamp=timestamp)
    assert_problem(response, 401, "timestamp_refused")


def test_the_mock_clock_does_not_move_the_timestamp_window(xero: MockXero, partner: Partner) -> None:
    xero.advance(10 * 86400)
    assert_form_success(request_token(partner))  # signed with the real clock: fine
    mock_now = str(int(xero.now()))
    assert_problem(request_token(partner, timestamp=mock_now), 401, "timestamp_refused")
    xero.move_clock(set=time.time() - 10 * 86400)
    assert_form_success(request_token(partner))
    assert_problem(request_token(partner, timestamp=str(int(xero.now()))), 401, "timestamp_refused")


# -- 7. nonce ---------------------------------------------------------------------------------
def test_nonce_reuse(partner: Partner) -> None:
    nonce = "N0NCE" + str(time.time_ns())
    assert_form_success(request_token(partner, nonce=nonce))
    response = request_token(partner, nonce=nonce)
    assert_problem(response, 401, "nonce_used", advice=f'The nonce value "{nonce}" has already been used')
    # another timestamp does not make the nonce fresh
    response = request_token(partner, nonce=nonce, timestamp=str(int(time.time()) - 10))
    assert_problem(response, 401, "nonce_used")


def test_nonces_are_per_consumer(partner: Partner, public: Partner) -> None:
    nonce = "SHARED" + str(time.time_ns())
    assert_form_success(request_token(partner, nonce=nonce))
    assert_form_success(request_token(public, nonce=nonce))
    assert_problem(request_token(public, nonce=nonce), 401, "nonce_used")


def test_a_forged_request_does_not_burn_the_nonce(partner: Partner) -> None:
    nonce = "FORGED" + str(time.time_ns())
    good_key = partner.rsa_key
    partner.rsa_key = rsa_key("other")
    assert_problem(request_token(partner, nonce=nonce), 401, "signature_invalid")
    partner.rsa_key = good_key
    assert_form_success(request_token(partner, nonce=nonce))


def test_nonce_is_remembered_until_its_timestamp_leaves_the_window(xero: MockXero, partner: Partner) -> None:
    nonce = "WINDOW" + str(time.time_ns())
    timestamp = int(time.time()) - 100
    before = xero.store.nonce_count()
    assert_form_success(request_token(partner, nonce=nonce, timestamp=str(timestamp)))
    assert xero.store.nonce_count() == before + 1
    assert xero.store.nonce_forget_at(xero.certs.consumer_key, nonce) == (
        timestamp + xero.settings.timestamp_past + 1)


def test_store_forgets_nonces_after_their_window() -> None:
    store = Store()
    now = time.time()
    assert store.remember_nonce("K", "old", now + 10, now)
    assert not store.remember_nonce("K", "old", now + 10, now + 9.9)  # still inside its window
    assert store.nonce_count() == 1
    # the next remember after its window prunes it
    assert store.remember_nonce("K", "new", now + 600, now + 10)
    assert store.nonce_count() == 1
    assert not store.nonce_seen("K", "old")
    assert store.remember_nonce("K", "old", now + 600, now + 10)  # usable again
    assert not store.remember_nonce("K", "new", now + 600, now + 10)
    assert store.nonce_count() == 2


def test_store_nonce_memory_stays_bounded() -> None:
    store = Store()
    now = time.time()
    for i in range(5000):
        assert store.remember_nonce("K", f"n{i}", now + i, now + i)  # each window over by the next
        assert store.nonce_count() <= 1
    later = now + 5000
    for i in range(100):
        store.remember_nonce("K", f"f{i}", later + 600, later)
    assert store.nonce_count() == 100


def test_small_window_setting_through_the_verifier(xero: MockXero) -> None:
    """With a 5 s window a nonce is kept until its timestamp is 6 s old; by
    then check 6 refuses the replay anyway, so forgetting it is safe."""
    settings = Settings(timestamp_past=5, timestamp_future=5)
    store = Store()
    store.add_consumer(Consumer("CK", "CS", app_type="public", require_client_cert=False))
    real = [time.time()]
    verifier = OAuthVerifier(store, settings, xero.verifier.mock_now, xero.cert_checker,
                             real_now=lambda: real[0])
    uri = "https://mock.test:8443/oauth/RequestToken"

    def signed(timestamp: int, nonce: str) -> SignedRequest:
        client = oauthlib.oauth1.Client("CK", client_secret="CS", timestamp=str(timestamp), nonce=nonce)
        _, headers, _ = client.sign(uri, "POST")
        return SignedRequest("POST", uri, authorization=headers["Authorization"])

    now = int(real[0])
    assert verifier.verify(signed(now, "A")).consumer_key == "CK"
    assert store.nonce_forget_at("CK", "A") == now + 6
    with pytest.raises(OAuthProblem) as replay:
        verifier.verify(signed(now, "A"))
    assert replay.value.problem == "nonce_used"
    with pytest.raises(OAuthProblem) as old:
        verifier.verify(signed(now - 7, "A"))
    assert old.value.problem == "timestamp_refused"
    # once its window has passed, the next request prunes it
    store.remember_nonce("CK", "B", now + 600, real[0])
    assert store.nonce_count() == 2
    real[0] = now + 6  # 6 s later: A's window has passed
    assert verifier.verify(signed(now + 6, "C")) is not None
    assert not store.nonce_seen("CK", "A") and store.nonce_count() == 2


def test_reset_forgets_nonces(xero: MockXero, partner: Partner) -> None:
    nonce = "RESET" + str(time.time_ns())
    assert_form_success(request_token(partner, nonce=nonce))
    xero.reset()
    assert xero.store.nonce_count() == 0
    assert_form_success(request_token(partner, nonce=nonce))


# -- 8. signature ------------------------------------------------------------------------------
def test_bad_rsa_signature_and_the_journal_base_string(xero: MockXero, partner: Partner,
                                                        control: Control) -> None:
    wrong = rsa_key("other")
    partner.rsa_key = wrong
    response = partner.request("POST", "/oauth/RequestToken?extra=a%20b", auth=partner.auth())
    assert_problem(response, 401, "signature_invalid", advice="Failed to validate signature")
    entries = [e for e in control.ok("GET", "/requests") if e["oauth_problem"] == "signature_invalid"]
    assert len(entries) == 1
    entry = entries[-1]
    assert entry["status"] == 401 and entry["path"] == "/oauth/RequestToken"
    assert entry["consumer_key"] == xero.certs.consumer_key
    base = entry["base_string"]
    assert base.startswith("POST&" + quote(xero.url + "/oauth/RequestToken", safe="") + "&")
    assert "extra%3Da%2520b" in base
    # the server computed exactly the base string the client signed: the
    # client's (wrong) key over it gives the signature the client sent
    expected = base64.b64encode(wrong.sign(base.encode(), padding.PKCS1v15(), hashes.SHA1())).decode()
    assert sent_oauth(response)["oauth_signature"] == expected


def test_tampered_parameter_is_a_bad_signature(partner: Partner) -> None:
    prepared = partner.session.prepare_request(requests.Request(
        "GET", partner.xero.url + "/oauth/RequestToken?a=1", auth=partner.auth()))
    assert prepared.url is not None
    prepared.url = prepared.url.replace("a=1", "a=2")
    response = partner.session.send(prepared)
    assert_problem(response, 401, "signature_invalid", advice="Failed to validate signature")


def test_garbage_signature(partner: Partner) -> None:
    prepared = partner.session.prepare_request(requests.Request(
        "GET", partner.xero.url + "/oauth/RequestToken", auth=partner.auth(signature_type=QUERY)))
    assert prepared.url is not None
    query = parse_qsl(prepared.url.split("?", 1)[1])
    garbage = [(k, "%%not base64!" if k == "oauth_signature" else v) for k, v in query]
    rebuilt = "&".join(f"{k}={quote(v, safe='')}" for k, v in garbage)
    prepared.url = prepared.url.split("?", 1)[0] + "?" + rebuilt
    response = partner.session.send(prepared)
    assert_problem(response, 401, "signature_invalid")


def test_bad_hmac_signature(public: Partner) -> None:
    public.consumer_secret = "NOT" + public.consumer_secret[3:]
    assert_problem(request_token(public), 401, "signature_invalid", advice="Failed to validate signature")


def test_hmac_with_the_wrong_token_secret(public: Partner) -> None:
    rt = public.get_request_token()
    public.xero.authorize(rt.oauth_token)
    wrong = Tokens(rt.oauth_token, "WRONGSECRET")
    response = public.exchange(wrong, "irrelevant")
    assert_problem(response, 401, "signature_invalid")


def test_expired_application_certificate(xero: MockXero, control: Control,
                                         client_cert: tuple[str, str]) -> None:
    key = rsa_key("expiring")
    now = datetime.datetime.now(datetime.timezone.utc)
    expires = (now + datetime.timedelta(days=1)).replace(microsecond=0)
    data = register(control, certificate=application_certificate(key, not_after=expires))
    assert data["certificate_expires"] == expires.isoformat()
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], rsa_key=key_pem(key), cert=client_cert)
    try:
        assert_form_success(request_token(p))
        xero.advance(2 * 86400)
        response = request_token(p)
        body = assert_problem(response, 401, "signature_invalid")
        assert "expired" in body["oauth_problem_advice"]
        assert expires.isoformat() in body["oauth_problem_advice"]
    finally:
        p.close()


# -- the same parameter twice -----------------------------------------------------------------
@pytest.mark.parametrize("where", ["query", "body", "query-twice"])
def test_same_oauth_parameter_in_two_places(partner: Partner, where: str) -> None:
    url = partner.xero.url + "/oauth/RequestToken"
    if where == "query":
        response = partner.session.post(url, params={"oauth_nonce": "again"}, auth=partner.auth())
    elif where == "body":
        response = partner.session.post(url, data={"oauth_timestamp": "1"}, auth=partner.auth())
    else:
        response = partner.session.get(url + "?oauth_callback=oob&oauth_callback=oob",
                                       auth=partner.auth(signature_type=QUERY))
    assert_problem(response, 400, "parameter_rejected", advice_contains="oauth_")


def test_malformed_authorization_header(xero: MockXero, anonymous: requests.Session) -> None:
    response = anonymous.get(xero.url + "/oauth/RequestToken",
                             headers={"Authorization": 'OAuth oauth_consumer_key="unterminated'})
    data = parse_form(response.text)
    assert data.get("oauth_problem") in ("parameter_absent", "parameter_rejected"), response.text
    assert_problem(response, 400, data["oauth_problem"])


# -- placements -------------------------------------------------------------------------------
PLACEMENTS = [("GET", HEADER), ("GET", QUERY), ("POST", HEADER), ("POST", QUERY), ("POST", BODY)]


@pytest.mark.parametrize(("method", "signature_type"), PLACEMENTS)
def test_request_token_from_every_placement(partner: Partner, method: str, signature_type: str) -> None:
    response = partner.request(method, "/oauth/RequestToken",
                               auth=partner.auth(callback="http://localhost:8000/cb",
                                                 signature_type=signature_type))
    assert [k for k, _ in assert_form_success(response)] == [
        "oauth_token", "oauth_token_secret", "oauth_callback_confirmed"]
    sent = response.request
    if signature_type == HEADER:
        assert b"oauth_signature=" in sent.headers["Authorization"]
    elif signature_type == QUERY:
        assert "oauth_signature=" in (sent.url or "") and "Authorization" not in sent.headers
    else:
        body = sent.body.decode() if isinstance(sent.body, bytes) else sent.body
        assert isinstance(body, str) and "oauth_signature=" in body


@pytest.mark.parametrize(("method", "signature_type"), PLACEMENTS)
def test_whole_dance_and_api_call_from_every_placement(partner: Partner, method: str,
                                                       signature_type: str) -> None:
    rt_response = partner.request_token(method=method, signature_type=signature_type)
    fields = parse_form(rt_response.text)
    rt = Tokens(fields["oauth_token"], fields["oauth_token_secret"])
    verifier = partner.xero.authorize(rt.oauth_token)["oauth_verifier"]
    exchanged = partner.exchange(rt, verifier, method=method, signature_type=signature_type)
    fields = dict(assert_form_success(exchanged))
    response = partner.request(method if method == "GET" else "GET", "/api.xro/2.0/Organisation",
                               auth=partner.auth(fields["oauth_token"], fields["oauth_token_secret"],
                                                 signature_type=signature_type if signature_type != BODY
                                                 else QUERY))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("signature_type", [HEADER, QUERY])
def test_api_with_parameters_in_the_query(partner: Partner, signature_type: str) -> None:
    tokens = partner.connect()
    auth = partner.auth(tokens.oauth_token, tokens.oauth_token_secret, signature_type=signature_type)
    response = partner.request("GET", "/api.xro/2.0/Organisation", auth=auth,
                               params={"where": 'Name=="x"', "order": "Name DESC", "page": "1"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("raw_query", ['where=Name=="x"', "where=Name%3D%3D%22x%22",
                                       'where=Name=="a b"&x=1+2', "where=Type%3D%3D%22ACCREC%22&empty="])
def test_raw_xero_style_query_strings(partner: Partner, raw_query: str) -> None:
    """The characters Xero filters use must sign and verify, never 500."""
    response = partner.request("GET", "/oauth/RequestToken?" + raw_query, auth=partner.auth())
    assert_form_success(response)
    tokens = partner.connect()
    response = partner.request("GET", "/api.xro/2.0/Organisation?" + raw_query,
                               auth=partner.auth(tokens.oauth_token, tokens.oauth_token_secret))
    assert response.status_code == 200, response.text


def test_header_realm_is_ignored(partner: Partner) -> None:
    response = partner.request("POST", "/oauth/RequestToken", auth=partner.auth(realm="https://api.xero.com/"))
    assert b"realm=" in response.request.headers["Authorization"]
    assert_form_success(response)


def test_public_hmac_from_every_placement(public: Partner) -> None:
    for method, signature_type in PLACEMENTS:
        response = request_token(public, method=method, signature_type=signature_type)
        assert_form_success(response)


# -- order of the checks ------------------------------------------------------------------------
def test_timestamp_comes_before_nonce_and_nonce_before_signature(partner: Partner) -> None:
    nonce = "ORDER" + str(time.time_ns())
    assert_form_success(request_token(partner, nonce=nonce))
    stale = str(int(time.time()) - 86400)
    assert_problem(request_token(partner, nonce=nonce, timestamp=stale), 401, "timestamp_refused")
    partner.rsa_key = rsa_key("other")
    assert_problem(request_token(partner, nonce=nonce), 401, "nonce_used")
    assert_problem(request_token(partner), 401, "signature_invalid")


def test_signature_method_comes_before_timestamp(partner: Partner) -> None:
    partner.consumer_secret = "x"
    response = request_token(partner, signature_method=HMAC, timestamp="abc")
    assert_problem(response, 401, "signature_method_rejected")


# -- the base string URI -----------------------------------------------------------------------------
def test_base_string_uses_the_host_the_client_addressed(xero: MockXero, partner: Partner) -> None:
    url = f"https://localhost:{xero.port}/oauth/RequestToken"
    response = partner.session.post(url, auth=partner.auth())
    assert_form_success(response)


def test_public_base_url_overrides_the_base_string_uri(xero: MockXero, partner: Partner,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy the client signs for the public URL; the server is
    reached on another one."""

    def signed_for_public_url() -> requests.Response:
        prepared = partner.session.prepare_request(requests.Request(
            "POST", "https://api.xero.com/oauth/RequestToken?x=1", auth=partner.auth()))
        prepared.url = xero.url + "/oauth/RequestToken?x=1"
        return partner.session.send(prepared)

    assert_problem(signed_for_public_url(), 401, "signature_invalid")
    monkeypatch.setattr(xero.settings, "public_base_url", "https://api.xero.com/")
    assert_form_success(signed_for_public_url())
    assert_problem(request_token(partner), 401, "signature_invalid")  # the local URL no longer matches
