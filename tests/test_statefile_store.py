"""The store's write-through, checked the strict way: after any sequence of
store operations, what a fresh look at the file holds is exactly what the
store holds in memory, order included — and a store restored from the file
holds the same again."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mockxero import store as store_module
from mockxero.statefile import Snapshot, StateFile
from mockxero.store import Consumer, Organisation, Store, StoreError

IDENTITY = "d4" * 32
CONSUMERS = ("CK-A", "CK-B", "CK-C")
ORGS = ("org-1", "org-2")


def durable_rows(store: Store) -> Snapshot:
    # white-box on purpose: the rows the store would write for what it holds
    return store_module._snapshot(store._durable)


def file_rows(file: StateFile) -> Snapshot:
    snap = file.load()
    return dataclasses.replace(snap, clock=Snapshot().clock, switches=None, baseline=None)


def fresh_store(path: Path, retired_size: int = 10000, **limits: int) -> tuple[Store, StateFile]:
    store = Store(retired_size=retired_size, **limits)
    for org_id in ORGS:
        store.add_organisation(Organisation(org_id, f"Org {org_id}", f"!{org_id[-1]}X", "M" * 22),
                               {"Contacts": {"c-0": {"ContactID": "c-0", "Name": "Seed"}}, "Invoices": {}})
    store.add_consumer(Consumer("CK-A", "secret"))
    store.mark_baseline()
    file = StateFile.open(path, IDENTITY)
    store.attach(file, None)
    return store, file


class Driver:
    """Applies one named step to the store, as the operations would."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.now = 1_000_000.0
        self.n = 0

    def step(self, name: str, pick: int) -> None:
        s = self.store
        self.n += 1
        self.now += 10
        consumer = CONSUMERS[pick % len(CONSUMERS)]
        org = ORGS[pick % len(ORGS)]
        conns = s.connections_for()
        conn = conns[pick % len(conns)] if conns else None
        tokens = list(s._durable.request_tokens.values())
        rt = tokens[pick % len(tokens)] if tokens else None
        try:
            if name == "add_consumer":
                s.add_consumer(Consumer(consumer, "secret"))
            elif name == "update_consumer":
                s.update_consumer(consumer, name=f"renamed {self.n}",
                                  client_certificates={f"{self.n:064x}": f"CN={self.n}"})
            elif name == "request_token":
                s.new_request_token(consumer, "oob", self.now + 1800)
            elif name == "decide" and rt is not None:
                s.decide(rt.token, pick % 3 != 0, org, self.now)
            elif name == "use" and rt is not None:
                s.use_request_token(rt.token)
            elif name == "connect":
                s.connect(consumer, org, self.now, 1800, 31536000)
            elif name == "renew" and conn is not None:
                s.renew(conn.access_token, self.now, 1800, rotate_handle=pick % 2 == 0)
            elif name == "revoke" and conn is not None:
                s.revoke(session_handle=conn.session_handle)
            elif name == "expire" and conn is not None:
                s.expire_now(conn.access_token, None, self.now)
            elif name == "add_organisation":
                s.add_organisation(Organisation(f"org-{self.n}", f"New {self.n}", f"!N{self.n}", "M" * 22),
                                   {"Contacts": {}, "Organisations": {f"org-{self.n}": {"Name": "New"}}})
            elif name == "save":
                self.save(org, pick)
            elif name == "reset_consumer":
                s.reset(conn.consumer_key if conn is not None and pick % 2 else consumer)
            elif name == "reset":
                s.reset()
        except StoreError:
            pass  # refused (e.g. an unknown consumer): nothing may have changed

    def save(self, org: str, pick: int) -> None:
        """An API save: a new contact, an update, or a collection replaced."""
        def build(seen: dict[str, Any]) -> tuple[None, dict[str, Any]]:
            contacts: OrderedDict[str, dict[str, Any]] = OrderedDict(seen.get("Contacts", {}))
            record = {"ContactID": f"c-{self.n}", "Name": f"Contact {self.n}",
                      "Balance": Decimal(f"{self.n}.50"),
                      "UpdatedDateUTC": datetime.fromtimestamp(self.now, timezone.utc)}
            if pick % 3 == 0:
                contacts[f"c-{self.n}"] = record
            elif pick % 3 == 1 and contacts:
                first = next(iter(contacts))
                contacts[first] = {**contacts[first], "Name": f"Updated {self.n}"}
            else:
                contacts = OrderedDict([(f"c-{self.n}", record)])
            return None, {"Contacts": contacts}

        self.store.update_data(org, build)


STEPS = ("add_consumer", "update_consumer", "add_organisation", "request_token", "decide", "use",
         "connect", "renew", "revoke", "expire", "save", "reset_consumer", "reset")


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mockxero-store-"))
    yield path
    shutil.rmtree(path)


@given(st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 11)), min_size=20, max_size=60))
@settings(max_examples=40, deadline=None)
def test_the_file_mirrors_the_store_after_any_steps(steps: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.sqlite"
        store, file = fresh_store(path, retired_size=5)
        driver = Driver(store)
        for name, pick in steps:
            driver.step(name, pick)
            assert file_rows(file) == durable_rows(store), (name, pick)
        baseline = file.load().baseline
        file.close()

        again = Store(retired_size=5)
        reopened = StateFile.open(path, IDENTITY)
        again.attach(reopened, reopened.load())
        assert durable_rows(again) == durable_rows(store)
        assert again._baseline is not None and baseline is not None
        assert store_module._snapshot(again._baseline) == baseline
        # and the restored store keeps writing through
        Driver(again).step("connect", 1)
        assert file_rows(reopened) == durable_rows(again)
        reopened.close()


def test_pruning_request_tokens_is_written_through(folder: Path) -> None:
    store, file = fresh_store(folder / "state.sqlite", max_request_tokens=8)
    made = [store.new_request_token("CK-A", "oob", 1800.0).token for _ in range(8)]
    store.decide(made[1], False, None, 0.0)
    store.use_request_token(made[2]) if store.decide(made[2], True, "org-1", 0.0) else None
    store.new_request_token("CK-A", "oob", 1800.0)  # past the bound: finished ones go, then the oldest half
    kept = list(store._durable.request_tokens)
    assert made[1] not in kept and made[2] not in kept and len(kept) < 8
    assert [rt.token for rt in file.load().request_tokens] == kept
    file.close()


def test_a_new_baseline_is_written_through(folder: Path) -> None:
    store, file = fresh_store(folder / "state.sqlite")
    store.add_consumer(Consumer("CK-B", "secret"))
    store.mark_baseline()
    baseline = file.load().baseline
    assert baseline is not None
    assert [c.consumer_key for c in baseline.consumers] == ["CK-A", "CK-B"]
    file.close()


def test_a_refused_change_writes_nothing(folder: Path) -> None:
    store, file = fresh_store(folder / "state.sqlite")
    before = file_rows(file)
    with pytest.raises(StoreError):
        store.add_consumer(Consumer("CK-A", "again"))
    with pytest.raises(StoreError):
        store.revoke(session_handle="no such handle")
    assert file_rows(file) == before == durable_rows(store)
    file.close()


def test_a_save_writes_only_what_it_changed() -> None:
    diff = store_module._appended_or_updated
    a, b, c = {"n": 1}, {"n": 2}, {"n": 3}
    old = {"a": a, "b": b}
    assert diff(old, {"a": a, "b": b}) == {}
    assert diff(old, {"a": a, "b": b, "c": c}) == {"c": c}
    assert diff(old, {"a": a, "b": {"n": 2}, "c": c}) == {"b": {"n": 2}, "c": c}  # equal, not the same
    assert diff(old, {"b": b, "a": a}) is None  # moved
    assert diff(old, {"a": a}) is None  # dropped
    assert diff(old, {"a": a, "c": c, "b": b}) is None  # inserted before the end
    assert diff({}, {"c": c}) == {"c": c}
