"""Bounds and lifetimes that a slip would break without any other test
noticing: each test here failed against a hand-made mutation of the line
it guards."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from mockxero import MockXero
from mockxero.clock import LATEST, ClockError, MockClock
from mockxero.store import Store

from .helpers import Partner, assert_problem


def test_an_api_call_after_the_authorisation_expired_is_token_expired(certs_dir: Path) -> None:
    """The access token lives 30 minutes, but never past the authorisation
    (api.py compares mock time with the earlier of the two)."""
    with MockXero(port=0, certs=certs_dir, authorization_ttl=100) as short:
        partner = Partner(short, short.certs.consumer_key, short.certs.consumer_secret,
                          rsa_key=short.certs.application_key, cert=short.client_cert)
        try:
            tokens = partner.connect()
            assert partner.api(tokens, "Organisation").status_code == 200
            short.advance(99)
            assert partner.api(tokens, "Organisation").status_code == 200
            short.advance(2)  # the token (1800 s) is still young; the authorisation (100 s) is over
            assert_problem(partner.api(tokens, "Organisation"), 401, "token_expired")
        finally:
            partner.close()


def test_retired_tokens_are_remembered_only_up_to_the_bound() -> None:
    store = Store(retired_size=3)
    connections = [store.connect("CK", f"org{i}", 0, 1800, 3600) for i in range(5)]
    for conn in connections:
        store.revoke(conn.access_token)
    assert [store.retired(c.access_token) for c in connections] == [
        None, None, *[(c.session_handle, "revoked") for c in connections[2:]]]


def test_request_tokens_are_pruned_finished_first_then_the_oldest_half() -> None:
    store = Store(max_request_tokens=10)
    tokens = [store.new_request_token("CK", "oob", 100).token for _ in range(10)]
    store.decide(tokens[0], False, None, 0)  # denied
    store.decide(tokens[1], True, "ORG", 0)
    assert store.use_request_token(tokens[1])  # used
    store.decide(tokens[2], True, "ORG", 0)  # authorised, not finished
    newest = store.new_request_token("CK", "oob", 100).token  # at the limit: prune, then add
    # the 2 finished go; of the 8 left the oldest 4 go; the 4 youngest and the new one stay
    kept = [t for t in tokens if store.request_token(t) is not None]
    assert kept == tokens[6:]
    assert store.request_token(newest) is not None
    for _ in range(4):  # below the limit nothing more is pruned
        store.new_request_token("CK", "oob", 100)
    assert all(store.request_token(t) is not None for t in tokens[6:])


def test_a_reset_with_an_advance_is_bounded_from_real_time() -> None:
    clock = MockClock()
    clock.set(LATEST - 10)
    # from real time, an hour ahead is fine (from the old mock time it would not be)
    assert clock.change(reset=True, advance=3600) == pytest.approx(time.time() + 3600, abs=5)
    clock.set(LATEST - 10)
    with pytest.raises(ClockError):
        clock.change(reset=True, advance=LATEST)  # real time + LATEST is past the end
    assert clock.now() == pytest.approx(LATEST - 10, abs=5)  # and nothing moved
    clock.set(10)
    with pytest.raises(ClockError):
        clock.change(reset=True, advance=-time.time() - 100)  # before 1970, from real time
    assert clock.now() == pytest.approx(10, abs=5)


def test_an_internal_error_is_journalled_with_its_traceback(certs_dir: Path) -> None:
    """What the per-test check in conftest (and the pytest plugin) reads."""
    broken = MockXero(port=0, certs=certs_dir)

    @broken.app.route("/oauth/Broken")
    def _broken() -> str:
        raise RuntimeError("a bug of the mock's")

    with broken:
        response = requests.get(broken.url + "/oauth/Broken", timeout=10, **broken.requests_kwargs())
        assert response.status_code == 500
        [entry] = broken.journal()
        assert entry["error"] == "RuntimeError: a bug of the mock's"
        assert "raise RuntimeError" in entry["traceback"] and "_broken" in entry["traceback"]


def test_pruning_stops_at_the_finished_tokens_when_that_is_enough() -> None:
    store = Store(max_request_tokens=10)
    tokens = [store.new_request_token("CK", "oob", 100).token for _ in range(10)]
    for token in tokens[:6]:
        store.decide(token, False, None, 0)  # six denied: dropping them leaves 4, under half
    store.new_request_token("CK", "oob", 100)
    assert [t for t in tokens if store.request_token(t) is not None] == tokens[6:]
