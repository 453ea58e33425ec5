"""What the pytest plugin costs: the session's start-up, and each test's
``mockxero`` and ``xero_client``, each beside a baseline in the same run.

    python bench/bench_plugin.py [--rounds 7] [--tests 40]

* start-up: fresh certificates and a listening mock, the plugin's way (ECDSA
  TLS keys, the Entrust client key too: one RSA key to make) against
  ``MockXero(port=0, certs=empty folder)`` (RSA Entrust client key, as
  ``mockxero serve`` makes it); and the stop.
* per test: ``mockxero`` (a full reset, a marker applied and undone);
  ``xero_client`` (a new PartnerClient through the dance) with the session's
  parsed RSA key, against the same with the key given as PEM (parsed, and
  RSA-checked, by every client), and against a mock whose Entrust client
  key is RSA.

Medians of the rounds; ratios are plugin / baseline (below 1: faster).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from mockxero import CertBundle, MockXero
from mockxero.client import PartnerClient


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


def start_plugin_way() -> MockXero:
    folder_ = folder("bench-plugin-")
    CertBundle.generate(folder_, client_key_type=trustme.KeyType.ECDSA)
    return MockXero(port=0, certs=Path(folder_)).start()


def start_default_way() -> MockXero:
    return MockXero(port=0, certs=Path(folder("bench-default-"))).start()


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

    start_plugin_way().stop()  # imports and first-use costs out of the way
    started: list[MockXero] = []

    def plugin_start() -> None:
        started.append(start_plugin_way())

    def default_start() -> None:
        started.append(start_default_way())

    plugin = timed(plugin_start, args.rounds)
    default = timed(default_start, args.rounds)
    stops = []
    for mock in started:
        begin = time.perf_counter()
        mock.stop()
        stops.append(time.perf_counter() - begin)
    print(f"start-up (certificates + listening): plugin {plugin * 1000:7.1f} ms   "
          f"default {default * 1000:7.1f} ms   ratio {plugin / default:.2f}")
    print(f"stop: median {statistics.median(stops) * 1000:.1f} ms")

    with start_plugin_way() as mock, start_default_way() as rsa_mock:
        key = load_pem_private_key(mock.rsa_key.encode(), None, unsafe_skip_rsa_key_validation=True)
        rsa_key = load_pem_private_key(rsa_mock.rsa_key.encode(), None, unsafe_skip_rsa_key_validation=True)

        def mockxero_fixture() -> None:
            mock.reset()
            before = mock.runtime_settings()
            mock.change_settings(rate_limit="off", organisation="Demo Company (AU)")
            mock.change_settings(**{k: before[k] for k in ("rate_limit", "organisation")})

        def reset_only() -> None:
            mock.reset()

        n = args.tests
        fixture = per_call(lambda: mockxero_fixture(), n, args.rounds)
        reset = per_call(lambda: reset_only(), n, args.rounds)
        print(f"mockxero per test: {fixture * 1e6:7.1f} us (reset alone {reset * 1e6:.1f} us)")

        cached = per_call(lambda: connect(mock, key), n, args.rounds)
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
