"""Raw TLS clients for the transport tests: real sockets speaking HTTP/1.1
by hand, so that a test can send what no HTTP library would (half a
request line, two Content-Lengths, a 65-bit chunk size) and see exactly
what comes back, or that nothing does."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import oauthlib.oauth1

from mockxero import MockXero
from mockxero.tls import HTTPSServer, make_context

from .helpers import load_rsa_key

#: Seconds a test waits for an answer; far below the servers' socket
#: timeouts, so that a pinned worker or a silent close fails the test
#: instead of hanging it.
PATIENCE = 5.0


def tls_context(mock: MockXero) -> ssl.SSLContext:
    """Trusts the mock's CA and presents the demo consumer's Entrust certificate."""
    ctx = ssl.create_default_context(cafile=str(mock.certs.path("ca.pem")))
    ctx.load_cert_chain(mock.certs.path("entrust-cert.pem"), mock.certs.path("entrust-private-nopass.pem"))
    return ctx


def open_tls(ctx: ssl.SSLContext, port: int, timeout: float = PATIENCE) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated one keeps the last
    body: bytes
    raw_head: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def read_reply(sock: ssl.SSLSocket, buffered: bytearray | None = None, head_only: bool = False) -> Reply:
    """One response (Content-Length or chunked framed) off the socket;
    ``buffered`` carries bytes over between pipelined responses; the answer
    to a HEAD request (``head_only``) has no body whatever its headers say."""
    buf = buffered if buffered is not None else bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a complete response head: {bytes(buf)[:200]!r}")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split(" ", 2)[1])
    if head_only or status in (204, 304) or 100 <= status < 200:
        return Reply(status, headers, b"", head)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            line_end = buf.index(b"\r\n")
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            while len(buf) < line_end + 2 + size + 2:
                buf += sock.recv(65536)
            body += buf[line_end + 2: line_end + 2 + size]
            del buf[: line_end + 2 + size + 2]
            if size == 0:
                break
        return Reply(status, headers, bytes(body), head)
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        buf += chunk
    body_bytes = bytes(buf[:length])
    del buf[:length]
    return Reply(status, headers, body_bytes, head)


def exchange(port: int, ctx: ssl.SSLContext, *parts: bytes) -> Reply:
    """A new connection, the parts sent one after another, one reply."""
    with open_tls(ctx, port) as sock:
        for part in parts:
            sock.sendall(part)
        return read_reply(sock)


def closed_by_server(sock: ssl.SSLSocket) -> bool:
    """True once the server has ended the connection (EOF or reset);
    waits up to the socket's timeout for it."""
    try:
        while sock.recv(65536):
            pass
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False
    return True


def still_open(sock: ssl.SSLSocket) -> bool:
    """True when the server has neither answered nor closed this connection
    (an answer's first byte is consumed: read a reply before, not after)."""
    sock.setblocking(False)
    try:
        sock.recv(1)  # an answer, or b"" for a close
        return False
    except ssl.SSLWantReadError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(PATIENCE)


def health_request(close: bool = True) -> bytes:
    return (b"GET /_mockxero/health HTTP/1.1\r\nHost: localhost\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"\r\n")


def signed_request_token(mock: MockXero) -> bytes:
    """A signed RequestToken POST, made with oauthlib's client (an
    independent implementation), as raw HTTP/1.1."""
    client = oauthlib.oauth1.Client(mock.certs.consumer_key, signature_method=oauthlib.oauth1.SIGNATURE_RSA,
                                    rsa_key=load_rsa_key(mock.certs.application_key))
    _, headers, _ = client.sign(mock.url + "/oauth/RequestToken", http_method="POST")
    return (f"POST /oauth/RequestToken HTTP/1.1\r\nHost: 127.0.0.1:{mock.port}\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Length: 0\r\n\r\n").encode()


@contextlib.contextmanager
def listener(mock: MockXero, **options: float) -> Iterator[HTTPSServer]:
    """A second HTTPS listener in front of ``mock``'s application, with
    transport options MockXero does not take (yet): a short head deadline."""
    certs: Path = mock.certs.directory
    context = make_context(certs / "server.pem", certs / "server-key.pem", certs / "entrust-ca.pem")
    server = HTTPSServer(mock.app, context, port=0, **options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
