"""All mutable state of a running mock, behind one lock.

Two kinds of state, told apart here and nowhere else:

* **durable** (:class:`Durable`): consumers, organisations and their API
  data, pending request tokens, connections and the tokens they retired —
  what a user's application holds on to, and what a state file keeps;
* **ephemeral** (:class:`Ephemeral`): nonces, the request journal, queued
  faults and rate-limit windows — per-request bookkeeping, bounded, gone
  with the process.

Every change goes through a method of :class:`Store` under ``self._lock``,
and nothing outside this module takes the lock or reads the containers.
What the store hands out cannot change behind it: consumers, organisations,
request tokens and connections are frozen values (a change replaces them),
and an organisation's API data is published copy-on-write — a collection
handed out is never changed again, so readers iterate it without the lock.

With a state file attached (:meth:`Store.attach`, for ``--state``), each
durable change is first written to it — one transaction, under the lock —
and only then made in memory, so a change the file cannot take is not made.
The hooks are one line per change, all going through :class:`_WriteThrough`
at the end of this module; reads never touch the file.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import heapq
import itertools
import secrets
import string
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from . import statefile

APP_TYPES = ("partner", "public", "private")
MAX_REQUEST_TOKENS = 10000
_ALPHABET = string.ascii_uppercase + string.digits

#: An API record in Xero's field names (the api_data module owns its shape).
Record = dict[str, Any]
#: One published collection: record id → record, in insertion order.
Collection = Mapping[str, Record]


def new_token() -> str:
    """30 characters of ``[A-Z0-9]``: the shape of every Xero token, secret,
    verifier and session handle."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(30))


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


class StoreError(ValueError):
    """An operation on the store was given something it cannot do."""


@dataclasses.dataclass(frozen=True)
class Consumer:
    consumer_key: str
    consumer_secret: str
    app_type: str = "partner"
    name: str = "Partner application"
    callback_domain: str | None = None
    #: PEM of the uploaded application certificate (the RSA-SHA1 public key).
    certificate: str | None = None
    require_client_cert: bool = True
    #: SHA-256 fingerprint (hex) → subject of each client certificate registered to it.
    client_certificates: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))
    #: Private applications are bound to one organisation.
    organisation_id: str | None = None
    # Derived from ``certificate`` once, so a signature check needs no parsing.
    public_key: RSAPublicKey | None = dataclasses.field(default=None, init=False, repr=False,
                                                        compare=False)
    certificate_not_after: datetime | None = dataclasses.field(default=None, init=False, compare=False)
    certificate_not_before: datetime | None = dataclasses.field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.app_type not in APP_TYPES:
            raise StoreError(f"app_type must be one of {', '.join(APP_TYPES)}")
        if not isinstance(self.client_certificates, MappingProxyType):
            object.__setattr__(self, "client_certificates", MappingProxyType(dict(self.client_certificates)))
        if self.certificate is not None:
            try:
                cert = x509.load_pem_x509_certificate(self.certificate.encode())
            except ValueError as exc:
                raise StoreError(f"certificate is not a PEM X.509 certificate: {exc}") from None
            key = cert.public_key()
            if not isinstance(key, RSAPublicKey):
                raise StoreError("the application certificate must hold an RSA public key")
            object.__setattr__(self, "public_key", key)
            object.__setattr__(self, "certificate_not_after", cert.not_valid_after_utc)
            object.__setattr__(self, "certificate_not_before", cert.not_valid_before_utc)

    def to_json(self) -> dict[str, Any]:
        return {
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "app_type": self.app_type,
            "name": self.name,
            "callback_domain": self.callback_domain,
            "require_client_cert": self.require_client_cert,
            "has_certificate": self.certificate is not None,
            "certificate_expires": _iso(self.certificate_not_after),
            "client_certificates": sorted(self.client_certificates),
            "organisation_id": self.organisation_id,
        }


@dataclasses.dataclass(frozen=True)
class Organisation:
    organisation_id: str
    name: str
    short_code: str
    #: The ``xero_org_muid`` the AccessToken exchange returns.
    org_muid: str
    country_code: str = "NZ"
    base_currency: str = "NZD"

    def to_json(self, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
        return {
            "organisation_id": self.organisation_id,
            "name": self.name,
            "short_code": self.short_code,
            "org_muid": self.org_muid,
            "country_code": self.country_code,
            "base_currency": self.base_currency,
            "counts": dict(counts or {}),
        }


@dataclasses.dataclass(frozen=True)
class RequestToken:
    token: str
    secret: str
    consumer_key: str
    callback: str  # a URL or "oob"
    expires_at: float
    state: str = "pending"  # pending | authorized | denied | used
    verifier: str | None = None
    organisation_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "oauth_token": self.token,
            "consumer_key": self.consumer_key,
            "callback": self.callback,
            "state": self.state,
            "expires_at": self.expires_at,
            "organisation_id": self.organisation_id,
        }


@dataclasses.dataclass(frozen=True)
class Connection:
    consumer_key: str
    organisation_id: str
    session_handle: str
    access_token: str
    access_secret: str
    token_expires_at: float
    authorization_expires_at: float
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "consumer_key": self.consumer_key,
            "organisation_id": self.organisation_id,
            "session_handle": self.session_handle,
            "oauth_token": self.access_token,
            "token_expires_at": self.token_expires_at,
            "authorization_expires_at": self.authorization_expires_at,
            "created_at": self.created_at,
        }


#: Why a token that is no longer current stopped working.
RETIRED_SUPERSEDED = "superseded"
RETIRED_REVOKED = "revoked"
RETIRED_REPLACED = "replaced"


@dataclasses.dataclass
class Fault:
    """The next ``count`` requests whose path matches ``path`` (a
    case-insensitive glob) — and whose consumer is ``consumer_key`` when
    given — get this instead of (or, for ``delay``, before) their answer."""

    kind: str  # problem | offline | rate_limit | delay
    path: str = "*"
    count: int = 1
    consumer_key: str | None = None
    problem: str | None = None
    advice: str | None = None
    status: int | None = None
    delay: float = 0.0
    window: str = "minute"  # for rate_limit: minute | day
    fault_id: int = 0

    def matches(self, path: str, consumer_key: str | None) -> bool:
        if self.consumer_key is not None and self.consumer_key != consumer_key:
            return False
        return fnmatch.fnmatchcase(path.lower(), self.path.lower())

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["id"] = data.pop("fault_id")
        return {k: v for k, v in data.items() if v is not None}


FAULT_KINDS = ("problem", "offline", "rate_limit", "delay")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclasses.dataclass
class Durable:
    """What survives a restart when a state file is given. Its containers
    are replaced or extended under the store lock, never handed out."""

    consumers: dict[str, Consumer] = dataclasses.field(default_factory=dict)
    #: In insertion order: the first is the default organisation.
    organisations: dict[str, Organisation] = dataclasses.field(default_factory=dict)
    #: organisation id → collection name → its published (never changed) records.
    data: dict[str, dict[str, Collection]] = dataclasses.field(default_factory=dict)
    request_tokens: dict[str, RequestToken] = dataclasses.field(default_factory=dict)
    #: By session handle.
    connections: dict[str, Connection] = dataclasses.field(default_factory=dict)
    #: Token → (session handle, why) for tokens that used to be current; bounded.
    retired: OrderedDict[str, tuple[str, str]] = dataclasses.field(default_factory=OrderedDict)

    def baseline(self) -> Durable:
        """A copy to return to: consumers, organisations and their data
        (the values are immutable, so a shallow copy is a snapshot)."""
        return Durable(consumers=dict(self.consumers), organisations=dict(self.organisations),
                       data={org: dict(cols) for org, cols in self.data.items()})


@dataclasses.dataclass
class Ephemeral:
    """Per-request bookkeeping, bounded, never persisted."""

    #: Digests (:meth:`Store.nonce_digest`) of the (consumer key, nonce) pairs
    #: seen within their timestamp window.
    nonces: set[int] = dataclasses.field(default_factory=set)
    #: (forget at, consumer key) → the digests to forget then: one list for all
    #: the nonces a consumer sent with one timestamp, not a record each.
    nonce_buckets: dict[tuple[float, str], list[int]] = dataclasses.field(default_factory=dict)
    #: Heap of the buckets' keys, soonest first.
    nonce_expiry: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    journal: deque[dict[str, Any]] = dataclasses.field(default_factory=deque)
    faults: list[Fault] = dataclasses.field(default_factory=list)
    #: (consumer key, organisation id) → (minute window, day window) of call times.
    rate_windows: dict[tuple[str, str], tuple[deque[float], deque[float]]] = dataclasses.field(
        default_factory=dict)


class Store:
    def __init__(self, journal_size: int = 1000, retired_size: int = 10000,
                 max_request_tokens: int = MAX_REQUEST_TOKENS) -> None:
        self._lock = threading.RLock()
        self._durable = Durable()
        self._ephemeral = Ephemeral(journal=deque(maxlen=journal_size))
        self._journal_size = journal_size
        # Indexes over the durable connections, rebuilt with them.
        self._by_access_token: dict[str, str] = {}  # token → session handle
        self._by_pair: dict[tuple[str, str], str] = {}  # (consumer, organisation) → session handle
        self._retired_size = retired_size
        self._max_request_tokens = max_request_tokens
        self._journal_seq = itertools.count(1)
        self._fault_seq = itertools.count(1)
        self._journal_changed = threading.Condition(self._lock)
        self._baseline: Durable | None = None
        self._nonce_key = secrets.token_bytes(16)
        #: Every durable change is written here first (a no-op without a state file).
        self._file = _WriteThrough(None, self._evicted_by)

    # -- baseline and reset --------------------------------------------------
    def mark_baseline(self) -> None:
        """Remember the consumers and organisations (with their data) as the
        state ``reset`` returns to."""
        with self._lock:
            baseline = self._durable.baseline()
            self._file.baseline(baseline)
            self._baseline = baseline

    def reset(self, consumer_key: str | None = None) -> None:
        """Everything back to the baseline; or, with ``consumer_key``, forget
        only that consumer's tokens, connections, nonces, journal entries,
        rate-limit windows and faults."""
        with self._lock:
            eph = self._ephemeral
            if consumer_key is None:
                durable = (self._baseline or Durable()).baseline()
                self._file.reset(durable)
                self._durable = durable
                self._by_access_token.clear()
                self._by_pair.clear()
                self._ephemeral = Ephemeral(journal=deque(maxlen=self._journal_size))
                self._journal_changed.notify_all()
                return
            self._require_consumer(consumer_key)
            tokens = self._durable.request_tokens
            dropped = [t for t, r in tokens.items() if r.consumer_key == consumer_key]
            conns = [c for c in self._durable.connections.values() if c.consumer_key == consumer_key]
            self._file.forget(dropped, conns)
            for token in dropped:
                del tokens[token]
            for conn in conns:
                self._drop_connection(conn, None)
            for bucket in [k for k in eph.nonce_buckets if k[1] == consumer_key]:
                eph.nonces.difference_update(eph.nonce_buckets.pop(bucket))
            eph.nonce_expiry = [k for k in eph.nonce_expiry if k[1] != consumer_key]
            heapq.heapify(eph.nonce_expiry)
            kept = [e for e in eph.journal if e.get("consumer_key") != consumer_key]
            eph.journal.clear()
            eph.journal.extend(kept)
            eph.faults = [f for f in eph.faults if f.consumer_key != consumer_key]
            for key in [k for k in eph.rate_windows if k[0] == consumer_key]:
                del eph.rate_windows[key]

    # -- consumers -------------------------------------------------------------
    def add_consumer(self, consumer: Consumer) -> Consumer:
        with self._lock:
            if consumer.consumer_key in self._durable.consumers:
                raise StoreError(f"consumer {consumer.consumer_key} already exists")
            if consumer.organisation_id is not None:
                self.organisation(consumer.organisation_id)
            self._file.consumer(consumer)
            self._durable.consumers[consumer.consumer_key] = consumer
            return consumer

    def update_consumer(self, consumer_key: str, **changes: Any) -> Consumer:
        """The consumer with ``changes`` (field → new value) applied."""
        with self._lock:
            consumer = dataclasses.replace(self._require_consumer(consumer_key), **changes)
            self._file.consumer(consumer)
            self._durable.consumers[consumer_key] = consumer
            return consumer

    def consumer(self, consumer_key: str) -> Consumer | None:
        return self._durable.consumers.get(consumer_key)

    def consumers(self) -> list[Consumer]:
        with self._lock:
            return list(self._durable.consumers.values())

    def _require_consumer(self, consumer_key: str) -> Consumer:
        consumer = self._durable.consumers.get(consumer_key)
        if consumer is None:
            raise StoreError(f"no consumer with key {consumer_key}")
        return consumer

    def register_client_certificate(self, consumer_key: str, cert: x509.Certificate) -> str:
        with self._lock:
            consumer = self._require_consumer(consumer_key)
            fp = fingerprint(cert)
            certificates = {**consumer.client_certificates, fp: cert.subject.rfc4514_string()}
            self.update_consumer(consumer_key, client_certificates=certificates)
            return fp

    def unregister_client_certificate(self, consumer_key: str, fp: str) -> None:
        with self._lock:
            consumer = self._require_consumer(consumer_key)
            certificates = dict(consumer.client_certificates)
            if certificates.pop(fp.lower(), None) is None:
                raise StoreError(f"no client certificate {fp} registered to {consumer_key}")
            self.update_consumer(consumer_key, client_certificates=certificates)

    # -- organisations and their data -------------------------------------------
    def add_organisation(self, org: Organisation, data: Mapping[str, Collection]) -> Organisation:
        """A new organisation with its API data (collection → records)."""
        with self._lock:
            if org.organisation_id in self._durable.organisations:
                raise StoreError(f"organisation {org.organisation_id} already exists")
            self._file.organisation(org, data)
            self._durable.organisations[org.organisation_id] = org
            self._durable.data[org.organisation_id] = {name: _published(records)
                                                       for name, records in data.items()}
            return org

    def organisations(self) -> list[Organisation]:
        with self._lock:
            return list(self._durable.organisations.values())

    def organisation(self, ref: str | None = None) -> Organisation:
        """By id, short code or name (case-insensitive); None → the default
        (first) organisation."""
        with self._lock:
            orgs = self._durable.organisations
            if not orgs:
                raise StoreError("there are no organisations")
            if ref is None or ref == "":
                return next(iter(orgs.values()))
            if ref in orgs:
                return orgs[ref]
            wanted = ref.lower()
            for org in orgs.values():
                if wanted in (org.short_code.lower(), org.name.lower(), org.organisation_id.lower()):
                    return org
            raise StoreError(f"no organisation {ref!r}")

    def collections(self, organisation_id: str) -> dict[str, Collection]:
        """The organisation's published collections: a consistent snapshot
        that later saves never change (they publish new ones)."""
        with self._lock:
            return dict(self._durable.data.get(organisation_id, {}))

    def records(self, organisation_id: str, collection: str) -> Collection:
        with self._lock:
            return self._durable.data.get(organisation_id, {}).get(collection, _EMPTY)

    def counts(self, organisation_id: str) -> dict[str, int]:
        with self._lock:
            return {name: len(items) for name, items in self._durable.data.get(organisation_id, {}).items()}

    def publish(self, organisation_id: str, seen: Mapping[str, Collection],
                changed: Mapping[str, Collection]) -> bool:
        """Swap in ``changed`` collections, built (outside the lock) from the
        snapshot ``seen``; False, changing nothing, if another save published
        first — the caller builds again from a new snapshot."""
        with self._lock:
            current = self._durable.data.get(organisation_id)
            if current is None:
                raise StoreError(f"no organisation {organisation_id!r}")
            if any(current.get(name, _EMPTY) is not seen.get(name, _EMPTY) for name in changed):
                return False
            self._file.collections(organisation_id, current, changed)
            for name, records in changed.items():  # handed over: the caller never touches them again
                current[name] = MappingProxyType(records)
            return True

    def update_data(self, organisation_id: str,
                    build: Callable[[dict[str, Collection]], tuple[Any, Mapping[str, Collection]]]) -> Any:
        """Run ``build(snapshot) -> (result, changed collections)`` outside
        the lock and publish what it changed, again from a fresh snapshot if
        another save got in first; returns ``result``."""
        while True:
            seen = self.collections(organisation_id)
            result, changed = build(seen)
            if not changed or self.publish(organisation_id, seen, changed):
                return result

    # -- request tokens --------------------------------------------------------
    def new_request_token(self, consumer_key: str, callback: str, expires_at: float) -> RequestToken:
        with self._lock:
            rt = RequestToken(new_token(), new_token(), consumer_key, callback, expires_at)
            pruned = self._prunable_request_tokens()
            self._file.request_token(rt, pruned)
            for token in pruned:
                del self._durable.request_tokens[token]
            self._durable.request_tokens[rt.token] = rt
            return rt

    def _prunable_request_tokens(self) -> list[str]:
        """What keeps the dict bounded in long runs: past the limit, the
        finished (used or denied) tokens, then the oldest half. Insertion
        order is age order, and expiry cannot be used because tests move the
        mock clock both ways."""
        tokens = self._durable.request_tokens
        if len(tokens) < self._max_request_tokens:
            return []
        finished = [t for t, rt in tokens.items() if rt.state in ("used", "denied")]
        left = [t for t in tokens if tokens[t].state not in ("used", "denied")]
        if len(left) >= self._max_request_tokens // 2:
            return finished + left[: len(left) // 2]
        return finished

    def request_token(self, token: str) -> RequestToken | None:
        return self._durable.request_tokens.get(token)

    def decide(self, token: str, approve: bool, organisation_id: str | None, now: float) -> RequestToken:
        """Approve (with an organisation) or deny a pending, unexpired request token."""
        with self._lock:
            rt = self._durable.request_tokens.get(token)
            if rt is None or rt.state != "pending":
                state = "unknown" if rt is None else rt.state
                raise StoreError(f"request token {token} is {state}, not pending")
            if now > rt.expires_at:
                raise StoreError(f"request token {token} has expired")
            if approve:
                rt = dataclasses.replace(rt, state="authorized", verifier=new_token(),
                                         organisation_id=organisation_id)
            else:
                rt = dataclasses.replace(rt, state="denied")
            self._file.request_token(rt)
            self._durable.request_tokens[token] = rt
            return rt

    def use_request_token(self, token: str) -> bool:
        """Atomically mark an authorised request token used; False if another
        request got there first."""
        with self._lock:
            rt = self._durable.request_tokens.get(token)
            if rt is None or rt.state != "authorized":
                return False
            rt = dataclasses.replace(rt, state="used")
            self._file.request_token(rt)
            self._durable.request_tokens[token] = rt
            return True

    # -- connections -----------------------------------------------------------
    def connect(self, consumer_key: str, organisation_id: str, now: float,
                token_ttl: float, authorization_ttl: float) -> Connection:
        """A new connection; replaces the consumer's earlier one to the same
        organisation (Xero)."""
        with self._lock:
            old_handle = self._by_pair.get((consumer_key, organisation_id))
            old = None if old_handle is None else self._durable.connections[old_handle]
            conn = Connection(
                consumer_key=consumer_key,
                organisation_id=organisation_id,
                session_handle=new_token(),
                access_token=new_token(),
                access_secret=new_token(),
                token_expires_at=now + token_ttl,
                authorization_expires_at=now + authorization_ttl,
                created_at=now,
            )
            self._file.connection(conn, old, RETIRED_REPLACED)
            if old is not None:
                self._drop_connection(old, RETIRED_REPLACED)
            self._put_connection(conn)
            return conn

    def _put_connection(self, conn: Connection) -> None:
        self._durable.connections[conn.session_handle] = conn
        self._by_access_token[conn.access_token] = conn.session_handle
        self._by_pair[(conn.consumer_key, conn.organisation_id)] = conn.session_handle

    def connection_for_token(self, token: str) -> Connection | None:
        handle = self._by_access_token.get(token)
        return None if handle is None else self._durable.connections.get(handle)

    def retired(self, token: str) -> tuple[str, str] | None:
        """(session handle, why) for a token that used to be current."""
        return self._durable.retired.get(token)

    def renew(self, presented_token: str, now: float, token_ttl: float,
              rotate_handle: bool) -> Connection | None:
        """Swap the connection's token for a new pair, atomically; None when
        ``presented_token`` is no longer current (someone renewed first, or the
        connection is gone)."""
        with self._lock:
            conn = self.connection_for_token(presented_token)
            if conn is None:
                return None
            renewed = dataclasses.replace(
                conn, access_token=new_token(), access_secret=new_token(), token_expires_at=now + token_ttl,
                session_handle=new_token() if rotate_handle else conn.session_handle)
            self._file.connection(renewed, conn, RETIRED_SUPERSEDED)
            self._drop_connection(conn, RETIRED_SUPERSEDED)
            self._put_connection(renewed)
            return renewed

    def _find_connection(self, token: str | None, session_handle: str | None) -> Connection:
        conn = (self._durable.connections.get(session_handle) if session_handle
                else self.connection_for_token(token or ""))
        if conn is None:
            raise StoreError("no active connection with that token or session handle")
        return conn

    def revoke(self, token: str | None = None, session_handle: str | None = None) -> Connection:
        with self._lock:
            conn = self._find_connection(token, session_handle)
            self._file.connection(None, conn, RETIRED_REVOKED)
            self._drop_connection(conn, RETIRED_REVOKED)
            return conn

    def expire_now(self, token: str | None, session_handle: str | None, now: float) -> Connection:
        with self._lock:
            conn = self._find_connection(token, session_handle)
            conn = dataclasses.replace(conn, token_expires_at=min(conn.token_expires_at, now))
            self._file.connection(conn)
            self._durable.connections[conn.session_handle] = conn
            return conn

    def _drop_connection(self, conn: Connection, why: str | None) -> None:
        self._durable.connections.pop(conn.session_handle, None)
        self._by_access_token.pop(conn.access_token, None)
        if self._by_pair.get((conn.consumer_key, conn.organisation_id)) == conn.session_handle:
            del self._by_pair[(conn.consumer_key, conn.organisation_id)]
        if why is not None:
            retired = self._durable.retired
            retired[conn.access_token] = (conn.session_handle, why)
            retired.move_to_end(conn.access_token)
            while len(retired) > self._retired_size:
                retired.popitem(last=False)

    def _evicted_by(self, token: str) -> list[str]:
        """The oldest retired tokens that retiring ``token`` pushes out of the bound."""
        retired = self._durable.retired
        over = len(retired) + (token not in retired) - self._retired_size
        return list(itertools.islice((t for t in retired if t != token), over)) if over > 0 else []

    def connections_for(self, consumer_key: str | None = None,
                        organisation_id: str | None = None) -> list[Connection]:
        with self._lock:
            return [c for c in self._durable.connections.values()
                    if (consumer_key is None or c.consumer_key == consumer_key)
                    and (organisation_id is None or c.organisation_id == organisation_id)]

    # -- the state file ----------------------------------------------------------
    def attach(self, file: statefile.StateFile, snapshot: statefile.Snapshot | None) -> None:
        """Write every durable change through to ``file`` from now on: first
        the durable state of ``snapshot`` (what ``file`` held) replaces what
        is in memory, or, without one, the file gets the current state and
        baseline."""
        with self._lock:
            if snapshot is None or snapshot.baseline is None:
                with file.transaction():
                    file.reset(_snapshot(self._durable))
                    file.put_baseline(_snapshot(self._baseline or self._durable.baseline()))
                self._file = _WriteThrough(file, self._evicted_by)
                return
            self._durable = _durable(snapshot)
            self._baseline = _durable(snapshot.baseline)
            self._by_access_token = {c.access_token: h for h, c in self._durable.connections.items()}
            self._by_pair = {(c.consumer_key, c.organisation_id): h
                             for h, c in self._durable.connections.items()}
            self._file = _WriteThrough(file, self._evicted_by)

    def save_clock(self, offset: float, frozen_at: float | None) -> None:
        """The mock clock moved (it lives in :mod:`mockxero.clock`; only its
        durable copy goes through here)."""
        with self._lock:
            self._file.clock(offset, frozen_at)

    def save_switches(self, switches: Mapping[str, Any] | None) -> None:
        """The runtime switches changed (None: back on the settings)."""
        with self._lock:
            self._file.switches(switches)

    # -- nonces ----------------------------------------------------------------
    # A nonce is kept as a 60-bit keyed BLAKE2b digest of (consumer key,
    # nonce): a small int (32 bytes) in one set, plus a pointer in its
    # expiry bucket — about 80 bytes where a tuple of two strings, a heap
    # entry and its float took ~280-360. A false "already used" needs a new
    # nonce to share 60 bits of a keyed hash with one remembered: n/2**60 a
    # request with n in the window, under one in a million million for a
    # million.
    def nonce_digest(self, consumer_key: str, nonce: str) -> int:
        data = f"{len(consumer_key)}:{consumer_key}{nonce}".encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=self._nonce_key).digest(),
                              "big") >> 4

    def nonce_seen(self, consumer_key: str, nonce: str) -> bool:
        return self.nonce_digest(consumer_key, nonce) in self._ephemeral.nonces

    def remember_nonce(self, consumer_key: str, nonce: str, forget_at: float, now: float) -> bool:
        """Record a nonce until ``forget_at`` (real time, the end of its
        timestamp window), forgetting those whose time has come by ``now``;
        False if it was already there."""
        digest = self.nonce_digest(consumer_key, nonce)
        with self._lock:
            eph = self._ephemeral
            expiry = eph.nonce_expiry
            while expiry and expiry[0][0] <= now:
                eph.nonces.difference_update(eph.nonce_buckets.pop(heapq.heappop(expiry), ()))
            if digest in eph.nonces:
                return False
            eph.nonces.add(digest)
            key = (forget_at, consumer_key)
            bucket = eph.nonce_buckets.get(key)
            if bucket is None:
                bucket = eph.nonce_buckets[key] = []
                heapq.heappush(expiry, key)
            bucket.append(digest)
            return True

    def nonce_count(self) -> int:
        return len(self._ephemeral.nonces)

    def nonce_forget_at(self, consumer_key: str, nonce: str) -> float | None:
        """When a remembered nonce will be forgotten (None: not remembered)."""
        digest = self.nonce_digest(consumer_key, nonce)
        with self._lock:
            return next((at for (at, ck), digests in self._ephemeral.nonce_buckets.items()
                         if ck == consumer_key and digest in digests), None)

    # -- journal ---------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry["id"] = next(self._journal_seq)
            self._ephemeral.journal.append(entry)
            self._journal_changed.notify_all()
            return entry

    def journal(self, consumer_key: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._ephemeral.journal
                    if e["id"] > since and (consumer_key is None or e.get("consumer_key") == consumer_key)]

    def wait_for_entry(self, match: Callable[[Mapping[str, Any]], bool], since: int,
                       timeout: float, monotonic: Callable[[], float]) -> dict[str, Any] | None:
        """The first journal entry after ``since`` that ``match`` accepts,
        waiting up to ``timeout`` seconds for it to be recorded."""
        deadline = monotonic() + timeout
        with self._journal_changed:
            while True:
                for entry in self.journal(None, since):
                    if match(entry):
                        return entry
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return None
                self._journal_changed.wait(remaining)

    # -- faults ----------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            fault = dataclasses.replace(fault, fault_id=next(self._fault_seq))
            self._ephemeral.faults.append(fault)
            return dataclasses.replace(fault)

    @property
    def has_faults(self) -> bool:
        """Cheap, unlocked: whether any fault is queued at all."""
        return bool(self._ephemeral.faults)

    def take_fault(self, path: str, consumer_key: str | None) -> Fault | None:
        """The first queued fault matching this request, counted down."""
        if not self._ephemeral.faults:  # cheap exit on the hot path
            return None
        with self._lock:
            faults = self._ephemeral.faults
            for fault in faults:
                if fault.matches(path, consumer_key):
                    fault.count -= 1
                    if fault.count <= 0:
                        faults.remove(fault)
                    return dataclasses.replace(fault)
            return None

    def faults(self) -> list[Fault]:
        with self._lock:
            return [dataclasses.replace(f) for f in self._ephemeral.faults]

    def clear_faults(self, fault_id: int | None = None) -> int:
        with self._lock:
            eph = self._ephemeral
            before = len(eph.faults)
            eph.faults = [f for f in eph.faults if fault_id is not None and f.fault_id != fault_id]
            return before - len(eph.faults)

    # -- rate limits -----------------------------------------------------------
    def rate_limit_hit(self, consumer_key: str, organisation_id: str, now: float,
                       per_minute: int, per_day: int) -> str | None:
        """Count one call; the window that is exceeded ("minute" | "day"), if
        any. A refused call is not counted (Xero counted only served calls)."""
        with self._lock:
            minute, day = self._ephemeral.rate_windows.setdefault(
                (consumer_key, organisation_id), (deque(), deque())
            )
            for window, span in ((minute, 60.0), (day, 86400.0)):
                while window and (window[0] <= now - span or window[0] > now):
                    window.popleft()
            if len(minute) >= per_minute:
                return "minute"
            if len(day) >= per_day:
                return "day"
            minute.append(now)
            day.append(now)
            return None

    # -- views -----------------------------------------------------------------
    def sizes(self) -> dict[str, int]:
        with self._lock:
            durable, eph = self._durable, self._ephemeral
            return {
                "consumers": len(durable.consumers),
                "organisations": len(durable.organisations),
                "request_tokens": len(durable.request_tokens),
                "connections": len(durable.connections),
                "retired_tokens": len(durable.retired),
                "nonces": len(eph.nonces),
                "journal": len(eph.journal),
                "faults": len(eph.faults),
            }


_EMPTY: Collection = MappingProxyType({})


def _published(records: Mapping[str, Record] | Iterable[tuple[str, Record]]) -> Collection:
    """A collection as the store keeps it: its own read-only copy."""
    return MappingProxyType(OrderedDict(records))


# -- write-through -----------------------------------------------------------------

class _WriteThrough:
    """Each durable change, written to the state file in one transaction
    *before* the store makes it in memory, so a change that cannot be
    written is not made (the caller gets the StateFileError). Without a file
    every method does nothing."""

    def __init__(self, file: statefile.StateFile | None,
                 evicted_by: Callable[[str], list[str]]) -> None:
        self.file = file
        self.evicted_by = evicted_by

    def consumer(self, consumer: Consumer) -> None:
        if self.file is not None:
            self.file.put_consumer(statefile.row_of(statefile.ConsumerRow, consumer))

    def organisation(self, org: Organisation, data: Mapping[str, Collection]) -> None:
        if self.file is not None:
            with self.file.transaction():
                self.file.put_organisation(statefile.row_of(statefile.OrganisationRow, org))
                for name, records in data.items():
                    self.file.put_records(org.organisation_id, name, records, replace=True)

    def collections(self, organisation_id: str, current: Mapping[str, Collection],
                    changed: Mapping[str, Collection]) -> None:
        """Only what a save changed: records are never changed in place, so
        a record that is not the same object is new or updated."""
        if self.file is None:
            return
        with self.file.transaction():
            for name, records in changed.items():
                fresh = _appended_or_updated(current.get(name, _EMPTY), records)
                if fresh is None:
                    self.file.put_records(organisation_id, name, records, replace=True)
                elif fresh:
                    self.file.put_records(organisation_id, name, fresh)

    def request_token(self, rt: RequestToken, pruned: Iterable[str] = ()) -> None:
        if self.file is not None:
            with self.file.transaction():
                self.file.delete_request_token(pruned)
                self.file.put_request_token(statefile.row_of(statefile.RequestTokenRow, rt))

    def connection(self, new: Connection | None, old: Connection | None = None,
                   why: str | None = None) -> None:
        """``old`` (if any) goes, retired for ``why``; ``new`` (if any) is
        stored — last, like the store's dict, when it takes ``old``'s place
        (a renewal, or a new dance of the same consumer and organisation)."""
        if self.file is None:
            return
        with self.file.transaction():
            if old is not None:
                if new is None or (new.consumer_key, new.organisation_id) != (old.consumer_key,
                                                                              old.organisation_id):
                    self.file.delete_connection(old.session_handle)
                if why is not None:
                    self.file.retire_token(old.access_token, old.session_handle, why,
                                           self.evicted_by(old.access_token))
            if new is not None:
                self.file.put_connection(statefile.row_of(statefile.ConnectionRow, new),
                                         last=old is not None)

    def forget(self, request_tokens: Iterable[str], connections: Iterable[Connection]) -> None:
        if self.file is not None:
            with self.file.transaction():
                self.file.delete_request_token(request_tokens)
                for conn in connections:
                    self.file.delete_connection(conn.session_handle)

    def reset(self, durable: Durable) -> None:
        """Everything as ``durable``; the clock on real time, the switches
        on the settings (what a full reset does)."""
        if self.file is not None:
            self.file.reset(_snapshot(durable))

    def baseline(self, baseline: Durable) -> None:
        if self.file is not None:
            self.file.put_baseline(_snapshot(baseline))

    def clock(self, offset: float, frozen_at: float | None) -> None:
        if self.file is not None:
            self.file.put_clock(statefile.ClockState(offset, frozen_at))

    def switches(self, switches: Mapping[str, Any] | None) -> None:
        if self.file is not None:
            self.file.put_switches(switches)


def _appended_or_updated(old: Collection, new: Collection) -> dict[str, Record] | None:
    """The records of ``new`` that are not in ``old`` as the same object,
    when ``new`` is ``old`` with records updated in place and others added
    at the end; None when records were dropped or moved (write it whole).
    One pass, no copies: this runs on every API save."""
    if len(new) < len(old):
        return None
    fresh: dict[str, Record] = {}
    items = iter(new.items())
    # zip stops when ``old`` runs out, before taking from ``items``: the rest is new
    for (old_id, old_record), (record_id, record) in zip(old.items(), items, strict=False):
        if record_id != old_id:
            return None
        if record is not old_record:
            fresh[record_id] = record
    fresh.update(items)
    return fresh


def _snapshot(durable: Durable) -> statefile.Snapshot:
    return statefile.Snapshot(
        consumers=[statefile.row_of(statefile.ConsumerRow, c) for c in durable.consumers.values()],
        organisations=[statefile.row_of(statefile.OrganisationRow, o)
                       for o in durable.organisations.values()],
        records={org: {name: dict(records) for name, records in cols.items()}
                 for org, cols in durable.data.items()},
        connections=[statefile.row_of(statefile.ConnectionRow, c) for c in durable.connections.values()],
        retired=[statefile.RetiredToken(token, handle, why)
                 for token, (handle, why) in durable.retired.items()],
        request_tokens=[statefile.row_of(statefile.RequestTokenRow, rt)
                        for rt in durable.request_tokens.values()],
    )


def _durable(snapshot: statefile.Snapshot) -> Durable:
    return Durable(
        consumers={c.consumer_key: Consumer(**dataclasses.asdict(c)) for c in snapshot.consumers},
        organisations={o.organisation_id: Organisation(**dataclasses.asdict(o))
                       for o in snapshot.organisations},
        data={o.organisation_id: {name: _published(records)
                                  for name, records in snapshot.records.get(o.organisation_id, {}).items()}
              for o in snapshot.organisations},
        request_tokens={rt.token: RequestToken(**dataclasses.asdict(rt)) for rt in snapshot.request_tokens},
        connections={c.session_handle: Connection(**dataclasses.asdict(c)) for c in snapshot.connections},
        retired=OrderedDict((r.token, (r.session_handle, r.why)) for r in snapshot.retired),
    )
