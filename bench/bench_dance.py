"""The whole dance per second, and its median, against a baseline of the
same number of bare-stack requests on new connections.

One dance, as a client library does it, each leg on a new mutual-TLS
connection (``Connection: close``): RequestToken (RSA-SHA1, oob) →
authorize through the control API → AccessToken → one signed
``GET /api.xro/2.0/Organisation``. The baseline is four ``GET /ping`` on
the bare stack (cheroot + pyOpenSSL + a trivial Flask endpoint, the same
listener and certificates), each on a new connection. The client signs
with oauthlib (what requests-oauthlib uses); its signing time is reported
on its own so the server's share can be read off. Dances and baselines
alternate, one each, so drift hits both alike.

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
        with start_mock_cli(certs) as mock, start_harness("bare", certs) as bare:
            tls = TLS(certs)
            signer = Signer.demo(certs)
            bare_host = bare.url.split("//", 1)[1]
            ping = request("GET", "/ping", bare_host, close=True)
            dances: list[float] = []
            signing: list[float] = []
            baseline: list[float] = []
            cpu = {"mock": 0.0, "bare": 0.0}
            dance(tls, mock.url, signer)  # warm both
            once(tls, bare.url, ping)
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
                before = bare.cpu_seconds()
                start = time.perf_counter()
                for _ in range(4):
                    once(tls, bare.url, ping)
                baseline.append(time.perf_counter() - start)
                cpu["bare"] += bare.cpu_seconds() - before
    n = args.dances
    ms = 1000.0
    rows = [
        ("dance (4 legs)", f"{n / sum(dances):.1f}", f"{median(dances) * ms:.2f}",
         f"{median(signing) * ms:.2f}", f"{cpu['mock'] / n * ms:.2f}"),
        ("bare stack, 4 requests", f"{n / sum(baseline):.1f}", f"{median(baseline) * ms:.2f}", "0",
         f"{cpu['bare'] / n * ms:.2f}"),
    ]
    print(f"{n} dances; each leg on a new connection")
    print_table(["", "per second", "median ms", "client signing ms", "server CPU ms"], rows)
    print(f"bare/dance (median time): {median(baseline) / median(dances):.2f}; "
          f"without the client's signing: "
          f"{median(baseline) / (median(dances) - median(signing)):.2f}; "
          f"server CPU bare/dance: {cpu['bare'] / cpu['mock']:.2f}")


if __name__ == "__main__":
    main()
