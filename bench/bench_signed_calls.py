"""Signed API calls per second against the bare stack, at 1 and 4 client
threads, side by side in one run.

* mock: ``mockxero serve --rate-limit off``; a signed (RSA-SHA1), mutual-TLS,
  keep-alive ``GET /api.xro/2.0/Organisation`` (``Accept: application/json``)
  for the demo partner app, connected through the dance first.
* bare: stock cheroot + pyOpenSSL, the same certificates and worker count,
  serving a trivial Flask endpoint (``_servers.py bare``): the goal's
  baseline.
* listener: the same trivial endpoint on the mock's own listener
  (``mockxero.tls``), to tell the mock's own cost from its transport's.

Both are subprocesses. Every signed request is signed before the clock
starts (each needs its own nonce). Two clients: ``raw`` (a TLS socket and
hand-written HTTP/1.1, so the figure is nearly all server) and ``requests``
(a ``requests.Session`` per thread, as a user's integration would send
them). Rounds rotate the servers' order to cancel drift on a shared machine; the
ratios are taken per round, then the median. ``server CPU`` is the server
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
    names = ("bare", "listener", "mock")
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        with (start_mock_cli(certs) as mock, start_harness("bare", certs) as bare,
              start_harness("listener", certs) as listener):
            servers = {"bare": bare, "listener": listener, "mock": mock}
            tls = TLS(certs)
            signer = Signer.demo(certs)
            tokens = dance(tls, mock.url, signer)
            for threads in (int(t) for t in args.threads.split(",")):
                for client in args.clients.split(","):
                    rates: dict[str, list[float]] = {k: [] for k in names}
                    cpu: dict[str, list[float]] = {k: [] for k in names}
                    ratios: dict[str, list[float]] = {"bare": [], "listener": []}
                    for rnd in range(args.rounds):
                        signed = [signed_get(signer, mock.url, API, tokens) for _ in range(n)]
                        order = names[rnd % 3:] + names[:rnd % 3]  # rotate who goes first
                        for name in order:
                            server = servers[name]
                            before = server.cpu_seconds()
                            if client == "raw":
                                batch = (signed if name == "mock" else
                                         [request("GET", "/ping", server.url.split("//", 1)[1])] * n)
                                seconds = run_raw(tls, server.url, split(batch, threads),
                                                  "/_mockxero/health" if name == "mock" else "/ping")
                            else:
                                headers: list[dict[str, str] | None] = (
                                    [{"Accept": "application/json", "Authorization": _auth_of(raw)}
                                     for raw in signed] if name == "mock" else [None] * n)
                                seconds = run_requests(certs, server.url, split(headers, threads),  # type: ignore[arg-type]
                                                       API if name == "mock" else "/ping")
                            cpu[name].append((server.cpu_seconds() - before) / n * 1e6)
                            rates[name].append(n / seconds)
                        for base in ratios:
                            ratios[base].append(rates["mock"][-1] / rates[base][-1])
                    rows.append((f"{threads} thread{'s' if threads > 1 else ''}, {client}",
                                 *(f"{median(rates[k]):.0f}" for k in names),
                                 spread(ratios["bare"]), spread(ratios["listener"]),
                                 *(f"{median(cpu[k]):.0f}" for k in names)))
    print(f"{n} requests per round and server, {args.rounds} rounds; medians (ratios: min-max)")
    print_table(["client", "bare req/s", "listener req/s", "signed req/s", "signed/bare",
                 "signed/listener", "bare CPU µs", "listener CPU µs", "signed CPU µs"], rows)


def _auth_of(raw: bytes) -> str:
    for line in raw.decode().split("\r\n"):
        if line.startswith("Authorization: "):
            return line[len("Authorization: "):]
    raise ValueError("no Authorization header")


if __name__ == "__main__":
    main()
