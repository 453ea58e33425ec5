"""Signed API calls per second against the bare stack, at 1 and 4 client
threads, side by side in one run.

* mock: ``mockxero serve --rate-limit off``; a signed (RSA-SHA1), mutual-TLS,
  keep-alive ``GET /api.xro/2.0/Organisation`` (``Accept: application/json``)
  for the demo partner app, connected through the dance first.
* bare: the same listener (cheroot + pyOpenSSL, ``mockxero.tls``), the same
  certificates and worker count, serving a trivial Flask endpoint
  (``_servers.py bare``).

Both are subprocesses. Every signed request is signed before the clock
starts (each needs its own nonce). Two clients: ``raw`` (a TLS socket and
hand-written HTTP/1.1, so the figure is nearly all server) and ``requests``
(a ``requests.Session`` per thread, as a user's integration would send
them). Rounds alternate bare/mock to cancel drift on a shared machine; the
ratio is taken per round, then the median. ``server CPU`` is the server
process's own user+system time per request (from /proc), which the load of
other processes disturbs far less than wall time.

    python bench/bench_signed_calls.py [--requests 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from _common import (
    API,
    TLS,
    Server,
    Signer,
    dance,
    expect,
    machine,
    median,
    print_table,
    request,
    signed_get,
    spread,
    start_harness,
    start_mock_cli,
)


def run_raw(tls: TLS, url: str, batches: list[list[bytes]], warm: str) -> float:
    """Seconds for all batches, one thread and connection each."""
    conns = [tls.connect(url) for _ in batches]
    for conn in conns:  # the handshake and a first request are not counted
        expect(*conn.send(request("GET", warm, conn.host)))

    def work(conn: object, batch: list[bytes]) -> Callable[[], None]:
        def go() -> None:
            for raw in batch:
                expect(*conn.send(raw))  # type: ignore[attr-defined]
        return go

    return _threads([work(c, b) for c, b in zip(conns, batches, strict=True)], conns)


def run_requests(certs: Path, url: str, batches: list[list[dict[str, str] | None]],
                 path: str) -> float:
    sessions = []
    for _ in batches:
        s = requests.Session()
        s.trust_env = False
        s.verify = str(certs / "ca.pem")
        s.cert = (str(certs / "entrust-cert.pem"), str(certs / "entrust-private-nopass.pem"))
        s.get(url + "/_mockxero/health" if path != "/ping" else url + "/ping")  # warm
        sessions.append(s)

    def work(s: requests.Session, batch: list[dict[str, str] | None]) -> Callable[[], None]:
        def go() -> None:
            for headers in batch:
                r = s.get(url + path, headers=headers)
                expect(r.status_code, r.content)
        return go

    return _threads([work(s, b) for s, b in zip(sessions, batches, strict=True)], sessions)


def _threads(jobs: list[Callable[[], None]], closables: list[object]) -> float:
    barrier = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def wrap(job: Callable[[], None]) -> None:
        barrier.wait()
        try:
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in closables:
        c.close()  # type: ignore[attr-defined]
    if errors:
        raise errors[0]
    return elapsed


def split(items: list[bytes], n: int) -> list[list[bytes]]:
    return [items[i::n] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1500, help="per round and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,4")
    parser.add_argument("--clients", default="raw,requests")
    args = parser.parse_args()
    print(machine())
    n = args.requests
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        with start_mock_cli(certs) as mock, start_harness("bare", certs) as bare:
            tls = TLS(certs)
            signer = Signer.demo(certs)
            tokens = dance(tls, mock.url, signer)
            bare_host = bare.url.split("//", 1)[1]
            for threads in (int(t) for t in args.threads.split(",")):
                for client in args.clients.split(","):
                    rates: dict[str, list[float]] = {"bare": [], "mock": []}
                    cpu: dict[str, list[float]] = {"bare": [], "mock": []}
                    ratios = []
                    for rnd in range(args.rounds):
                        signed = [signed_get(signer, mock.url, API, tokens) for _ in range(n)]
                        plain = [request("GET", "/ping", bare_host)] * n
                        order: list[tuple[str, Server]] = [("bare", bare), ("mock", mock)]
                        for name, server in order if rnd % 2 == 0 else order[::-1]:
                            before = server.cpu_seconds()
                            if client == "raw":
                                batch = plain if name == "bare" else signed
                                seconds = run_raw(tls, server.url, split(batch, threads),
                                                  "/ping" if name == "bare" else "/_mockxero/health")
                            else:
                                headers: list[dict[str, str] | None] = (
                                    [None] * n if name == "bare" else
                                    [{"Accept": "application/json",
                                      "Authorization": _auth_of(raw)} for raw in signed])
                                seconds = run_requests(certs, server.url, split(headers, threads),  # type: ignore[arg-type]
                                                       "/ping" if name == "bare" else API)
                            cpu[name].append((server.cpu_seconds() - before) / n * 1e6)
                            rates[name].append(n / seconds)
                        ratios.append(rates["mock"][-1] / rates["bare"][-1])
                    rows.append((f"{threads} thread{'s' if threads > 1 else ''}, {client}",
                                 f"{median(rates['bare']):.0f}", f"{median(rates['mock']):.0f}",
                                 spread(ratios), f"{median(cpu['bare']):.0f}",
                                 f"{median(cpu['mock']):.0f}"))
    print(f"{n} requests per round and server, {args.rounds} rounds; medians (ratio: min-max)")
    print_table(["client", "bare req/s", "signed req/s", "signed/bare", "bare CPU µs/req",
                 "signed CPU µs/req"], rows)


def _auth_of(raw: bytes) -> str:
    for line in raw.decode().split("\r\n"):
        if line.startswith("Authorization: "):
            return line[len("Authorization: "):]
    raise ValueError("no Authorization header")


if __name__ == "__main__":
    main()
