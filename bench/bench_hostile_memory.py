"""Resident memory of ``mockxero serve`` under the same hostile traffic,
twice, with a reset between (issue 11: the second pass should add at most
a few MB).

One pass, from 4 client threads at once: signed requests with 1 MB bodies
and a wrong signature, heads just under the limits (60 KB of headers, a
30 KB request line), heads over them (414 / 431), 1 MB chunked bodies,
broken framing, mutated signed requests, and 256 connections that stall
half-way through a request head. VmRSS is read from /proc after start-up,
after each pass and after each reset.

    python bench/bench_hostile_memory.py [--arenas 2] [--mmap-threshold 131072] [--passes 2]
                                         [--stalled 256] [--no-requests] [--no-bad-signatures]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import oauthlib.oauth1
from cryptography.hazmat.primitives.serialization import load_pem_private_key


def start_server(certs: Path, malloc: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    import re

    env = {**os.environ, "PYTHONUNBUFFERED": "1", **malloc}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockxero.cli", "serve", "--port", "0", "--certs", str(certs),
         "--rate-limit", "off"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"Base URL\s+(https://\S+)", line)
        if found:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, found.group(1)
    raise SystemExit("the mock did not start")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


class Client:
    def __init__(self, certs: Path, base: str) -> None:
        self.ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        self.ctx.load_cert_chain(str(certs / "entrust-cert.pem"), str(certs / "entrust-private-nopass.pem"))
        parts = urlsplit(base)
        self.host, self.port, self.base = parts.hostname or "127.0.0.1", parts.port or 443, base
        consumer = json.loads((certs / "consumer.json").read_text())
        self.consumer_key = consumer["consumer_key"]
        self.key = load_pem_private_key((certs / "privatekey.pem").read_bytes(), None)

    def connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=30)
        return self.ctx.wrap_socket(raw, server_hostname="localhost")

    def once(self, request: bytes) -> int:
        """Send on a new connection; the status (0 when the server just closed)."""
        try:
            with self.connect() as sock:
                sock.sendall(request)
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
                    if b"\r\n\r\n" in reply and b"Connection: close" not in reply.split(b"\r\n\r\n")[0]:
                        break
        except OSError:
            return 0
        return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0

    def signed(self, method: str, path: str, body: bytes = b"", extra_headers: str = "",
               break_signature: bool = False) -> bytes:
        client = oauthlib.oauth1.Client(self.consumer_key, signature_method=oauthlib.oauth1.SIGNATURE_RSA,
                                        rsa_key=self.key)
        _, headers, _ = client.sign(self.base + path, http_method=method)
        auth = headers["Authorization"]
        if break_signature:
            auth = auth.replace('oauth_signature="', 'oauth_signature="AAAA', 1)
        return (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: {auth}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\n{extra_headers}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def hostile_pass(client: Client, seed: int, bad_signatures: bool = True, stalled_count: int = 256,
                 requests: bool = True) -> dict[str, int]:
    rng = random.Random(seed)
    jobs: list[bytes] = []
    if bad_signatures:  # each journals its base string (issue 11, item 3: the application's part)
        jobs += [client.signed("POST", "/oauth/RequestToken", b"%" * 1_000_000, break_signature=True)] * 10
    big_headers = "".join(f"X-Pad-{i}: {'p' * 1000}\r\n" for i in range(60))
    jobs += [client.signed("POST", "/oauth/RequestToken", extra_headers=big_headers)] * 50
    long_line = f"GET /_mockxero/health?{'q' * 30000} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    jobs += [long_line.encode()] * 50
    jobs += [b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"] * 50
    jobs += [b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 70000 + b"\r\n\r\n"] * 50
    chunk = b"a" * 65536
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16)) + b"0\r\n\r\n"
    jobs += [b"POST /oauth/RequestToken HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
             b"Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n" + chunked] * 20
    jobs += [b"POST /oauth/RequestToken HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
             b"\r\n",
             b"POST /oauth/RequestToken HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             + b"f" * 30 + b"\r\n"] * 50
    for _ in range(400):  # signed requests with a parameter mangled
        path = rng.choice(["/oauth/RequestToken", "/oauth/AccessToken", "/api.xro/2.0/Organisation"])
        request = client.signed(rng.choice(["GET", "POST"]), path,
                                body=("x=" + quote(rng.choice(["%zz", "a" * 5000, "é", ""]))).encode())
        cut = rng.randrange(30, 200)
        jobs.append(request[:cut] + request[cut + rng.randrange(1, 20):] if rng.random() < 0.5 else request)
    rng.shuffle(jobs)
    if not requests:
        jobs = []
    statuses: dict[str, int] = {}
    stalled = []
    for _ in range(stalled_count):
        with contextlib.suppress(OSError):
            sock = client.connect()
            sock.sendall(b"GET /api.xro/2.0/Organisation HTTP/1.1\r\nHost: x\r\nX-A: ")
            stalled.append(sock)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for status in pool.map(client.once, jobs):
            statuses[str(status)] = statuses.get(str(status), 0) + 1
    for sock in stalled:
        sock.close()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arenas", default="", help="MALLOC_ARENA_MAX for the server (default: unset)")
    parser.add_argument("--mmap-threshold", default="",
                        help="MALLOC_MMAP_THRESHOLD_ for the server (default: unset, glibc's dynamic one)")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--stalled", type=int, default=256,
                        help="connections that stall half-way through a head, per pass")
    parser.add_argument("--no-requests", action="store_true",
                        help="only the stalled connections (to tell their share from the requests')")
    parser.add_argument("--no-bad-signatures", action="store_true",
                        help="leave out the 1 MB bodies with a wrong signature (the journal's share)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        malloc = {"MALLOC_ARENA_MAX": args.arenas, "MALLOC_MMAP_THRESHOLD_": args.mmap_threshold}
        proc, base = start_server(certs, {k: v for k, v in malloc.items() if v})
        try:
            client = Client(certs, base)
            report: dict[str, object] = {"MALLOC_ARENA_MAX": args.arenas or "unset",
                                         "MALLOC_MMAP_THRESHOLD_": args.mmap_threshold or "unset",
                                         "rss_mib_started": rss_mib(proc.pid)}
            for n in range(1, args.passes + 1):
                statuses = hostile_pass(client, seed=11, bad_signatures=not args.no_bad_signatures,
                                        stalled_count=args.stalled, requests=not args.no_requests)
                time.sleep(0.5)
                report[f"pass{n}_statuses"] = statuses
                report[f"rss_mib_after_pass{n}"] = rss_mib(proc.pid)
                reset = (b"POST /_mockxero/reset HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
                report[f"reset{n}_status"] = client.once(reset)
                report[f"rss_mib_after_reset{n}"] = rss_mib(proc.pid)
            if args.passes >= 2:
                report["second_pass_growth_mib"] = round(
                    float(report["rss_mib_after_reset2"]) - float(report["rss_mib_after_reset1"]), 1)  # type: ignore[arg-type]
            print(json.dumps(report, indent=1))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
