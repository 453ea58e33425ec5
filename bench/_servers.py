"""Servers the benchmarks start as subprocesses; each prints one JSON line
(with ``url``) once it accepts, and runs until SIGTERM.

    python bench/_servers.py bare|listener --certs DIR
    python bench/_servers.py mock --certs DIR [--connections N] [--public]

``bare`` is the baseline stack: stock cheroot with its pyOpenSSL adapter,
16 workers, an ``SSL.Context`` from the same certificate files (asking for
the client certificate, accepting any), serving a trivial Flask endpoint
(``GET /ping`` → ``pong``). ``listener`` serves the same endpoint on the
mock's own listener (``mockxero.tls``: handshakes in the selector, waiting
reads), so that what the mock adds above its transport can be told from
what its transport adds above cheroot. ``mock`` is a MockXero
built through the Python API with the rate limit off; ``--connections``
stores that many connections first (through ``Store.connect``, many
consumers × organisations, as a long-running shared stack would hold),
``--public`` registers a public (HMAC-SHA1) application, whose requests are
cheap to sign in bulk.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response


def ping_app() -> Flask:
    app = Flask("bare")

    @app.get("/ping")
    def ping() -> Response:
        return Response("pong", content_type="text/plain; charset=utf-8")

    return app


class _Stock:
    """Stock cheroot + pyOpenSSL in a thread, with ``stop()``."""

    def __init__(self, server: Any) -> None:
        self.server = server
        server.prepare()
        self.thread = threading.Thread(target=server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()


def bare(certs: Path, listener: bool) -> tuple[Any, dict[str, Any]]:
    from mockxero.certs import CertBundle
    from mockxero.tls import HTTPSServer, make_context

    bundle = CertBundle.ensure(certs)
    context = make_context(bundle.path("server.pem"), bundle.path("server-key.pem"),
                           bundle.path("entrust-ca.pem"))
    if listener:
        server: Any = HTTPSServer(ping_app(), context, "127.0.0.1", 0)
        server.start()
        port = server.port
    else:
        import cheroot.wsgi
        from cheroot.ssl.pyopenssl import pyOpenSSLAdapter

        stock = cheroot.wsgi.Server(("127.0.0.1", 0), ping_app(), numthreads=16)
        adapter = pyOpenSSLAdapter(None, None)  # the path shortcut uses APIs deprecated in pyOpenSSL 26.3
        adapter.context = context
        stock.ssl_adapter = adapter
        server = _Stock(stock)
        port = stock.bind_addr[1]
    return server, {"url": f"https://localhost:{port}"}


def mock(certs: Path, connections: int, public: bool) -> tuple[Any, dict[str, Any]]:
    from mockxero import MockXero

    the_mock = MockXero(port=0, certs=certs, rate_limit=None)
    info: dict[str, Any] = {}
    if connections:
        orgs = [the_mock.store.organisation().organisation_id]
        orgs += [the_mock.add_organisation(f"Bench org {i}", seed_data=False)["organisation_id"]
                 for i in range(99)]
        consumers = [the_mock.add_consumer(name=f"bench {i}")["consumer_key"]
                     for i in range(-(-connections // len(orgs)))]
        start = time.perf_counter()
        made = 0
        for consumer in consumers:
            for org in orgs:
                if made == connections:
                    break
                the_mock.store.connect(consumer, org, the_mock.now(), 1800, 31536000)
                made += 1
        info["populate_seconds"] = round(time.perf_counter() - start, 2)
        info["connections"] = made
    if public:
        consumer = the_mock.add_consumer(app_type="public", name="bench public app")
        info["public"] = {"consumer_key": consumer["consumer_key"],
                          "consumer_secret": consumer["consumer_secret"]}
    the_mock.start()
    info["url"] = the_mock.url
    return the_mock, info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["bare", "listener", "mock"])
    parser.add_argument("--certs", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=0)
    parser.add_argument("--public", action="store_true")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.kind in ("bare", "listener"):
        server, info = bare(args.certs, args.kind == "listener")
    else:
        server, info = mock(args.certs, args.connections, args.public)
    print(json.dumps(info), flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":
    main()
