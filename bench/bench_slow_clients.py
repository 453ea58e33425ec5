"""How long a good client waits while N slow clients hold connections open.

For each N the mock starts afresh as its own process (``mockxero serve``),
N connections finish their TLS handshake and then misbehave, and a good
client opens a new connection and asks for ``/_mockxero/health`` (and, with
--signed, makes a signed RequestToken call); the figure is its wall time,
capped at --patience seconds (reported as the cap when it never came).

Kinds of slow client (all after a complete handshake):
  half     sends half a request line and stops
  trickle  sends a request line one byte every --trickle seconds
  idle     sends nothing
  body     sends a head promising a 1 MB body, 64 KB of it, and stops

    python bench/bench_slow_clients.py [--counts 16,64,256] [--kinds half,trickle,idle]

The server's resident memory (VmRSS) is printed before and after as well.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import oauthlib.oauth1
from cryptography.hazmat.primitives.serialization import load_pem_private_key


def start_server(certs: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra_env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockxero.cli", "serve", "--port", "0", "--certs", str(certs),
         "--rate-limit", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"Base URL\s+(https://\S+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, found.group(1)
    proc.kill()
    raise SystemExit("the mock did not start")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def context(certs: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / "entrust-cert.pem"), str(certs / "entrust-private-nopass.pem"))
    return ctx


def open_tls(ctx: ssl.SSLContext, host: str, port: int, timeout: float) -> ssl.SSLSocket:
    raw = socket.create_connection((host, port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


LINE = b"GET /api.xro/2.0/Organisation HTTP/1.1\r\nHost: localhost\r\n\r\n"


def good_request(ctx: ssl.SSLContext, host: str, port: int, request: bytes, patience: float) -> float:
    start = time.perf_counter()
    try:
        with open_tls(ctx, host, port, patience) as sock:
            sock.sendall(request)
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return patience
    assert reply.startswith(b"HTTP/1.1 "), reply[:100]
    return min(time.perf_counter() - start, patience)


def signed_request(certs: Path, base: str) -> bytes:
    consumer = json.loads((certs / "consumer.json").read_text())
    key = load_pem_private_key((certs / "privatekey.pem").read_bytes(), None)
    client = oauthlib.oauth1.Client(consumer["consumer_key"], signature_method=oauthlib.oauth1.SIGNATURE_RSA,
                                    rsa_key=key)
    _, headers, _ = client.sign(base + "/oauth/RequestToken", http_method="POST")
    host = urlsplit(base).netloc
    return (f"POST /oauth/RequestToken HTTP/1.1\r\nHost: {host}\r\nAuthorization: {headers['Authorization']}"
            "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").encode()


def measure(certs: Path, kind: str, n: int, args: argparse.Namespace) -> dict[str, object]:
    proc, base = start_server(certs, {"MALLOC_ARENA_MAX": args.arenas} if args.arenas else {})
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    ctx = context(certs)
    slow: list[ssl.SSLSocket] = []
    stop = threading.Event()
    try:
        rss_before = rss_kib(proc.pid)
        for _ in range(n):
            sock = open_tls(ctx, host, port, 60)
            if kind in ("half", "trickle"):
                sock.sendall(LINE[:20] if kind == "half" else LINE[:1])
            elif kind == "body":
                sock.sendall(b"POST /oauth/RequestToken HTTP/1.1\r\nHost: localhost\r\n"
                             b"Content-Length: 1000000\r\n\r\n" + b"x" * 65536)
            slow.append(sock)

        def trickle() -> None:
            sent = 1
            while not stop.wait(args.trickle):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(LINE[sent % 20: sent % 20 + 1])
                sent += 1

        if kind == "trickle":
            threading.Thread(target=trickle, daemon=True).start()
        time.sleep(0.5)
        health = b"GET /_mockxero/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        waits = [good_request(ctx, host, port, health, args.patience)]
        if args.signed:
            waits.append(good_request(ctx, host, port, signed_request(certs, base), args.patience))
        still_open = 0
        for sock in slow:  # are the slow ones still held open (not yet timed out)?
            sock.setblocking(False)
            try:
                still_open += sock.recv(1) != b""
            except ssl.SSLWantReadError:
                still_open += 1
            except OSError:
                pass
        return {"kind": kind, "n": n, "good_wait_s": [round(w, 3) for w in waits],
                "slow_still_open": still_open, "rss_kib_before": rss_before,
                "rss_kib_after": rss_kib(proc.pid)}
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="16,64,256")
    parser.add_argument("--kinds", default="half,trickle,idle")
    parser.add_argument("--patience", type=float, default=30.0)
    parser.add_argument("--trickle", type=float, default=3.0)
    parser.add_argument("--signed", action="store_true", help="also time a signed RequestToken call")
    parser.add_argument("--arenas", default="", help="MALLOC_ARENA_MAX for the server process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        subprocess.run([sys.executable, "-m", "mockxero.cli", "certs", str(certs)], check=True,
                       capture_output=True)
        for kind in args.kinds.split(","):
            for n in (int(c) for c in args.counts.split(",")):
                print(json.dumps(measure(certs, kind, n, args)), flush=True)


if __name__ == "__main__":
    main()
