"""Where a signed API call's server time goes, in CPU microseconds per part.

In-process and without sockets: the parts of the OAuth check are called
directly on pre-signed requests (each with a fresh nonce), then the whole
Flask app is called through WSGI, for the signed
``GET /api.xro/2.0/Organisation`` and, beside it, a trivial Flask endpoint.
The transport (cheroot, TLS) is what ``bench_signed_calls.py`` adds on top.

    python bench/profile_signed_call.py [--requests 1000] [--batches 4] [--profile]

``--profile`` also prints a pyinstrument profile of the WSGI loop (needs
``pip install pyinstrument``).
"""

from __future__ import annotations

import argparse
import binascii
import io
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import oauthlib.oauth1
from _common import print_table
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from flask import Flask
from oauthlib.oauth1.rfc5849 import signature as rfc5849

from mockxero import MockXero, render
from mockxero import oauth as oauth_mod
from mockxero.tls import PEER_ENVIRON, PeerCertificate

PATH = "/api.xro/2.0/Organisation"
HOST = "localhost:8443"


def presign(mock: MockXero, token: str, n: int) -> list[str]:
    key = load_pem_private_key(mock.certs.application_key.encode(), None)
    client = oauthlib.oauth1.Client(mock.certs.consumer_key, resource_owner_key=token,
                                    signature_method=oauthlib.oauth1.SIGNATURE_RSA, rsa_key=key)
    return [client.sign(f"https://{HOST}{PATH}", http_method="GET")[1]["Authorization"]
            for _ in range(n)]


def peer_of(mock: MockXero) -> PeerCertificate:
    leaf = x509.load_pem_x509_certificate(mock.certs.read("entrust-cert.pem"))
    from cryptography.hazmat.primitives import hashes, serialization
    return PeerCertificate(leaf=leaf, chain=(), fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
                           pem=leaf.public_bytes(serialization.Encoding.PEM).decode())


def per_call_us(fn: Callable[[Any], object], items: list[Any], repeat: int = 5) -> float:
    """The best of ``repeat`` passes over ``items``, in this thread's CPU
    time: on a shared machine the wall clock also counts the time other
    processes had the core."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time_ns()
        for item in items:
            fn(item)
        best = min(best, (time.thread_time_ns() - start) / len(items) / 1000)
    return best


def per_call_us_fresh(fn: Callable[[Any], object], batches: list[list[Any]]) -> float:
    """The best pass, each over its own batch (for calls that use up a nonce)."""
    return min(per_call_us(fn, batch, 1) for batch in batches)


def environ(auth: str | None, path: str, peer: PeerCertificate | None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
        "REQUEST_URI": path, "SERVER_NAME": "localhost", "SERVER_PORT": "8443",
        "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": HOST, "HTTP_ACCEPT": "application/json",
        "wsgi.url_scheme": "https", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False, PEER_ENVIRON: peer,
    }
    if auth is not None:
        env["HTTP_AUTHORIZATION"] = auth
    return env


def wsgi_call(app: Any, env: dict[str, Any]) -> None:
    status: list[str] = []
    body = b"".join(app(env, lambda s, h, e=None: status.append(s)))
    if not status or not status[0].startswith("200"):
        raise SystemExit(f"unexpected answer {status} {body[:300]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=4,
                        help="fresh-nonce batches per figure; the best one counts")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args, MockXero(certs=Path(tmp), rate_limit=None))


def run(args: argparse.Namespace, mock: MockXero) -> None:
    n = args.requests
    store = mock.store
    org = store.organisation()
    conn = store.connect(mock.certs.consumer_key, org.organisation_id, mock.now(), 1800, 3600)
    peer = peer_of(mock)
    verifier = mock.verifier
    consumer = mock.demo_consumer

    def fresh(headers: list[str]) -> Iterator[oauth_mod.SignedRequest]:
        for h in headers:
            yield oauth_mod.SignedRequest("GET", f"https://{HOST}{PATH}", authorization=h, peer=peer)

    rows: list[tuple[str, float]] = []
    headers = presign(mock, conn.access_token, 3 * n)
    reqs = list(fresh(headers[:n]))
    params_of = [oauth_mod.collect(r) for r in reqs]
    rows.append(("parse header + collect parameters",
                 per_call_us(oauth_mod.collect, list(fresh(headers[:n])), 1)))
    rows.append(("consumer lookup", per_call_us(lambda r: store.consumer(r.oauth["oauth_consumer_key"]),
                                                reqs)))
    now = mock.verifier.mock_now()
    rows.append(("client certificate verdict (cached)",
                 per_call_us(lambda r: mock.cert_checker.check(consumer, r.peer, now), reqs)))
    rows.append(("timestamp", per_call_us(lambda r: verifier._timestamp(r.oauth["oauth_timestamp"]), reqs)))
    rows.append(("nonce seen?", per_call_us(lambda r: store.nonce_seen(consumer.consumer_key,
                                                                       r.oauth["oauth_nonce"]), reqs)))
    pairs = list(zip(reqs, params_of, strict=True))
    uri = f"https://{HOST}{PATH}"
    rows.append(("  base string URI (oauthlib, uncached)",
                 per_call_us(lambda p: rfc5849.base_string_uri(uri), pairs)))
    rows.append(("  normalise parameters (oauthlib)",
                 per_call_us(lambda p: rfc5849.normalize_parameters(p[1]), pairs)))
    bases = [rfc5849.signature_base_string("GET", uri, rfc5849.normalize_parameters(p)) for p in params_of]
    rows.append(("  signature base string (oauthlib)",
                 per_call_us(lambda b: rfc5849.signature_base_string("GET", uri, b), bases)))
    assert consumer.public_key is not None
    key = consumer.public_key
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    sigs = [binascii.a2b_base64(r.oauth["oauth_signature"]) for r in reqs]
    triples = list(zip(sigs, bases, strict=True))
    rows.append(("  RSA-SHA1 verify (cryptography)",
                 per_call_us(lambda t: key.verify(t[0], t[1].encode("ascii"), padding.PKCS1v15(),
                                                  hashes.SHA1()), triples)))
    rows.append(("signature check (as the verifier does it)",
                 per_call_us(lambda p: verifier._check_signature(p[0], consumer, p[1], conn.access_secret),
                             pairs)))
    forget = time.time() + 1800
    rows.append(("remember nonce", per_call_us(
        lambda r: store.remember_nonce(consumer.consumer_key, r.oauth["oauth_nonce"], forget, time.time()),
        reqs, 1)))
    store.reset()
    conn = store.connect(mock.certs.consumer_key, org.organisation_id, mock.now(), 1800, 3600)
    k = args.batches
    headers = presign(mock, conn.access_token, (2 * k + 1) * n)
    batches = [headers[i * n:(i + 1) * n] for i in range(2 * k + 1)]

    def token_secret(c: Any, t: str) -> str | None:
        found = store.connection_for_token(t)
        return found.access_secret if found is not None else None

    rows.append(("verify(): checks 1-8 in order", per_call_us_fresh(
        lambda r: verifier.verify(r, ("oauth_token",), token_secret),
        [list(fresh(b)) for b in batches[:k]])))
    records = [r for r in [{"OrganisationID": org.organisation_id, "Name": org.name}]]
    rows.append(("render JSON envelope", per_call_us(
        lambda _: render.envelope_json("app", time.time(), "Organisations", records, False), reqs)))

    app = mock.app.wsgi_app
    signed_us = per_call_us_fresh(lambda e: wsgi_call(app, e),
                                  [[environ(h, PATH, peer) for h in b] for b in batches[k:2 * k]])

    bare = Flask("bare")

    @bare.get("/ping")
    def ping() -> str:
        return "pong"

    bare_envs = [environ(None, "/ping", peer) for _ in range(n)]
    bare_us = per_call_us(lambda e: wsgi_call(bare.wsgi_app, e), bare_envs)
    health_us = per_call_us(lambda e: wsgi_call(app, e),
                            [environ(None, "/_mockxero/health", peer) for _ in range(n)])
    rows.append(("WSGI: signed GET Organisation (whole app)", signed_us))
    rows.append(("WSGI: mock's /_mockxero/health", health_us))
    rows.append(("WSGI: trivial Flask endpoint", bare_us))
    rows.append(("WSGI: signed minus trivial", signed_us - bare_us))
    print_table(["part", "µs per call"], [(name, f"{us:8.1f}") for name, us in rows])
    if args.profile:
        from pyinstrument import Profiler

        envs = [environ(h, PATH, peer) for h in batches[2 * k]]
        profiler = Profiler(interval=0.0001)
        profiler.start()
        for e in envs:
            wsgi_call(app, e)
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        session = profiler.last_session
        assert session is not None
        root = session.root_frame()
        assert root is not None
        total: dict[str, float] = {}

        def walk(frame: Any, inside: frozenset[str]) -> None:
            name = f"{frame.function} ({Path(frame.file_path or '?').name})"
            if name in PARTS and name not in inside:
                total[name] = total.get(name, 0.0) + frame.time
                inside = inside | {name}
            for child in frame.children:
                walk(child, inside)

        walk(root, frozenset())
        scale = signed_us / (root.time / len(envs) * 1e6)  # the profiler's own overhead out
        print("Inclusive time per signed call, from the profile, scaled to the unprofiled total")
        print_table(["part", "µs per call"],
                    [(name, f"{total.get(name, 0.0) / len(envs) * 1e6 * scale:8.1f}") for name in PARTS])


#: Parts of the WSGI call worth naming (function (file)), outermost first.
PARTS = (
    "wsgi_app (app.py)",
    "full_dispatch_request (app.py)",
    "_start (app.py)",
    "api (api.py)",
    "authenticate (api.py)",
    "signed_request (context.py)",
    "verify (oauth.py)",
    "collect (oauth.py)",
    "_check_signature (oauth.py)",
    "rsa_sha1_matches (oauth.py)",
    "remember_nonce (store.py)",
    "_organisation (api.py)",
    "respond (api.py)",
    "envelope_json (render.py)",
    "_journal (app.py)",
    "finalize_request (app.py)",
    "request_context (app.py)",
)

if __name__ == "__main__":
    main()
