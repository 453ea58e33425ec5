"""Signed API calls per second against the bare stack, at 1 and 4 client
threads, side by side in one run.

* signed: ``mockxero serve --rate-limit off``; a signed (RSA-SHA1),
  mutual-TLS, keep-alive ``GET /api.xro/2.0/Organisation``
  (``Accept: application/json``) for the demo partner app, connected
  through the dance first.
* bare: stock cheroot + pyOpenSSL, the same certificates and worker count,
  serving a trivial Flask endpoint (``_servers.py bare``): the goal's
  baseline.
* listener: the same trivial endpoint on the mock's own listener
  (``mockxero.tls``), to tell the mock's own cost from its transport's.

All three are subprocesses. Every signed request is signed before the clock
starts (each needs its own nonce). Two clients: ``raw`` (a TLS socket and
hand-written HTTP/1.1, so the figure is nearly all server) and ``requests``
(a ``requests.Session`` per thread, as a user's integration sends them).

On a shared machine the speed drifts by tens of percent within seconds, so
the servers take turns in short blocks (``--block`` requests each, the
order rotating) over connections kept open, and each ratio is the median
of the per-turn ratios. ``CPU µs`` is the server process's own user+system
time per request (from /proc).

    python bench/bench_signed_calls.py [--block 100] [--turns 30]
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
    Conn,
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

NAMES = ("bare", "listener", "signed")


class Client:
    """``threads`` keep-alive connections to one server, raw or through requests."""

    def __init__(self, kind: str, certs: Path, tls: TLS, url: str, threads: int, warm: str) -> None:
        self.kind, self.url = kind, url
        self.conns: list[Conn] = []
        self.sessions: list[requests.Session] = []
        for _ in range(threads):
            if kind == "raw":
                conn = tls.connect(url)
                expect(*conn.send(request("GET", warm, conn.host)))
                self.conns.append(conn)
            else:
                s = requests.Session()
                s.trust_env = False
                s.verify = str(certs / "ca.pem")
                s.cert = (str(certs / "entrust-cert.pem"), str(certs / "entrust-private-nopass.pem"))
                s.get(url + warm)
                self.sessions.append(s)
        self.host = url.split("//", 1)[1]

    def jobs(self, path: str, auths: list[str | None]) -> list[Callable[[], None]]:
        """One job per connection, sharing out the requests."""
        n = len(self.conns or self.sessions)
        shares = [auths[i::n] for i in range(n)]
        if self.kind == "raw":
            def raw_job(conn: Conn, share: list[str | None]) -> Callable[[], None]:
                raws = [request("GET", path, self.host, _headers(a)) for a in share]

                def go() -> None:
                    for raw in raws:
                        expect(*conn.send(raw))
                return go
            return [raw_job(c, s) for c, s in zip(self.conns, shares, strict=True)]

        def session_job(session: requests.Session, share: list[str | None]) -> Callable[[], None]:
            url = self.url + path

            def go() -> None:
                for a in share:
                    r = session.get(url, headers=_headers(a))
                    expect(r.status_code, r.content)
            return go
        return [session_job(s, share) for s, share in zip(self.sessions, shares, strict=True)]

    def close(self) -> None:
        for c in self.conns:
            c.close()
        for s in self.sessions:
            s.close()


def _headers(auth: str | None) -> dict[str, str]:
    return {"Accept": "application/json", "Authorization": auth} if auth else {}


def run(jobs: list[Callable[[], None]]) -> float:
    """Seconds for the jobs, each in its own thread (inline when alone)."""
    if len(jobs) == 1:
        start = time.perf_counter()
        jobs[0]()
        return time.perf_counter() - start
    errors: list[BaseException] = []

    def wrap(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(j,)) for j in jobs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--block", type=int, default=100, help="requests per turn")
    parser.add_argument("--turns", type=int, default=30, help="turns of each server per row")
    parser.add_argument("--threads", default="1,4")
    parser.add_argument("--clients", default="raw,requests")
    args = parser.parse_args()
    print(machine())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        with (start_mock_cli(certs) as mock, start_harness("bare", certs) as bare,
              start_harness("listener", certs) as listener):
            servers = {"bare": bare, "listener": listener, "signed": mock}
            tls = TLS(certs)
            signer = Signer.demo(certs)
            tokens = dance(tls, mock.url, signer)
            for threads in (int(t) for t in args.threads.split(",")):
                for kind in args.clients.split(","):
                    signed = [_auth(signed_get(signer, mock.url, API, tokens))
                              for _ in range(args.block * args.turns)]
                    clients = {name: Client(kind, certs, tls, s.url, threads,
                                            "/_mockxero/health" if name == "signed" else "/ping")
                               for name, s in servers.items()}
                    seconds: dict[str, list[float]] = {k: [] for k in NAMES}
                    cpu = dict.fromkeys(NAMES, 0.0)
                    for turn in range(args.turns):
                        order = NAMES[turn % 3:] + NAMES[:turn % 3]
                        for name in order:
                            auths = (signed[turn * args.block:(turn + 1) * args.block] if name == "signed"
                                     else [None] * args.block)
                            jobs = clients[name].jobs(API if name == "signed" else "/ping", auths)
                            before = servers[name].cpu_seconds()
                            seconds[name].append(run(jobs))
                            cpu[name] += servers[name].cpu_seconds() - before
                    for c in clients.values():
                        c.close()
                    n = args.block * args.turns
                    ratio = {base: [b / s for b, s in zip(seconds[base], seconds["signed"], strict=True)]
                             for base in ("bare", "listener")}
                    rows.append((f"{threads} thread{'s' if threads > 1 else ''}, {kind}",
                                 *(f"{args.block / median(seconds[k]):.0f}" for k in NAMES),
                                 spread(ratio["bare"]), spread(ratio["listener"]),
                                 *(f"{cpu[k] / n * 1e6:.0f}" for k in NAMES)))
    print(f"{args.turns} turns of {args.block} requests per server and row; "
          "req/s and ratios are medians over the turns (ratios: min-max)")
    print_table(["client", "bare req/s", "listener req/s", "signed req/s", "signed/bare",
                 "signed/listener", "bare CPU µs", "listener CPU µs", "signed CPU µs"], rows)


def _auth(raw: bytes) -> str:
    for line in raw.decode().split("\r\n"):
        if line.startswith("Authorization: "):
            return line[len("Authorization: "):]
    raise ValueError("no Authorization header")


if __name__ == "__main__":
    main()
