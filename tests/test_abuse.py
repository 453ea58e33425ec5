"""SPEC.md §2: the TLS port survives garbage, plain HTTP and half-open
connections without losing its other clients.

Every abusive client here is a real socket against a real server, and there
are more of each kind than the server has worker threads. Before the
handshake moved out of the workers (see ``mockxero.tls._Server``) a client
that connected and said nothing pinned a worker for the socket timeout,
twice; 20 of them against 4 workers kept a signed request waiting 100 s.
A well-behaved client must now get through while they hang on; its requests
carry a timeout far below the abused server's socket timeout, so a pinned
pool fails the test instead of hanging it."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mockxero import MockXero

from .helpers import Partner

#: A request of the well-behaved client may take this long before it counts
#: as locked out (the abused servers' socket timeouts are longer).
PATIENCE = 5.0


def client_hello() -> bytes:
    """The first flight of a real TLS client: a complete ClientHello."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100  # a handshake record
    return hello


class Attack:
    """Abusive sockets against one port, closed at the end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: dict[str, list[socket.socket]] = {}

    def _open(self, kind: str, data: bytes = b"") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sockets.setdefault(kind, []).append(sock)
        with contextlib.suppress(ConnectionError):  # the server may hang up first: fine
            sock.sendall(data)
        return sock

    def launch(self, each: int, good_cert_ctx: ssl.SSLContext) -> None:
        hello = client_hello()
        for _ in range(each):
            self._open("silent")  # connect and say nothing
            self._open("half hello", hello[: len(hello) // 2])  # a handshake that never finishes
            self._open("plain http", b"GET /api.xro/2.0/Organisation HTTP/1.1\r\nHost: x\r\n\r\n")
            self._open("random bytes", os.urandom(700))
            self._open("tls garbage", b"\x16\x03\x01\x02\x00" + os.urandom(512))
            # a full handshake (with the right certificate), then silence
            tls = good_cert_ctx.wrap_socket(self._open("handshake then silent"), server_hostname="localhost")
            self.sockets["handshake then silent"][-1] = tls

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.sockets.values())

    def close(self) -> None:
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()


@pytest.fixture
def abused_server(certs_dir: Path) -> Iterator[MockXero]:
    """Few workers and a long socket timeout: pinned workers would show at once."""
    with MockXero(port=0, certs=certs_dir, threads=4, socket_timeout=30, handshake_timeout=1) as mock:
        yield mock


def signing_partner(mock: MockXero) -> Partner:
    cert = mock.client_cert
    partner = Partner(mock, mock.certs.consumer_key, mock.certs.consumer_secret,
                      rsa_key=mock.certs.application_key, cert=cert)
    request = partner.session.request

    def patient_request(*args: object, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", PATIENCE)
        return request(*args, **kwargs)  # type: ignore[arg-type]

    partner.session.request = patient_request  # type: ignore[method-assign]
    return partner


def good_client_round(mock: MockXero) -> None:
    """A new connection, the whole dance, an API call and a renewal."""
    partner = signing_partner(mock)
    try:
        tokens = partner.connect()
        assert partner.api(tokens, "Organisation").status_code == 200
        assert partner.renew(tokens).status_code == 200
    finally:
        partner.close()


def tls_context(mock: MockXero) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(mock.ca_path))
    ctx.load_cert_chain(mock.certs.path("entrust-cert.pem"), mock.certs.path("entrust-private-nopass.pem"))
    return ctx


def test_plain_http_gets_a_400_that_says_why(abused_server: MockXero) -> None:
    with socket.create_connection(("127.0.0.1", abused_server.port), timeout=10) as sock:
        sock.sendall(b"GET /oauth/RequestToken HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"plain HTTP request, but this port speaks HTTPS" in reply


@pytest.mark.parametrize("payload", [b"", b"\x00" * 3, b"\x16\x03\x01\x00\x05hello", b"\xff" * 4096])
def test_garbage_gets_the_connection_closed(abused_server: MockXero, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", abused_server.port), timeout=10) as sock, \
            contextlib.suppress(ConnectionError):  # a reset is as good as a close; a timeout is not
        sock.sendall(payload)
        while sock.recv(4096):
            pass  # an alert, perhaps; then the server closes
    good_client_round(abused_server)


def test_more_abusers_than_workers_do_not_lock_out_a_signed_client(abused_server: MockXero) -> None:
    attack = Attack(abused_server.port)
    try:
        each = 3 * abused_server.settings.threads
        attack.launch(each=each, good_cert_ctx=tls_context(abused_server))
        assert attack.count == 6 * each
        for _ in range(3):
            good_client_round(abused_server)
        # the ones that never finished a handshake are closed by the server
        # after handshake_timeout (1 s here), not after the 30 s socket timeout
        for kind in ("silent", "half hello"):
            for sock in attack.sockets[kind]:
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1) == b"", kind
        # while one that finished its handshake may idle like any keep-alive
        # connection, and is served when it finally speaks
        tls = attack.sockets["handshake then silent"][0]
        tls.sendall(b"GET /_mockxero/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert tls.recv(4096).startswith(b"HTTP/1.1 200 OK")
    finally:
        attack.close()
    good_client_round(abused_server)  # and afterwards


def test_the_default_settings_survive_the_same(certs_dir: Path) -> None:
    """16 workers, a 10 s socket timeout, a 5 s handshake timeout: the
    defaults every ``mockxero serve`` runs with."""
    with MockXero(port=0, certs=certs_dir) as mock:
        assert mock.settings.threads == 16 and mock.settings.socket_timeout == 10
        attack = Attack(mock.port)
        try:
            attack.launch(each=mock.settings.threads + 8, good_cert_ctx=tls_context(mock))
            for _ in range(3):
                good_client_round(mock)
        finally:
            attack.close()
        good_client_round(mock)
