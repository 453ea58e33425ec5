"""The whole dance per second, and its median, against a baseline of the
same number of bare-stack requests on new connections.

One dance, as a client library does it, each leg on a new mutual-TLS
connection (``Connection: close``): RequestToken (RSA-SHA1, oob) →
authorize through the control API → AccessToken → one signed
``GET /api.xro/2.0/Organisation``. The baselines are four ``GET /ping``,
each on a new connection, to a trivial Flask endpoint with the same
certificates: on stock cheroot + pyOpenSSL (``bare``; its adapter polls a
pending handshake every 10 ms) and on the mock's own listener
(``listener``; handshakes in the selector). The client signs
with oauthlib (what requests-oauthlib uses); its signing time is reported
on its own so the server's share can be read off. Dances and baselines
take turns, one each, so drift hits all alike.

    python bench/bench_dance.py [--dances 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import (
    API,
    TLS,
    Signer,
    dance,
    machine,
    median,
    once,
    print_table,
    request,
    signed_get,
    start_harness,
    start_mock_cli,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dances", type=int, default=200)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        with (start_mock_cli(certs) as mock, start_harness("bare", certs) as bare,
              start_harness("listener", certs) as listener):
            tls = TLS(certs)
            signer = Signer.demo(certs)
            baselines = {"bare": bare, "listener": listener}
            pings = {k: request("GET", "/ping", s.url.split("//", 1)[1], close=True)
                     for k, s in baselines.items()}
            dances: list[float] = []
            signing: list[float] = []
            times: dict[str, list[float]] = {k: [] for k in baselines}
            cpu = {"mock": 0.0, "bare": 0.0, "listener": 0.0}
            dance(tls, mock.url, signer)  # warm all
            for name, server in baselines.items():
                once(tls, server.url, pings[name])
            for _ in range(args.dances):
                before = mock.cpu_seconds()
                start = time.perf_counter()
                tokens = dance(tls, mock.url, signer, signing)
                t = time.perf_counter()
                call = signed_get(signer, mock.url, API, tokens, close=True)
                signing[-1] += time.perf_counter() - t
                once(tls, mock.url, call)
                dances.append(time.perf_counter() - start)
                cpu["mock"] += mock.cpu_seconds() - before
                for name, server in baselines.items():
                    before = server.cpu_seconds()
                    start = time.perf_counter()
                    for _ in range(4):
                        once(tls, server.url, pings[name])
                    times[name].append(time.perf_counter() - start)
                    cpu[name] += server.cpu_seconds() - before
    n = args.dances
    ms = 1000.0
    rows = [("dance (4 legs)", f"{n / sum(dances):.1f}", f"{median(dances) * ms:.2f}",
             f"{median(signing) * ms:.2f}", f"{cpu['mock'] / n * ms:.2f}")]
    rows += [(f"{name}: 4 requests", f"{n / sum(times[name]):.1f}", f"{median(times[name]) * ms:.2f}", "0",
              f"{cpu[name] / n * ms:.2f}") for name in baselines]
    print(f"{n} dances; each leg, and each baseline request, on a new connection")
    print_table(["", "per second", "median ms", "client signing ms", "server CPU ms"], rows)
    for name in baselines:
        print(f"{name}/dance: median time {median(times[name]) / median(dances):.2f}, "
              f"without the client's signing {median(times[name]) / (median(dances) - median(signing)):.2f}, "
              f"server CPU {cpu[name] / cpu['mock']:.2f}")


if __name__ == "__main__":
    main()
