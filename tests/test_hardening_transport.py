"""Issue 11, the transport: slow and hostile clients never starve good
ones, request heads are bounded, broken framing is answered at once.

Every client here is a real TLS socket on loopback. The servers have few
workers and a long socket timeout, so that a worker pinned by a slow client
would show at once: the good client's socket timeout (PATIENCE) is far below
the server's, and a pinned pool fails the test instead of hanging it."""

from __future__ import annotations

import contextlib
import gc
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mockxero import MockXero

from .helpers import parse_form
from .transport_support import (
    PATIENCE,
    closed_by_server,
    exchange,
    health_request,
    listener,
    open_tls,
    read_reply,
    signed_request_token,
    still_open,
    tls_context,
)

#: What the slow clients send before they stall: half a request line, a
#: complete line and half the headers, a whole head promising a body that
#: never comes (small enough to be read with the head), a chunked head.
STALLS = {
    "half request line": b"GET /api.xro/2.0/Organisation HT",
    "half the headers": b"GET /api.xro/2.0/Organisation HTTP/1.1\r\nHost: localhost\r\nAccept: appl",
    "body never sent": b"POST /oauth/RequestToken HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500\r\n"
                       b"\r\nx=",
}


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockXero]:
    """Four workers and a 30 s socket timeout."""
    certs = tmp_path_factory.mktemp("narrow-certs")
    with MockXero(port=0, certs=certs, threads=4, socket_timeout=30, handshake_timeout=2) as mock:
        yield mock


@pytest.fixture
def mock(narrow: MockXero) -> MockXero:
    narrow.reset()
    return narrow


@pytest.fixture
def ctx(mock: MockXero) -> ssl.SSLContext:
    return tls_context(mock)


class Crowd:
    """Slow TLS clients, each past its handshake, closed at the end."""

    def __init__(self, ctx: ssl.SSLContext, port: int) -> None:
        self.ctx, self.port = ctx, port
        self.sockets: list[ssl.SSLSocket] = []

    def add(self, count: int, first: bytes) -> list[ssl.SSLSocket]:
        added = []
        for _ in range(count):
            sock = open_tls(self.ctx, self.port, timeout=30)
            if first:
                sock.sendall(first)
            added.append(sock)
        self.sockets += added
        return added

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def crowd(mock: MockXero, ctx: ssl.SSLContext) -> Iterator[Crowd]:
    c = Crowd(ctx, mock.port)
    yield c
    c.close()


def assert_good_client_served(mock: MockXero, ctx: ssl.SSLContext) -> None:
    """A new connection gets a health answer and a signed RequestToken."""
    health = exchange(mock.port, ctx, health_request())
    assert health.status == 200 and health.body == b'{"status":"ok"}\n'
    token = exchange(mock.port, ctx, signed_request_token(mock))
    assert token.status == 200, token.body
    assert parse_form(token.body.decode())["oauth_callback_confirmed"] == "true"


# -- slow clients ---------------------------------------------------------------------------------
def test_hundreds_of_slow_clients_do_not_hold_a_worker(mock: MockXero, ctx: ssl.SSLContext,
                                                       crowd: Crowd) -> None:
    """64 of each stall (more than 16 times the four workers), 32 that only
    finished their handshake, 32 trickling a byte at a time: a good client is
    served while every one of them is still open."""
    stalled = {kind: crowd.add(64, first) for kind, first in STALLS.items()}
    idle = crowd.add(32, b"")
    trickling = crowd.add(32, b"G")
    for byte in b"ET /_mockxero/hea":  # the trickle goes on while good clients come and go
        for sock in trickling:
            sock.sendall(bytes([byte]))
        assert_good_client_served(mock, ctx)
    for kind, socks in stalled.items():
        assert all(still_open(s) for s in socks), kind
    assert all(still_open(s) for s in idle + trickling)

    # and each is served when it finally finishes its request
    trickling[0].sendall(b"lth HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_reply(trickling[0]).status == 200
    stalled["half request line"][0].sendall(b"TP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    unsigned = read_reply(stalled["half request line"][0])  # the application's answer to it
    assert unsigned.status == 400 and b"oauth_problem=parameter_absent" in unsigned.body
    idle[0].sendall(health_request())
    assert read_reply(idle[0]).status == 200


def test_slow_large_bodies_leave_workers_for_everyone_else(mock: MockXero, ctx: ssl.SSLContext,
                                                          crowd: Crowd) -> None:
    """A body too large to read with the head is read by a worker, which a
    slow client can hold until the socket timeout; at most half the workers
    do that at once, the other requests of that kind wait their turn."""
    head = (b"POST /oauth/RequestToken HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
    chunked = (b"POST /oauth/RequestToken HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\n\r\nfffff\r\n")
    slow = crowd.add(8, head + b"x=" + b"a" * 100000) + crowd.add(8, chunked + b"b" * 1000)
    for _ in range(3):
        assert_good_client_served(mock, ctx)
    assert all(still_open(s) for s in slow)


def test_past_the_connection_ceiling_the_oldest_slow_client_makes_room(
        mock: MockXero, ctx: ssl.SSLContext) -> None:
    """File descriptors run out before threads do: beyond ``max_connections``
    (derived from the process's descriptor limit; 40 here) each new
    connection closes the oldest one still stuck in its head, which hears a 408."""
    with listener(mock, threads=4, timeout=30, max_connections=40) as server:
        crowd = Crowd(ctx, server.port)
        try:
            stuck = crowd.add(60, STALLS["half the headers"])
            health = exchange(server.port, ctx, health_request())
            assert health.status == 200
            oldest = read_reply(stuck[0])
            assert oldest.status == 408 and oldest.closes
            evicted = [s for s in stuck[1:] if not still_open(s)]
            assert len(evicted) >= 19
            assert evicted == stuck[1:1 + len(evicted)]  # the oldest went first
            assert all(still_open(s) for s in stuck[-30:])
        finally:
            crowd.close()


def test_a_keep_alive_connection_waits_off_the_workers_between_requests(
        mock: MockXero, ctx: ssl.SSLContext, crowd: Crowd) -> None:
    """Connections that were served once and then went quiet (the usual
    keep-alive pool of a test suite) hold no worker either."""
    quiet = crowd.add(24, b"")
    for sock in quiet:
        sock.sendall(health_request(close=False))
        assert read_reply(sock).status == 200
        sock.sendall(b"GET /_mockxero/health HTTP/1.1\r\nHo")  # the next request, half sent
    assert_good_client_served(mock, ctx)
    assert all(still_open(s) for s in quiet)


def test_the_head_has_one_deadline_however_slowly_it_trickles(mock: MockXero, ctx: ssl.SSLContext) -> None:
    """A byte every 0.3 s would renew a per-recv timeout for ever; the head's
    deadline counts from its first byte: 408, ``Connection: close``, closed."""
    with listener(mock, threads=2, timeout=30, header_timeout=1.0) as server, \
            open_tls(ctx, server.port) as trickler, open_tls(ctx, server.port) as half:
        half.sendall(b"GET /_mockxero/health HTTP/1.1\r\nHost: loc")
        start = time.monotonic()
        answer, sent = bytearray(), 0
        for byte in b"GET /_mockxero/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200:
            trickler.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.3)
            trickler.setblocking(False)
            try:
                answer += trickler.recv(4096)
                break
            except ssl.SSLWantReadError:
                continue
            finally:
                trickler.settimeout(PATIENCE)
        assert sent > 1  # it did trickle: each byte came in time for a per-recv timeout
        reply = read_reply(trickler, answer)
        assert time.monotonic() - start < 20  # not the 30 s socket timeout: behaviour, not speed
        assert reply.status == 408 and reply.closes
        assert closed_by_server(trickler)
        late = read_reply(half)
        assert late.status == 408 and late.closes
        assert closed_by_server(half)


# -- limits ---------------------------------------------------------------------------------------
def test_a_request_line_over_the_limit_is_414_and_closes(mock: MockXero, ctx: ssl.SSLContext) -> None:
    long_target = b"/api.xro/2.0/Contacts?where=" + b"A" * 40000
    reply = exchange(mock.port, ctx, b"GET " + long_target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.status == 414 and reply.closes
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert b"request line is longer than 32768 bytes" in reply.body
    # refused as soon as the limit passes: no need to wait for the line's end
    with open_tls(ctx, mock.port) as sock:
        sock.sendall(b"GET /" + b"a" * 33000)
        reply = read_reply(sock)
        assert reply.status == 414 and reply.closes
        assert closed_by_server(sock)


def test_too_many_or_too_large_headers_are_431_and_close(mock: MockXero, ctx: ssl.SSLContext) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    reply = exchange(mock.port, ctx, b"GET /_mockxero/health HTTP/1.1\r\n" + many + b"\r\n")
    assert reply.status == 431 and reply.closes
    assert b"More than 100 header fields" in reply.body

    large = b"X-Big: " + b"b" * 70000 + b"\r\n"
    reply = exchange(mock.port, ctx, b"GET /_mockxero/health HTTP/1.1\r\nHost: x\r\n" + large + b"\r\n")
    assert reply.status == 431 and reply.closes
    assert b"request head is larger than 65536 bytes" in reply.body


def test_heads_within_the_limits_are_served(mock: MockXero, ctx: ssl.SSLContext) -> None:
    hundred = b"".join(b"X-H%d: v\r\n" % i for i in range(99))
    reply = exchange(mock.port, ctx, b"GET /_mockxero/health HTTP/1.1\r\nHost: x\r\n" + hundred + b"\r\n")
    assert reply.status == 200 and not reply.closes
    big = b"X-Big: " + b"b" * 60000 + b"\r\n"
    reply = exchange(mock.port, ctx, b"GET /_mockxero/health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert reply.status == 200
    long_query = b"GET /_mockxero/health?q=" + b"q" * 30000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = exchange(mock.port, ctx, long_query)
    assert reply.status == 200


# -- framing --------------------------------------------------------------------------------------
POST = b"POST /oauth/RequestToken HTTP/1.1\r\nHost: localhost\r\n"
BROKEN_FRAMING = {
    "two different Content-Lengths": POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nx=1&y",
    "Content-Length -1": POST + b"Content-Length: -1\r\n\r\n",
    "Content-Length not a number": POST + b"Content-Length: five\r\n\r\nx=1&y",
    "Content-Length as a list": POST + b"Content-Length: 5, 5\r\n\r\nx=1&y",
    "Content-Length and Transfer-Encoding": POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                   b"0\r\n\r\n",
    "chunked not last": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "chunked twice": POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunk size beyond 64 bits": POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" + b"0" * 17
                                 + b"\r\nabc\r\n",
    "chunk size not hex": POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk size negative": POST + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n",
    "chunk without its CRLF": POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
    "chunk-size line without CRLF": POST + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    "bare LF line endings": b"GET /_mockxero/health HTTP/1.1\nHost: x\n\n",
    "space before the colon": b"GET /_mockxero/health HTTP/1.1\r\nHost : x\r\n\r\n",
    "header line without a colon": b"GET /_mockxero/health HTTP/1.1\r\nHost x\r\n\r\n",
    # cheroot's folding crashed on this one with UnboundLocalError: a 500
    "white space before the first header": b"GET /_mockxero/health HTTP/1.1\r\n Host: x\r\n\r\n",
    "obsolete line folding": b"GET /_mockxero/health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n",
    "Transfer-Encoding on HTTP/1.0": b"POST /oauth/RequestToken HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
                                     b"\r\n0\r\n\r\n",
    "an empty request line": b"\r\n\r\n",
    "a request line of garbage": b"GARBAGE\r\n\r\n",
    "a lower-case method": b"get /_mockxero/health HTTP/1.1\r\nHost: x\r\n\r\n",
    "an absolute target": b"GET https://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", BROKEN_FRAMING.values(), ids=BROKEN_FRAMING.keys())
def test_broken_framing_is_a_400_at_once_and_the_connection_closes(
        mock: MockXero, ctx: ssl.SSLContext, request_bytes: bytes) -> None:
    with open_tls(ctx, mock.port) as sock:
        sock.sendall(request_bytes)
        reply = read_reply(sock)  # within PATIENCE, not after the 30 s socket timeout
        assert reply.status == 400, (reply.status, reply.body)
        assert reply.closes
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        assert closed_by_server(sock)
    assert_good_client_served(mock, ctx)
    assert all(e["status"] < 500 for e in mock.journal())


def test_an_unknown_transfer_coding_is_501_and_closes(mock: MockXero, ctx: ssl.SSLContext) -> None:
    reply = exchange(mock.port, ctx, POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    assert reply.status == 501 and reply.closes


def test_cheroots_own_refusals_say_connection_close(mock: MockXero, ctx: ssl.SSLContext) -> None:
    """Answers cheroot makes itself, after the head passed our checks."""
    reply = exchange(mock.port, ctx, b"GET /_mockxero/health HTTP/2.0\r\nHost: x\r\n\r\n")
    assert reply.status == 505 and reply.closes
    reply = exchange(mock.port, ctx, b"GET /_mockxero/health#frag HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.status == 400 and reply.closes


# -- what must keep working -----------------------------------------------------------------------
def test_a_chunked_body_reaches_the_application_whole(mock: MockXero, ctx: ssl.SSLContext) -> None:
    body = b'{"advance": 90}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:4], body[4:9], body[9:]))
    with open_tls(ctx, mock.port) as sock:
        sock.sendall(b"POST /_mockxero/clock HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.2)  # the body in later segments, a trailer at the end
        sock.sendall(chunks + b"0;ext=1\r\nX-Trailer: t\r\n\r\n")
        reply = read_reply(sock)
        assert reply.status == 200, reply.body
        assert not reply.closes
        sock.sendall(health_request())  # and the connection carries on
        assert read_reply(sock).status == 200


def test_bodies_in_later_segments_large_bodies_and_pipelining(mock: MockXero, ctx: ssl.SSLContext) -> None:
    with open_tls(ctx, mock.port) as sock:
        sock.sendall(b"POST /_mockxero/clock HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 15\r\n\r\n")
        time.sleep(0.2)
        sock.sendall(b'{"advance": 90}')
        assert read_reply(sock).status == 200
        # a body larger than what is read with the head goes to the worker as it comes
        big = b'{"advance": 30, "pad": "' + b"p" * 200000 + b'"}'
        sock.sendall(b"POST /_mockxero/clock HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(big) + big[:1000])
        time.sleep(0.2)
        sock.sendall(big[1000:])
        assert read_reply(sock).status < 500
        # three requests in one write: three answers, in order
        sock.sendall(health_request(close=False) + b"GET /_mockxero/clock HTTP/1.1\r\nHost: x\r\n\r\n"
                     + health_request(close=True))
        buffered = bytearray()
        replies = [read_reply(sock, buffered) for _ in range(3)]
        assert [r.status for r in replies] == [200, 200, 200]
        assert b"frozen" in replies[1].body or b"now" in replies[1].body
        assert replies[2].closes and closed_by_server(sock)


def test_expect_100_continue_is_answered_before_the_body(mock: MockXero, ctx: ssl.SSLContext) -> None:
    with open_tls(ctx, mock.port) as sock:
        sock.sendall(b"POST /_mockxero/clock HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 15\r\nExpect: 100-continue\r\n\r\n")
        interim = read_reply(sock)
        assert interim.status == 100
        sock.sendall(b'{"advance": 90}')
        assert read_reply(sock).status == 200


def test_a_refused_client_still_sending_reads_the_answer_not_a_reset(
        mock: MockXero, ctx: ssl.SSLContext) -> None:
    """The 431 goes out while the client is still sending its oversized
    head; the server drains before it closes, so the client gets the answer."""
    with open_tls(ctx, mock.port) as sock:
        sock.sendall(b"GET /_mockxero/health HTTP/1.1\r\n" + b"X-Big: " + b"b" * 200000)
        with contextlib.suppress(OSError):
            sock.sendall(b"b" * 100000 + b"\r\n\r\n")
        reply = read_reply(sock)
        assert reply.status == 431 and reply.closes


def test_the_settings_carry_the_transport_limits(tmp_path: Path) -> None:
    from mockxero.settings import Settings, SettingsError

    settings = Settings.from_env({"MOCKXERO_MAX_REQUEST_LINE": "4096", "MOCKXERO_HEADER_TIMEOUT": "2.5",
                                  "MOCKXERO_MAX_HEADER_BYTES": "16384", "MOCKXERO_MAX_HEADER_COUNT": "50"})
    assert (settings.max_request_line, settings.max_header_bytes, settings.max_header_count,
            settings.header_timeout) == (4096, 16384, 50, 2.5)
    defaults = Settings()
    assert (defaults.max_request_line, defaults.max_header_bytes, defaults.max_header_count,
            defaults.header_timeout) == (32768, 65536, 100, 10.0)
    for bad in ({"MOCKXERO_HEADER_TIMEOUT": "0"}, {"MOCKXERO_MAX_HEADER_COUNT": "0"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)


def test_the_head_limits_are_settings_of_the_mock(tmp_path_factory: pytest.TempPathFactory) -> None:
    """MockXero hands its settings to the listener (MOCKXERO_MAX_REQUEST_LINE ...)."""
    certs = tmp_path_factory.mktemp("limits-certs")
    with MockXero(port=0, certs=certs, max_request_line=100, max_header_count=3) as small:
        ctx = tls_context(small)
        head = b" HTTP/1.1\r\nHost: x\r\n"
        line = exchange(small.port, ctx, b"GET /_mockxero/health?" + b"a" * 150 + head + b"\r\n")
        assert line.status == 414 and b"longer than 100 bytes" in line.body
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(4))
        many = exchange(small.port, ctx, b"GET /_mockxero/health" + head + headers + b"\r\n")
        assert many.status == 431
        fine = exchange(small.port, ctx, b"GET /_mockxero/health" + head + b"Connection: close\r\n\r\n")
        assert fine.status == 200


def test_closed_connections_are_freed_without_the_cycle_collector(mock: MockXero,
                                                                 ctx: ssl.SSLContext) -> None:
    """Each connection's OpenSSL state goes when it closes, not whenever
    Python's cycle collector next runs (RSS used to climb with traffic)."""
    from mockxero.tls import _Connection

    def alive() -> int:
        return sum(isinstance(o, _Connection) for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = alive()
        for _ in range(30):
            reply = exchange(mock.port, ctx,
                             b"GET /_mockxero/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert reply.status == 200
        deadline = time.monotonic() + 10
        while alive() > before + 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # the selector lets go of the last ones
        assert alive() <= before + 5
    finally:
        gc.enable()
