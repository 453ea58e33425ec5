"""What ``--state FILE`` costs: the same work against two ``mockxero serve``
processes, one in memory and one writing through to a state file, side by
side in the same run, taking turns.

    python bench/bench_state.py [--dances 150] [--requests 1500] [--rounds 5]

* dance: RequestToken, approve (control API), AccessToken, each leg on a new
  connection (``_common.dance``) — four durable writes;
* renewal: one durable write (retire the old token, store the new pair);
* signed read: ``GET /api.xro/2.0/Organisation``, signed beforehand, over one
  keep-alive connection; it never touches the file, so the ratio should be 1;
* signed write: ``POST Contacts`` of one new contact, the same way (one
  record written through).

Two figures per operation: wall time, and the server process's CPU time
(user + system, from /proc) — the CPU figure is the one to quote on a busy
machine, where wall time drifts with other load. Each is the median over
rounds of the mean per operation, with the ratio --state / memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from _common import API, TLS, Server, Signer, dance, expect, machine, print_table, request, signed_get


def start(certs: Path, *options: str) -> Server:
    return Server([sys.executable, "-m", "mockxero.cli", "serve", "--port", "0", "--certs", str(certs),
                   "--rate-limit", "off", *options], "mockxero serve " + " ".join(options))


def per_op(server: Server, n: int, work: Callable[[], object]) -> tuple[float, float]:
    """(wall µs, server CPU µs) per operation."""
    cpu, wall = server.cpu_seconds(), time.perf_counter()
    work()
    return (time.perf_counter() - wall) / n * 1e6, (server.cpu_seconds() - cpu) / n * 1e6


def measure(tls: TLS, signer: Signer, server: Server, args: argparse.Namespace,
            tag: str) -> dict[str, tuple[float, float]]:
    url, host = server.url, urlsplit(server.url).netloc
    out: dict[str, tuple[float, float]] = {}
    out["dance"] = per_op(server, args.dances, lambda: [dance(tls, url, signer) for _ in range(args.dances)])
    tokens = dance(tls, url, signer)
    conn = tls.connect(url)

    def renewals() -> None:
        for _ in range(args.dances):
            path = f"/oauth/AccessToken?oauth_session_handle={tokens['oauth_session_handle']}"
            auth = signer.authorization("POST", url + path, tokens["oauth_token"])
            status, body = conn.send(request("POST", path, host, {"Authorization": auth}))
            expect(status, body)
            tokens.update(parse_qsl(body.decode()))

    out["renewal"] = per_op(server, args.dances, renewals)
    reads = [signed_get(signer, url, API, tokens) for _ in range(args.requests)]
    out["signed read"] = per_op(server, len(reads), lambda: [expect(*conn.send(r)) for r in reads])
    writes = []
    for i in range(args.requests // 5):
        auth = signer.authorization("POST", url + "/api.xro/2.0/Contacts", tokens["oauth_token"])
        body = json.dumps({"Name": f"Bench {tag} {i}", "EmailAddress": f"b{i}@bench.example"}).encode()
        writes.append(request("POST", "/api.xro/2.0/Contacts", host,
                              {"Authorization": auth, "Accept": "application/json",
                               "Content-Type": "application/json"}, body))
    out["signed write"] = per_op(server, len(writes), lambda: [expect(*conn.send(w)) for w in writes])
    conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dances", type=int, default=150)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        with start(certs) as memory, start(certs, "--state", str(Path(tmp) / "state.sqlite")) as stateful:
            tls, signer = TLS(certs), Signer.demo(certs)
            results: dict[str, list[dict[str, tuple[float, float]]]] = {"memory": [], "state": []}
            servers = [("memory", memory), ("state", stateful)]
            for n in range(args.rounds):
                for name, server in servers if n % 2 == 0 else reversed(servers):  # A B, B A, ...
                    results[name].append(measure(tls, signer, server, args, f"{name}{n}"))
    rows = []
    for op in results["memory"][0]:
        row: list[object] = [op]
        for which in (0, 1):
            mem = statistics.median(r[op][which] for r in results["memory"])
            st = statistics.median(r[op][which] for r in results["state"])
            row += [f"{mem:.0f}", f"{st:.0f}", f"{st / mem:.3f}"]
        rows.append(row)
    print(f"µs per operation, median of {args.rounds} rounds")
    print_table(["", "wall memory", "wall --state", "ratio", "CPU memory", "CPU --state", "ratio"], rows)


if __name__ == "__main__":
    main()
