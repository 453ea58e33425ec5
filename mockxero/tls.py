"""The HTTPS listener: cheroot + pyOpenSSL, asking for a client certificate
and completing the handshake whatever is presented.

The stdlib ``ssl`` module aborts the handshake on a client certificate it
cannot verify, so the client would see an SSL error where Xero's Entrust
gateway answered 403. Here the verify callback accepts everything and the
peer certificate is handed to the application in the WSGI environ
(``mockxero.peer``, plus Apache-style ``SSL_CLIENT_CERT``); the application
decides. This module knows nothing of OAuth. See ../FINDINGS.md for the
measurements behind the settings below.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cheroot.server
import cheroot.wsgi
from cheroot.ssl.pyopenssl import (
    SSLFileobjectStreamReader,
    SSLFileobjectStreamWriter,
    pyOpenSSLAdapter,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from .peer import PEER_ENVIRON, PeerCertificate

log = logging.getLogger("mockxero.tls")

def _peer_of(ssl_conn: SSL.Connection) -> PeerCertificate | None:
    leaf = ssl_conn.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return None
    return PeerCertificate.from_certificates(leaf, ssl_conn.get_peer_cert_chain(as_cryptography=True) or [])


def make_context(cert_path: Path, key_path: Path, client_ca_path: Path | None) -> SSL.Context:
    """A server context that asks for a client certificate and never fails
    the handshake over it."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    # Session resumption off: a resumed session can come back without the
    # peer certificate (a false 403), and a resuming client (curl, Node's
    # https agent) got an internal-error alert with tickets on.
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    ctx.use_privatekey(key)  # type: ignore[arg-type]
    ctx.use_certificate(x509.load_pem_x509_certificate(cert_path.read_bytes()))
    ctx.check_privatekey()
    if client_ca_path is not None:
        # Advertise the acceptable client CA, so clients holding several
        # certificates pick the right one.
        ctx.add_client_ca(x509.load_pem_x509_certificate(client_ca_path.read_bytes()))
    ctx.set_verify(SSL.VERIFY_PEER, _accept_any_certificate)
    return ctx


def _accept_any_certificate(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    return True


class _WaitingConnection:
    """An ``SSL.Connection`` whose reads and writes wait for the socket.

    A socket with a timeout is non-blocking underneath, so pyOpenSSL raises
    ``WantReadError`` whenever the peer has not sent the next record yet.
    cheroot retries that only in ``readline`` (by sleeping and polling every
    10 ms) and not at all in ``read``: a request body arriving in a later
    TCP segment crashed the request, and a multi-record body could lose
    data. Waiting here, in the raw layer under the buffered reader, fixes
    both and makes the handshake wait on poll() instead of sleeping."""

    def __init__(self, conn: SSL.Connection) -> None:
        self._conn = conn
        self._timeout = conn.gettimeout()
        #: What the selector thread already read off the connection (the
        #: request head, perhaps its body): served before the socket.
        self.unread = bytearray()
        #: When set (time.monotonic()), no wait on this connection may go past
        #: it: one deadline for the whole body of the request now in a worker,
        #: instead of a fresh timeout per recv, which a trickling client could
        #: renew. (Set on the reading side only; the writer has its own.)
        self.deadline: float | None = None

    def _wait(self, events: int, deadline: float | None) -> None:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("timed out")
        poller = select.poll()
        poller.register(self._conn.fileno(), events)
        if not poller.poll(None if remaining is None else remaining * 1000):
            raise TimeoutError("timed out")

    def _retrying(self, call: Callable[[], Any]) -> Any:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        if self.deadline is not None:
            deadline = self.deadline if deadline is None else min(deadline, self.deadline)
        while True:
            try:
                return call()
            except SSL.WantReadError:
                self._wait(select.POLLIN, deadline)
            except SSL.WantWriteError:
                self._wait(select.POLLOUT, deadline)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int | None = None) -> int:
        if self.unread:
            view = memoryview(buffer)
            count = min(len(view), len(self.unread), nbytes or len(view))
            view[:count] = self.unread[:count]
            del self.unread[:count]
            return count
        try:
            return int(self._retrying(lambda: self._conn.recv_into(buffer, nbytes)))
        except SSL.ZeroReturnError:
            return 0  # the peer closed the TLS session cleanly

    def send(self, data: bytes, flags: int = 0) -> int:
        return int(self._retrying(lambda: self._conn.send(data)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _Adapter(pyOpenSSLAdapter):
    """cheroot's adapter with our own context and waiting reads/writes."""

    def __init__(self, context: SSL.Context) -> None:
        # No certificate paths: cheroot's path shortcut calls pyOpenSSL APIs
        # deprecated in 26.3, so the context is built by make_context().
        super().__init__(None, None)
        self.context = context

    def makefile(self, sock: Any, mode: str = "r", bufsize: int = -1) -> Any:
        if not isinstance(sock, SSL.Connection):
            return super().makefile(sock, mode, bufsize)
        raw = _WaitingConnection(sock)
        stream: Any
        if "r" in mode:
            stream = _Reader(raw, mode, bufsize)
            stream.source = raw
        else:
            stream = SSLFileobjectStreamWriter(raw, mode, bufsize)
        stream.ssl_timeout = sock.gettimeout()
        return stream


class _Reader(SSLFileobjectStreamReader):
    """cheroot's buffered TLS reader, keeping hold of its raw layer so the
    selector can hand it the bytes it read ahead."""

    source: _WaitingConnection

    def take_buffered(self) -> bytes:
        """The bytes read off the socket but not yet consumed, in order:
        the buffer's, then the raw layer's. Both are empty afterwards."""
        data = b""
        if self.has_data():  # type: ignore[no-untyped-call]  # then peek() will not read the socket
            data = self.read(len(self.peek(0)))  # type: ignore[no-untyped-call]
        data += bytes(self.source.unread)
        self.source.unread.clear()
        return data


_UNREAD = object()


class _Gateway(cheroot.wsgi.Gateway_10):
    """Puts the peer certificate into the environ. cheroot's adapter builds
    its environ before the handshake, so it cannot; by the time a request's
    environ is built the handshake is done. The certificate is read once per
    connection and kept on the connection object for keep-alive requests."""

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]
        env: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
        conn = self.req.conn
        peer: PeerCertificate | None
        cached = getattr(conn, "_mockxero_peer", _UNREAD)
        if cached is _UNREAD:
            peer = None
            if isinstance(conn.socket, SSL.Connection):
                try:
                    peer = _peer_of(conn.socket)
                except Exception:  # a broken certificate is treated as none
                    log.exception("could not read the peer certificate")
            conn._mockxero_peer = peer
        else:
            peer = cached  # type: ignore[assignment]
        env[PEER_ENVIRON] = peer
        if peer is not None:
            env["SSL_CLIENT_CERT"] = peer.pem
        return env


_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 501: "Not Implemented", 503: "Service Unavailable"}


def _refusal(status: int, message: str, reason: str | None = None) -> bytes:
    """A complete plain-text answer that ends the connection, and says so."""
    body = (message + "\r\n").encode("utf-8", "replace")
    reason = reason or _REASONS.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii") + body


_PLAIN_HTTP_REPLY = _refusal(400, "The client sent a plain HTTP request, but this port speaks HTTPS only.")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request head may hold and how long it may take to arrive.
    cheroot itself has no limit on either."""

    #: Bytes in the request line (method, target, version), CRLF excluded.
    max_request_line: int = 32768
    #: Bytes in the whole head: request line, header lines, the empty line.
    max_header_bytes: int = 65536
    max_header_count: int = 100
    #: Seconds from a request's first byte until its head (and a small
    #: body, see ``buffered_body``) must have arrived.
    header_timeout: float = 10.0
    #: A Content-Length body up to this size is read with the head, off the
    #: workers; a larger or chunked one is read by the worker, against one
    #: deadline (the socket timeout) for the whole body.
    buffered_body: int = 65536
    #: A chunked body is decoded before the application sees it; at most this much.
    max_chunked_body: int = 16 * 1024 * 1024


class HeadError(Exception):
    """The request cannot be served as sent: answer ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DIGITS = re.compile(rb"[0-9]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+")


class _Head:
    """The bytes of one request as they arrive in the selector thread,
    scanned incrementally (a client sending one byte per TLS record must not
    make each arrival rescan the buffer): where the request line and the
    head end, and how many bytes the request needs before a worker gets it."""

    def __init__(self, limits: Limits, data: bytes = b"") -> None:
        self.limits = limits
        self.buffer = bytearray(data)
        #: time.time() of the first byte; the head's one deadline counts from it.
        self.started: float | None = time.time() if data else None
        self._start = -1  # where the request line begins (one leading CRLF is skipped)
        self._line_end = -1  # index of the request line's LF
        self._scanned = 0  # LFs before this index have been looked at
        self._lines = 0
        #: Once the head is complete and sound: how many bytes to buffer
        #: before handing the request to a worker.
        self.wanted: int | None = None
        #: The worker will read (part of) the body off the network.
        self.body_in_worker = False

    def feed(self, data: bytes) -> None:
        if data and self.started is None:
            self.started = time.time()
        self.buffer += data

    def complete(self) -> bool:
        """True when the request can go to a worker; False to wait for more.
        Raises HeadError when it must be refused."""
        if self.wanted is None:
            self._scan()
        return self.wanted is not None and len(self.buffer) >= self.wanted

    def _scan(self) -> None:
        buf, limits = self.buffer, self.limits
        if self._start < 0:
            if len(buf) < 2:
                return
            self._start = self._scanned = 2 if buf.startswith(b"\r\n") else 0
        while (lf := buf.find(b"\n", self._scanned)) >= 0:
            if lf == 0 or buf[lf - 1] != 0x0D:
                raise HeadError(400, "HTTP requires CRLF line endings")
            begin, self._scanned = self._scanned, lf + 1
            if self._line_end < 0:
                self._line_end = lf
                if lf - 1 - self._start > limits.max_request_line:
                    raise HeadError(414, f"The request line is longer than {limits.max_request_line} bytes")
                if lf - 1 == self._start:
                    raise HeadError(400, "The request line is empty")
            elif lf - 1 == begin:  # the empty line: the head is complete
                self._finish(lf + 1)
                return
            else:
                self._lines += 1
                if self._lines > limits.max_header_count:
                    raise HeadError(431, f"More than {limits.max_header_count} header fields")
        if self._line_end < 0 and len(buf) - self._start > limits.max_request_line:
            raise HeadError(414, f"The request line is longer than {limits.max_request_line} bytes")
        if len(buf) - self._start > limits.max_header_bytes:
            raise HeadError(431, f"The request head is larger than {limits.max_header_bytes} bytes")

    def _finish(self, end: int) -> None:
        """The head is complete (it ends at ``end``): check its framing."""
        limits = self.limits
        if end - self._start > limits.max_header_bytes:
            raise HeadError(431, f"The request head is larger than {limits.max_header_bytes} bytes")
        head = bytes(self.buffer[self._start:end - 4])
        request_line, *lines = head.split(b"\r\n")
        version = request_line.rsplit(b" ", 1)[-1]
        lengths: list[bytes] = []
        codings: list[bytes] = []
        expect_continue = False
        for line in lines:
            if b"\r" in line:
                raise HeadError(400, "A bare CR in a header field")
            if line[:1] in (b" ", b"\t"):
                # RFC 9112 §5.2 lets a server refuse obs-fold; cheroot's own
                # folding crashed (a 500) on one right after the request line
                raise HeadError(400, "A header line starts with white space (obsolete line folding)")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise HeadError(400, "A malformed header field (a name, a colon, a value)")
            key = name.lower()
            if key == b"content-length":
                lengths.append(value.strip(b" \t"))
            elif key == b"transfer-encoding":
                codings += [c.strip(b" \t").lower() for c in value.split(b",") if c.strip(b" \t")]
            elif key == b"expect":
                expect_continue = value.strip(b" \t").lower() == b"100-continue"
        body: int | None = 0
        if codings:
            if lengths:
                raise HeadError(400, "Content-Length and Transfer-Encoding together")
            if version != b"HTTP/1.1":
                raise HeadError(400, "Transfer-Encoding needs HTTP/1.1")
            if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
                raise HeadError(400, "Transfer-Encoding must end with chunked, once")
            if len(codings) > 1:
                raise HeadError(501, "Only the chunked transfer coding is supported")
            body = None  # read by the worker
        elif lengths:
            if not all(_DIGITS.fullmatch(v) for v in lengths):
                raise HeadError(400, "Content-Length must be one number of bytes")
            values = {int(v) for v in lengths}
            if len(values) > 1:
                raise HeadError(400, "Two different Content-Length values")
            body = values.pop()
        self.body_in_worker = body is None or (body > 0 and (body > limits.buffered_body or expect_continue))
        # the worker reads a chunked or large body (and says 100 Continue); a small one comes with the head
        self.wanted = end if self.body_in_worker else end + (body or 0)


class _BadChunk(Exception):
    pass


def read_chunked(rfile: Any, limit: int, max_trailers: int) -> bytes:
    """A whole chunked body, decoded (RFC 9112 §7.1). Raises HeadError for
    broken framing (400) or a body over ``limit`` (413) — cheroot's own
    decoder let a 65-bit chunk size escape as OverflowError (a 500) and a
    broken one reach the application."""
    body = bytearray()
    while True:
        line = rfile.readline(4098)
        if not line.endswith(b"\r\n"):
            raise HeadError(400, "A chunk-size line must end with CRLF (and be under 4 KB)")
        size_text = line[:-2].split(b";", 1)[0].rstrip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise HeadError(400, f"Bad chunk size {size_text[:40]!r}")
        digits = size_text.lstrip(b"0")
        if len(digits) > 16:
            raise HeadError(400, "A chunk size beyond 64 bits")
        size = int(digits or b"0", 16)
        if len(body) + size > limit:
            raise HeadError(413, f"The chunked body is larger than {limit} bytes")
        if size == 0:
            break
        data = rfile.read(size)
        if len(data) != size:
            raise HeadError(400, "The body ended inside a chunk")
        body += data
        if rfile.read(2) != b"\r\n":
            raise HeadError(400, "A chunk must end with CRLF")
    for _ in range(max_trailers + 1):
        line = rfile.readline(4098)
        if line == b"\r\n":
            return bytes(body)
        if not line.endswith(b"\r\n"):
            raise HeadError(400, "A trailer line must end with CRLF (and be under 4 KB)")
    raise HeadError(431, "Too many trailer fields")


class _Request(cheroot.server.HTTPRequest):
    """cheroot's request: every answer that closes the connection says
    ``Connection: close``, and a chunked body is decoded and checked before
    the application runs (it then sees a plain Content-Length body)."""

    def simple_response(self, status: Any, msg: Any = "") -> None:
        self.close_connection = True
        code, _, reason = str(status).partition(" ")
        text = msg.decode("ISO-8859-1") if isinstance(msg, bytes) else str(msg)
        with contextlib.suppress(OSError):
            self.conn.wfile.write(_refusal(int(code), text or reason, reason or None))

    def respond(self) -> None:
        if not self.chunked_read:
            super().respond()
            return
        limits: Limits = self.server.limits
        try:
            body = read_chunked(self.conn.rfile, limits.max_chunked_body, limits.max_header_count)
        except HeadError as refused:
            self.simple_response(f"{refused.status} {_REASONS[refused.status]}", refused.message)
            return
        self.chunked_read = False
        self.inheaders.pop(b"Transfer-Encoding", None)
        self.inheaders[b"Content-Length"] = str(len(body)).encode()
        self.rfile = cheroot.server.KnownLengthRFile(io.BytesIO(body), len(body))
        self.server.gateway(self).respond()
        if self.ready:
            self.ensure_headers_sent()
        if self.chunked_write:
            self.conn.wfile.write(b"0\r\n\r\n")


class _Connection(cheroot.server.HTTPConnection):
    """cheroot's connection, with the state the selector keeps for it, and
    ending TLS with a close_notify alert before the TCP close; without it
    OpenSSL 3 clients (``openssl s_client``, PHP) see "unexpected eof while
    reading" after a ``Connection: close`` response."""

    RequestHandlerClass = _Request
    #: "handshake", then "head" (waiting in the selector for a request),
    #: "worker" (a worker has it), "linger" (answered; draining until the
    #: client closes) or "closed".
    phase = "handshake"
    head: _Head
    accepted = 0.0
    linger_until = 0.0
    #: It is one of the few requests whose body a worker reads off the network.
    holds_body_slot = False
    parked_until = 0.0
    rfile: _Reader
    server: _Server

    def close(self) -> None:
        self.server.release_body_slot(self)
        tls_ready = self.phase in ("head", "worker")
        if self.phase == "head" and self.head.started is not None:
            # the head's deadline passed (the selector's sweep closes us): say so
            with contextlib.suppress(SSL.Error, OSError):
                self.socket.send(_refusal(408, "The request head did not arrive in time"))
        self.phase = "closed"
        if tls_ready and not self.linger:
            with contextlib.suppress(SSL.Error, OSError):
                self.socket.shutdown()  # sends the alert; does not wait for the peer's
        super().close()
        # cheroot keeps lru_cache wrappers of two of its own bound methods on
        # the instance: a reference cycle that left each closed connection's
        # OpenSSL object (~55 KB) for the cycle collector, so RSS climbed
        # with every connection (bench/probe_connection_cycles.py).
        self.__dict__.pop("resolve_peer_creds", None)
        self.__dict__.pop("get_peer_creds", None)


class _Server(cheroot.wsgi.Server):
    """cheroot's server with the TLS handshake and the request head read in
    the selector thread.

    cheroot hands every accepted connection straight to a worker, whose
    first read drives the handshake and then the request line, each recv
    with a fresh socket timeout: a client that connects and goes silent,
    sends half a ClientHello or half a request line, or trickles a byte every
    few seconds, pinned a worker; more of them than there are workers locked
    every good client out (16 half request lines kept a new client waiting
    9.5 s, 64 more than 30 s). Here a connection waits in cheroot's selector
    (costing one file descriptor and its buffered bytes, no thread): first
    for its handshake, one non-blocking ``do_handshake`` per arrival, closed
    ``handshake_timeout`` seconds after the accept; then for each request's
    head (and a small Content-Length body), read non-blocking as it arrives
    under one deadline counted from its first byte (``limits.header_timeout``)
    and checked against ``limits`` as it grows. Only a complete, well-framed
    request goes to a worker; a broken one is answered from here (414, 431,
    400, 501, each with ``Connection: close``) and drained until the client
    closes, so that it reads the answer rather than a reset. An idle
    keep-alive connection may wait ``timeout`` seconds, as before.

    Two things still need a worker to wait on a client: a body too large to
    read with the head (or chunked), and writing the answer. Bodies read by
    workers are limited to half the pool at once (``release_body_slot``);
    every request in a worker has one deadline, ``timeout`` seconds, for
    all the reads of its body (writing the answer keeps a timeout per write,
    so an answer that took long to compute still goes out). And since file descriptors run out before
    anything else, at most ``max_connections`` wait in the selector; past
    that the oldest stuck one is closed to make room (``_evict_one``)."""

    handshake_timeout: float = 5.0
    limits = Limits()
    #: Open connections waiting in the selector, at most; see ``_evict_one``.
    max_connections = 4096
    #: Seconds a refused connection is drained before it is closed.
    linger_time = 2.0
    #: cheroot's ConnectionManager (the selector), made by ``prepare()``.
    _connections: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: At most this many workers read request bodies off the network at
        #: once (a chunked or large body, which a slow client can stretch to
        #: the socket timeout); the others stay free for complete requests.
        #: Requests over the count wait, unread, for a turn.
        self.body_readers = max(1, int(self.requests.min) // 2)
        self._body_reading = 0
        self._waiting_for_body_slot: collections.deque[Any] = collections.deque()
        self._slots = threading.Lock()

    def process_conn(self, conn: Any) -> None:
        phase = conn.phase
        if phase == "worker" or not isinstance(conn.socket, SSL.Connection):
            super().process_conn(conn)  # into the worker queue
        elif phase == "head":
            self._read_head(conn)
        elif phase == "handshake":
            self._handshake(conn)
        elif phase == "linger":
            self._linger(conn)

    def put_conn(self, conn: Any) -> None:
        """A worker is done with a request and the connection stays open:
        back to waiting for the next head, starting with whatever the client
        already sent after the last request (pipelining)."""
        self.release_body_slot(conn)
        if not self.ready or not isinstance(conn.socket, SSL.Connection):
            super().put_conn(conn)
            return
        conn.rfile.source.deadline = None
        conn.phase = "head"
        conn.head = _Head(self.limits, conn.rfile.take_buffered())
        self._read_head(conn)

    def _handshake(self, conn: Any) -> None:
        sock = conn.socket
        if not conn.accepted:  # just accepted
            conn.accepted = time.time()
            if self._connections._num_connections >= self.max_connections:
                self._evict_one()
        try:
            sock.do_handshake()
        except SSL.WantReadError:
            # Wait in the selector. Its sweep closes connections whose
            # last_used is older than ``timeout``: back-date it so this one
            # goes at the handshake deadline, counted from the accept.
            self._wait(conn, conn.accepted + self.handshake_timeout)
            return
        except SSL.WantWriteError:
            # The server's first flight is a few KB, far below a fresh
            # socket's send buffer: only a peer that never reads gets here.
            self._drop(conn, "the client does not read the handshake")
            return
        except SSL.Error as exc:  # also SysCallError, ZeroReturnError
            if "http request" in str(exc):
                self._answer_plain_http(conn)
            self._drop(conn, f"TLS handshake failed: {exc!r}")
            return
        except Exception:  # this runs in the one selector thread: never let a client stop it
            log.exception("unexpected error in a TLS handshake")
            self._drop(conn, "unexpected error")
            return
        conn.phase = "head"
        conn.head = _Head(self.limits)
        # A request may already sit decrypted inside OpenSSL (no selector
        # event would come for it): read now.
        self._read_head(conn)

    def _read_head(self, conn: Any) -> None:
        head: _Head = conn.head
        ended = False
        try:
            while not head.complete():
                try:
                    data = conn.socket.recv(65536)
                except SSL.WantReadError:
                    break
                except (SSL.ZeroReturnError, SSL.SysCallError):
                    data = b""
                if not data:
                    ended = True
                    break
                head.feed(data)
            else:
                conn.rfile.source.unread[:] = head.buffer
                if not head.body_in_worker or self._take_body_slot(conn):
                    self._to_worker(conn)
                return
        except HeadError as refused:
            self._refuse(conn, refused.status, refused.message)
            return
        except (SSL.Error, OSError) as exc:
            self._drop(conn, f"reading a request failed: {exc!r}")
            return
        except Exception:  # the selector thread must survive any client
            log.exception("unexpected error reading a request head")
            self._drop(conn, "unexpected error")
            return
        if ended:  # the client closed; a half-sent request has nobody to answer to
            conn.phase = "closed"
            self._drop(conn, "the client closed the connection")
        elif head.started is None:
            self._wait(conn, None)  # idle keep-alive: cheroot's ``timeout``
        else:
            self._wait(conn, head.started + self.limits.header_timeout)

    def _to_worker(self, conn: Any) -> None:
        conn.phase = "worker"
        conn.rfile.source.deadline = time.monotonic() + self.timeout  # for reading its body
        super().process_conn(conn)

    def _take_body_slot(self, conn: Any) -> bool:
        """True if a worker may read this request's body now; else it waits
        (off the selector, its bytes unread) for ``release_body_slot``."""
        with self._slots:
            if self._body_reading < self.body_readers:
                self._body_reading += 1
                conn.holds_body_slot = True
                return True
            conn.phase = "parked"
            conn.parked_until = time.time() + self.timeout
            self._waiting_for_body_slot.append(conn)
            return False

    def release_body_slot(self, conn: Any) -> None:
        """The request holding a body slot is done: the next waiting one gets
        it; those that waited past the socket timeout get a 503."""
        if not conn.holds_body_slot:
            return
        conn.holds_body_slot = False
        now, given, expired = time.time(), None, []
        with self._slots:
            self._body_reading -= 1
            while self._waiting_for_body_slot and given is None:
                waiting = self._waiting_for_body_slot.popleft()
                if waiting.parked_until < now:
                    expired.append(waiting)
                else:
                    self._body_reading += 1
                    waiting.holds_body_slot = True
                    given = waiting
        # This runs in a worker's clean-up (cheroot lets nothing escape there):
        # whatever goes wrong with another client's connection stays with it.
        for waiting in expired:
            try:
                self._refuse(waiting, 503, "Too many request bodies are being read; try again")
            except Exception:
                self._drop(waiting, "could not refuse a request that waited too long")
        if given is not None:
            try:
                if not self.ready:
                    raise RuntimeError("the server is stopping")
                self._to_worker(given)
            except Exception:
                self._drop(given, "could not hand a waiting request to a worker")

    def stop(self) -> None:
        super().stop()
        with self._slots:
            waiting, self._waiting_for_body_slot = list(self._waiting_for_body_slot), collections.deque()
        for conn in waiting:
            self._drop(conn, "the server stops")

    def _evict_one(self) -> None:
        """Too many open connections (file descriptors run out before threads
        do, and then accept() fails for everyone): close the oldest of those
        still in a handshake or a half-sent head, or else the oldest idle one."""
        candidates = [
            (0 if conn.phase != "head" or conn.head.started is not None else 1, conn.accepted, fd, conn)
            for fd, conn in self._connections._selector.connections
            if conn is not self and getattr(conn, "phase", None) in ("handshake", "head", "linger")
        ]
        if not candidates:
            return
        _, _, fd, conn = min(candidates, key=lambda c: (c[0], c[1]))
        self._connections._selector.unregister(fd)
        self._drop_slow(conn)

    def _drop_slow(self, conn: Any) -> None:
        log.debug("evicting a connection from %s (phase %s)", getattr(conn, "remote_addr", "?"), conn.phase)
        with contextlib.suppress(OSError, SSL.Error):
            conn.close()  # a half-sent head hears 408 first
        conn.phase = "closed"

    def _wait(self, conn: Any, deadline: float | None) -> None:
        """Back into the selector until the client sends more; closed by the
        selector's sweep at ``deadline`` (time.time()), or after the idle
        ``timeout`` when None. The sweep closes connections whose last_used
        is older than ``timeout``: back-date it to match the deadline."""
        self._connections.put(conn)
        if deadline is not None:
            conn.last_used = deadline - self.timeout

    def _refuse(self, conn: Any, status: int, message: str) -> None:
        """Answer from the selector thread without blocking, then linger:
        stop sending (close_notify, FIN) but keep reading until the client
        closes or ``linger_time`` passes, so that the rest of its request in
        flight does not turn our close into a reset that loses the answer."""
        log.debug("refusing a request from %s: %d %s", getattr(conn, "remote_addr", "?"), status, message)
        conn.phase = "linger"
        try:
            conn.socket.send(_refusal(status, message))
            conn.socket.shutdown()
            conn.socket.sock_shutdown(socket.SHUT_WR)
        except (SSL.Error, OSError):  # could not even say it: just close
            self._drop(conn, "the client does not read")
            return
        self._linger(conn)

    def _linger(self, conn: Any) -> None:
        if not conn.linger_until:
            conn.linger_until = time.time() + self.linger_time
        fd = conn.socket.fileno()
        try:
            while os.read(fd, 65536):
                pass
        except BlockingIOError:
            self._wait(conn, conn.linger_until)
            return
        except OSError:
            pass
        self._drop(conn, "answered and closed")

    def _drop(self, conn: Any, why: str) -> None:
        log.debug("closing a connection from %s: %s", getattr(conn, "remote_addr", "?"), why)
        conn.phase = "closed"
        with contextlib.suppress(OSError, SSL.Error):
            conn.close()

    @staticmethod
    def _answer_plain_http(conn: Any) -> None:
        """What cheroot answers plain HTTP on a TLS port, without blocking
        the selector thread: a 400 written to the raw socket, then the rest
        of the request drained so that the close is a FIN, not a reset."""
        fd = conn.socket.fileno()
        try:
            os.write(fd, _PLAIN_HTTP_REPLY)
            conn.socket.sock_shutdown(socket.SHUT_WR)
            while os.read(fd, 65536):
                pass
        except OSError:  # BlockingIOError once drained, or the peer is gone
            pass

    def _serve_unservicable(self) -> None:
        """cheroot's 503 for a full worker queue, with ``Connection: close``."""
        while self.ready:
            conn = self._unservicable_conns.get()  # type: ignore[attr-defined]
            if conn is getattr(cheroot.server, "_STOPPING_FOR_INTERRUPT", None):
                return
            with contextlib.suppress(Exception):
                conn.socket.send(_refusal(503, "The server is too busy; try again"))
            self._drop(conn, "no worker free")


def _connection_ceiling() -> int:
    """How many connections may wait in the selector: below this process's
    file-descriptor limit, leaving room for workers, files and the listener."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1000
    if soft == resource.RLIM_INFINITY:
        return 16384
    return max(64, min(16384, soft - 128))


class HTTPSServer:
    """One HTTPS listener in a background thread: ``start()`` binds (port 0
    picks a free one) and returns once it accepts; ``stop()`` closes it."""

    def __init__(
        self,
        app: Callable[..., Any],
        context: SSL.Context,
        host: str = "127.0.0.1",
        port: int = 8443,
        threads: int = 16,
        timeout: int = 10,
        handshake_timeout: float = 5.0,
        max_request_line: int = Limits.max_request_line,
        max_header_bytes: int = Limits.max_header_bytes,
        max_header_count: int = Limits.max_header_count,
        header_timeout: float = Limits.header_timeout,
        max_connections: int | None = None,
    ) -> None:
        self._server = _Server(
            (host, port), app, numthreads=threads, server_name="mockxero",
            timeout=timeout, shutdown_timeout=2, request_queue_size=1024,
            accepted_queue_size=threads * 8, accepted_queue_timeout=2,
        )
        self._server.limits = Limits(max_request_line=max_request_line, max_header_bytes=max_header_bytes,
                                     max_header_count=max_header_count, header_timeout=header_timeout)
        self._server.ssl_adapter = _Adapter(context)
        self._server.gateway = _Gateway
        self._server.ConnectionClass = _Connection
        self._server.handshake_timeout = min(handshake_timeout, timeout)
        # Idle keep-alive connections wait in a selector, not in a worker; let
        # a test suite keep many of them open.
        self._server.keep_alive_conn_limit = 512
        self._server.max_connections = max_connections or _connection_ceiling()
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.bind_addr[0])

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        # prepare() binds (bind_addr then holds the real port) and starts the
        # worker pool. Workers inherit daemon status from the thread that
        # creates them, so run it in a daemon thread: a mock that someone
        # forgot to stop cannot then keep the interpreter from exiting.
        failure: list[BaseException] = []

        def prepare() -> None:
            try:
                self._server.prepare()
            except BaseException as exc:
                failure.append(exc)

        preparer = threading.Thread(target=prepare, name="mockxero-prepare", daemon=True)
        preparer.start()
        preparer.join()
        if failure:
            raise failure[0]
        self._thread = threading.Thread(target=self._serve, name="mockxero-https", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.serve()
        except Exception:  # pragma: no cover - logged, the thread ends
            log.exception("the HTTPS server stopped with an error")

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.stop()
        self._thread.join(timeout=10)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
