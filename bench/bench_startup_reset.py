"""What a test suite pays around its tests: import, in-process start-up with
a cold and a warm certificate folder, and ``reset()``; side by side with the
bare stack and pytest-httpserver (``pip install pytest-httpserver``).

* import: a fresh interpreter importing ``mockxero`` against one importing
  what the bare stack needs (flask, cheroot, pyOpenSSL) and against
  ``pytest_httpserver``.
* start-up: ``MockXero(port=0, certs=DIR).start()`` until it accepts, with
  an empty folder (certificates made) and with the folder already written;
  the bare stack (the same listener with a trivial Flask app, its context
  from the same files) and pytest-httpserver's ``HTTPServer`` (plain HTTP).
* reset: ``reset()`` right after a reset, and after one dance and one API
  call over mutual TLS (what a typical test leaves behind); against
  pytest-httpserver's ``clear()`` after one request.

    python bench/bench_startup_reset.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import API, TLS, Signer, dance, expect, machine, print_table, signed_get

from mockxero import MockXero


def import_ms(module: str, repeat: int) -> list[float]:
    code = (f"import time; t = time.perf_counter(); import {module}; "
            "print(time.perf_counter() - t)")
    return [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                 text=True).stdout) for _ in range(repeat)]


def ms(values: list[float], digits: int = 1) -> tuple[str, str]:
    """(min, median) in milliseconds: on a shared machine the minimum is
    the cost, the median what a run meets."""
    return f"{min(values) * 1000:.{digits}f}", f"{statistics.median(values) * 1000:.{digits}f}"


def start_mock(certs: Path) -> float:
    start = time.perf_counter()
    mock = MockXero(port=0, certs=certs).start()
    elapsed = time.perf_counter() - start
    mock.stop()
    return elapsed


def start_bare(certs: Path) -> float:
    from flask import Flask

    from mockxero.tls import HTTPSServer, make_context

    start = time.perf_counter()
    app = Flask("bare")
    app.add_url_rule("/ping", "ping", lambda: "pong")
    context = make_context(certs / "server.pem", certs / "server-key.pem", certs / "entrust-ca.pem")
    server = HTTPSServer(app, context, "127.0.0.1", 0)
    server.start()
    elapsed = time.perf_counter() - start
    server.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(machine())
    try:
        import pytest_httpserver
    except ImportError:
        pytest_httpserver = None
        print("(pytest-httpserver is not installed: its rows are left out)")
    rows: list[tuple[str, str, str]] = []
    reps = max(3, args.repeat // 4)
    rows.append(("import mockxero (its names load on first use)", *ms(import_ms("mockxero", reps))))
    rows.append(("import mockxero.mock (the server)", *ms(import_ms("mockxero.mock", reps))))
    rows.append(("import flask, cheroot.wsgi, OpenSSL (bare stack)",
                 *ms(import_ms("flask, cheroot.wsgi, OpenSSL.SSL", reps))))
    if pytest_httpserver is not None:
        rows.append(("import pytest_httpserver", *ms(import_ms("pytest_httpserver", reps))))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        start_mock(base / "warm-up")  # first-time costs (lazy imports) out of the way
        cold = [start_mock(base / f"cold-{i}") for i in range(reps)]
        warm_dir = base / "cold-0"
        warm = [start_mock(warm_dir) for _ in range(args.repeat)]
        bare = [start_bare(warm_dir) for _ in range(args.repeat)]
        rows.append(("start MockXero, empty cert folder", *ms(cold)))
        rows.append(("start MockXero, warm cert folder", *ms(warm)))
        rows.append(("start bare stack (same listener, certs)", *ms(bare)))
        if pytest_httpserver is not None:
            def start_httpserver() -> float:
                t = time.perf_counter()
                server = pytest_httpserver.HTTPServer(port=0)
                server.start()
                elapsed = time.perf_counter() - t
                server.stop()
                return elapsed
            rows.append(("start pytest-httpserver (plain HTTP)",
                         *ms([start_httpserver() for _ in range(args.repeat)])))

        mock = MockXero(port=0, certs=warm_dir, rate_limit=None).start()
        try:
            idle = []
            for _ in range(args.repeat * 10):
                t = time.perf_counter()
                mock.reset()
                idle.append(time.perf_counter() - t)
            tls = TLS(warm_dir)
            signer = Signer.demo(warm_dir)
            used = []
            for _ in range(args.repeat):
                tokens = dance(tls, mock.url, signer)
                conn = tls.connect(mock.url)
                expect(*conn.send(signed_get(signer, mock.url, API, tokens)))
                conn.close()
                t = time.perf_counter()
                mock.reset()
                used.append(time.perf_counter() - t)
        finally:
            mock.stop()
        rows.append(("reset(), nothing changed", *ms(idle, 3)))
        rows.append(("reset() after a dance and one call", *ms(used, 3)))
        if pytest_httpserver is not None:
            import logging

            import requests

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line a request
            server = pytest_httpserver.HTTPServer(port=0)
            server.start()
            try:
                cleared = []
                for _ in range(args.repeat):
                    server.expect_request("/ping").respond_with_data("pong")
                    assert requests.get(server.url_for("/ping"), timeout=5).text == "pong"
                    t = time.perf_counter()
                    server.clear()
                    cleared.append(time.perf_counter() - t)
            finally:
                server.stop()
            rows.append(("pytest-httpserver clear() after one request", *ms(cleared, 3)))
    print_table(["", "min ms", "median ms"], rows)


if __name__ == "__main__":
    main()
