"""The pytest plugin, run the way a user runs it: test files in a fresh
folder, pytest run on them (``pytester``), the outcome and report read.

In-process runs share this interpreter (cheap); the xdist run is a separate
pytest process with two workers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .remote_support import ADMIN_TOKEN, serving

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_remote_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MOCKXERO_URL", "MOCKXERO_CERTS", "MOCKXERO_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def _port_closed(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as s:
        return s.connect_ex((parts.hostname or "127.0.0.1", parts.port or 443)) != 0


def _seen(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


RECORD = '''
import json, os
def record(server, where):
    with open(where, "a") as out:
        out.write(json.dumps({"url": server.url, "certs": str(server.certs_dir),
                              "worker": os.environ.get("PYTEST_XDIST_WORKER", "main")}) + "\\n")
'''


# -- each fixture ------------------------------------------------------------------------------
def test_the_fixtures_in_process(pytester: pytest.Pytester) -> None:
    seen = pytester.path / "seen.jsonl"
    pytester.makepyfile(RECORD + f'''
import time
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from requests_oauthlib import OAuth1
from mockxero import MockXero, Operations
from mockxero.client import PartnerClient

def test_server(mockxero_server):
    record(mockxero_server, {str(seen)!r})
    assert isinstance(mockxero_server, MockXero) and isinstance(mockxero_server, Operations)
    assert mockxero_server.url.startswith("https://127.0.0.1:")
    cert, key = mockxero_server.client_cert
    assert mockxero_server.ca_path.is_file()
    # ECDSA for TLS, the client's key too; RSA for the application key (RSA-SHA1)
    assert isinstance(x509.load_pem_x509_certificate(open(cert, "rb").read()).public_key(),
                      ec.EllipticCurvePublicKey)
    assert isinstance(load_pem_private_key(mockxero_server.rsa_key.encode(), None), rsa.RSAPrivateKey)
    auth = OAuth1(mockxero_server.consumer_key, signature_method="RSA-SHA1",
                  rsa_key=mockxero_server.rsa_key, callback_uri="oob")
    reply = requests.post(mockxero_server.url + "/oauth/RequestToken", auth=auth,
                          **mockxero_server.requests_kwargs())
    assert reply.status_code == 200 and "oauth_callback_confirmed=true" in reply.text
    assert mockxero_server.consumer_secret and mockxero_server.journal()

def test_mockxero_is_the_handle_after_a_reset(mockxero, mockxero_server):
    assert mockxero is mockxero_server
    assert mockxero.journal() == []
    assert abs(mockxero.clock()["offset"]) < 1
    assert mockxero.advance(120)["offset"] > 119
    for name in ("advance", "authorize", "revoke", "expire", "add_fault", "journal",
                 "wait_for_request", "add_consumer", "load_data", "reset", "change_settings"):
        assert callable(getattr(mockxero, name))

def test_xero_client(xero_client, mockxero):
    assert isinstance(xero_client, PartnerClient)
    assert [e["path"] for e in mockxero.journal()] == ["/oauth/RequestToken", "/oauth/AccessToken"]
    assert xero_client.get("Organisation")["Organisations"][0]["Name"] == "Demo Company (NZ)"
    assert 1700 < xero_client.tokens.expires_at - time.time() <= 1800
    mockxero.advance(1801)                      # the token expired on the mock's clock ...
    assert xero_client.get("Contacts")["Contacts"]  # ... and the client renewed it
    assert [e["status"] for e in mockxero.journal()][-3:] == [401, 200, 200]
''')
    threads_before = _threads()
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=3)
    [server] = _seen(seen)
    assert not Path(server["certs"]).exists(), "the certificates folder outlived the session"
    assert _port_closed(server["url"])
    assert not _threads() - threads_before, "threads outlived the session (listener, workers)"


def test_the_in_process_mock_reads_mockxero_settings(pytester: pytest.Pytester,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCKXERO_RATE_LIMIT", "off")
    monkeypatch.setenv("MOCKXERO_ACCESS_TOKEN_TTL", "90")
    monkeypatch.setenv("MOCKXERO_PORT", "1")               # host, port and folder stay the plugin's
    pytester.makepyfile('''
import json, time
from mockxero.client import PartnerClient

def test_settings(mockxero, xero_client):
    assert mockxero.runtime_settings()["rate_limit"] == "off"
    assert mockxero.url.startswith("https://127.0.0.1:") and not mockxero.url.endswith(":1")
    assert 0 < xero_client.tokens.expires_at - time.time() <= 90
    for _ in range(70):                                   # more than 60 a minute
        xero_client.get("Organisation")

def test_the_p12_bundle_works_too(mockxero):
    password = json.loads((mockxero.certs_dir / "consumer.json").read_text())["p12_password"]
    with PartnerClient(mockxero.consumer_key, mockxero.rsa_key, verify=str(mockxero.ca_path),
                       client_cert=(mockxero.certs_dir / "entrust-client.p12", password),
                       base_url=mockxero.url, authorize_url=mockxero.url + "/oauth/Authorize") as client:
        request_token = client.fetch_request_token()
        client.fetch_access_token(request_token, mockxero.authorize(request_token.token)["oauth_verifier"])
        assert client.get("Organisation")["Organisations"]
''')
    pytester.runpytest().assert_outcomes(passed=2)


def test_reset_isolation_between_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
import pytest

def test_dirty(mockxero, xero_client):
    mockxero.advance(86400)
    mockxero.move_clock(freeze=True)
    mockxero.add_consumer(app_type="public", callback_domain="example.com")
    mockxero.add_organisation("Acme Ltd")
    mockxero.load_data(contacts=[{"Name": "Left Behind Ltd"}])
    mockxero.change_settings(auto_approve=True, rate_limit="off", access_token_ttl=5,
                             organisation="Acme Ltd")
    mockxero.add_fault(kind="offline")
    mockxero.update_consumer(mockxero.consumer_key, require_client_cert=False)

def test_clean(mockxero):
    clock = mockxero.clock()
    assert abs(clock["offset"]) < 1 and clock["frozen"] is False
    assert [c["consumer_key"] for c in mockxero.consumers()] == [mockxero.consumer_key]
    assert mockxero.consumers()[0]["require_client_cert"] is True
    assert [o["name"] for o in mockxero.organisations()] == ["Demo Company (NZ)", "Demo Company (AU)"]
    assert "Left Behind Ltd" not in [c["Name"] for c in mockxero.data()["Contacts"]]
    settings = mockxero.runtime_settings()
    assert settings["auto_approve"] is False and settings["rate_limit"] == "60/5000"
    assert settings["access_token_ttl"] == 1800
    assert settings["organisation"] == mockxero.organisations()[0]["short_code"]
    assert mockxero.faults() == [] and mockxero.connections() == [] and mockxero.journal() == []
''')
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


# -- the marker --------------------------------------------------------------------------------
def test_the_marker_and_its_undoing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
import time
from urllib.parse import parse_qs, urlsplit
import pytest
import requests
from requests_oauthlib import OAuth1
from mockxero import ControlError
from mockxero.client import RateLimited

@pytest.mark.mockxero(auto_approve=True, require_client_cert=False, rate_limit="1/100",
                      access_token_ttl=60, authorization_ttl=600, request_token_ttl=30,
                      organisation="Demo Company (AU)")
def test_marked(xero_client, mockxero):
    settings = mockxero.runtime_settings()
    au = mockxero.organisations()[1]["short_code"]
    assert settings == {"auto_approve": True, "rate_limit": "1/100", "access_token_ttl": 60,
                        "authorization_ttl": 600, "request_token_ttl": 30, "organisation": au}
    assert 0 < xero_client.tokens.expires_at - time.time() <= 60
    assert 0 < xero_client.tokens.authorization_expires_at - time.time() <= 600
    assert xero_client.get("Organisation")["Organisations"][0]["Name"] == "Demo Company (AU)"
    with pytest.raises(RateLimited):            # one call a minute
        xero_client.get("Contacts")
    # No client certificate needed, and Authorize approves at once (for AU).
    auth = OAuth1(mockxero.consumer_key, signature_method="RSA-SHA1", rsa_key=mockxero.rsa_key,
                  callback_uri="http://localhost/back")
    reply = requests.post(mockxero.url + "/oauth/RequestToken", auth=auth, verify=str(mockxero.ca_path))
    assert reply.status_code == 200, reply.text
    token = dict(p.split("=") for p in reply.text.split("&"))["oauth_token"]
    page = requests.get(mockxero.url + "/oauth/Authorize", params={"oauth_token": token},
                        verify=str(mockxero.ca_path), allow_redirects=False)
    assert page.status_code == 302
    assert parse_qs(urlsplit(page.headers["Location"]).query)["org"] == [au]
    later = xero_client.fetch_request_token()
    mockxero.advance(31)                        # request tokens live 30 s here
    with pytest.raises(ControlError, match="expired"):
        mockxero.authorize(later.token)

def test_undone_after_the_test(mockxero_server):        # no reset here: the marker undid itself
    settings = mockxero_server.runtime_settings()
    assert settings["auto_approve"] is False and settings["rate_limit"] == "60/5000"
    assert (settings["access_token_ttl"], settings["authorization_ttl"]) == (1800, 31536000)
    assert settings["organisation"] == mockxero_server.organisations()[0]["short_code"]
    assert mockxero_server.consumers()[0]["require_client_cert"] is True

@pytest.mark.mockxero(rate_limit="off", access_token_ttl=100)
class TestMarks:
    @pytest.mark.mockxero(auto_approve=True)
    def test_class_and_function_marks_merge(self, mockxero_server):  # asked only for the server
        settings = mockxero_server.runtime_settings()
        assert (settings["rate_limit"], settings["auto_approve"], settings["access_token_ttl"]) == \\
            ("off", True, 100)

    @pytest.mark.mockxero(rate_limit=(5, 50))
    def test_the_nearest_mark_wins(self, mockxero):
        assert mockxero.runtime_settings()["rate_limit"] == "5/50"

@pytest.mark.mockxero(colour="blue")
def test_unknown_setting(mockxero):
    pass

@pytest.mark.mockxero(organisation="Nowhere Ltd")
def test_unknown_organisation(mockxero):
    pass

@pytest.mark.mockxero(True)
def test_positional(mockxero_server):
    pass
''')
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=4, errors=3)
    result.stdout.fnmatch_lines([
        "*@pytest.mark.mockxero does not know colour; it takes auto_approve, require_client_cert*",
        "*ControlError: no organisation 'Nowhere Ltd'*",
        "*@pytest.mark.mockxero takes keyword arguments only*",
    ])


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.mockxero(auto_approve=None, require_client_cert=None, *"])


# -- an internal error of the mock -----------------------------------------------------------
def test_a_server_error_fails_the_test_with_the_servers_words(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
import pytest
from mockxero.client import XeroError

@pytest.fixture
def broken(mockxero, monkeypatch):
    """A bug in the mock: reading records blows up."""
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom in the mock")
    monkeypatch.setattr(mockxero.store, "records", boom)

def test_passes_but_the_mock_broke(xero_client, broken):
    with pytest.raises(XeroError):
        xero_client.get("Contacts")

def test_fails_and_the_mock_broke(xero_client, broken):
    try:
        xero_client.get("Contacts")
    except XeroError as exc:
        assert exc.status == 200, "my own assertion"

def test_clean(xero_client):
    assert xero_client.get("Contacts")["Contacts"]
''')
    result = pytester.runpytest("-p", "no:randomly", "-rA")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_passes_but_the_mock_broke _*",
        "the mock hit 1 internal error(s) during this test:",
        "  GET /api.xro/2.0/Contacts -> 500: RuntimeError: kaboom in the mock",
        "    Traceback (most recent call last):",  # the server's, from its journal
        "*mockxero/api.py*",
        "*raise RuntimeError(\"kaboom in the mock\")",
        "    RuntimeError: kaboom in the mock",
    ])
    result.stdout.fnmatch_lines([
        "*_ test_fails_and_the_mock_broke _*",
        "*my own assertion*",
        "*- mockxero server errors -*",
        "  GET /api.xro/2.0/Contacts -> 500: RuntimeError: kaboom in the mock",
    ])
    result.stdout.fnmatch_lines(["PASSED *::test_clean"])


# -- xdist ----------------------------------------------------------------------------------
def test_a_server_per_xdist_worker(pytester: pytest.Pytester) -> None:
    seen = pytester.path / "seen.jsonl"
    tests = "\n".join(f'''
def test_{i}(mockxero_server, mockxero, xero_client):
    record(mockxero_server, {str(seen)!r})
    mockxero.advance({i} * 60)   # each worker's clock is its own
    assert xero_client.get("Organisation")["Organisations"]
    assert [e["path"] for e in mockxero.journal()][-1] == "/api.xro/2.0/Organisation"
    assert {i} * 60 - 5 < mockxero.clock()["offset"] < {i} * 60 + 5
''' for i in range(8))
    pytester.makepyfile(RECORD + tests)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist")
    result.assert_outcomes(passed=8)
    servers = {(s["worker"], s["url"], s["certs"]) for s in _seen(seen)}
    assert {w for w, _, _ in servers} == {"gw0", "gw1"}
    assert len({url for _, url, _ in servers}) == 2 and len({c for _, _, c in servers}) == 2
    for _, url, certs in servers:
        assert _port_closed(url) and not Path(certs).exists()


# -- a mock running elsewhere --------------------------------------------------------------------
@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    certs = tmp_path_factory.mktemp("external") / "certs"
    with serving(certs, "--admin-token", ADMIN_TOKEN) as url:
        yield url, certs


EXTERNAL_TESTS = '''
import pytest
from mockxero.remote import RemoteMock

def test_remote_handle(mockxero_server, xero_client, mockxero):
    assert isinstance(mockxero_server, RemoteMock) and mockxero_server.url == "{url}"
    assert str(mockxero_server.ca_path) == "{certs}/ca.pem"
    assert xero_client.get("Organisation")["Organisations"][0]["Name"] == "Demo Company (NZ)"
    mockxero.load_data(contacts=[{{"Name": "Only In This Test"}}])
    mockxero.advance(3600)

@pytest.mark.mockxero(organisation="Demo Company (AU)", access_token_ttl=60, require_client_cert=False)
def test_marker(xero_client, mockxero):
    assert xero_client.get("Organisation")["Organisations"][0]["Name"] == "Demo Company (AU)"
    assert mockxero.runtime_settings()["access_token_ttl"] == 60

def test_clean_and_undone(mockxero_server):
    settings = mockxero_server.runtime_settings()
    assert settings["access_token_ttl"] == 1800
    assert settings["organisation"] == mockxero_server.organisations()[0]["short_code"]
    assert mockxero_server.consumers()[0]["require_client_cert"] is True

def test_reset(mockxero):
    assert abs(mockxero.clock()["offset"]) < 5
    assert "Only In This Test" not in [c["Name"] for c in mockxero.data()["Contacts"]]
'''


def test_against_a_mockxero_serve_process(pytester: pytest.Pytester, external: tuple[str, Path]) -> None:
    url, certs = external
    pytester.makepyfile(EXTERNAL_TESTS.format(url=url, certs=certs))
    threads_before = _threads()
    result = pytester.runpytest("-p", "no:randomly", "--mockxero-url", url, "--mockxero-certs", str(certs),
                                "--mockxero-admin-token", ADMIN_TOKEN)
    result.assert_outcomes(passed=4)
    assert not _threads() - threads_before  # nothing started in-process, nothing left


def test_the_environment_names_the_external_mock(pytester: pytest.Pytester, external: tuple[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url, certs = external
    monkeypatch.setenv("MOCKXERO_URL", url)
    monkeypatch.setenv("MOCKXERO_CERTS", str(certs))
    monkeypatch.setenv("MOCKXERO_ADMIN_TOKEN", ADMIN_TOKEN)
    pytester.makepyfile(EXTERNAL_TESTS.format(url=url, certs=certs))
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=4)


def test_an_external_mock_needs_its_certificates(pytester: pytest.Pytester,
                                                 external: tuple[str, Path]) -> None:
    url, certs = external
    pytester.makepyfile("def test_it(mockxero):\n    pass\n")
    result = pytester.runpytest("--mockxero-url", url)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*--mockxero-url {url} needs --mockxero-certs DIR*"])
    result = pytester.runpytest("--mockxero-url", url, "--mockxero-certs", str(pytester.path))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*is not a mockxero certificates folder*"])
    result = pytester.runpytest("--mockxero-url", url, "--mockxero-certs", str(certs),
                                "--mockxero-admin-token", "wrong")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the mock at * refused its control API: *Authorization: Bearer*"])
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"https://127.0.0.1:{unused.getsockname()[1]}"
    result = pytester.runpytest("--mockxero-url", nowhere, "--mockxero-certs", str(certs))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*no mock answers at {nowhere}: *"])


def test_the_compose_example_runs_against_a_mockxero_serve_process(pytester: pytest.Pytester,
                                                                   external: tuple[str, Path]) -> None:
    """examples/compose runs its test file in a container against the mock's
    container; here the same file, the same options, a mockxero serve."""
    url, certs = external
    example = Path(__file__).resolve().parent.parent / "examples" / "compose" / "test_against_mock.py"
    pytester.makepyfile(test_against_mock=example.read_text())
    result = pytester.runpytest("--mockxero-url", url, "--mockxero-certs", str(certs),
                                "--mockxero-admin-token", ADMIN_TOKEN)
    result.assert_outcomes(passed=5)


def test_xdist_workers_sharing_one_external_mock_are_warned(pytester: pytest.Pytester,
                                                           external: tuple[str, Path]) -> None:
    url, certs = external
    pytester.makepyfile("def test_it(mockxero_server):\n    assert mockxero_server.health()\n")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", "--mockxero-url", url,
                                           "--mockxero-certs", str(certs),
                                           "--mockxero-admin-token", ADMIN_TOKEN)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*mockxero: 2 xdist workers share the one mock at*"])
