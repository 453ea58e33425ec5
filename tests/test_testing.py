"""``mockxero.testing`` used as a unittest suite or a script uses it: no
plugin fixture here, the functions called directly (the plugin's own tests
run them through pytest)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from requests_oauthlib import OAuth1

from mockxero import ControlError, MockXero, testing
from mockxero.client import PartnerClient, XeroError
from mockxero.testing import (
    SETTINGS,
    ErrorWatch,
    MockUnavailable,
    UnknownSettings,
    apply_settings,
    connect_remote,
    connected_client,
    describe_errors,
    in_process_mock,
    load_rsa_key,
)

from .cli_support import clean_env

ADMIN_TOKEN = "testing-admin-token"


def _port_closed(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as s:
        return s.connect_ex((parts.hostname or "127.0.0.1", parts.port or 443)) != 0


@pytest.fixture(scope="module")
def module_mock() -> Iterator[MockXero]:
    with pytest.MonkeyPatch.context() as env:  # a control API behind a token, for connect_remote
        env.setenv("MOCKXERO_ADMIN_TOKEN", ADMIN_TOKEN)
        with in_process_mock() as mock:
            yield mock


@pytest.fixture
def mock(module_mock: MockXero) -> MockXero:
    module_mock.reset()
    return module_mock


# -- in_process_mock ---------------------------------------------------------------------------
def test_in_process_mock_serves_mutual_tls_and_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCKXERO_RATE_LIMIT", "off")
    monkeypatch.setenv("MOCKXERO_PORT", "1")            # host, port and folder stay the function's
    monkeypatch.setenv("MOCKXERO_CERTS", "/nonexistent")
    threads_before = set(threading.enumerate())
    with in_process_mock() as mock:
        folder, url = mock.certs_dir, mock.url
        assert folder.is_dir() and folder.name.startswith("mockxero-")
        assert url.startswith("https://127.0.0.1:") and not url.endswith(":1")
        assert mock.runtime_settings()["rate_limit"] == "off"
        cert = x509.load_pem_x509_certificate(Path(mock.client_cert[0]).read_bytes())
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)  # the fast key
        health = requests.get(url + "/_mockxero/health", timeout=10, **mock.requests_kwargs())
        assert health.json() == {"status": "ok"}
        # Mutual TLS: without the Entrust certificate the gateway's 403, with it a request token.
        auth = OAuth1(mock.consumer_key, signature_method="RSA-SHA1", rsa_key=mock.rsa_key,
                      callback_uri="oob")
        bare = requests.post(url + "/oauth/RequestToken", auth=auth, verify=str(mock.ca_path), timeout=10)
        assert bare.status_code == 403 and "403.7" in bare.text
        signed = requests.post(url + "/oauth/RequestToken", auth=auth, timeout=10, **mock.requests_kwargs())
        assert signed.status_code == 200 and "oauth_callback_confirmed=true" in signed.text
        with connected_client(mock) as client:
            assert client.get("Organisation")["Organisations"][0]["Name"] == "Demo Company (NZ)"
    assert not folder.exists(), "the certificates folder outlived the block"
    assert _port_closed(url)
    assert not set(threading.enumerate()) - threads_before, "threads outlived the block"


def test_two_in_process_mocks_do_not_clash() -> None:
    with in_process_mock() as one, in_process_mock() as two:
        assert one.url != two.url and one.certs_dir != two.certs_dir
        assert one.consumer_key != two.consumer_key


# -- connect_remote -------------------------------------------------------------------------------
def test_connect_remote_gives_a_checked_handle(mock: MockXero) -> None:
    with connect_remote(mock.url, mock.certs_dir, ADMIN_TOKEN) as remote:
        assert remote.url == mock.url and remote.consumer_key == mock.consumer_key
        remote.advance(600)
        assert mock.clock()["offset"] > 599


def test_connect_remote_says_clearly_what_is_wrong(mock: MockXero, tmp_path: Path) -> None:
    with pytest.raises(MockUnavailable, match=rf"^the mock at {mock.url} refused its control API: .*Bearer"):
        connect_remote(mock.url, mock.certs_dir, "wrong-token")
    with pytest.raises(MockUnavailable, match=rf"^the mock at {mock.url} refused its control API"):
        connect_remote(mock.url, mock.certs_dir)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"https://127.0.0.1:{unused.getsockname()[1]}"
    with pytest.raises(MockUnavailable, match=rf"^no mock answers at {nowhere}: "):
        connect_remote(nowhere, mock.certs_dir, ADMIN_TOKEN)
    with pytest.raises(ValueError, match="is not a mockxero certificates folder"):
        connect_remote(mock.url, tmp_path, ADMIN_TOKEN)


# -- apply_settings -------------------------------------------------------------------------------
def _state(mock: MockXero) -> tuple[dict[str, object], bool]:
    demo = next(c for c in mock.consumers() if c["consumer_key"] == mock.consumer_key)
    return mock.runtime_settings(), bool(demo["require_client_cert"])


def test_apply_settings_and_undo_round_trip(mock: MockXero) -> None:
    before = _state(mock)
    au = mock.organisations()[1]
    undo = apply_settings(mock, {"auto_approve": True, "require_client_cert": False, "rate_limit": (5, 50),
                                 "access_token_ttl": 60, "authorization_ttl": 600, "request_token_ttl": 30,
                                 "organisation": au["name"]})
    settings, require = _state(mock)
    assert settings == {"auto_approve": True, "rate_limit": "5/50", "access_token_ttl": 60,
                        "authorization_ttl": 600, "request_token_ttl": 30,
                        "organisation": au["short_code"]}
    assert require is False
    undo()
    assert _state(mock) == before
    for off in (None, False, "off"):
        undo = apply_settings(mock, {"rate_limit": off})
        assert mock.runtime_settings()["rate_limit"] == "off"
        undo()
        assert _state(mock) == before


def test_apply_settings_undoes_only_what_it_set(mock: MockXero) -> None:
    undo = apply_settings(mock, {"access_token_ttl": 90})
    mock.change_settings(rate_limit="off")       # the test's own change, after the settings
    undo()
    assert mock.runtime_settings()["access_token_ttl"] == 1800
    assert mock.runtime_settings()["rate_limit"] == "off"


def test_apply_settings_refuses_before_changing_anything(mock: MockXero) -> None:
    before = _state(mock)
    with pytest.raises(UnknownSettings) as unknown:
        apply_settings(mock, {"colour": "blue", "auto_approve": True, "size": 3})
    assert isinstance(unknown.value, TypeError) and unknown.value.names == ["colour", "size"]
    assert str(unknown.value) == f"unknown mock settings colour, size; the settings are {', '.join(SETTINGS)}"
    with pytest.raises(ControlError, match="no organisation 'Nowhere Ltd'"):
        apply_settings(mock, {"organisation": "Nowhere Ltd", "require_client_cert": False})
    with pytest.raises(ControlError):
        apply_settings(mock, {"rate_limit": "lots", "auto_approve": True})
    assert _state(mock) == before


# -- ErrorWatch and describe_errors ---------------------------------------------------------------
def test_a_journalled_internal_error_is_described_with_its_traceback(
        mock: MockXero, monkeypatch: pytest.MonkeyPatch) -> None:
    watch = ErrorWatch(mock)
    with connected_client(mock) as client:
        client.get("Contacts")
        watch.start()
        assert watch.errors() == []

        def boom(*args: object, **kwargs: object) -> None:
            raise RuntimeError("kaboom in the mock")

        monkeypatch.setattr(mock.store, "records", boom)
        with pytest.raises(XeroError):
            client.get("Contacts")
        monkeypatch.undo()
        client.get("Contacts")                    # a clean call after it: not an error
        errors = watch.errors()
    assert [(e["path"], e["status"]) for e in errors] == [("/api.xro/2.0/Contacts", 500)]
    text = describe_errors(errors)
    lines = text.splitlines()
    assert lines[:2] == ["the mock hit 1 internal error(s) during this test:",
                         "  GET /api.xro/2.0/Contacts -> 500: RuntimeError: kaboom in the mock"]
    assert lines[2] == "    Traceback (most recent call last):"
    assert re.search(r'raise RuntimeError\("kaboom in the mock"\)', text)
    assert lines[-1] == "    RuntimeError: kaboom in the mock"
    watch.start()                                 # the next test's watch starts past it
    assert watch.errors() == []
    mock.reset()                                  # ids keep growing across a reset
    assert watch.errors() == []


# -- connected_client and load_rsa_key ------------------------------------------------------------
def test_connected_client_has_been_through_the_dance(mock: MockXero) -> None:
    key = load_rsa_key(mock.rsa_key)
    with connected_client(mock, key) as client:
        assert isinstance(client, PartnerClient)
        assert [e["path"] for e in mock.journal()] == ["/oauth/RequestToken", "/oauth/AccessToken"]
        assert client.tokens is not None and client.tokens.session_handle
        assert client.get("Organisation")["Organisations"][0]["Name"] == "Demo Company (NZ)"


def test_connected_client_refused_is_the_servers_error(mock: MockXero) -> None:
    mock.add_fault(kind="offline", path="/oauth/RequestToken")
    with pytest.raises(XeroError):
        connected_client(mock)


def test_load_rsa_key_wants_an_rsa_key(mock: MockXero) -> None:
    assert load_rsa_key(mock.rsa_key).key_size >= 2048
    with pytest.raises(ValueError, match="not an RSA private key"):
        load_rsa_key(Path(mock.client_cert[1]).read_text())  # the ECDSA client key


# -- without pytest -------------------------------------------------------------------------------
def test_the_modules_unittest_example_runs_without_pytest(tmp_path: Path) -> None:
    """The docstring's unittest suite, as written, in a Python that never
    loads pytest."""
    doc = testing.__doc__ or ""
    example = textwrap.dedent(doc.split("::\n", 1)[1].split("\nThis module")[0])
    script = tmp_path / "test_with_unittest.py"
    script.write_text(example + textwrap.dedent('''
        if __name__ == "__main__":
            import sys
            program = unittest.main(exit=False, verbosity=2)
            print("pytest loaded:", any(m.split(".")[0] in ("pytest", "_pytest") for m in sys.modules))
            sys.exit(not program.result.wasSuccessful())
        '''))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         env=clean_env(), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Ran 1 test" in run.stderr and "test_contacts" in run.stderr
    assert "pytest loaded: False" in run.stdout


def test_pytest_loading_the_plugin_loads_no_server() -> None:
    """pytest imports the plugin in every run, whether a test uses a mock or
    not: the server's libraries wait for the first fixture that needs them."""
    code = ("import sys, json, mockxero_pytest.plugin\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('flask', 'werkzeug', 'cheroot', 'OpenSSL', 'trustme') or m.startswith('mockxero.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=clean_env())
    assert json.loads(loaded.stdout) == []
