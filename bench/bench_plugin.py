"""What the pytest plugin costs: the session's start-up, and each test's
``mockxero`` and ``xero_client``, each beside a baseline in the same run.

    python bench/bench_plugin.py [--rounds 7] [--tests 40]

The plugin's side is what its fixtures call, :mod:`mockxero.testing`.

* start-up: fresh certificates and a listening mock, the plugin's way
  (``in_process_mock()``: ECDSA TLS keys, the Entrust client key too: one
  RSA key to make) against ``MockXero(port=0, certs=empty folder)`` (RSA
  Entrust client key, as ``mockxero serve`` makes it); and the stop (for
  the plugin's way, the folder's removal included).
* per test: ``mockxero`` (a full reset, a marker applied and undone);
  ``xero_client`` (a new PartnerClient through the dance) with the session's
  parsed RSA key, against the same with the key given as PEM (parsed, and
  RSA-checked, by every client), and against a mock whose Entrust client
  key is RSA.

Medians of the rounds; ratios are plugin / baseline (below 1: faster).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from mockxero import MockXero
from mockxero.client import PartnerClient
from mockxero.testing import apply_settings, connected_client, in_process_mock, load_rsa_key


def timed(action: Callable[[], Any], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


FOLDERS: list[str] = []


def folder(prefix: str) -> str:
    FOLDERS.append(tempfile.mkdtemp(prefix=prefix))
    return FOLDERS[-1]


def per_call(action: Callable[[], Any], calls: int, rounds: int) -> float:
    def many() -> None:
        for _ in range(calls):
            action()

    return timed(many, rounds) / calls


def start_default_way() -> MockXero:
    return MockXero(port=0, certs=Path(folder("bench-default-"))).start()


def connect_plugin_way(mock: MockXero, rsa_key: Any) -> None:
    connected_client(mock, rsa_key).close()


def connect(mock: MockXero, rsa_key: Any) -> None:
    client = PartnerClient(mock.consumer_key, rsa_key, client_cert=mock.client_cert,
                           verify=str(mock.ca_path), base_url=mock.url,
                           authorize_url=mock.url + "/oauth/Authorize")
    with client:
        request_token = client.fetch_request_token()
        client.fetch_access_token(request_token, mock.authorize(request_token.token)["oauth_verifier"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tests", type=int, default=40)
    args = parser.parse_args()

    with in_process_mock():  # imports and first-use costs out of the way
        pass
    started: list[contextlib.AbstractContextManager[MockXero]] = []
    defaults: list[MockXero] = []

    def plugin_start() -> None:
        started.append(in_process_mock())
        started[-1].__enter__()

    def default_start() -> None:
        defaults.append(start_default_way())

    plugin = timed(plugin_start, args.rounds)
    default = timed(default_start, args.rounds)
    stops, default_stops = [], []
    for running in started:
        begin = time.perf_counter()
        running.__exit__(None, None, None)
        stops.append(time.perf_counter() - begin)
    for mock in defaults:
        begin = time.perf_counter()
        mock.stop()
        default_stops.append(time.perf_counter() - begin)
    print(f"start-up (certificates + listening): plugin {plugin * 1000:7.1f} ms   "
          f"default {default * 1000:7.1f} ms   ratio {plugin / default:.2f}")
    print(f"stop: plugin (folder removed too) {statistics.median(stops) * 1000:.1f} ms   "
          f"default {statistics.median(default_stops) * 1000:.1f} ms")

    with in_process_mock() as mock, start_default_way() as rsa_mock:
        key = load_rsa_key(mock.rsa_key)
        rsa_key = load_pem_private_key(rsa_mock.rsa_key.encode(), None, unsafe_skip_rsa_key_validation=True)

        def mockxero_fixture() -> None:
            mock.reset()
            apply_settings(mock, {"rate_limit": "off", "organisation": "Demo Company (AU)"})()

        def reset_only() -> None:
            mock.reset()

        n = args.tests
        fixture = per_call(lambda: mockxero_fixture(), n, args.rounds)
        reset = per_call(lambda: reset_only(), n, args.rounds)
        print(f"mockxero per test: {fixture * 1e6:7.1f} us (reset alone {reset * 1e6:.1f} us)")

        cached = per_call(lambda: connect_plugin_way(mock, key), n, args.rounds)
        pem = per_call(lambda: connect(mock, mock.rsa_key), n, args.rounds)
        rsa_tls = per_call(lambda: connect(rsa_mock, rsa_key), n, args.rounds)
        print(f"xero_client per test: {cached * 1000:6.2f} ms   key as PEM {pem * 1000:6.2f} ms "
              f"(ratio {cached / pem:.2f})   RSA client certificate {rsa_tls * 1000:6.2f} ms "
              f"(ratio {cached / rsa_tls:.2f})")


if __name__ == "__main__":
    try:
        main()
    finally:
        for made in FOLDERS:
            shutil.rmtree(made, ignore_errors=True)
