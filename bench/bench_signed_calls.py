"""Throughput of a signed API call against the bare stack, over one
keep-alive mutual-TLS connection.

The mock runs as its own process (``mockxero serve --rate-limit off``) so
that client and server do not share a GIL. Every signed request is signed
*before* the clock starts (each needs its own nonce), then the requests are
sent one after another over a raw TLS socket presenting the Entrust client
certificate, so the figure is the server's cost, not the client's.

    python bench/bench_signed_calls.py [--requests 2000] [--rounds 3]

"bare" is ``GET /_mockxero/health``: the same TLS listener, Flask app and
journal-free path, no OAuth. The goal (FINDINGS.md) is a signed API call at
no less than 70% of the bare rate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import oauthlib.oauth1
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from requests_oauthlib import OAuth1


def start_server(certs: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockxero.cli", "serve", "--port", "0", "--certs", str(certs),
         "--rate-limit", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        found = re.search(r"Base URL\s+(https://\S+)", line)
        if found:
            return proc, found.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("the mock did not start")


def connect(certs: Path, base: str, key: object) -> dict[str, str]:
    """The OAuth dance through requests-oauthlib; the access token pair."""
    consumer = json.loads((certs / "consumer.json").read_text())
    session = requests.Session()
    session.trust_env = False
    session.verify = str(certs / "ca.pem")
    session.cert = (str(certs / "entrust-cert.pem"), str(certs / "entrust-private-nopass.pem"))
    sig = oauthlib.oauth1.SIGNATURE_RSA
    r = session.post(base + "/oauth/RequestToken",
                     auth=OAuth1(consumer["consumer_key"], signature_method=sig, rsa_key=key))
    rt = dict(parse_qsl(r.text))
    v = session.post(base + "/_mockxero/authorize", json={"oauth_token": rt["oauth_token"]}).json()
    r = session.post(base + "/oauth/AccessToken", auth=OAuth1(
        consumer["consumer_key"], signature_method=sig, rsa_key=key,
        resource_owner_key=rt["oauth_token"], verifier=v["oauth_verifier"]))
    tokens = dict(parse_qsl(r.text))
    tokens["consumer_key"] = consumer["consumer_key"]
    return tokens


def presign(base: str, path: str, tokens: dict[str, str], key: object, n: int) -> list[bytes]:
    host = urlsplit(base).netloc
    client = oauthlib.oauth1.Client(tokens["consumer_key"], resource_owner_key=tokens["oauth_token"],
                                    signature_method=oauthlib.oauth1.SIGNATURE_RSA, rsa_key=key)
    out = []
    for _ in range(n):
        _, headers, _ = client.sign(base + path, http_method="GET")
        out.append((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
                    f"Authorization: {headers['Authorization']}\r\n\r\n").encode())
    return out


def plain(base: str, path: str, n: int) -> list[bytes]:
    host = urlsplit(base).netloc
    return [f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()] * n


def tls_socket(certs: Path, base: str) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / "entrust-cert.pem"), str(certs / "entrust-private-nopass.pem"))
    parts = urlsplit(base)
    raw = socket.create_connection((parts.hostname, parts.port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=parts.hostname)


def run(sock: ssl.SSLSocket, requests_: list[bytes], expect: int = 200) -> float:
    """Send each request, read its whole response; requests per second."""
    buf = b""
    start = time.perf_counter()
    for req in requests_:
        sock.sendall(req)
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, _, buf = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != expect:
            raise SystemExit(f"unexpected status {status}: {head.decode()} {buf[:200]!r}")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(buf) < length:
            buf += sock.recv(65536)
        buf = buf[length:]
    return len(requests_) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--path", default="/api.xro/2.0/Organisation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        proc, base = start_server(certs)
        try:
            key = load_pem_private_key((certs / "privatekey.pem").read_bytes(), None)
            tokens = connect(certs, base, key)
            results: dict[str, list[float]] = {"bare": [], "signed": []}
            for _ in range(args.rounds):
                bare = plain(base, "/_mockxero/health", args.requests)
                signed = presign(base, args.path, tokens, key, args.requests)
                with tls_socket(certs, base) as sock:
                    run(sock, bare[:50])  # warm-up
                    results["bare"].append(run(sock, bare))
                with tls_socket(certs, base) as sock:
                    results["signed"].append(run(sock, signed))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    bare_rate = statistics.median(results["bare"])
    signed_rate = statistics.median(results["signed"])
    print(json.dumps({
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "path": args.path,
        "bare_req_per_s": round(bare_rate, 1),
        "signed_req_per_s": round(signed_rate, 1),
        "bare_us_per_req": round(1e6 / bare_rate, 1),
        "signed_us_per_req": round(1e6 / signed_rate, 1),
        "signed_over_bare": round(signed_rate / bare_rate, 3),
        "all_rounds": {k: [round(x, 1) for x in v] for k, v in results.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
