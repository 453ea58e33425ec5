"""SPEC.md §2: mutual TLS like Xero's Entrust gateway, end to end over real
sockets. requests + requests-oauthlib (and the stdlib ``ssl`` module and the
``openssl`` binary for the TLS layer itself) present real certificates; the
server's verdict is the IIS 403.7 page, judged at the mock clock's time."""

from __future__ import annotations

import datetime
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import oauthlib.oauth1
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mockxero import MockXero
from mockxero.clientcert import ClientCertificateChecker
from mockxero.peer import PeerCertificate

from .helpers import Partner, csrf_form, parse_form, tokens_from

DAY = 86400.0
IIS_SENTENCE = ("The page you are attempting to access requires your browser to have a Secure Sockets "
                "Layer (SSL) client certificate that the Web server recognizes.")
REASONS = ("missing", "expired", "not yet valid", "unknown issuer", "not registered for this consumer")
REASON_LINE = re.compile(r"mockxero: client certificate (" + "|".join(REASONS) + r")\b")
SERVER_NAMES = ("localhost", "127.0.0.1", "::1", "mockxero", "api.xero.com", "api-partner.network.xero.com")
OPENSSL = shutil.which("openssl") or "openssl"


# -- helpers --------------------------------------------------------------------------------------
def assert_refused(response: requests.Response, reason: str) -> None:
    """The Entrust gateway's 403: the IIS page, and one line naming the failed check."""
    assert response.status_code == 403, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    text = response.text
    assert "HTTP Error 403.7 - Forbidden" in text
    assert IIS_SENTENCE in text
    lines = [line for line in text.splitlines() if "mockxero: client certificate" in line]
    assert len(lines) == 1, text
    found = REASON_LINE.search(lines[0])
    assert found is not None and found.group(1) == reason, lines[0]


def write_pair(directory: Path, issued: dict[str, str], name: str) -> tuple[str, str]:
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    cert.write_text(issued["certificate"])
    key.write_text(issued["private_key"])
    return str(cert), str(key)


def demo_partner(xero: MockXero, cert: tuple[str, str] | None) -> Partner:
    return Partner(xero, xero.certs.consumer_key, xero.certs.consumer_secret,
                   rsa_key=xero.certs.application_key, cert=cert)


def last_journal_id(xero: MockXero) -> int:
    entries = xero.journal()
    return int(entries[-1]["id"]) if entries else 0


def connections_opened(partner: Partner) -> int:
    """How many TCP+TLS connections the partner's requests session has made."""
    manager = partner.session.get_adapter(partner.xero.url).poolmanager  # type: ignore[attr-defined]
    # urllib3's RecentlyUsedContainer refuses plain iteration; keys() is its way
    return sum(manager.pools[key].num_connections for key in manager.pools.keys())  # noqa: SIM118


def fingerprint_of(pem: bytes | str) -> str:
    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificate(data).fingerprint(hashes.SHA256()).hex()


@pytest.fixture
def partners() -> Iterator[list[Partner]]:
    """Partners a test makes, closed afterwards."""
    made: list[Partner] = []
    yield made
    for p in made:
        p.close()


@pytest.fixture
def make_partner(xero: MockXero, partners: list[Partner]) -> Callable[..., Partner]:
    def make(cert: tuple[str, str] | None, consumer_key: str | None = None,
             consumer_secret: str | None = None) -> Partner:
        p = Partner(xero, consumer_key or xero.certs.consumer_key,
                    consumer_secret or xero.certs.consumer_secret,
                    rsa_key=xero.certs.application_key, cert=cert)
        partners.append(p)
        return p
    return make


def bad_certificate(xero: MockXero, directory: Path, reason: str) -> tuple[str, str] | None:
    """A client certificate that fails exactly the check named ``reason``;
    all but the last are registered to the demo consumer, so nothing else
    can be what the server objects to."""
    key, now = xero.certs.consumer_key, time.time()
    if reason == "missing":
        return None
    if reason == "expired":
        issued = xero.issue_client_certificate(key, not_before=now - 30 * DAY, not_after=now - DAY)
    elif reason == "not yet valid":
        issued = xero.issue_client_certificate(key, not_before=now + DAY, not_after=now + 30 * DAY)
    elif reason == "unknown issuer":
        issued = xero.issue_client_certificate(key, foreign=True)
    else:
        issued = xero.issue_client_certificate(None)  # the mock's CA, but nobody's
    return write_pair(directory, issued, reason.replace(" ", "-"))


# -- the 403 on every endpoint that wants the certificate ------------------------------------------
def test_right_certificate_full_dance_api_and_renewal(xero: MockXero, partner: Partner) -> None:
    tokens = partner.connect()
    assert tokens.raw["oauth_expires_in"] == "1800"
    assert partner.api(tokens, "Organisation").status_code == 200
    renewed = partner.renew(tokens)
    assert renewed.status_code == 200, renewed.text
    new = parse_form(renewed.text)
    assert new["oauth_session_handle"] == tokens.oauth_session_handle
    assert partner.api(tokens, "Organisation").status_code == 401  # the old token is gone
    entries = xero.journal()
    assert [e["status"] for e in entries] == [200, 200, 200, 200, 401]


@pytest.mark.parametrize("reason", REASONS)
def test_bad_certificate_is_refused_on_request_token_access_token_and_api(
        xero: MockXero, partner: Partner, make_partner: Callable[..., Partner], tmp_path: Path,
        reason: str) -> None:
    tokens = partner.connect()
    rt = partner.get_request_token()
    verifier = xero.authorize(rt.oauth_token)["oauth_verifier"]
    bad = make_partner(bad_certificate(xero, tmp_path, reason))
    since = last_journal_id(xero)

    refused = [
        bad.request_token(),
        bad.exchange(rt, verifier),
        bad.renew(tokens),
        bad.api(tokens, "Organisation"),
        bad.api(tokens, "Contacts", method="GET", headers={"Accept": "application/json"}),
    ]
    for response in refused:
        assert_refused(response, reason)

    entries = xero.journal(since=since)
    assert [(e["path"], e["status"]) for e in entries] == [
        ("/oauth/RequestToken", 403), ("/oauth/AccessToken", 403), ("/oauth/AccessToken", 403),
        ("/api.xro/2.0/Organisation", 403), ("/api.xro/2.0/Contacts", 403)]
    for entry in entries:
        assert entry["consumer_key"] == xero.certs.consumer_key
        assert entry["oauth_problem"] == "client_certificate"
        assert entry["advice"].startswith(f"client certificate {reason}"), entry

    # The gateway refused before OAuth looked: nothing was used up, so the
    # right certificate carries on with the same tokens and verifier.
    # (renew first: the exchange replaces the connection for that organisation)
    assert partner.renew(tokens).status_code == 200
    assert partner.exchange(rt, verifier).status_code == 200


def test_certificate_of_another_consumer_is_not_registered_for_this_one(
        xero: MockXero, make_partner: Callable[..., Partner], tmp_path: Path) -> None:
    theirs = xero.issue_client_certificate()
    other = xero.add_consumer(certificate=xero.certs.application_certificate,
                              client_certificates=[theirs["certificate"]])
    their_cert = write_pair(tmp_path, theirs, "other")
    demo_cert = xero.client_cert

    # valid, from the Entrust CA, but registered to the other consumer
    assert_refused(make_partner(their_cert).request_token(), "not registered for this consumer")
    assert_refused(make_partner(demo_cert, other["consumer_key"], other["consumer_secret"]).request_token(),
                   "not registered for this consumer")
    # each with its own works
    own = make_partner(their_cert, other["consumer_key"], other["consumer_secret"])
    assert own.api(own.connect(), "Organisation").status_code == 200
    assert make_partner(demo_cert).request_token().status_code == 200


def test_unknown_consumer_is_401_before_any_certificate_check(
        xero: MockXero, make_partner: Callable[..., Partner]) -> None:
    response = make_partner(None, consumer_key="NOSUCHCONSUMERKEY0000000000000").request_token()
    assert response.status_code == 401
    assert parse_form(response.text)["oauth_problem"] == "consumer_key_unknown"


# -- the mock clock ---------------------------------------------------------------------------------
def test_validity_is_judged_at_the_mock_clock_time(
        xero: MockXero, make_partner: Callable[..., Partner], tmp_path: Path) -> None:
    now, key = time.time(), xero.certs.consumer_key
    expired = make_partner(write_pair(tmp_path, xero.issue_client_certificate(
        key, not_before=now - 30 * DAY, not_after=now - DAY), "expired"))
    future = make_partner(write_pair(tmp_path, xero.issue_client_certificate(
        key, not_before=now + DAY, not_after=now + 30 * DAY), "future"))
    assert_refused(expired.request_token(), "expired")
    assert_refused(future.request_token(), "not yet valid")

    xero.move_clock(set=now - 2 * DAY)  # the expired one was still good then
    assert expired.request_token().status_code == 200
    assert_refused(future.request_token(), "not yet valid")

    xero.move_clock(set=now + 2 * DAY)  # and the future one has started
    assert future.request_token().status_code == 200
    assert_refused(expired.request_token(), "expired")


def test_clock_past_expiry_turns_a_keep_alive_connection_into_403_and_back(
        xero: MockXero, make_partner: Callable[..., Partner], tmp_path: Path) -> None:
    now = time.time()
    issued = xero.issue_client_certificate(xero.certs.consumer_key, not_before=now - DAY,
                                           not_after=now + DAY)
    p = make_partner(write_pair(tmp_path, issued, "short"))
    tokens = p.connect()
    assert p.api(tokens, "Organisation").status_code == 200

    xero.advance(2 * DAY)
    assert_refused(p.request_token(), "expired")
    assert_refused(p.api(tokens, "Organisation"), "expired")  # the gateway speaks before OAuth

    xero.advance(-2 * DAY)
    assert p.api(tokens, "Organisation").status_code == 200
    assert p.request_token().status_code == 200
    # all of it over the one keep-alive connection: the verdict changed under it
    assert connections_opened(p) == 1


def test_two_registered_certificates_both_work_during_a_renewal_window(
        xero: MockXero, partner: Partner, make_partner: Callable[..., Partner], tmp_path: Path) -> None:
    new_cert = write_pair(tmp_path, xero.issue_client_certificate(xero.certs.consumer_key), "new")
    renewed = make_partner(new_cert)
    for p in (partner, renewed):
        tokens = p.connect()
        assert p.api(tokens, "Organisation").status_code == 200
        assert p.renew(tokens).status_code == 200

    # retiring the old one refuses it at once, on its live connection
    old = fingerprint_of(xero.certs.read("entrust-cert.pem"))
    xero.unregister_client_certificate(xero.certs.consumer_key, old)
    assert_refused(partner.request_token(), "not registered for this consumer")
    assert renewed.request_token().status_code == 200
    assert connections_opened(partner) == 1


def test_consumer_without_require_client_cert_works_with_no_certificate(
        xero: MockXero, make_partner: Callable[..., Partner], tmp_path: Path) -> None:
    consumer = xero.add_consumer(certificate=xero.certs.application_certificate, require_client_cert=False)
    bare = make_partner(None, consumer["consumer_key"], consumer["consumer_secret"])
    tokens = bare.connect()
    assert bare.api(tokens, "Organisation").status_code == 200
    assert bare.renew(tokens).status_code == 200
    # and a certificate the gateway would refuse is not held against it either
    foreign = write_pair(tmp_path, xero.issue_client_certificate(foreign=True), "foreign")
    lenient = make_partner(foreign, consumer["consumer_key"], consumer["consumer_secret"])
    assert lenient.request_token().status_code == 200
    # while the demo consumer, which requires one, is refused without
    assert_refused(make_partner(None).request_token(), "missing")


def test_authorize_addons_and_control_never_ask_for_a_certificate(xero: MockXero, partner: Partner) -> None:
    rt = partner.get_request_token()
    with requests.Session() as browser:
        browser.trust_env = False
        browser.verify = str(xero.ca_path)
        assert browser.cert is None
        page = browser.get(xero.url + "/oauth/Authorize", params={"oauth_token": rt.oauth_token})
        assert page.status_code == 200 and "mockxero demo partner app" in page.text
        allowed = browser.post(xero.url + "/oauth/Authorize",
                               data=csrf_form(browser, xero, oauth_token=rt.oauth_token, action="allow"))
        assert allowed.status_code == 200
        verifier = re.search(r'<span id="verifier" class="code">([A-Z0-9]+)</span>', allowed.text)
        assert verifier is not None, allowed.text
        exchanged = partner.exchange(rt, verifier.group(1))
        assert exchanged.status_code == 200
        handle = parse_form(exchanged.text)["oauth_session_handle"]

        addons = browser.get(xero.url + "/addons")
        assert addons.status_code == 200 and handle in addons.text
        assert browser.get(xero.url + "/_mockxero/health").json() == {"status": "ok"}
        assert browser.get(xero.url + "/_mockxero/ca.pem").text == xero.certs.read("ca.pem").decode()
        assert browser.post(xero.url + "/_mockxero/clock", json={"advance": 60}).status_code == 200
        gone = browser.post(xero.url + "/addons/disconnect",
                            data=csrf_form(browser, xero, session_handle=handle), allow_redirects=False)
        assert gone.status_code == 303
    revoked = partner.api(tokens_from(exchanged), "Organisation")  # the Add-ons page disconnected it
    assert revoked.status_code == 401 and parse_form(revoked.text)["oauth_problem"] == "token_rejected"
    assert all(e["status"] != 403 for e in xero.journal())


# -- the verdict cache ------------------------------------------------------------------------------
def test_verdict_is_cached_per_certificate_but_never_hides_a_change(
        xero: MockXero, make_partner: Callable[..., Partner], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    checker = xero.cert_checker
    calls: list[str] = []
    original = checker._verify

    def counting(peer: Any, now: datetime.datetime) -> Any:
        calls.append(peer.fingerprint)
        return original(peer, now)

    monkeypatch.setattr(checker, "_verify", counting)
    now = time.time()
    issued = xero.issue_client_certificate(xero.certs.consumer_key, not_before=now - DAY,
                                           not_after=now + DAY)
    p = make_partner(write_pair(tmp_path, issued, "cached"))
    tokens = p.connect()
    for _ in range(5):
        assert p.api(tokens, "Organisation").status_code == 200
    assert calls == [issued["fingerprint"]]  # 7 requests, one chain verification
    assert connections_opened(p) == 1

    # a second connection with the same certificate reuses the verdict too
    again = make_partner(p.session.cert)
    assert again.request_token().status_code == 200
    assert len(calls) == 1

    # moving the clock is seen at once, both ways, without re-verifying
    xero.advance(2 * DAY)
    assert_refused(p.api(tokens, "Organisation"), "expired")
    xero.advance(-2 * DAY)
    assert p.api(tokens, "Organisation").status_code == 200
    assert len(calls) == 1

    # a refusal is remembered as well
    foreign = make_partner(write_pair(tmp_path, xero.issue_client_certificate(
        xero.certs.consumer_key, foreign=True), "foreign"))
    for _ in range(3):
        assert_refused(foreign.request_token(), "unknown issuer")
    assert len(calls) == 2


def test_checker_reverifies_outside_the_remembered_span(xero: MockXero) -> None:
    """The cache holds a verdict only for the span in which the whole chain
    is valid; a time outside it is checked afresh (no network, no server)."""
    checker = ClientCertificateChecker([xero.certs.client_ca_certificate])
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = xero.certs.issue_client_cert(now - datetime.timedelta(days=1), now + datetime.timedelta(days=1))
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    peer = PeerCertificate(leaf=cert, chain=(), fingerprint=cert.fingerprint(hashes.SHA256()).hex(), pem="")
    calls: list[datetime.datetime] = []
    original = checker._verify

    def counting(p: Any, when: datetime.datetime) -> Any:
        calls.append(when)
        return original(p, when)

    checker._verify = counting  # type: ignore[method-assign,assignment]
    assert checker._chain_error(peer, now) is None
    assert checker._chain_error(peer, now + datetime.timedelta(hours=12)) is None
    assert len(calls) == 1
    assert checker._chain_error(peer, now + datetime.timedelta(days=3)) is not None
    assert len(calls) == 2


# -- the TLS layer ----------------------------------------------------------------------------------
def client_context(xero: MockXero, cert: tuple[str, str] | None = None,
                   version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(xero.ca_path))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def signed_request_bytes(xero: MockXero, path: str = "/oauth/RequestToken") -> bytes:
    """A signed POST, as raw HTTP/1.1, for clients that are not requests."""
    client = oauthlib.oauth1.Client(xero.certs.consumer_key, signature_method=oauthlib.oauth1.SIGNATURE_RSA,
                                    rsa_key=xero.certs.application_key)
    _, headers, _ = client.sign(xero.url + path, http_method="POST")
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{xero.port}\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n").encode()


def exchange_raw(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def tls_connect(xero: MockXero, ctx: ssl.SSLContext, server_hostname: str = "localhost",
                session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", xero.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)


def good_cert(xero: MockXero) -> tuple[str, str]:
    return xero.client_cert


def test_tls_1_2_is_the_minimum(xero: MockXero) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(xero.certs.path("ca.pem"))
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client itself offer TLS 1.1
    with pytest.warns(DeprecationWarning):
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError) as refused:
        tls_connect(xero, old)
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"  # the server's alert

    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        with tls_connect(xero, client_context(xero, good_cert(xero), version)) as tls:
            assert tls.version() == name
            assert status_of(exchange_raw(tls, signed_request_bytes(xero))) == 200


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_client_offering_a_session_gets_a_full_handshake_and_its_certificate_is_seen(
        xero: MockXero, version: ssl.TLSVersion) -> None:
    ctx = client_context(xero, good_cert(xero), version)
    with tls_connect(xero, ctx) as first:
        assert status_of(exchange_raw(first, signed_request_bytes(xero))) == 200
        session = first.session
    assert session is not None
    if version == ssl.TLSVersion.TLSv1_2:
        assert session.id == b"" and not session.has_ticket  # nothing resumable handed out
    for _ in range(2):
        with tls_connect(xero, ctx, session=session) as again:
            assert not again.session_reused
            assert status_of(exchange_raw(again, signed_request_bytes(xero))) == 200


def test_openssl_s_client_resuming_a_session_gets_a_new_one(xero: MockXero, tmp_path: Path) -> None:
    sess = tmp_path / "session.pem"
    cert, key = good_cert(xero)
    base = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{xero.port}", "-servername", "localhost",
            "-CAfile", str(xero.ca_path), "-cert", cert, "-key", key, "-ign_eof", "-tls1_3"]
    first = subprocess.run([*base, "-sess_out", str(sess)], input=signed_request_bytes(xero),
                           capture_output=True, timeout=30)
    assert first.returncode == 0, first.stderr.decode()
    out = first.stdout.decode()
    assert "\nNew, TLSv1.3" in out and "HTTP/1.1 200 OK" in out
    # the server asks for a certificate from the Entrust CA
    names = out.split("Acceptable client certificate CA names", 1)[1].split("---", 1)[0]
    assert "mockxero Entrust client CA" in names
    assert sess.stat().st_size > 0  # s_client has a session (a TLS 1.3 ticket) to offer

    second = subprocess.run([*base, "-sess_in", str(sess)], input=signed_request_bytes(xero),
                            capture_output=True, timeout=30)
    assert second.returncode == 0, second.stderr.decode()
    out = second.stdout.decode()
    assert "\nNew, TLSv1.3" in out and "\nReused," not in out
    assert "HTTP/1.1 200 OK" in out  # its certificate was seen: no 403


@pytest.mark.parametrize("reason", ["missing", "expired", "not yet valid", "unknown issuer"])
def test_handshake_completes_whatever_the_certificate_and_the_app_decides(
        xero: MockXero, tmp_path: Path, reason: str) -> None:
    cert = bad_certificate(xero, tmp_path, reason)
    with tls_connect(xero, client_context(xero, cert)) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")  # the handshake went through
        response = exchange_raw(tls, signed_request_bytes(xero))
    assert status_of(response) == 403
    assert f"mockxero: client certificate {reason}".encode() in response


def test_server_certificate_covers_the_names_clients_use(xero: MockXero) -> None:
    cert = x509.load_pem_x509_certificate(xero.certs.read("server.pem"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = san.get_values_for_type(x509.IPAddress)
    names = {*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in ips)}
    assert set(SERVER_NAMES) <= names
    ctx = client_context(xero)  # verifies the chain and the host name
    for name in SERVER_NAMES:
        with tls_connect(xero, ctx, server_hostname=name) as tls:
            assert tls.getpeercert() is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(xero, ctx, server_hostname="xero.example.com")


def test_hostname_setting_adds_a_name_to_the_served_certificate(tmp_path: Path) -> None:
    with MockXero(port=0, certs=tmp_path / "certs", hostnames=("xero.compose.internal",)) as mock:
        ctx = client_context(mock)
        for name in ("xero.compose.internal", "api.xero.com"):
            with tls_connect(mock, ctx, server_hostname=name) as tls:
                assert status_of(exchange_raw(tls, b"GET /_mockxero/health HTTP/1.1\r\nHost: x\r\n"
                                                   b"Connection: close\r\n\r\n")) == 200
