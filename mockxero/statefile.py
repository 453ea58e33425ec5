"""The state file: durable mock state in one SQLite file (``--state FILE``).

The store keeps its in-memory structures as the hot path and writes every
durable change through to this file, one transaction per change, under its
own lock; reads never touch the file. This module is only the file: plain
row dataclasses in, plain row dataclasses out, so it knows nothing of the
store's classes, Flask or sockets.

How the file is kept safe:

* **One process per file.** ``locking_mode=EXCLUSIVE`` plus a write at open
  makes SQLite hold its exclusive lock until the file is closed; a second
  mock (or any other program) opening the same file gets a clear
  "in use" error. As a bonus SQLite then keeps the WAL index in heap memory,
  so no ``-shm`` file is made and WAL works on volumes without shared
  memory support. The kernel drops the lock when the process dies, even by
  SIGKILL.
* **WAL with ``synchronous=NORMAL``.** A commit appends the transaction to
  the ``-wal`` file with ``write()`` before it returns, so once a change is
  acknowledged it is in the kernel's page cache and survives the death of
  the process (SIGTERM, SIGKILL, a container being recreated); the next open
  replays the WAL. ``FULL`` would also ``fsync`` the WAL on every commit,
  which only matters for a power cut or a kernel crash, and costs an fsync
  per commit (see ``bench/bench_statefile.py``); a mock can lose its last
  second of state to a power cut. ``StateFile.open(..., synchronous="FULL")``
  is there for whoever disagrees.
* **A schema version** (``PRAGMA user_version``) and an application id
  (``PRAGMA application_id``) say what the file is; a file from a newer
  mockxero, or another program's SQLite file, is refused.
* **Bound to a certificates folder.** The file stores an identity of the
  certificates folder it was made with (the caller passes e.g. the SHA-256
  fingerprint of the Entrust client CA); the consumers, keys and client
  certificate fingerprints in it mean nothing with another folder, so a
  mismatch is refused rather than silently mixed.
* **Checked at open**: ``PRAGMA quick_check`` must pass, and every failure
  — damaged, locked, read-only, newer — is one :class:`StateFileError` with
  a message for a human, never a traceback from sqlite3.

Records (the API data) hold str, bool, int, float, None, Decimal, ``date``
and aware ``datetime`` values in nested dicts and lists; :func:`dumps_record`
and :func:`loads_record` are a lossless tagged JSON codec for them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

#: The layout this module writes; a file with a higher number is refused.
SCHEMA_VERSION = 1
#: ``PRAGMA application_id``: "MXER", so a file says it is a mockxero state file.
APPLICATION_ID = 0x4D584552

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE consumers (
    consumer_key TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    consumer_secret TEXT NOT NULL,
    app_type TEXT NOT NULL,
    name TEXT NOT NULL,
    callback_domain TEXT,
    certificate TEXT,
    require_client_cert INTEGER NOT NULL,
    organisation_id TEXT,
    client_certificates TEXT NOT NULL  -- JSON: fingerprint -> subject
);
CREATE TABLE organisations (
    organisation_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    name TEXT NOT NULL,
    short_code TEXT NOT NULL,
    org_muid TEXT NOT NULL,
    country_code TEXT NOT NULL,
    base_currency TEXT NOT NULL
);
CREATE TABLE collections (  -- so an empty collection is still there
    organisation_id TEXT NOT NULL,
    collection TEXT NOT NULL,
    PRIMARY KEY (organisation_id, collection)
);
CREATE TABLE records (
    organisation_id TEXT NOT NULL,
    collection TEXT NOT NULL,
    record_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    body TEXT NOT NULL,  -- dumps_record()
    PRIMARY KEY (organisation_id, collection, record_id)
);
CREATE INDEX records_order ON records (organisation_id, collection, position);
CREATE TABLE connections (
    consumer_key TEXT NOT NULL,
    organisation_id TEXT NOT NULL,
    position INTEGER NOT NULL UNIQUE,
    session_handle TEXT NOT NULL UNIQUE,
    access_token TEXT NOT NULL UNIQUE,
    access_secret TEXT NOT NULL,
    token_expires_at REAL NOT NULL,
    authorization_expires_at REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (consumer_key, organisation_id)
);
CREATE TABLE retired_tokens (
    token TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    session_handle TEXT NOT NULL,
    why TEXT NOT NULL
);
CREATE TABLE request_tokens (
    token TEXT PRIMARY KEY,
    position INTEGER NOT NULL UNIQUE,
    secret TEXT NOT NULL,
    consumer_key TEXT NOT NULL,
    callback TEXT NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,
    verifier TEXT,
    organisation_id TEXT
);
CREATE TABLE clock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    offset REAL NOT NULL,
    frozen_at REAL
);
"""

#: Tables holding the state itself (not ``meta``), emptied by ``reset``.
_STATE_TABLES = ("consumers", "organisations", "collections", "records", "connections", "retired_tokens",
                 "request_tokens", "clock")


class StateFileError(Exception):
    """The state file cannot be used; the message says why and what to do."""


# -- rows ------------------------------------------------------------------------
# Field names match the store's classes, so converting is attribute copying.

@dataclasses.dataclass
class ConsumerRow:
    consumer_key: str
    consumer_secret: str
    app_type: str
    name: str
    callback_domain: str | None
    certificate: str | None
    require_client_cert: bool
    #: SHA-256 fingerprint (hex) → subject of each registered client certificate.
    client_certificates: dict[str, str]
    organisation_id: str | None


@dataclasses.dataclass
class OrganisationRow:
    organisation_id: str
    name: str
    short_code: str
    org_muid: str
    country_code: str
    base_currency: str


@dataclasses.dataclass
class ConnectionRow:
    consumer_key: str
    organisation_id: str
    session_handle: str
    access_token: str
    access_secret: str
    token_expires_at: float
    authorization_expires_at: float
    created_at: float


@dataclasses.dataclass
class RetiredToken:
    """A token that stopped working, and why (superseded, revoked, replaced)."""

    token: str
    session_handle: str
    why: str


@dataclasses.dataclass
class RequestTokenRow:
    token: str
    secret: str
    consumer_key: str
    callback: str
    expires_at: float
    state: str
    verifier: str | None
    organisation_id: str | None


@dataclasses.dataclass
class ClockState:
    """The mock clock: real time plus ``offset``, or stopped at ``frozen_at``."""

    offset: float = 0.0
    frozen_at: float | None = None


_Row = TypeVar("_Row", ConsumerRow, OrganisationRow, ConnectionRow, RequestTokenRow)


def row_of(row_type: type[_Row], obj: Any) -> _Row:
    """The row of ``row_type`` with the same-named attributes of ``obj`` (a
    store object): the store's hooks stay one line each."""
    row = row_type(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(row_type)})
    if isinstance(row, ConsumerRow):
        row.client_certificates = dict(row.client_certificates)
    return row


#: organisation id → collection → record id → record, each level in order.
Records = dict[str, dict[str, dict[str, dict[str, Any]]]]


@dataclasses.dataclass
class Snapshot:
    """Everything durable, in the order the store keeps it."""

    consumers: list[ConsumerRow] = dataclasses.field(default_factory=list)
    organisations: list[OrganisationRow] = dataclasses.field(default_factory=list)
    records: Records = dataclasses.field(default_factory=dict)
    connections: list[ConnectionRow] = dataclasses.field(default_factory=list)
    #: Oldest first.
    retired: list[RetiredToken] = dataclasses.field(default_factory=list)
    #: Oldest first.
    request_tokens: list[RequestTokenRow] = dataclasses.field(default_factory=list)
    clock: ClockState = dataclasses.field(default_factory=ClockState)
    #: Runtime switches changed through the control API, or None when none was.
    switches: dict[str, Any] | None = None
    #: What a full reset returns to (consumers, organisations and their
    #: records; the rest empty), kept so that it is the same after a restart.
    baseline: Snapshot | None = None


# -- the record codec -----------------------------------------------------------
# JSON, with the types JSON lacks written as one-key objects: {"$d": "1.50"}
# (Decimal, exponent kept), {"$date": "2024-01-31"}, {"$dt": isoformat} (or
# [local isoformat, UTC offset in µs] for an offset with microseconds). A
# record's own dict that happens to look like a tag is written as
# {"$o": [[key, value], ...]}, so nothing a record holds can be misread.

_DECIMAL, _DATE, _DATETIME, _OBJECT = "$d", "$date", "$dt", "$o"
_TAGS = frozenset((_DECIMAL, _DATE, _DATETIME, _OBJECT))


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Decimal):
        return {_DECIMAL: str(value)}
    if isinstance(value, datetime):  # before date: a datetime is a date
        offset = value.utcoffset()
        if offset is not None and offset.microseconds:  # fromisoformat loses these (CPython 3.11)
            return {_DATETIME: [value.replace(tzinfo=None).isoformat(), offset // timedelta(microseconds=1)]}
        return {_DATETIME: value.isoformat()}
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"record keys must be str, not {type(key).__name__}")
        if len(value) == 1 and next(iter(value)) in _TAGS:
            return {_OBJECT: [[k, _encode(v)] for k, v in value.items()]}
        return {k: _encode(v) for k, v in value.items()}
    raise TypeError(f"a record cannot hold a {type(value).__name__} ({value!r})")


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        tag, text = next(iter(obj.items()))
        if tag == _DECIMAL:
            return Decimal(text)
        if tag == _DATETIME:
            if isinstance(text, list):
                local, offset = text
                return datetime.fromisoformat(local).replace(
                    tzinfo=timezone(timedelta(microseconds=offset)))
            return datetime.fromisoformat(text)
        if tag == _DATE:
            return date.fromisoformat(text)
        if tag == _OBJECT:
            return dict(text)
    return obj


def dumps_record(record: Mapping[str, Any]) -> str:
    """A record as tagged JSON text (ASCII, so even a lone surrogate survives)."""
    return json.dumps(_encode(dict(record)), separators=(",", ":"))


def loads_record(text: str) -> dict[str, Any]:
    """The exact record :func:`dumps_record` was given."""
    value = json.loads(text, object_hook=_decode_object)
    if not isinstance(value, dict):
        raise ValueError("a record must be a JSON object")
    return value


# -- the file -------------------------------------------------------------------

def _explain(exc: sqlite3.Error, path: Path, doing: str) -> StateFileError:
    """One sqlite3 failure as a message that says what to do about it."""
    text = str(exc).lower()
    folder = path.parent
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return StateFileError(f"state file {path} is read-only (or unreadable) for this user; "
                              "make it writable, or use another file")
    if not os.access(folder, os.W_OK | os.X_OK):
        return StateFileError(f"the folder {folder} of state file {path} is read-only for this user; "
                              "SQLite writes its journal (-wal) beside the file, so the folder must "
                              "be writable")
    if "locked" in text or "busy" in text:
        return StateFileError(f"state file {path} is in use by another process (another mockxero "
                              "serving it?); each running mock needs its own state file")
    if "not a database" in text:
        return StateFileError(f"{path} is not a mockxero state file: it is not a SQLite database "
                              "(damaged, or another kind of file); move it away or use another file")
    if "malformed" in text or "corrupt" in text:
        return StateFileError(f"state file {path} is damaged ({exc}); move it away to start afresh")
    if "readonly" in text or "read-only" in text:
        return StateFileError(f"state file {path} cannot be written ({exc}); check its permissions "
                              "and those of its folder, and that the disk is not mounted read-only")
    if "unable to open" in text:
        return StateFileError(f"state file {path} cannot be opened or created ({exc}); check that "
                              "its folder exists and is writable")
    if "full" in text:  # "database or disk is full"
        return StateFileError(f"state file {path}: the disk is full ({exc})")
    return StateFileError(f"state file {path}: {doing} failed: {exc}")


class StateFile:
    """An open state file, held exclusively by this process until closed.

    Every ``put_*``/``delete_*`` method is one transaction, committed before
    it returns; ``with state.transaction():`` groups several into one (the
    store uses that when one change touches several tables, e.g. a renewal
    retires a token and updates a connection)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, certs_identity: str) -> None:
        self.path = path
        self.certs_identity = certs_identity
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()
        self._depth = 0

    # -- opening -------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], certs_identity: str, *,
             synchronous: str = "NORMAL", wait: float = 1.0) -> StateFile:
        """Open (creating if absent or empty) the state file at ``path`` for
        the certificates folder whose identity is ``certs_identity``.
        ``wait`` is how long to wait for another process to let go of it."""
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        file = Path(path)
        if file.is_dir():
            raise StateFileError(f"state file {file} is a folder; give the path of a file in it")
        if not file.parent.is_dir():
            raise StateFileError(f"the folder {file.parent} of state file {file} does not exist")
        try:
            conn = sqlite3.connect(str(file), timeout=wait, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise _explain(exc, file, "opening") from None
        try:
            cls._prepare(conn, file, certs_identity, synchronous.upper())
        except BaseException:
            conn.close()
            raise
        return cls(file, conn, certs_identity)

    @staticmethod
    def _prepare(conn: sqlite3.Connection, file: Path, identity: str, synchronous: str) -> None:
        try:
            # EXCLUSIVE before the first access, so WAL never uses shared memory.
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.Error as exc:
            raise _explain(exc, file, "reading") from None
        fresh = tables == 0 and app_id == 0 and version == 0
        if not fresh:
            if app_id != APPLICATION_ID:
                raise StateFileError(f"{file} is a SQLite database but not a mockxero state file; "
                                     "use another file")
            if version > SCHEMA_VERSION:
                raise StateFileError(f"state file {file} was written by a newer mockxero (schema "
                                     f"version {version}; this one reads up to {SCHEMA_VERSION}); "
                                     "upgrade mockxero or use another file")
            if version < 1:
                raise StateFileError(f"state file {file} has no schema version; it is damaged")
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StateFileError(f"state file {file}: SQLite would not use WAL mode here "
                                     f"(it chose {mode!r})")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            if not fresh:
                problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise StateFileError(f"state file {file} is damaged (SQLite's check says: "
                                         f"{'; '.join(problems[:3])}); move it away to start afresh")
            # The first write takes the exclusive lock, held until close.
            conn.execute("BEGIN IMMEDIATE")
            try:
                if fresh:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                     [("certs_identity", identity), ("created_at", str(time.time()))])
                    conn.execute("INSERT INTO clock VALUES (1, 0.0, NULL)")
                else:
                    row = conn.execute("SELECT value FROM meta WHERE key='certs_identity'").fetchone()
                    if row is None:
                        raise StateFileError(f"state file {file} does not say which certificates "
                                             "folder it belongs to; it is damaged")
                    if row[0] != identity:
                        raise StateFileError(
                            f"state file {file} belongs to another certificates folder (its client "
                            f"CA is {row[0][:16]}…, this folder's is {identity[:16]}…); start with "
                            "the --certs folder it was made with, or use another state file")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _explain(exc, file, "opening") from None

    # -- transactions --------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction around everything inside; nested uses join the
        outer one. Committed (and so acknowledged) when the outermost ends."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StateFileError(f"state file {self.path} is closed")
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _explain(exc, self.path, "writing") from None
            finally:
                self._depth = 0

    # -- writes --------------------------------------------------------------
    def put_consumer(self, row: ConsumerRow) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO consumers VALUES (?, (SELECT coalesce(max(position), 0) + 1 FROM consumers),"
                " ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (consumer_key) DO UPDATE SET"
                " consumer_secret=excluded.consumer_secret, app_type=excluded.app_type,"
                " name=excluded.name, callback_domain=excluded.callback_domain,"
                " certificate=excluded.certificate, require_client_cert=excluded.require_client_cert,"
                " organisation_id=excluded.organisation_id,"
                " client_certificates=excluded.client_certificates",
                (row.consumer_key, row.consumer_secret, row.app_type, row.name, row.callback_domain,
                 row.certificate, int(row.require_client_cert), row.organisation_id,
                 json.dumps(row.client_certificates)))

    def delete_consumer(self, consumer_key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM consumers WHERE consumer_key=?", (consumer_key,))

    def put_organisation(self, row: OrganisationRow) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO organisations VALUES (?, (SELECT coalesce(max(position), 0) + 1"
                " FROM organisations), ?, ?, ?, ?, ?) ON CONFLICT (organisation_id) DO UPDATE SET"
                " name=excluded.name, short_code=excluded.short_code, org_muid=excluded.org_muid,"
                " country_code=excluded.country_code, base_currency=excluded.base_currency",
                (row.organisation_id, row.name, row.short_code, row.org_muid, row.country_code,
                 row.base_currency))

    def delete_organisation(self, organisation_id: str) -> None:
        """The organisation and all its records."""
        with self.transaction() as db:
            db.execute("DELETE FROM records WHERE organisation_id=?", (organisation_id,))
            db.execute("DELETE FROM collections WHERE organisation_id=?", (organisation_id,))
            db.execute("DELETE FROM organisations WHERE organisation_id=?", (organisation_id,))

    def put_records(self, organisation_id: str, collection: str,
                    records_by_id: Mapping[str, Mapping[str, Any]], replace: bool = False) -> None:
        """Add or update records, in the mapping's order; an updated record
        keeps its place, a new one goes last. ``replace`` first empties the
        collection, so it then holds exactly ``records_by_id``."""
        bodies = [(record_id, dumps_record(record)) for record_id, record in records_by_id.items()]
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO collections VALUES (?, ?)", (organisation_id, collection))
            if replace:
                db.execute("DELETE FROM records WHERE organisation_id=? AND collection=?",
                           (organisation_id, collection))
            last = db.execute("SELECT coalesce(max(position), 0) FROM records"
                              " WHERE organisation_id=? AND collection=?",
                              (organisation_id, collection)).fetchone()[0]
            db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?) ON CONFLICT"
                " (organisation_id, collection, record_id) DO UPDATE SET body=excluded.body",
                [(organisation_id, collection, record_id, last + n, body)
                 for n, (record_id, body) in enumerate(bodies, 1)])

    def delete_records(self, organisation_id: str, collection: str,
                       record_ids: Iterable[str] | None = None) -> None:
        """Those records, or (``record_ids`` None) all of them: the
        collection stays, empty."""
        with self.transaction() as db:
            if record_ids is None:
                db.execute("DELETE FROM records WHERE organisation_id=? AND collection=?",
                           (organisation_id, collection))
            else:
                db.executemany("DELETE FROM records WHERE organisation_id=? AND collection=?"
                               " AND record_id=?",
                               [(organisation_id, collection, rid) for rid in record_ids])

    def put_connection(self, row: ConnectionRow, last: bool = False) -> None:
        """A consumer's connection to an organisation (there is at most one),
        added or updated — also when a renewal gave it a new session handle.
        An update keeps its place, or with ``last`` goes to the end (as a
        renewed or replaced connection does in the store)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO connections VALUES (?, ?, (SELECT coalesce(max(position), 0) + 1"
                " FROM connections), ?, ?, ?, ?, ?, ?) ON CONFLICT (consumer_key, organisation_id)"
                " DO UPDATE SET session_handle=excluded.session_handle,"
                " access_token=excluded.access_token, access_secret=excluded.access_secret,"
                " token_expires_at=excluded.token_expires_at,"
                " authorization_expires_at=excluded.authorization_expires_at,"
                " created_at=excluded.created_at"
                + (", position=excluded.position" if last else ""),
                (row.consumer_key, row.organisation_id, row.session_handle, row.access_token,
                 row.access_secret, row.token_expires_at, row.authorization_expires_at,
                 row.created_at))

    def delete_connection(self, session_handle: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM connections WHERE session_handle=?", (session_handle,))

    def retire_token(self, token: str, session_handle: str, why: str, forget: Iterable[str] = ()) -> None:
        """Remember why ``token`` stopped working (it becomes the newest), and
        forget the retired tokens in ``forget`` (those the store's bound
        pushes out: named, because finding the oldest N here costs a scan)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO retired_tokens VALUES (?, (SELECT coalesce(max(position),"
                       " 0) + 1 FROM retired_tokens), ?, ?)", (token, session_handle, why))
            db.executemany("DELETE FROM retired_tokens WHERE token=?", [(t,) for t in forget])

    def put_request_token(self, row: RequestTokenRow) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO request_tokens VALUES (?, (SELECT coalesce(max(position), 0) + 1"
                " FROM request_tokens), ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (token) DO UPDATE SET"
                " secret=excluded.secret, consumer_key=excluded.consumer_key,"
                " callback=excluded.callback, expires_at=excluded.expires_at, state=excluded.state,"
                " verifier=excluded.verifier, organisation_id=excluded.organisation_id",
                (row.token, row.secret, row.consumer_key, row.callback, row.expires_at, row.state,
                 row.verifier, row.organisation_id))

    def delete_request_token(self, token: str | Iterable[str]) -> None:
        """One request token, or every token in an iterable."""
        tokens = [token] if isinstance(token, str) else list(token)
        with self.transaction() as db:
            db.executemany("DELETE FROM request_tokens WHERE token=?", [(t,) for t in tokens])

    def put_clock(self, clock: ClockState) -> None:
        with self.transaction() as db:
            db.execute("UPDATE clock SET offset=?, frozen_at=? WHERE id=1",
                       (clock.offset, clock.frozen_at))

    def put_switches(self, switches: Mapping[str, Any] | None) -> None:
        """The runtime switches changed through the control API (JSON
        values), or None to follow the settings again."""
        with self.transaction() as db:
            if switches is None:
                db.execute("DELETE FROM meta WHERE key='switches'")
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('switches', ?)",
                           (json.dumps(dict(switches)),))

    def put_baseline(self, baseline: Snapshot) -> None:
        """Remember what a full reset returns to: its consumers, organisations
        and records (one JSON text; it is written once, read at start)."""
        text = dumps_record({
            "consumers": [dataclasses.asdict(c) for c in baseline.consumers],
            "organisations": [dataclasses.asdict(o) for o in baseline.organisations],
            "records": baseline.records,
        })
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('baseline', ?)", (text,))

    def reset(self, snapshot: Snapshot) -> None:
        """Replace everything durable by ``snapshot``, in one transaction
        (the baseline and the certificates binding stay)."""
        with self.transaction() as db:
            for table in _STATE_TABLES:
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key='switches'")
            db.execute("INSERT INTO clock VALUES (1, ?, ?)",
                       (snapshot.clock.offset, snapshot.clock.frozen_at))
            for consumer in snapshot.consumers:
                self.put_consumer(consumer)
            for org in snapshot.organisations:
                self.put_organisation(org)
            for org_id, collections in snapshot.records.items():
                for collection, records in collections.items():
                    self.put_records(org_id, collection, records)
            for conn in snapshot.connections:
                self.put_connection(conn)
            for retired in snapshot.retired:
                self.retire_token(retired.token, retired.session_handle, retired.why)
            for rt in snapshot.request_tokens:
                self.put_request_token(rt)
            if snapshot.switches is not None:
                self.put_switches(snapshot.switches)

    # -- reading -------------------------------------------------------------
    def load(self) -> Snapshot:
        """Everything in the file, as plain rows in the store's order."""
        with self._lock:
            db = self._conn
            if db is None:
                raise StateFileError(f"state file {self.path} is closed")
            try:
                return self._load(db)
            except sqlite3.Error as exc:
                raise _explain(exc, self.path, "reading") from None
            except (ValueError, TypeError) as exc:  # a value no mockxero wrote (edited by hand?)
                raise StateFileError(f"state file {self.path} is damaged: {exc}; move it away to "
                                     "start afresh") from None

    def _load(self, db: sqlite3.Connection) -> Snapshot:
        snap = Snapshot()
        for (key, secret, app_type, name, domain, cert, require, org_id,
             client_certs) in db.execute(
                "SELECT consumer_key, consumer_secret, app_type, name, callback_domain, certificate,"
                " require_client_cert, organisation_id, client_certificates FROM consumers"
                " ORDER BY position"):
            snap.consumers.append(ConsumerRow(key, secret, app_type, name, domain, cert, bool(require),
                                              json.loads(client_certs), org_id))
        for row in db.execute("SELECT organisation_id, name, short_code, org_muid, country_code,"
                              " base_currency FROM organisations ORDER BY position"):
            snap.organisations.append(OrganisationRow(*row))
        for org_id, collection in db.execute("SELECT organisation_id, collection FROM collections"
                                             " ORDER BY rowid"):
            snap.records.setdefault(org_id, {})[collection] = {}
        for org_id, collection, record_id, body in db.execute(
                "SELECT organisation_id, collection, record_id, body FROM records"
                " ORDER BY organisation_id, collection, position"):
            try:
                record = loads_record(body)
            except ValueError as exc:
                raise StateFileError(f"state file {self.path} is damaged: record {record_id} of "
                                     f"{collection} cannot be read ({exc})") from None
            snap.records.setdefault(org_id, {}).setdefault(collection, {})[record_id] = record
        for row in db.execute("SELECT consumer_key, organisation_id, session_handle, access_token,"
                              " access_secret, token_expires_at, authorization_expires_at, created_at"
                              " FROM connections ORDER BY position"):
            snap.connections.append(ConnectionRow(*row))
        for row in db.execute("SELECT token, session_handle, why FROM retired_tokens ORDER BY position"):
            snap.retired.append(RetiredToken(*row))
        for row in db.execute("SELECT token, secret, consumer_key, callback, expires_at, state,"
                              " verifier, organisation_id FROM request_tokens ORDER BY position"):
            snap.request_tokens.append(RequestTokenRow(*row))
        clock = db.execute("SELECT offset, frozen_at FROM clock WHERE id=1").fetchone()
        if clock is not None:
            snap.clock = ClockState(*clock)
        switches = db.execute("SELECT value FROM meta WHERE key='switches'").fetchone()
        if switches is not None:
            snap.switches = json.loads(switches[0])
        baseline = db.execute("SELECT value FROM meta WHERE key='baseline'").fetchone()
        if baseline is not None:
            try:
                data = loads_record(baseline[0])
                snap.baseline = Snapshot(
                    consumers=[ConsumerRow(**c) for c in data["consumers"]],
                    organisations=[OrganisationRow(**o) for o in data["organisations"]],
                    records=data["records"])
            except (ValueError, TypeError, KeyError) as exc:
                raise StateFileError(f"state file {self.path} is damaged: its baseline cannot be "
                                     f"read ({exc})") from None
        return snap

    # -- closing -------------------------------------------------------------
    def close(self) -> None:
        """Checkpoint, remove the -wal file and let go of the lock. Safe to call twice."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()

    def __enter__(self) -> StateFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
