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

import contextlib
import logging
import os
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
        while True:
            try:
                return call()
            except SSL.WantReadError:
                self._wait(select.POLLIN, deadline)
            except SSL.WantWriteError:
                self._wait(select.POLLOUT, deadline)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int | None = None) -> int:
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
        cls = SSLFileobjectStreamReader if "r" in mode else SSLFileobjectStreamWriter
        stream = cls(_WaitingConnection(sock), mode, bufsize)
        stream.ssl_timeout = sock.gettimeout()
        return stream


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


_PLAIN_HTTP_BODY = b"The client sent a plain HTTP request, but this port speaks HTTPS only.\r\n"
_PLAIN_HTTP_REPLY = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_PLAIN_HTTP_BODY), _PLAIN_HTTP_BODY)
)


class _Connection(cheroot.server.HTTPConnection):
    """cheroot's connection, ending TLS with a close_notify alert before the
    TCP close; without it OpenSSL 3 clients (``openssl s_client``, PHP) see
    "unexpected eof while reading" after a ``Connection: close`` response."""

    def close(self) -> None:
        if getattr(self, "_mockxero_tls_ready", False) and not self.linger:
            with contextlib.suppress(SSL.Error, OSError):
                self.socket.shutdown()  # sends the alert; does not wait for the peer's
        super().close()


class _Server(cheroot.wsgi.Server):
    """cheroot's server with the TLS handshake done in the selector thread.

    cheroot hands every accepted connection straight to a worker, whose
    first read drives the handshake: a client that connects and goes silent,
    or sends half a ClientHello, pinned a worker for the whole socket timeout
    (twice: once reading, once writing the 408). More of them than there are
    workers locked every good client out: with 4 workers, a 10 s timeout and
    20 silent sockets a signed request waited 100 s. Here a connection waits
    in cheroot's selector (costing one file descriptor, no thread) until its
    handshake is complete, each step being one non-blocking ``do_handshake``
    when bytes arrive, and only then, once it has sent a request, goes to a
    worker. A handshake not finished within ``handshake_timeout`` seconds
    of the accept is closed by the selector's own expiry sweep; the keep-alive
    idle timeout (``timeout``) is unchanged."""

    handshake_timeout: float = 5.0
    #: cheroot's ConnectionManager (the selector), made by ``prepare()``.
    _connections: Any

    def process_conn(self, conn: Any) -> None:
        sock = conn.socket
        ready = getattr(conn, "_mockxero_tls_ready", None)
        if ready or not isinstance(sock, SSL.Connection):
            super().process_conn(conn)  # into the worker queue
            return
        if ready is None:  # just accepted
            conn._mockxero_tls_ready = False
            conn._mockxero_accepted = time.time()
        try:
            sock.do_handshake()
        except SSL.WantReadError:
            # Wait in the selector. Its sweep closes connections whose
            # last_used is older than ``timeout``: back-date it so this one
            # goes at the handshake deadline, counted from the accept.
            self._connections.put(conn)
            conn.last_used = conn._mockxero_accepted + self.handshake_timeout - self.timeout
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
        conn._mockxero_tls_ready = True
        if sock.pending():  # a request already decrypted inside OpenSSL: no selector event will come
            super().process_conn(conn)
            return
        self._connections.put(conn)  # to a worker once the request arrives

    def _drop(self, conn: Any, why: str) -> None:
        log.debug("closing a connection from %s: %s", getattr(conn, "remote_addr", "?"), why)
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
    ) -> None:
        self._server = _Server(
            (host, port), app, numthreads=threads, server_name="mockxero",
            timeout=timeout, shutdown_timeout=2, request_queue_size=128,
            accepted_queue_size=threads * 8, accepted_queue_timeout=2,
        )
        self._server.ssl_adapter = _Adapter(context)
        self._server.gateway = _Gateway
        self._server.ConnectionClass = _Connection
        self._server.handshake_timeout = min(handshake_timeout, timeout)
        # Idle keep-alive connections wait in a selector, not in a worker; let
        # a test suite keep many of them open.
        self._server.keep_alive_conn_limit = 512
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
