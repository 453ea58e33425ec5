"""Fixtures: one real HTTPS mock for the whole session, reset before each
test (cheap), and signing clients for the demo consumer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mockxero import MockXero

from .helpers import Control, Partner, Tokens


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@pytest.fixture(scope="session")
def xero_server(certs_dir: Path) -> Iterator[MockXero]:
    with MockXero(port=0, certs=certs_dir) as server:
        yield server


@pytest.fixture
def xero(xero_server: MockXero) -> Iterator[MockXero]:
    """The session's mock, back to its starting state. A test fails when the
    server hit an internal error while it ran (as pytest-httpserver's
    ``check_handler_errors``), with the server's traceback."""
    xero_server.reset()
    yield xero_server
    errors = [entry for entry in xero_server.journal() if entry.get("error")]
    if errors:
        pytest.fail("the mock hit an internal error:\n" + "\n".join(
            f"{e['method']} {e['path']}: {e['error']}\n{e.get('traceback', '')}" for e in errors),
            pytrace=False)


@pytest.fixture
def client_cert(xero: MockXero) -> tuple[str, str]:
    return xero.client_cert


@pytest.fixture
def partner(xero: MockXero, client_cert: tuple[str, str]) -> Iterator[Partner]:
    """The demo partner consumer, with its Entrust certificate and RSA key."""
    p = Partner(xero, xero.certs.consumer_key, xero.certs.consumer_secret,
                rsa_key=xero.certs.application_key, cert=client_cert)
    yield p
    p.close()


@pytest.fixture
def tokens(partner: Partner) -> Tokens:
    """The demo partner connected to the default organisation."""
    return partner.connect()


@pytest.fixture
def control(xero: MockXero) -> Iterator[Control]:
    """The control API over HTTPS, as a container's user drives it."""
    c = Control(xero)
    yield c
    c.close()


@pytest.fixture
def anonymous(xero: MockXero) -> Iterator[requests.Session]:
    """A browser-like session: trusts the mock's CA, presents no client
    certificate, signs nothing."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(xero.ca_path)
    yield s
    s.close()
