"""What ``--state FILE`` costs: the same work against two ``mockxero serve``
processes, one in memory and one writing through to a state file, side by
side in the same run, rounds interleaved.

    python bench/bench_state.py [--dances 150] [--requests 1500] [--rounds 3]

* dance: RequestToken, approve (control API), AccessToken — three durable
  writes — through requests + requests-oauthlib over one keep-alive
  mutual-TLS session (client-side signing included, the same for both);
* renewal: one durable write (retire the old token, store the new pair);
* signed read: a signed ``GET /api.xro/2.0/Organisation``, signed beforehand
  and sent over a raw TLS socket (the server's cost only); it never touches
  the file, so the ratio should be 1;
* signed write: a signed ``POST Contacts`` of one new contact, the same way
  (one record written through).

Two figures per operation: wall time, and the server process's CPU time
(user + system, from /proc) — the CPU figure is what to quote on a busy
machine, where wall time drifts with other load. Each is the median over
rounds of the mean per operation, with the ratio --state / memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import oauthlib.oauth1
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from requests_oauthlib import OAuth1

sys.path.insert(0, str(Path(__file__).parent))
from bench_signed_calls import presign, run, tls_socket

RSA = oauthlib.oauth1.SIGNATURE_RSA


def start(certs: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKXERO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockxero.cli", "serve", "--port", "0", "--certs", str(certs),
         "--rate-limit", "off", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"Base URL\s+(https://\S+)", line)
        if found:
            return proc, found.group(1)
    raise SystemExit("the mock did not start")


class Client:
    def __init__(self, certs: Path, base: str) -> None:
        self.base = base
        self.consumer = json.loads((certs / "consumer.json").read_text())["consumer_key"]
        self.key = load_pem_private_key((certs / "privatekey.pem").read_bytes(), None)
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(certs / "ca.pem")
        self.session.cert = (str(certs / "entrust-cert.pem"), str(certs / "entrust-private-nopass.pem"))

    def auth(self, token: str | None = None, verifier: str | None = None) -> OAuth1:
        return OAuth1(self.consumer, signature_method=RSA, rsa_key=self.key, resource_owner_key=token,
                      verifier=verifier)

    def dance(self) -> dict[str, str]:
        r = self.session.post(self.base + "/oauth/RequestToken", auth=self.auth())
        rt = dict(parse_qsl(r.text))
        v = self.session.post(self.base + "/_mockxero/authorize", json={"oauth_token": rt["oauth_token"]})
        r = self.session.post(self.base + "/oauth/AccessToken",
                              auth=self.auth(rt["oauth_token"], v.json()["oauth_verifier"]))
        assert r.status_code == 200, r.text
        tokens = dict(parse_qsl(r.text))
        tokens["consumer_key"] = self.consumer
        return tokens

    def renew(self, tokens: dict[str, str]) -> dict[str, str]:
        r = self.session.post(self.base + "/oauth/AccessToken", auth=self.auth(tokens["oauth_token"]),
                              params={"oauth_session_handle": tokens["oauth_session_handle"]})
        assert r.status_code == 200, r.text
        return {**tokens, **dict(parse_qsl(r.text))}


def presign_posts(base: str, tokens: dict[str, str], key: object, n: int, tag: str) -> list[bytes]:
    host = urlsplit(base).netloc
    path = "/api.xro/2.0/Contacts"
    client = oauthlib.oauth1.Client(tokens["consumer_key"], resource_owner_key=tokens["oauth_token"],
                                    signature_method=RSA, rsa_key=key)
    out = []
    for i in range(n):
        body = json.dumps({"Name": f"Bench {tag} {i}", "EmailAddress": f"b{i}@bench.example"}).encode()
        _, headers, _ = client.sign(base + path, http_method="POST")
        out.append((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"Authorization: {headers['Authorization']}\r\n\r\n").encode() + body)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_op(pid: int, n: int, work: Callable[[], object]) -> tuple[float, float]:
    """(wall µs, server CPU µs) per operation."""
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    work()
    return (time.perf_counter() - wall) / n * 1e6, (cpu_seconds(pid) - cpu) / n * 1e6


def measure(certs: Path, base: str, pid: int, args: argparse.Namespace,
            tag: str) -> dict[str, tuple[float, float]]:
    client = Client(certs, base)
    out: dict[str, tuple[float, float]] = {}

    def dances() -> None:
        for _ in range(args.dances):
            client.dance()

    out["dance"] = per_op(pid, args.dances, dances)
    state = {"tokens": client.dance()}

    def renewals() -> None:
        for _ in range(args.dances):
            state["tokens"] = client.renew(state["tokens"])

    out["renewal"] = per_op(pid, args.dances, renewals)
    tokens = state["tokens"]
    reads = presign(base, "/api.xro/2.0/Organisation", tokens, client.key, args.requests)
    with tls_socket(certs, base) as sock:
        out["signed read"] = per_op(pid, len(reads), lambda: run(sock, reads))
    writes = presign_posts(base, tokens, client.key, args.requests // 5, tag)
    with tls_socket(certs, base) as sock:
        out["signed write"] = per_op(pid, len(writes), lambda: run(sock, writes))
    client.session.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dances", type=int, default=150)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        memory, memory_url = start(certs)
        stateful, state_url = start(certs, "--state", str(Path(tmp) / "state.sqlite"))
        try:
            results: dict[str, list[dict[str, tuple[float, float]]]] = {"memory": [], "state": []}
            servers = [("memory", memory_url, memory.pid), ("state", state_url, stateful.pid)]
            for n in range(args.rounds):
                for name, url, pid in servers if n % 2 == 0 else reversed(servers):  # A B, B A, ...
                    results[name].append(measure(certs, url, pid, args, f"{name}{n}"))
        finally:
            for proc in (memory, stateful):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
    print(f"µs per operation, median of {args.rounds} rounds: memory | --state | ratio")
    for which, label in ((0, "wall"), (1, "server CPU")):
        print(f"{label}:")
        for op in results["memory"][0]:
            mem = statistics.median(r[op][which] for r in results["memory"])
            st = statistics.median(r[op][which] for r in results["state"])
            print(f"  {op:13} {mem:9.0f} | {st:9.0f} | {st / mem:5.3f}")


if __name__ == "__main__":
    main()
