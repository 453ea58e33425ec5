"""Shared pieces of the benchmarks: the servers as subprocesses, a small
TLS HTTP/1.1 client, OAuth signing, the dance, and the table printer.

Servers run as their own processes so that client and server do not share
a GIL (these machines have two cores: one each). The client side is kept
cheap — requests are signed before the clock starts where possible and sent
over raw TLS sockets — so that the figures are the server's."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import oauthlib.oauth1
from cryptography.hazmat.primitives.serialization import load_pem_private_key

BENCH = Path(__file__).resolve().parent
API = "/api.xro/2.0/Organisation"


# -- servers ----------------------------------------------------------------------

class Server:
    """A server subprocess that printed ``Base URL https://...`` (the CLI's
    banner) or a JSON line with ``url`` (``_servers.py``)."""

    def __init__(self, argv: Sequence[str], name: str) -> None:
        self.name = name
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self.info: dict[str, Any] = {}
        assert self.proc.stdout is not None
        seen: list[str] = []
        for line in self.proc.stdout:
            seen.append(line)
            found = re.search(r"Base URL\s+(https://\S+)", line)
            if found:
                self.info = {"url": found.group(1)}
                break
            if line.startswith("{"):
                self.info = json.loads(line)
                break
        if "url" not in self.info:
            self.proc.kill()
            raise SystemExit(f"{name} did not start:\n{''.join(seen)}")
        self.url: str = self.info["url"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mib(self) -> float:
        """Resident memory now, from /proc (Linux)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert found is not None
        return int(found.group(1)) / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_mock_cli(certs: Path) -> Server:
    """``mockxero serve --rate-limit off`` on a free port."""
    return Server([sys.executable, "-m", "mockxero.cli", "serve", "--port", "0", "--certs", str(certs),
                   "--rate-limit", "off"], "mockxero serve")


def start_harness(kind: str, certs: Path, *options: str) -> Server:
    """``_servers.py``: the bare stack, or a mock built through the Python API."""
    return Server([sys.executable, str(BENCH / "_servers.py"), kind, "--certs", str(certs), *options],
                  kind)


# -- the client -------------------------------------------------------------------------

class TLS:
    """One client TLS context (the mock's CA, the Entrust client certificate)
    shared by every connection, as a long-lived HTTP client would."""

    def __init__(self, certs: Path) -> None:
        self.certs = certs
        self.context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        self.context.load_cert_chain(str(certs / "entrust-cert.pem"),
                                     str(certs / "entrust-private-nopass.pem"))

    def connect(self, url: str) -> Conn:
        return Conn(self, url)


class Conn:
    """One keep-alive HTTP/1.1 connection: send a request, read its response."""

    def __init__(self, tls: TLS, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.host = parts.netloc
        raw = socket.create_connection((parts.hostname, parts.port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.context.wrap_socket(raw, server_hostname=parts.hostname)
        self.buf = b""

    def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of one request."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        found = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if found is None:
            raise SystemExit(f"no Content-Length in {head!r}")
        length = int(found.group(1))
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def close(self) -> None:
        self.sock.close()


def request(method: str, path: str, host: str, headers: dict[str, str] | None = None,
            body: bytes = b"", close: bool = False) -> bytes:
    """The bytes of one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def once(tls: TLS, url: str, raw: bytes, expect: int = 200) -> bytes:
    """One request on a new connection (``Connection: close``); its body."""
    conn = tls.connect(url)
    try:
        status, body = conn.send(raw)
    finally:
        conn.close()
    if status != expect:
        raise SystemExit(f"expected {expect}, got {status}: {body[:300]!r}")
    return body


def expect(status: int, body: bytes, wanted: int = 200) -> None:
    if status != wanted:
        raise SystemExit(f"expected {wanted}, got {status}: {body[:300]!r}")


# -- signing ------------------------------------------------------------------------------

class Signer:
    """oauthlib's client (what requests-oauthlib uses), for one consumer."""

    def __init__(self, consumer_key: str, rsa_key_pem: bytes | None = None,
                 consumer_secret: str | None = None) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.rsa_key = load_pem_private_key(rsa_key_pem, None) if rsa_key_pem else None

    @classmethod
    def demo(cls, certs: Path) -> Signer:
        consumer = json.loads((certs / "consumer.json").read_text())
        return cls(consumer["consumer_key"], (certs / "privatekey.pem").read_bytes())

    def authorization(self, method: str, url: str, token: str | None = None,
                      token_secret: str | None = None, verifier: str | None = None,
                      callback: str | None = None) -> str:
        if self.rsa_key is not None:
            client = oauthlib.oauth1.Client(
                self.consumer_key, resource_owner_key=token, verifier=verifier, callback_uri=callback,
                signature_method=oauthlib.oauth1.SIGNATURE_RSA, rsa_key=self.rsa_key)
        else:
            client = oauthlib.oauth1.Client(
                self.consumer_key, client_secret=self.consumer_secret, resource_owner_key=token,
                resource_owner_secret=token_secret, verifier=verifier, callback_uri=callback,
                signature_method=oauthlib.oauth1.SIGNATURE_HMAC)
        _, headers, _ = client.sign(url, http_method=method)
        return str(headers["Authorization"])


def signed_get(signer: Signer, url: str, path: str, tokens: dict[str, str], close: bool = False) -> bytes:
    host = urlsplit(url).netloc
    auth = signer.authorization("GET", url + path, tokens["oauth_token"], tokens.get("oauth_token_secret"))
    return request("GET", path, host, {"Accept": "application/json", "Authorization": auth}, close=close)


def request_token_and_verifier(tls: TLS, url: str, signer: Signer) -> tuple[dict[str, str], str, float]:
    """RequestToken, then approval through the control API, each on a new
    connection: the request token pair, its verifier, and the client's own
    signing time."""
    host = urlsplit(url).netloc
    t = time.perf_counter()
    auth = signer.authorization("POST", url + "/oauth/RequestToken", callback="oob")
    signed = time.perf_counter() - t
    rt = dict(parse_qsl(once(tls, url, request("POST", "/oauth/RequestToken", host,
                                                {"Authorization": auth}, close=True)).decode()))
    body = json.dumps({"oauth_token": rt["oauth_token"]}).encode()
    verifier = json.loads(once(tls, url, request("POST", "/_mockxero/authorize", host,
                                                 {"Content-Type": "application/json"}, body,
                                                 close=True)))["oauth_verifier"]
    return rt, verifier, signed


def access_token_request(url: str, signer: Signer, rt: dict[str, str], verifier: str) -> bytes:
    """The AccessToken exchange, signed, as bytes to send on a new connection."""
    auth = signer.authorization("POST", url + "/oauth/AccessToken", rt["oauth_token"],
                                rt["oauth_token_secret"], verifier=verifier)
    return request("POST", "/oauth/AccessToken", urlsplit(url).netloc, {"Authorization": auth}, close=True)


def dance(tls: TLS, url: str, signer: Signer, sign_seconds: list[float] | None = None) -> dict[str, str]:
    """RequestToken → authorize through the control API → AccessToken, each
    leg on a new connection; the access token pair. ``sign_seconds`` collects
    the client's own signing time."""
    rt, verifier, signed = request_token_and_verifier(tls, url, signer)
    t = time.perf_counter()
    raw = access_token_request(url, signer, rt, verifier)
    signed += time.perf_counter() - t
    tokens = dict(parse_qsl(once(tls, url, raw).decode()))
    if sign_seconds is not None:
        sign_seconds.append(signed)
    return tokens


# -- reporting ----------------------------------------------------------------------------

def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min-max)``."""
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {sys.version.split()[0]}, "
            f"load average {load:.2f} at start")
