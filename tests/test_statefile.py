"""The state file on real files: round trips, the record codec, every bad
file a user can hand it, a second process, and a SIGKILL mid-write."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mockxero.statefile import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    ClockState,
    ConnectionRow,
    ConsumerRow,
    OrganisationRow,
    RequestTokenRow,
    RetiredToken,
    Snapshot,
    StateFile,
    StateFileError,
    dumps_record,
    loads_record,
    row_of,
)

IDENTITY = "a1" * 32
NOBODY = 65534


def consumer(key: str = "CK", **changes: Any) -> ConsumerRow:
    row = ConsumerRow(consumer_key=key, consumer_secret="CS", app_type="partner", name="App",
                      callback_domain="example.com", certificate="-----BEGIN CERTIFICATE-----\n",
                      require_client_cert=True, client_certificates={"ab" * 32: "CN=client"},
                      organisation_id=None)
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def organisation(org_id: str = "org-1") -> OrganisationRow:
    return OrganisationRow(org_id, "Demo (NZ)", "!ABCDE", "M" * 22, "NZ", "NZD")


def connection(n: int = 1, org_id: str = "org-1") -> ConnectionRow:
    return ConnectionRow(f"CK{n}", org_id, f"H{n}", f"T{n}", f"S{n}", 1800.5 + n, 31536000.25, 0.1 * n)


def request_token(token: str = "RT1") -> RequestTokenRow:
    return RequestTokenRow(token, "RS", "CK", "oob", 1234.5, "authorized", "V", "org-1")


INVOICE: dict[str, Any] = {
    "InvoiceID": "inv-1", "Type": "ACCREC", "Total": Decimal("115.00"), "Date": date(2024, 2, 29),
    "UpdatedDateUTC": datetime(2024, 3, 1, 12, 30, 15, 123000, tzinfo=timezone.utc),
    "SentToContact": False, "LineItems": [{"Quantity": Decimal("1.0000"), "Tracking": []}],
    "Contact": {"ContactID": "c-1", "Name": "Ridgeway"}, "Count": 3, "Reference": None,
}


def full_snapshot() -> Snapshot:
    return Snapshot(
        consumers=[consumer("CK1"), consumer("CK2", app_type="private", organisation_id="org-2",
                                                certificate=None, callback_domain=None,
                                                require_client_cert=False, client_certificates={})],
        organisations=[organisation("org-2"), organisation("org-1")],
        records={"org-1": {"Invoices": {"inv-1": INVOICE, "inv-0": {"InvoiceID": "inv-0"}},
                           "Contacts": {"c-1": {"ContactID": "c-1", "Name": "Ridgeway"}}}},
        connections=[connection(2), connection(1)],
        retired=[RetiredToken("OLD2", "H2", "superseded"), RetiredToken("OLD1", "H1", "revoked")],
        request_tokens=[request_token("RT2"), request_token("RT1")],
        clock=ClockState(offset=-86400.125, frozen_at=1700000000.5),
        switches={"auto_approve": True, "rate_limit": None},
    )


def open_file(path: Path, identity: str = IDENTITY, **kwargs: Any) -> StateFile:
    return StateFile.open(path, identity, **kwargs)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


# -- round trips ---------------------------------------------------------------

def test_new_file_is_empty_and_versioned(path: Path) -> None:
    with open_file(path) as sf:
        assert sf.load() == Snapshot()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_everything_survives_close_and_reopen(path: Path) -> None:
    snap = full_snapshot()
    with open_file(path) as sf:
        sf.reset(snap)
    assert not Path(f"{path}-wal").exists()  # a clean close checkpoints
    with open_file(path) as sf:
        loaded = sf.load()
    assert loaded == snap
    # order is part of the state: organisations, records, retired and request tokens
    assert [o.organisation_id for o in loaded.organisations] == ["org-2", "org-1"]
    assert list(loaded.records["org-1"]["Invoices"]) == ["inv-1", "inv-0"]
    assert list(loaded.records["org-1"]["Invoices"]["inv-1"]) == list(INVOICE)
    assert [r.token for r in loaded.retired] == ["OLD2", "OLD1"]
    assert [r.token for r in loaded.request_tokens] == ["RT2", "RT1"]
    assert loaded.records["org-1"]["Invoices"]["inv-1"]["UpdatedDateUTC"].tzinfo is not None


def test_a_row_is_made_from_any_object_with_those_attributes() -> None:
    class Held:  # stands for a store object: more attributes than the row has
        def __init__(self) -> None:
            self.__dict__.update(dataclasses.asdict(connection(1)), public_key=object())

    assert row_of(ConnectionRow, Held()) == connection(1)
    source = consumer()
    copied = row_of(ConsumerRow, source)
    source.client_certificates["cd" * 32] = "CN=added later"
    assert copied == consumer()


def test_each_write_method(path: Path) -> None:
    with open_file(path) as sf:
        sf.put_organisation(organisation("org-1"))
        sf.put_consumer(consumer("CK1"))
        sf.put_consumer(consumer("CK1", name="Renamed", client_certificates={}))
        sf.put_consumer(consumer("CK2"))
        sf.delete_consumer("CK2")
        sf.put_connection(connection(1))
        sf.put_connection(connection(2))
        renewed = connection(1)
        renewed.access_token, renewed.session_handle = "T1b", "H1b"  # a renewal that rotated the handle
        sf.put_connection(renewed)
        sf.delete_connection("H2")
        sf.put_request_token(request_token("RT1"))
        used = request_token("RT1")
        used.state = "used"
        sf.put_request_token(used)
        sf.put_request_token(request_token("RT2"))
        sf.put_request_token(request_token("RT3"))
        sf.delete_request_token("RT2")
        sf.delete_request_token(["RT3", "unknown"])
        sf.put_clock(ClockState(12.5, None))
        sf.put_switches({"auto_approve": True})
        sf.put_switches(None)
    with open_file(path) as sf:
        snap = sf.load()
    assert snap.consumers == [consumer("CK1", name="Renamed", client_certificates={})]
    assert snap.connections == [renewed]
    assert snap.request_tokens == [used]
    assert snap.clock == ClockState(12.5, None)
    assert snap.switches is None


def test_an_updated_connection_keeps_its_place_or_goes_last(path: Path) -> None:
    with open_file(path) as sf:
        for n in (1, 2, 3):
            sf.put_connection(connection(n))
        expired = dataclasses.replace(connection(1), token_expires_at=0.0)
        sf.put_connection(expired)
        assert [c.consumer_key for c in sf.load().connections] == ["CK1", "CK2", "CK3"]
        renewed = dataclasses.replace(connection(2), access_token="T2b", session_handle="H2b")
        sf.put_connection(renewed, last=True)
        assert sf.load().connections == [expired, connection(3), renewed]


def test_records_update_in_place_append_replace_delete(path: Path) -> None:
    with open_file(path) as sf:
        sf.put_records("o", "Contacts", {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}})
        sf.put_records("o", "Contacts", {"b": {"n": 20}, "d": {"n": 4}})
        assert sf.load().records["o"]["Contacts"] == {"a": {"n": 1}, "b": {"n": 20}, "c": {"n": 3},
                                                      "d": {"n": 4}}
        assert list(sf.load().records["o"]["Contacts"]) == ["a", "b", "c", "d"]
        sf.delete_records("o", "Contacts", ["a", "c"])
        assert list(sf.load().records["o"]["Contacts"]) == ["b", "d"]
        sf.put_records("o", "Invoices", {"x": {}, "y": {}})
        sf.put_records("o", "Invoices", {"z": {}, "x": {}}, replace=True)
        assert list(sf.load().records["o"]["Invoices"]) == ["z", "x"]
        sf.delete_records("o", "Invoices")
        assert sf.load().records["o"]["Invoices"] == {}  # empty, not gone
        sf.put_records("o", "Payments", {})
        assert list(sf.load().records["o"]) == ["Contacts", "Invoices", "Payments"]
        sf.put_organisation(organisation("o"))
        sf.delete_organisation("o")
        assert sf.load().records == {}
        assert sf.load().organisations == []


def test_retired_tokens_move_to_the_end_and_are_forgotten_by_name(path: Path) -> None:
    with open_file(path) as sf:
        for n in range(10):
            sf.retire_token(f"T{n}", "H", "superseded", forget=[f"T{n - 5}"] if n >= 5 else [])
        sf.retire_token("T6", "H", "revoked", forget=["T5", "unknown"])
        assert [(r.token, r.why) for r in sf.load().retired] == [
            ("T7", "superseded"), ("T8", "superseded"), ("T9", "superseded"), ("T6", "revoked")]


def test_reset_replaces_everything_but_the_binding_and_baseline(path: Path) -> None:
    full = full_snapshot()
    baseline = Snapshot(consumers=full.consumers, organisations=full.organisations, records=full.records)
    with open_file(path) as sf:
        sf.put_baseline(baseline)
        sf.reset(full)
        small = Snapshot(organisations=[organisation("org-9")], clock=ClockState(1.0, None))
        sf.reset(small)
        assert sf.load() == dataclasses.replace(small, baseline=baseline)
    with open_file(path) as sf:
        loaded = sf.load()
    assert loaded == dataclasses.replace(small, baseline=baseline)
    assert loaded.baseline is not None
    assert list(loaded.baseline.records["org-1"]["Invoices"]["inv-1"]) == list(INVOICE)
    with pytest.raises(StateFileError, match="another certificates folder"):
        open_file(path, "b2" * 32)


def test_a_transaction_is_all_or_nothing(path: Path) -> None:
    with open_file(path) as sf:
        sf.put_connection(connection(1))
        with pytest.raises(RuntimeError), sf.transaction():
            sf.retire_token("T1", "H1", "superseded")
            sf.delete_connection("H1")
            raise RuntimeError("the store's change failed half-way")
        assert sf.load().connections == [connection(1)]
        assert sf.load().retired == []
        with sf.transaction():
            sf.retire_token("T1", "H1", "revoked")
            sf.delete_connection("H1")
        assert sf.load().connections == []


def test_a_failed_write_is_a_state_file_error_and_changes_nothing(path: Path) -> None:
    with open_file(path) as sf:
        sf.put_connection(connection(1))
        clash = connection(2)
        clash.access_token = "T1"  # the same access token on a second connection
        with pytest.raises(StateFileError, match="UNIQUE"):
            sf.put_connection(clash)
        assert sf.load().connections == [connection(1)]
        sf.close()
        sf.close()
        with pytest.raises(StateFileError, match="closed"):
            sf.put_clock(ClockState())


# -- the record codec ----------------------------------------------------------

def same(a: Any, b: Any) -> bool:
    """Equal in value *and* in form: type, Decimal exponent, NaN, -0.0,
    UTC offset, key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, datetime):
        return bool(a == b and a.isoformat() == b.isoformat())
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
zones = st.just(timezone.utc) | st.builds(timezone, offsets)
# any code point, lone surrogates and NUL made common
texts = st.text(st.characters(codec=None, exclude_categories=()) | st.sampled_from("\ud800\udfff\x00\"\\$"),
                max_size=20)
keys = texts | st.sampled_from(["$d", "$date", "$dt", "$o", "$x", ""])
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | texts
           | st.decimals() | st.dates() | st.datetimes(timezones=zones) | st.datetimes())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=4), max_leaves=25)
records = st.dictionaries(keys, values, max_size=8)


@given(records)
@settings(max_examples=150, deadline=None)
def test_codec_round_trip_is_lossless(record: dict[str, Any]) -> None:
    text = dumps_record(record)
    assert text.isascii()
    assert same(loads_record(text), record)


@given(st.lists(records, min_size=1, max_size=5))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_records_round_trip_through_the_file(tmp_path: Path, batch: list[dict[str, Any]]) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "s.sqlite"
    with open_file(path) as sf:
        sf.put_records("o", "C", {str(n): r for n, r in enumerate(batch)})
    with open_file(path) as sf:
        loaded = sf.load().records["o"]["C"]
    assert same(list(loaded.values()), batch)


def test_records_look_like_what_they_hold() -> None:
    text = dumps_record({"Total": Decimal("1.50"), "Date": date(2024, 1, 31), "Tag": {"$d": "not a tag"}})
    assert text == '{"Total":{"$d":"1.50"},"Date":{"$date":"2024-01-31"},"Tag":{"$o":[["$d","not a tag"]]}}'


@pytest.mark.parametrize("bad", [{"x": (1, 2)}, {"x": {1: "int key"}}, {"x": b"bytes"}, {"x": {1, 2}}])
def test_codec_refuses_what_it_cannot_give_back(bad: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        dumps_record(bad)


# -- bad files -----------------------------------------------------------------

def state_with_data(path: Path) -> Path:
    with open_file(path) as sf:
        sf.put_records("o", "Contacts", {f"c{n}": {"Name": "x" * 500, "n": n} for n in range(300)})
    return path


def test_garbage_bytes_are_not_a_database(path: Path) -> None:
    path.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(StateFileError, match="not a SQLite database"):
        open_file(path)
    assert path.read_text().startswith("these are my notes")  # left untouched


def test_a_damaged_header_is_not_a_database(path: Path) -> None:
    data = bytearray(state_with_data(path).read_bytes())
    data[:16] = b"not sqlite 3 hdr"
    path.write_bytes(data)
    with pytest.raises(StateFileError, match="not a SQLite database"):
        open_file(path)


def test_corrupt_pages_are_damaged(path: Path) -> None:
    data = bytearray(state_with_data(path).read_bytes())
    data[4096 * 5: 4096 * 5 + 300] = b"\xff" * 300
    path.write_bytes(data)
    with pytest.raises(StateFileError, match="is damaged"):
        open_file(path)


def test_a_truncated_file_is_damaged(path: Path) -> None:
    data = state_with_data(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StateFileError, match="is damaged"):
        open_file(path)


def test_a_damaged_record_is_named(path: Path) -> None:
    with open_file(path) as sf:
        sf.put_records("o", "Contacts", {"c-1": {"Name": "x"}})
    db = sqlite3.connect(path)
    db.execute("UPDATE records SET body='{\"Name\": '")
    db.commit()
    db.close()
    with open_file(path) as sf, pytest.raises(StateFileError, match="record c-1 of Contacts"):
        sf.load()


def test_a_damaged_value_is_a_state_file_error(path: Path) -> None:
    with open_file(path) as sf:
        sf.put_consumer(consumer())
    db = sqlite3.connect(path)
    db.execute("UPDATE consumers SET client_certificates='{not json'")
    db.commit()
    db.close()
    with open_file(path) as sf, pytest.raises(StateFileError, match="is damaged"):
        sf.load()


def test_another_programs_database_is_refused(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(StateFileError, match="not a mockxero state file"):
        open_file(path)


def test_a_newer_schema_is_refused(path: Path) -> None:
    open_file(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StateFileError, match=f"newer mockxero \\(schema version {SCHEMA_VERSION + 1}"):
        open_file(path)


def test_another_certificates_folder_is_refused(path: Path) -> None:
    with open_file(path) as sf:
        sf.put_consumer(consumer())
    with pytest.raises(StateFileError, match="belongs to another certificates folder") as caught:
        open_file(path, "c3" * 32)
    assert "--certs" in str(caught.value)
    with open_file(path) as sf:  # the refusal changed nothing
        assert sf.load().consumers == [consumer()]


def test_a_folder_or_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="is a folder"):
        open_file(tmp_path)
    with pytest.raises(StateFileError, match="does not exist"):
        open_file(tmp_path / "missing" / "state.sqlite")


HOLD = """
import sys
from mockxero.statefile import StateFile
sf = StateFile.open(sys.argv[1], sys.argv[2])
print("open", flush=True)
sys.stdin.readline()
sf.close()
"""

TRY = """
import sys
from mockxero.statefile import StateFile, StateFileError
try:
    StateFile.open(sys.argv[1], sys.argv[2], wait=0.1).close()
    print("opened")
except StateFileError as exc:
    print(exc)
"""


def python(code: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_a_file_held_by_another_process_is_refused(path: Path) -> None:
    holder = python(HOLD, str(path), IDENTITY)
    assert holder.stdout is not None
    assert holder.stdout.readline() == "open\n"
    try:
        with pytest.raises(StateFileError, match="in use by another process"):
            open_file(path, wait=0.1)
    finally:
        holder.communicate("\n", timeout=10)
    open_file(path).close()  # let go of on close


def test_a_file_held_here_is_refused_to_another_process(path: Path) -> None:
    with open_file(path):
        out, _ = python(TRY, str(path), IDENTITY).communicate(timeout=10)
        assert "in use by another process" in out
    out, _ = python(TRY, str(path), IDENTITY).communicate(timeout=10)
    assert out == "opened\n"


def test_a_killed_holder_lets_go(path: Path) -> None:
    holder = python(HOLD, str(path), IDENTITY)
    assert holder.stdout is not None
    assert holder.stdout.readline() == "open\n"
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=10)
    open_file(path).close()


# Read-only cases run in a child process as an unprivileged user: root may
# write any file whatever its mode, as the mock in a container often is not.
UNPRIVILEGED = f"""
import os, sys
from mockxero.statefile import StateFile, StateFileError
if os.geteuid() == 0:
    os.setgid({NOBODY})
    os.setuid({NOBODY})
try:
    StateFile.open(sys.argv[1], sys.argv[2], wait=0.1).close()
    print("opened")
except StateFileError as exc:
    print(exc)
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the unprivileged child can reach (pytest's tmp_path is
    private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="mockxero-state-"))
    folder.chmod(0o755)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(folder)


def as_unprivileged(path: Path) -> str:
    out, err = python(UNPRIVILEGED, str(path), IDENTITY).communicate(timeout=10)
    assert "Traceback" not in err, err
    return out.strip()


def test_a_read_only_file_is_refused(shared_dir: Path) -> None:
    path = shared_dir / "state.sqlite"
    open_file(path).close()
    if os.geteuid() == 0:  # owned by root, writable by root only
        path.chmod(0o644)
        os.chown(shared_dir, NOBODY, NOBODY)
    else:
        path.chmod(0o444)
    message = as_unprivileged(path)
    assert message == f"state file {path} is read-only (or unreadable) for this user; make it writable, " \
                      "or use another file"


def test_a_read_only_folder_is_refused(shared_dir: Path) -> None:
    path = shared_dir / "state.sqlite"
    open_file(path).close()
    if os.geteuid() == 0:  # the file is the user's, the folder is root's
        os.chown(path, NOBODY, NOBODY)
    else:
        shared_dir.chmod(0o555)
    assert "is read-only for this user" in as_unprivileged(path)
    assert f"the folder {shared_dir}" in as_unprivileged(path)
    # a new file cannot be made there either
    assert f"the folder {shared_dir}" in as_unprivileged(shared_dir / "new.sqlite")


def test_the_unprivileged_child_can_open_a_file_it_may_write(shared_dir: Path) -> None:
    """The read-only tests above fail for the reason they name, not another."""
    if os.geteuid() == 0:
        os.chown(shared_dir, NOBODY, NOBODY)
    assert as_unprivileged(shared_dir / "state.sqlite") == "opened"


# -- durability ----------------------------------------------------------------

WRITER = """
import sys
from mockxero.statefile import ConnectionRow, StateFile
sf = StateFile.open(sys.argv[1], sys.argv[2])
n = 0
while True:
    n += 1
    with sf.transaction():
        sf.put_connection(ConnectionRow(f"CK{n}", "org", f"H{n}", f"T{n}", "S", 1.0, 2.0, 3.0))
        sf.retire_token(f"OLD{n}", f"H{n}", "superseded")
        sf.put_records("org", "Contacts", {f"c{n}": {"n": n}})
    print(n, flush=True)
"""


def test_every_acknowledged_write_survives_sigkill(path: Path) -> None:
    writer = python(WRITER, str(path), IDENTITY)
    assert writer.stdout is not None
    acknowledged = 0
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 400:
            break
    writer.send_signal(signal.SIGKILL)
    rest = writer.stdout.read()  # with what the for loop had buffered
    assert writer.wait(timeout=10) == -signal.SIGKILL
    for line in rest.splitlines(keepends=True):  # what it acknowledged before it died
        if line.endswith("\n"):
            acknowledged = int(line)
    assert Path(f"{path}-wal").stat().st_size > 0  # the recovery path is what is tested
    with open_file(path) as sf:
        snap = sf.load()
    handles = {c.session_handle for c in snap.connections}
    assert {f"H{n}" for n in range(1, acknowledged + 1)} <= handles
    written = len(handles)  # what was acknowledged, plus at most the write in flight
    assert written in (acknowledged, acknowledged + 1)
    assert len(snap.retired) == written
    assert len(snap.records["org"]["Contacts"]) == written
    # the file is whole and writable again
    with open_file(path) as sf:
        sf.put_clock(ClockState(1.0, None))
