"""Memory and scale, side by side with the bare stack.

1. Resident memory (VmRSS from /proc) of the server process after 10 000
   and 100 000 signed API calls, each with a fresh nonce (every nonce is
   remembered for the 30-minute timestamp window), against the bare stack
   after as many requests. The calls are a public (HMAC-SHA1) app's — its
   nonces are stored like any other consumer's, and HMAC is cheap enough
   to sign 100 000 requests on the fly — over two keep-alive connections.
2. Bytes per nonce inside the store (tracemalloc, in-process): 100 000
   nonces as oauthlib makes them remembered by ``Store.remember_nonce``,
   against the plain structure it replaced (a set of (consumer key, nonce)
   pairs and a heap of (forget at, consumer key, nonce)), 200 a second.
3. Latency of a signed API call (keep-alive) and of the AccessToken
   exchange (new connection; it stores a connection) with 10 and with
   50 000 connections stored, each mock populated through the Python API
   (``Store.connect``) before it serves.

    python bench/bench_memory.py [--requests 10000,100000] [--connections 50000]
                                 [--skip-rss] [--skip-nonces] [--skip-connections]
"""

from __future__ import annotations

import argparse
import gc
import heapq
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

from _common import (
    API,
    TLS,
    Conn,
    Server,
    Signer,
    access_token_request,
    dance,
    expect,
    machine,
    median,
    once,
    print_table,
    request,
    request_token_and_verifier,
    signed_get,
    start_harness,
)


def drive(server: Server, tls: TLS, make: list[Callable[[], bytes]], count: int) -> float:
    """Send ``count`` requests over len(make) connections; seconds taken.
    ``make[i]()`` gives connection i's next request."""
    conns = [tls.connect(server.url) for _ in make]
    per = [count // len(make) + (1 if i < count % len(make) else 0) for i in range(len(make))]
    errors: list[BaseException] = []

    def work(conn: Conn, next_request: Callable[[], bytes], n: int) -> None:
        try:
            for _ in range(n):
                expect(*conn.send(next_request()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=job) for job in zip(conns, make, per, strict=True)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def rss(args: argparse.Namespace, certs: Path) -> None:
    checkpoints = sorted(int(x) for x in args.requests.split(","))
    with start_harness("mock", certs, "--public") as mock, start_harness("bare", certs) as bare:
        tls = TLS(certs)
        public = mock.info["public"]
        signer = Signer(public["consumer_key"], consumer_secret=public["consumer_secret"])
        tokens = dance(tls, mock.url, signer)
        bare_ping = request("GET", "/ping", bare.url.split("//", 1)[1])

        def mock_request() -> bytes:
            return signed_get(signer, mock.url, API, tokens)

        rows = []
        # warm both with a few hundred requests, then take the starting RSS
        drive(mock, tls, [mock_request] * 2, 200)
        drive(bare, tls, [lambda: bare_ping] * 2, 200)
        start = {"mock": mock.rss_mib(), "bare": bare.rss_mib()}
        rows.append(("after warm-up (200)", f"{start['bare']:.1f}", f"{start['mock']:.1f}", "", ""))
        done = 0
        for point in checkpoints:
            n = point - done
            seconds = {"mock": drive(mock, tls, [mock_request] * 2, n),
                       "bare": drive(bare, tls, [lambda: bare_ping] * 2, n)}
            done = point
            now = {"mock": mock.rss_mib(), "bare": bare.rss_mib()}
            grown = {k: (now[k] - start[k]) * 1024 * 1024 / point for k in now}
            rows.append((f"after {point:,} requests", f"{now['bare']:.1f}", f"{now['mock']:.1f}",
                         f"{grown['bare']:.0f}", f"{grown['mock']:.0f}"))
            print(f"  {point:,} sent (mock {n / seconds['mock']:.0f} req/s, "
                  f"bare {n / seconds['bare']:.0f} req/s)", flush=True)
    print("Resident memory (MiB) and growth per request since the warm-up (bytes)")
    print_table(["", "bare MiB", "mock MiB", "bare B/req", "mock B/req"], rows)


class PlainNonces:
    """The structure the store used before (for the side-by-side figure)."""

    def __init__(self) -> None:
        self.nonces: set[tuple[str, str]] = set()
        self.expiry: list[tuple[float, str, str]] = []

    def remember_nonce(self, ck: str, nonce: str, forget_at: float, now: float) -> bool:
        while self.expiry and self.expiry[0][0] <= now:
            _, c, n = heapq.heappop(self.expiry)
            self.nonces.discard((c, n))
        if (ck, nonce) in self.nonces:
            return False
        self.nonces.add((ck, nonce))
        heapq.heappush(self.expiry, (forget_at, ck, nonce))
        return True


def nonce_bytes(count: int) -> None:
    from oauthlib.common import generate_nonce

    from mockxero.store import Store

    consumer = "A" * 30
    nonces = [generate_nonce() for _ in range(count)]
    start = time.time()
    rows = []
    for name, make in (("plain set + heap (before)", PlainNonces), ("Store (digests in buckets)", Store)):
        gc.collect()
        tracemalloc.start()
        holder = make()
        base = tracemalloc.get_traced_memory()[0]
        for i, nonce in enumerate(nonces):
            # a fresh copy of the text, as each request parses its own
            # forget at = the whole-second timestamp + the window + 1, as the verifier has it
            now = start + i / 200
            holder.remember_nonce(consumer, "".join(nonce), int(now) + 1801, now)
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        rows.append((name, f"{used / count:.0f}"))
        del holder
    print(f"Memory per remembered nonce, {count:,} nonces at 200 a second")
    print_table(["", "bytes per nonce"], rows)


def connections(args: argparse.Namespace, certs: Path) -> None:
    sizes = (10, args.connections)
    servers: dict[int, Server] = {}
    try:
        for size in sizes:
            servers[size] = start_harness("mock", certs, "--connections", str(size))
            print(f"  stored {size:,} connections in {servers[size].info['populate_seconds']} s", flush=True)
        tls = TLS(certs)
        signer = Signer.demo(certs)
        call: dict[int, list[float]] = {s: [] for s in sizes}
        exchange: dict[int, list[float]] = {s: [] for s in sizes}
        for _ in range(args.rounds):
            for size in sizes:
                server = servers[size]
                # the exchange leg: dance() times the legs together; time it alone
                times: list[float] = []
                for _ in range(20):
                    tokens, seconds = timed_exchange(tls, server.url, signer)
                    times.append(seconds)
                exchange[size].append(median(times))
                batch = [signed_get(signer, server.url, API, tokens) for _ in range(200)]
                conn = tls.connect(server.url)
                expect(*conn.send(request("GET", "/_mockxero/health", conn.host)))
                lat = []
                for raw in batch:
                    t = time.perf_counter()
                    expect(*conn.send(raw))
                    lat.append(time.perf_counter() - t)
                conn.close()
                call[size].append(median(lat))
    finally:
        for server in servers.values():
            server.stop()
    small, large = sizes
    rows = [
        ("signed API call (keep-alive)", f"{median(call[small]) * 1e3:.3f}",
         f"{median(call[large]) * 1e3:.3f}", f"{median(call[large]) / median(call[small]):.2f}"),
        ("AccessToken exchange (new connection)", f"{median(exchange[small]) * 1e3:.3f}",
         f"{median(exchange[large]) * 1e3:.3f}", f"{median(exchange[large]) / median(exchange[small]):.2f}"),
    ]
    print("Median latency (ms) by stored connections")
    print_table(["", f"{small:,}", f"{large:,}", "ratio"], rows)


def timed_exchange(tls: TLS, url: str, signer: Signer) -> tuple[dict[str, str], float]:
    """A dance whose AccessToken leg alone is timed."""
    rt, verifier, _ = request_token_and_verifier(tls, url, signer)
    raw = access_token_request(url, signer, rt, verifier)
    start = time.perf_counter()
    tokens = dict(parse_qsl(once(tls, url, raw).decode()))
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", default="10000,100000")
    parser.add_argument("--connections", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-nonces", action="store_true")
    parser.add_argument("--skip-connections", action="store_true")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        from mockxero.certs import CertBundle
        CertBundle.ensure(certs)
        if not args.skip_rss:
            rss(args, certs)
        if not args.skip_nonces:
            nonce_bytes(100_000)
        if not args.skip_connections:
            connections(args, certs)


if __name__ == "__main__":
    main()
