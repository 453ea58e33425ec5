"""mockxero.client.PartnerClient against the mock over real mutual TLS:
the dance, reads and writes, persistence, the .p12 bundle, the defaults and
what the environment cannot change."""

from __future__ import annotations

import inspect
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests

from mockxero import MockXero
from mockxero.client import (
    ClientCertificateRefused,
    PartnerClient,
    RequestToken,
    TokenRejected,
    Tokens,
)

from .client_support import MakeClient, connect, journal_paths, make_client

__all__ = ["make_client"]  # the fixture, imported for the tests below


def test_the_dance_then_reads_and_writes(xero: MockXero, make_client: MakeClient) -> None:
    saved: list[Tokens] = []
    client = make_client(on_token_update=saved.append)
    request_token = client.fetch_request_token()
    assert isinstance(request_token, RequestToken) and len(request_token.token) == 30
    assert request_token.secret and request_token.callback_confirmed
    assert client.authorization_url(request_token) == (
        f"{xero.url}/oauth/Authorize?oauth_token={request_token.token}")
    assert client.tokens is None

    org = xero.organisations()[1]
    decision = xero.authorize(request_token.token, org=org["short_code"])
    tokens = client.fetch_access_token(request_token, decision["oauth_verifier"])

    assert saved == [tokens] and client.tokens == tokens
    assert tokens.org == org["org_muid"]  # the xero_org_muid of the organisation the user picked
    assert tokens.session_handle and tokens.token != request_token.token
    assert 1800 - 60 < tokens.expires_at - time.time() <= 1800
    assert tokens.authorization_expires_at is not None
    assert 31536000 - 60 < tokens.authorization_expires_at - time.time() <= 31536000

    organisation = client.get("Organisation")
    assert organisation["Status"] == "OK"
    assert organisation["Organisations"][0]["Name"] == org["name"]

    created = client.put("Contacts", json={"Contacts": [{"Name": "Client Test Ltd"}]})
    contact = created["Contacts"][0]
    assert contact["Name"] == "Client Test Ltd" and contact["ContactID"]
    found = client.get("Contacts", params={"where": 'Name=="Client Test Ltd"'})["Contacts"]
    assert [c["ContactID"] for c in found] == [contact["ContactID"]]
    updated = client.post(f"Contacts/{contact['ContactID']}",
                          json={"ContactID": contact["ContactID"], "EmailAddress": "a@example.com"})
    assert updated["Contacts"][0]["EmailAddress"] == "a@example.com"
    assert any(c["EmailAddress"] == "a@example.com" for c in xero.data(org["short_code"])["Contacts"]
               if c["ContactID"] == contact["ContactID"])

    for spelling in ("api.xro/2.0/Organisation", "/Organisation", "/API.XRO/2.0/Organisation"):
        assert client.get(spelling)["Organisations"] == organisation["Organisations"]
    assert [e["path"] for e in xero.journal()[-3:]] == ["/api.xro/2.0/Organisation"] * 3
    xml = client.get("/api.xro/2.0/Contacts", headers={"Accept": "text/xml"})
    assert isinstance(xml, str) and xml.startswith("<Response")
    assert [p for _, p, status, _ in journal_paths(xero) if status != 200] == []


def test_tokens_are_saved_and_resumed(xero: MockXero, make_client: MakeClient, tmp_path: Path) -> None:
    store = tmp_path / "tokens.json"

    def save(tokens: Tokens) -> None:
        store.write_text(tokens.to_json())

    first = make_client(on_token_update=save)
    connect(xero, first)
    assert Tokens.from_json(store.read_text()) == first.tokens
    first.close()

    # A new process: resume from the saved tokens, renew, save again.
    resumed = make_client(tokens=Tokens.from_json(store.read_text()), on_token_update=save)
    assert resumed.get("Organisation")["Organisations"]
    before = resumed.tokens
    assert before is not None
    renewed = resumed.renew()
    assert renewed.token != before.token and renewed.session_handle == before.session_handle
    assert renewed.org == before.org
    assert Tokens.from_json(store.read_text()) == renewed

    # The tokens saved before the renewal are dead: saving mattered.
    stale = make_client(tokens=before)
    with pytest.raises(TokenRejected):
        stale.get("Organisation")
    assert make_client(tokens=Tokens.from_json(store.read_text())).get("Contacts")["Contacts"]


def test_tokens_json_round_trip_and_refusals() -> None:
    tokens = Tokens("T" * 30, "S" * 30, "H" * 30, 1_800_000_000.5, 1_900_000_000.0, "ORG")
    assert Tokens.from_json(tokens.to_json()) == tokens
    assert Tokens.from_json(tokens.to_json().encode()) == tokens
    # A file written by a newer version, with more fields, still loads.
    assert Tokens.from_json(tokens.to_json()[:-1] + ', "later": 1}') == tokens
    with pytest.raises(ValueError):
        Tokens.from_json("[1, 2]")
    with pytest.raises(ValueError):
        Tokens.from_json("not json")
    with pytest.raises(ValueError, match="saved tokens"):
        Tokens.from_json('{"token": "T"}')
    with pytest.raises(ValueError, match="expires_at"):
        Tokens.from_json('{"token": "T", "secret": "S", "session_handle": null, "expires_at": "soon"}')


def test_p12_bundle_works_and_leaves_no_key_on_disk(xero: MockXero, make_client: MakeClient,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    seen: list[tuple[bytes, bytes]] = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        seen.append((Path(certfile).read_bytes(), Path(keyfile).read_bytes() if keyfile else b""))
        real_load(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    p12 = xero.certs.path("entrust-client.p12")
    assert b"-----BEGIN" not in p12.read_bytes()  # really the DER bundle
    client = make_client(client_cert=(p12, xero.certs.p12_password))

    assert len(seen) == 1
    cert_pem, key_pem = seen[0]
    assert b"BEGIN CERTIFICATE" in cert_pem
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in key_pem and b"BEGIN PRIVATE KEY" not in key_pem
    assert list(scratch.iterdir()) == []  # written, loaded, gone

    connect(xero, client)
    assert client.get("Organisation")["Organisations"]
    assert list(scratch.iterdir()) == []


def test_p12_with_the_wrong_password_is_refused_at_once(xero: MockXero, make_client: MakeClient) -> None:
    with pytest.raises(ValueError):
        make_client(client_cert=(xero.certs.path("entrust-client.p12"), "not the password"))


def test_rsa_key_as_a_path_or_pem(xero: MockXero, make_client: MakeClient) -> None:
    by_path = make_client(rsa_key=xero.certs.path("privatekey.pem"))
    by_text = make_client(rsa_key=str(xero.certs.path("privatekey.pem")))
    for client in (by_path, by_text):
        assert client.fetch_request_token().token


def test_no_client_certificate_is_the_403_7_page(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client(client_cert=None)
    with pytest.raises(ClientCertificateRefused) as caught:
        client.fetch_request_token()
    error = caught.value
    assert error.status == 403 and error.problem is None
    assert "missing" in error.advice


def test_trust_is_not_changed_per_call(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    for override in ({"verify": False}, {"cert": None}):
        with pytest.raises(TypeError, match="fixed"):
            client.get("Organisation", **override)


def test_calls_before_the_exchange_say_what_to_do(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(RuntimeError, match="fetch_access_token"):
        client.get("Contacts")


def test_defaults_are_the_real_xero_partner_urls(xero: MockXero) -> None:
    params = inspect.signature(PartnerClient).parameters
    assert params["base_url"].default == "https://api-partner.network.xero.com"
    assert params["authorize_url"].default == "https://api.xero.com/oauth/Authorize"
    assert params["verify"].default is True and params["timeout"].default == 30

    class Recorder(requests.adapters.BaseAdapter):
        """Stands in for the network (not for any server): records where the
        client would go and refuses to go there."""

        urls: ClassVar[list[str]] = []

        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            self.urls.append(str(request.url))
            raise requests.ConnectionError("not leaving this machine")

        def close(self) -> None:
            pass

    client = PartnerClient(xero.certs.consumer_key, xero.certs.application_key,
                           tokens=Tokens("T" * 30, "S" * 30, "H" * 30, 4e9))
    client.session.mount("https://", Recorder())
    assert client.authorization_url(RequestToken("R" * 30, "S")) == (
        "https://api.xero.com/oauth/Authorize?oauth_token=" + "R" * 30)
    for call in (client.fetch_request_token, lambda: client.get("Contacts")):
        with pytest.raises(requests.ConnectionError):
            call()
    assert Recorder.urls == ["https://api-partner.network.xero.com/oauth/RequestToken",
                             "https://api-partner.network.xero.com/api.xro/2.0/Contacts"]
    client.close()


def test_requests_ca_bundle_cannot_override_the_trust(xero: MockXero, make_client: MakeClient,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    other = requests.utils.DEFAULT_CA_BUNDLE_PATH  # a real bundle that does not hold the mock's CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other)
    monkeypatch.setenv("CURL_CA_BUNDLE", other)
    client = make_client()
    connect(xero, client)
    assert client.get("Organisation")["Organisations"]

    # Nor can it add trust: verify=True means the public CAs, not the mock's.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(xero.certs.path("ca.pem")))
    trusting_env = make_client(verify=True)
    with pytest.raises(requests.exceptions.SSLError):
        trusting_env.fetch_request_token()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_still_presents_the_client_certificate(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client(verify=False)
    connect(xero, client)
    assert client.get("Organisation")["Organisations"]


def test_importing_the_client_loads_no_server(tmp_path: Path) -> None:
    code = (
        "import sys, mockxero.client\n"
        "server = [m for m in ('flask', 'werkzeug', 'jinja2', 'cheroot', 'OpenSSL', 'trustme')"
        " if m in sys.modules]\n"
        "ours = sorted(m for m in sys.modules if m == 'mockxero' or m.startswith('mockxero.'))\n"
        "print(server, ours)\n"
        "assert not server, server\n"
        "assert ours == ['mockxero', 'mockxero.client', 'mockxero.client_errors',"
        " 'mockxero.problems'], ours\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
