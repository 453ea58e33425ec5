"""The pages a person clicks, in a real browser: Debian's chromium driven by
playwright against the running mock over real TLS. Approve for the second
organisation and land on the callback with a verifier, Cancel, the oob code,
and Disconnect on the Add-ons page, each followed by what the API then says;
and the 403.7 page's one-sentence reason.

Screenshots go to ``$MOCKXERO_TEST_ARTIFACTS/screenshots`` when that is set
(CI keeps them), else to the test's temporary folder."""

from __future__ import annotations

import datetime
import http.server
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from playwright.sync_api import Browser, FloatRect, Page, sync_playwright

from mockxero import MockXero
from mockxero.problems import DENIED_ADVICE, REVOKED_ADVICE

from .helpers import Partner, Tokens, assert_problem, parse_form

#: Keep chromium off the network and out of the sandbox it cannot have as root.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN_SHAPE = re.compile(r"[A-Z0-9]{30}")
DEMO_APP = "mockxero demo partner app"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is not installed (.ci/run does: apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile per test; the mock's CA is not in chromium's store."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1024, "height": 720})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    root = os.environ.get("MOCKXERO_TEST_ARTIFACTS")
    folder = Path(root) / "screenshots" if root else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000  # a real picture, not an empty file
    return path


class CallbackServer:
    """The application's callback URL: a tiny HTTP server on loopback that
    records the query of every request it gets."""

    def __init__(self) -> None:
        self.received: queue.Queue[dict[str, str]] = queue.Queue()
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                received.put(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))
                body = b"<!doctype html><title>Sample app</title><h1 id='back'>Back in the app</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/xero/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next_query(self) -> dict[str, str]:
        return self.received.get(timeout=10)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def callback() -> Iterator[CallbackServer]:
    server = CallbackServer()
    yield server
    server.close()


def second_organisation(xero: MockXero) -> dict[str, Any]:
    organisations = xero.organisations()
    assert len(organisations) >= 2
    return organisations[1]


def open_authorize(page: Page, xero: MockXero, rt: Tokens) -> None:
    response = page.goto(f"{xero.url}/oauth/Authorize?oauth_token={rt.oauth_token}")
    assert response is not None and response.status == 200
    assert DEMO_APP in page.locator("h1").inner_text()


def test_allow_for_the_second_organisation_lands_on_the_callback(
        page: Page, xero: MockXero, partner: Partner, callback: CallbackServer, screenshots: Path) -> None:
    second = second_organisation(xero)
    rt = partner.get_request_token(callback=callback.url)
    open_authorize(page, xero, rt)
    options = page.locator("#org option").all_inner_texts()
    assert [o["name"] for o in xero.organisations()] == [o.strip() for o in options]
    page.select_option("#org", label=second["name"])
    shoot(page, screenshots, "authorize")

    page.get_by_role("button", name="Allow access").click()
    page.wait_for_url(callback.url + "?**")
    assert page.locator("#back").is_visible()
    query = callback.next_query()
    assert query == dict(parse_qsl(urlsplit(page.url).query))
    assert query["oauth_token"] == rt.oauth_token
    assert TOKEN_SHAPE.fullmatch(query["oauth_verifier"])
    assert query["org"] == second["short_code"]

    exchanged = partner.exchange(rt, query["oauth_verifier"])
    assert exchanged.status_code == 200, exchanged.text
    access = parse_form(exchanged.text)
    assert access["xero_org_muid"] == second["org_muid"]
    tokens = Tokens(access["oauth_token"], access["oauth_token_secret"], access["oauth_session_handle"])
    organisation = partner.api(tokens, "Organisation", headers={"Accept": "application/json"})
    assert organisation.status_code == 200, organisation.text
    assert organisation.json()["Organisations"][0]["Name"] == second["name"]


def test_cancel_sends_access_denied_to_the_callback(
        page: Page, xero: MockXero, partner: Partner, callback: CallbackServer, screenshots: Path) -> None:
    rt = partner.get_request_token(callback=callback.url)
    open_authorize(page, xero, rt)
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(callback.url + "?**")
    assert callback.next_query() == {"error": "access_denied",
                                     "error_description": "The user denied your request"}
    assert_problem(partner.exchange(rt, "ANYTHING"), 401, "permission_denied", DENIED_ADVICE)

    # The token is spent: the Authorize page now explains instead of asking again.
    response = page.goto(f"{xero.url}/oauth/Authorize?oauth_token={rt.oauth_token}")
    assert response is not None and response.status == 400
    assert "already been denied" in page.locator("#error").inner_text()
    shoot(page, screenshots, "authorize-token-used")


def test_oob_shows_a_code_to_copy(page: Page, xero: MockXero, partner: Partner, screenshots: Path) -> None:
    rt = partner.get_request_token()  # no callback: oob
    open_authorize(page, xero, rt)
    page.get_by_role("button", name="Allow access").click()
    code = page.locator("#verifier")
    code.wait_for()
    shoot(page, screenshots, "oob-code")
    verifier = code.inner_text().strip()
    assert TOKEN_SHAPE.fullmatch(verifier)
    assert xero.organisations()[0]["name"] in page.locator("h1").inner_text()
    # Large enough to read and copy, and one click selects all of it.
    font_px = float(code.evaluate("e => getComputedStyle(e).fontSize").removesuffix("px"))
    assert font_px >= 20
    code.click()
    assert page.evaluate("() => getSelection().toString()").strip() == verifier

    exchanged = partner.exchange(rt, verifier)
    assert exchanged.status_code == 200, exchanged.text


def test_oob_cancel_says_the_application_was_denied(
        page: Page, xero: MockXero, partner: Partner, screenshots: Path) -> None:
    rt = partner.get_request_token()
    open_authorize(page, xero, rt)
    page.get_by_role("button", name="Cancel").click()
    assert DEMO_APP in page.locator("#denied").inner_text()
    shoot(page, screenshots, "oob-denied")
    assert_problem(partner.exchange(rt, "ANYTHING"), 401, "permission_denied", DENIED_ADVICE)


def test_disconnect_on_the_addons_page_revokes_the_token(
        page: Page, xero: MockXero, partner: Partner, screenshots: Path) -> None:
    tokens = partner.connect()
    other = partner.connect(org=second_organisation(xero)["short_code"])
    assert partner.api(tokens, "Organisation").status_code == 200

    response = page.goto(f"{xero.url}/addons")
    assert response is not None and response.status == 200
    row = page.locator(f'li[data-session-handle="{tokens.oauth_session_handle}"]')
    assert DEMO_APP in row.inner_text()
    shoot(page, screenshots, "addons")

    row.get_by_role("button", name="Disconnect").click()
    page.locator("#notice").wait_for()
    assert f"Disconnected {DEMO_APP}" in page.locator("#notice").inner_text()
    assert row.count() == 0
    shoot(page, screenshots, "addons-disconnected")

    assert_problem(partner.api(tokens, "Organisation"), 401, "token_rejected", REVOKED_ADVICE)
    assert_problem(partner.renew(tokens), 401, "token_rejected", REVOKED_ADVICE)
    # Only that connection: the one to the other organisation still works.
    assert partner.api(other, "Organisation").status_code == 200


def overlap(a: FloatRect, b: FloatRect) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def test_addons_and_authorize_fit_a_phone(
        page: Page, xero: MockXero, partner: Partner, screenshots: Path) -> None:
    """On a narrow screen nothing overlaps and nothing scrolls sideways."""
    partner.connect()
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{xero.url}/addons")
    button = page.get_by_role("button", name="Disconnect").bounding_box()
    assert button is not None
    for text in page.locator(".app dd, .app strong, .app code").all():
        box = text.bounding_box()
        assert box is not None
        assert not overlap(box, button), text.inner_text()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shoot(page, screenshots, "addons-phone")

    open_authorize(page, xero, partner.get_request_token())
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert page.get_by_role("button", name="Allow access").is_visible()
    shoot(page, screenshots, "authorize-phone")


def test_unknown_request_token_gets_an_error_page(page: Page, xero: MockXero, screenshots: Path) -> None:
    response = page.goto(f"{xero.url}/oauth/Authorize?oauth_token=NOSUCHTOKEN")
    assert response is not None and response.status == 400
    assert "NOSUCHTOKEN" in page.locator("#error").inner_text()
    shoot(page, screenshots, "authorize-unknown-token")


# -- the 403.7 page: its extra line names the failed check in one short sentence -------------
@pytest.fixture
def partner_with_cert(xero: MockXero, tmp_path: Path) -> Iterator[Callable[[str, str], Partner]]:
    """The demo consumer presenting the given certificate and key (PEMs)."""
    made: list[Partner] = []

    def make(cert_pem: str, key_pem: str) -> Partner:
        cert, key = tmp_path / f"cert{len(made)}.pem", tmp_path / f"key{len(made)}.pem"
        cert.write_text(cert_pem)
        key.write_text(key_pem)
        made.append(Partner(xero, xero.certs.consumer_key, xero.certs.consumer_secret,
                            rsa_key=xero.certs.application_key, cert=(str(cert), str(key))))
        return made[-1]

    yield make
    for p in made:
        p.close()


def reason_line(html: str) -> str:
    found = re.search(r'<p id="mockxero-reason">(.*?)</p>', html, re.S)
    assert found, html
    return found.group(1)


def test_403_page_in_the_browser_says_no_certificate_was_presented(
        page: Page, xero: MockXero, screenshots: Path) -> None:
    """Chromium presents no client certificate: every OAuth parameter is there
    (unsigned), so the gateway's check is the one that answers."""
    params = {"oauth_consumer_key": xero.certs.consumer_key, "oauth_signature_method": "RSA-SHA1",
              "oauth_timestamp": "1", "oauth_nonce": "n", "oauth_signature": "s", "oauth_version": "1.0"}
    response = page.goto(f"{xero.url}/oauth/RequestToken?{urlencode(params)}")
    assert response is not None and response.status == 403
    assert "HTTP Error 403.7 - Forbidden" in page.locator("h3").inner_text()
    line = page.locator("#mockxero-reason").inner_text()
    assert line == "mockxero: client certificate missing: no client certificate was presented."
    shoot(page, screenshots, "403-7-missing")


def test_403_line_for_a_foreign_ca_is_one_short_sentence(
        xero: MockXero, partner_with_cert: Callable[[str, str], Partner]) -> None:
    issued = xero.issue_client_certificate(xero.certs.consumer_key, foreign=True)
    response = partner_with_cert(issued["certificate"], issued["private_key"]).request_token()
    assert response.status_code == 403
    assert reason_line(response.text) == (
        "mockxero: client certificate unknown issuer: it was not issued by the mock's Entrust client CA.")


def test_403_line_for_a_certificate_not_made_for_client_auth(
        xero: MockXero, partner_with_cert: Callable[[str, str], Partner]) -> None:
    """Issued by the mock's own Entrust CA and registered, but for servers only."""
    ca_cert = x509.load_pem_x509_certificate(xero.certs.read("entrust-ca.pem"))
    ca_key = serialization.load_pem_private_key(xero.certs.read("entrust-ca-key.pem"), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server-only.mockxero.test")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("server-only.mockxero.test")]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    xero.register_client_certificate(xero.certs.consumer_key, cert_pem)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    response = partner_with_cert(cert_pem, key_pem).request_token()
    assert response.status_code == 403
    assert reason_line(response.text) == (
        "mockxero: client certificate unknown issuer: it is not made for client authentication "
        "(no clientAuth extended key usage).")
