"""The compact nonce memory answers exactly as the plain one did.

The store keeps a keyed 60-bit digest per nonce in time buckets instead of
the (consumer key, nonce) strings and a heap entry each. These tests hold
it, operation by operation, to a straightforward model (the previous
implementation), and show over real sockets that a nonce is refused for
the whole of its window and usable again once the window has passed."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from mockxero import MockXero
from mockxero.store import Consumer, Store

from .helpers import Partner, assert_problem
from .oauth_support import assert_form_success

CONSUMERS = ("A", "B", "C")


@dataclass
class Model:
    """The plain implementation: a set of pairs and a heap of expiries."""

    nonces: set[tuple[str, str]] = field(default_factory=set)
    expiry: list[tuple[float, str, str]] = field(default_factory=list)

    def remember(self, ck: str, nonce: str, forget_at: float, now: float) -> bool:
        while self.expiry and self.expiry[0][0] <= now:
            _, c, n = heapq.heappop(self.expiry)
            self.nonces.discard((c, n))
        if (ck, nonce) in self.nonces:
            return False
        self.nonces.add((ck, nonce))
        heapq.heappush(self.expiry, (forget_at, ck, nonce))
        return True

    def forget_at(self, ck: str, nonce: str) -> float | None:
        return next((at for at, c, n in self.expiry if (c, n) == (ck, nonce)), None)

    def reset(self, ck: str | None) -> None:
        self.nonces = {p for p in self.nonces if ck is not None and p[0] != ck}
        self.expiry = [e for e in self.expiry if ck is not None and e[1] != ck]
        heapq.heapify(self.expiry)


def new_store() -> Store:
    store = Store()
    for key in CONSUMERS:
        store.add_consumer(Consumer(key, "secret", app_type="public", require_client_cert=False))
    store.mark_baseline()
    return store


operations = st.lists(st.one_of(
    st.tuples(st.just("remember"), st.sampled_from(CONSUMERS), st.sampled_from("abcde"),
              st.integers(0, 30), st.integers(0, 8)),
    st.tuples(st.just("seen"), st.sampled_from(CONSUMERS), st.sampled_from("abcde")),
    st.tuples(st.just("forget_at"), st.sampled_from(CONSUMERS), st.sampled_from("abcde")),
    st.tuples(st.just("reset"), st.sampled_from((*CONSUMERS, None))),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_nonce_memory_agrees_with_the_plain_model(ops: list[tuple[object, ...]]) -> None:
    store, model = new_store(), Model()
    now = 1_000_000.0
    for op in ops:
        if op[0] == "remember":
            _, ck, nonce, lifetime, advance = op
            assert isinstance(ck, str) and isinstance(nonce, str)
            assert isinstance(lifetime, int) and isinstance(advance, int)
            now += advance
            forget_at = now + lifetime  # 0: forgotten by the next remember, as before
            expected = model.remember(ck, nonce, forget_at, now)
            assert store.remember_nonce(ck, nonce, forget_at, now) == expected
        elif op[0] == "seen":
            _, ck, nonce = op
            assert isinstance(ck, str) and isinstance(nonce, str)
            assert store.nonce_seen(ck, nonce) == ((ck, nonce) in model.nonces)
        elif op[0] == "forget_at":
            _, ck, nonce = op
            assert isinstance(ck, str) and isinstance(nonce, str)
            assert store.nonce_forget_at(ck, nonce) == model.forget_at(ck, nonce)
        else:
            ck = op[1]
            assert ck is None or isinstance(ck, str)
            store.reset(ck)
            model.reset(ck)
        assert store.nonce_count() == len(model.nonces)


def test_many_nonces_in_one_second_share_a_bucket_and_go_together() -> None:
    store = new_store()
    now = time.time()
    for i in range(5000):
        assert store.remember_nonce("A", f"n{i}", now + 60, now)
        assert store.remember_nonce("B", f"n{i}", now + 61, now)  # the same text, another consumer
    assert store.nonce_count() == 10000
    assert all(store.nonce_seen("A", f"n{i}") and not store.remember_nonce("A", f"n{i}", now + 60, now)
               for i in range(0, 5000, 7))
    assert store.remember_nonce("C", "x", now + 600, now + 60)  # A's second is over
    assert store.nonce_count() == 5001
    assert not store.nonce_seen("A", "n1") and store.nonce_seen("B", "n1")
    store.reset("B")
    assert store.nonce_count() == 1 and store.nonce_seen("C", "x")


def test_a_nonce_is_refused_for_its_whole_window(xero: MockXero, partner: Partner) -> None:
    """Signed requests over mutual TLS: used near the far end of the window,
    replayed later with a fresh timestamp, refused; the store forgets it at
    the window's end exactly."""
    nonce = "EDGE" + str(time.time_ns())
    timestamp = int(time.time()) - xero.settings.timestamp_past + 5  # 5 s from leaving the window
    assert_form_success(partner.request("POST", "/oauth/RequestToken",
                                        auth=partner.auth(nonce=nonce, timestamp=str(timestamp))))
    replay = partner.request("POST", "/oauth/RequestToken", auth=partner.auth(nonce=nonce))
    assert_problem(replay, 401, "nonce_used", advice=f'The nonce value "{nonce}" has already been used')
    forget_at = xero.store.nonce_forget_at(xero.certs.consumer_key, nonce)
    assert forget_at == timestamp + xero.settings.timestamp_past + 1
    # one moment before its end it is still remembered; at its end it goes
    assert not xero.store.remember_nonce(xero.certs.consumer_key, nonce, forget_at, forget_at - 0.001)
    assert xero.store.remember_nonce(xero.certs.consumer_key, "other" + nonce, forget_at + 600, forget_at)
    assert not xero.store.nonce_seen(xero.certs.consumer_key, nonce)
    assert_form_success(partner.request("POST", "/oauth/RequestToken", auth=partner.auth(nonce=nonce)))
