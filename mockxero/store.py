"""All mutable state of a running mock, behind one lock.

Consumers, organisations (with their API data), request tokens, connections
(one consumer authorised for one organisation), nonces, the request journal,
rate-limit windows and queued faults. Every state change goes through a
method here, under ``self.lock``, so the OAuth code and the endpoints never
race each other. Per-request structures are bounded: nonces are pruned by
the timestamp window, the journal is a ring buffer, retired tokens are kept
in a bounded map only to give better advice."""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import heapq
import itertools
import secrets
import string
import threading
import time
import uuid
from collections import OrderedDict, deque
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

APP_TYPES = ("partner", "public", "private")
MAX_REQUEST_TOKENS = 10000
_ALPHABET = string.ascii_uppercase + string.digits


def new_token() -> str:
    """30 characters of ``[A-Z0-9]``: the shape of every Xero token, secret,
    verifier and session handle."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(30))


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


class StoreError(ValueError):
    """An operation on the store was given something it cannot do."""


@dataclasses.dataclass
class Consumer:
    consumer_key: str
    consumer_secret: str
    app_type: str = "partner"
    name: str = "Partner application"
    callback_domain: str | None = None
    #: PEM of the uploaded application certificate (the RSA-SHA1 public key).
    certificate: str | None = None
    require_client_cert: bool = True
    #: SHA-256 fingerprints (hex) of the client certificates registered to it.
    client_certificates: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Private applications are bound to one organisation.
    organisation_id: str | None = None
    # Derived from ``certificate`` once, so a signature check needs no parsing.
    public_key: RSAPublicKey | None = dataclasses.field(default=None, repr=False)
    certificate_not_after: datetime | None = None
    certificate_not_before: datetime | None = None

    def __post_init__(self) -> None:
        if self.app_type not in APP_TYPES:
            raise StoreError(f"app_type must be one of {', '.join(APP_TYPES)}")
        if self.certificate is not None and self.public_key is None:
            try:
                cert = x509.load_pem_x509_certificate(self.certificate.encode())
            except ValueError as exc:
                raise StoreError(f"certificate is not a PEM X.509 certificate: {exc}") from None
            key = cert.public_key()
            if not isinstance(key, RSAPublicKey):
                raise StoreError("the application certificate must hold an RSA public key")
            self.public_key = key
            self.certificate_not_after = cert.not_valid_after_utc
            self.certificate_not_before = cert.not_valid_before_utc

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


@dataclasses.dataclass
class Organisation:
    organisation_id: str
    name: str
    short_code: str
    #: The ``xero_org_muid`` the AccessToken exchange returns.
    org_muid: str
    country_code: str = "NZ"
    base_currency: str = "NZD"
    #: API data: collection name ("Contacts", "Invoices") → id → record in
    #: Xero's field names. The api module owns the shape of the records.
    collections: dict[str, OrderedDict[str, dict[str, Any]]] = dataclasses.field(
        default_factory=dict, repr=False
    )

    def to_json(self) -> dict[str, Any]:
        return {
            "organisation_id": self.organisation_id,
            "name": self.name,
            "short_code": self.short_code,
            "org_muid": self.org_muid,
            "country_code": self.country_code,
            "base_currency": self.base_currency,
            "counts": {name: len(items) for name, items in self.collections.items()},
        }


@dataclasses.dataclass
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


@dataclasses.dataclass
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


class Store:
    def __init__(self, journal_size: int = 1000, retired_size: int = 10000) -> None:
        self.lock = threading.RLock()
        self.consumers: dict[str, Consumer] = {}
        self.organisations: OrderedDict[str, Organisation] = OrderedDict()
        self.request_tokens: dict[str, RequestToken] = {}
        self.connections: dict[str, Connection] = {}  # by session handle
        self._by_access_token: dict[str, Connection] = {}
        self._retired: OrderedDict[str, tuple[str, str]] = OrderedDict()  # token → (handle, why)
        self._retired_size = retired_size
        self._nonces: set[tuple[str, str]] = set()
        self._nonce_expiry: list[tuple[float, str, str]] = []
        self._journal: deque[dict[str, Any]] = deque(maxlen=journal_size)
        self._journal_seq = itertools.count(1)
        self.journal_changed = threading.Condition(self.lock)
        self._faults: list[Fault] = []
        self._fault_seq = itertools.count(1)
        self._rate_windows: dict[tuple[str, str], tuple[deque[float], deque[float]]] = {}
        self._baseline: tuple[dict[str, Consumer], OrderedDict[str, Organisation]] | None = None

    # -- baseline and reset --------------------------------------------------
    def mark_baseline(self) -> None:
        """Remember the consumers and organisations (with their data) as the
        state ``reset`` returns to."""
        with self.lock:
            self._baseline = (copy.deepcopy(self.consumers), copy.deepcopy(self.organisations))

    def reset(self, consumer_key: str | None = None) -> None:
        """Everything back to the baseline; or, with ``consumer_key``, forget
        only that consumer's tokens, connections, nonces, journal entries,
        rate-limit windows and faults."""
        with self.lock:
            if consumer_key is None:
                if self._baseline is not None:
                    self.consumers = copy.deepcopy(self._baseline[0])
                    self.organisations = copy.deepcopy(self._baseline[1])
                self.request_tokens.clear()
                self.connections.clear()
                self._by_access_token.clear()
                self._retired.clear()
                self._nonces.clear()
                self._nonce_expiry.clear()
                self._journal.clear()
                self._faults.clear()
                self._rate_windows.clear()
                return
            self._require_consumer(consumer_key)
            for token in [t for t, r in self.request_tokens.items() if r.consumer_key == consumer_key]:
                del self.request_tokens[token]
            for conn in [c for c in self.connections.values() if c.consumer_key == consumer_key]:
                self._drop_connection(conn, None)
            self._nonces = {n for n in self._nonces if n[0] != consumer_key}
            self._nonce_expiry = [e for e in self._nonce_expiry if e[1] != consumer_key]
            heapq.heapify(self._nonce_expiry)
            kept = [e for e in self._journal if e.get("consumer_key") != consumer_key]
            self._journal.clear()
            self._journal.extend(kept)
            self._faults = [f for f in self._faults if f.consumer_key != consumer_key]
            for key in [k for k in self._rate_windows if k[0] == consumer_key]:
                del self._rate_windows[key]

    # -- consumers and organisations -----------------------------------------
    def add_consumer(self, consumer: Consumer) -> Consumer:
        with self.lock:
            if consumer.consumer_key in self.consumers:
                raise StoreError(f"consumer {consumer.consumer_key} already exists")
            if consumer.organisation_id is not None:
                self.organisation(consumer.organisation_id)
            self.consumers[consumer.consumer_key] = consumer
            return consumer

    def consumer(self, consumer_key: str) -> Consumer | None:
        return self.consumers.get(consumer_key)

    def _require_consumer(self, consumer_key: str) -> Consumer:
        consumer = self.consumers.get(consumer_key)
        if consumer is None:
            raise StoreError(f"no consumer with key {consumer_key}")
        return consumer

    def register_client_certificate(self, consumer_key: str, cert: x509.Certificate) -> str:
        with self.lock:
            consumer = self._require_consumer(consumer_key)
            fp = fingerprint(cert)
            consumer.client_certificates[fp] = cert.subject.rfc4514_string()
            return fp

    def unregister_client_certificate(self, consumer_key: str, fp: str) -> None:
        with self.lock:
            consumer = self._require_consumer(consumer_key)
            if consumer.client_certificates.pop(fp.lower(), None) is None:
                raise StoreError(f"no client certificate {fp} registered to {consumer_key}")

    def add_organisation(self, name: str, short_code: str | None = None,
                         organisation_id: str | None = None, **fields: Any) -> Organisation:
        with self.lock:
            org = Organisation(
                organisation_id=organisation_id or str(uuid.uuid4()),
                name=name,
                short_code=short_code or "!" + new_token()[:5],
                org_muid=new_token()[:22],
                **fields,
            )
            if org.organisation_id in self.organisations:
                raise StoreError(f"organisation {org.organisation_id} already exists")
            self.organisations[org.organisation_id] = org
            return org

    def organisation(self, ref: str | None = None) -> Organisation:
        """By id, short code or name (case-insensitive); None → the default
        (first) organisation."""
        with self.lock:
            if not self.organisations:
                raise StoreError("there are no organisations")
            if ref is None or ref == "":
                return next(iter(self.organisations.values()))
            if ref in self.organisations:
                return self.organisations[ref]
            wanted = ref.lower()
            for org in self.organisations.values():
                if wanted in (org.short_code.lower(), org.name.lower(), org.organisation_id.lower()):
                    return org
            raise StoreError(f"no organisation {ref!r}")

    # -- request tokens --------------------------------------------------------
    def new_request_token(self, consumer_key: str, callback: str, expires_at: float) -> RequestToken:
        with self.lock:
            self._prune_request_tokens()
            rt = RequestToken(new_token(), new_token(), consumer_key, callback, expires_at)
            self.request_tokens[rt.token] = rt
            return rt

    def _prune_request_tokens(self) -> None:
        """Keep the dict bounded in long runs: past the limit, drop the
        finished (used or denied) tokens, then the oldest half. Insertion
        order is age order, and expiry cannot be used because tests move the
        mock clock both ways."""
        if len(self.request_tokens) < MAX_REQUEST_TOKENS:
            return
        for token in [t for t, rt in self.request_tokens.items() if rt.state in ("used", "denied")]:
            del self.request_tokens[token]
        if len(self.request_tokens) >= MAX_REQUEST_TOKENS // 2:
            for token in list(self.request_tokens)[: len(self.request_tokens) // 2]:
                del self.request_tokens[token]

    def request_token(self, token: str) -> RequestToken | None:
        return self.request_tokens.get(token)

    def decide(self, token: str, approve: bool, organisation_id: str | None) -> RequestToken:
        """Approve (with an organisation) or deny a pending request token."""
        with self.lock:
            rt = self.request_tokens.get(token)
            if rt is None or rt.state != "pending":
                state = "unknown" if rt is None else rt.state
                raise StoreError(f"request token {token} is {state}, not pending")
            if approve:
                rt.state = "authorized"
                rt.verifier = new_token()
                rt.organisation_id = organisation_id
            else:
                rt.state = "denied"
            return rt

    def use_request_token(self, token: str) -> bool:
        """Atomically mark an authorised request token used; False if another
        request got there first."""
        with self.lock:
            rt = self.request_tokens.get(token)
            if rt is None or rt.state != "authorized":
                return False
            rt.state = "used"
            return True

    # -- connections -----------------------------------------------------------
    def connect(self, consumer_key: str, organisation_id: str, now: float,
                token_ttl: float, authorization_ttl: float) -> Connection:
        """A new connection; replaces the consumer's earlier one to the same
        organisation (Xero)."""
        with self.lock:
            for old in list(self.connections.values()):
                if old.consumer_key == consumer_key and old.organisation_id == organisation_id:
                    self._drop_connection(old, RETIRED_REPLACED)
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
            self.connections[conn.session_handle] = conn
            self._by_access_token[conn.access_token] = conn
            return conn

    def connection_for_token(self, token: str) -> Connection | None:
        return self._by_access_token.get(token)

    def retired(self, token: str) -> tuple[str, str] | None:
        """(session handle, why) for a token that used to be current."""
        return self._retired.get(token)

    def renew(self, conn: Connection, presented_token: str, now: float, token_ttl: float,
              rotate_handle: bool) -> Connection | None:
        """Swap the connection's token for a new pair, atomically; None when
        ``presented_token`` is no longer current (someone renewed first, or the
        connection is gone)."""
        with self.lock:
            if self._by_access_token.get(presented_token) is not conn:
                return None
            self._retire(conn.access_token, conn.session_handle, RETIRED_SUPERSEDED)
            del self._by_access_token[conn.access_token]
            conn.access_token = new_token()
            conn.access_secret = new_token()
            conn.token_expires_at = now + token_ttl
            if rotate_handle:
                del self.connections[conn.session_handle]
                conn.session_handle = new_token()
                self.connections[conn.session_handle] = conn
            self._by_access_token[conn.access_token] = conn
            return conn

    def revoke(self, token: str | None = None, session_handle: str | None = None) -> Connection:
        with self.lock:
            conn = None
            if session_handle is not None:
                conn = self.connections.get(session_handle)
            elif token is not None:
                conn = self._by_access_token.get(token)
            if conn is None:
                raise StoreError("no active connection with that token or session handle")
            self._drop_connection(conn, RETIRED_REVOKED)
            return conn

    def expire_now(self, token: str | None, session_handle: str | None, now: float) -> Connection:
        with self.lock:
            conn = (self.connections.get(session_handle) if session_handle
                    else self._by_access_token.get(token or ""))
            if conn is None:
                raise StoreError("no active connection with that token or session handle")
            conn.token_expires_at = min(conn.token_expires_at, now)
            return conn

    def _drop_connection(self, conn: Connection, why: str | None) -> None:
        self.connections.pop(conn.session_handle, None)
        self._by_access_token.pop(conn.access_token, None)
        if why is not None:
            self._retire(conn.access_token, conn.session_handle, why)

    def _retire(self, token: str, handle: str, why: str) -> None:
        self._retired[token] = (handle, why)
        self._retired.move_to_end(token)
        while len(self._retired) > self._retired_size:
            self._retired.popitem(last=False)

    # -- nonces ----------------------------------------------------------------
    def nonce_seen(self, consumer_key: str, nonce: str) -> bool:
        return (consumer_key, nonce) in self._nonces

    def remember_nonce(self, consumer_key: str, nonce: str, forget_at: float) -> bool:
        """Record a nonce until ``forget_at`` (real time, the end of its
        timestamp window); False if it was already there."""
        key = (consumer_key, nonce)
        with self.lock:
            now = time.time()
            expiry = self._nonce_expiry
            while expiry and expiry[0][0] <= now:
                _, ck, n = heapq.heappop(expiry)
                self._nonces.discard((ck, n))
            if key in self._nonces:
                return False
            self._nonces.add(key)
            heapq.heappush(expiry, (forget_at, consumer_key, nonce))
            return True

    def nonce_count(self) -> int:
        return len(self._nonces)

    # -- journal ---------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            entry["id"] = next(self._journal_seq)
            self._journal.append(entry)
            self.journal_changed.notify_all()
            return entry

    def journal(self, consumer_key: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self._journal
                    if e["id"] > since and (consumer_key is None or e.get("consumer_key") == consumer_key)]

    # -- faults ----------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            fault.fault_id = next(self._fault_seq)
            self._faults.append(fault)
            return fault

    @property
    def has_faults(self) -> bool:
        """Cheap, unlocked: whether any fault is queued at all."""
        return bool(self._faults)

    def take_fault(self, path: str, consumer_key: str | None) -> Fault | None:
        """The first queued fault matching this request, counted down."""
        if not self._faults:  # cheap exit on the hot path
            return None
        with self.lock:
            for fault in self._faults:
                if fault.matches(path, consumer_key):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return dataclasses.replace(fault)
            return None

    def faults(self) -> list[Fault]:
        with self.lock:
            return [dataclasses.replace(f) for f in self._faults]

    def clear_faults(self, fault_id: int | None = None) -> int:
        with self.lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.fault_id != fault_id]
            return before - len(self._faults)

    # -- rate limits -----------------------------------------------------------
    def rate_limit_hit(self, consumer_key: str, organisation_id: str, now: float,
                       per_minute: int, per_day: int) -> str | None:
        """Count one call; the window that is exceeded ("minute" | "day"), if
        any. A refused call is not counted (Xero counted only served calls)."""
        with self.lock:
            minute, day = self._rate_windows.setdefault(
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
    def connections_for(self, consumer_key: str | None = None,
                        organisation_id: str | None = None) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections.values()
                    if (consumer_key is None or c.consumer_key == consumer_key)
                    and (organisation_id is None or c.organisation_id == organisation_id)]

    def sizes(self) -> dict[str, int]:
        with self.lock:
            return {
                "consumers": len(self.consumers),
                "organisations": len(self.organisations),
                "request_tokens": len(self.request_tokens),
                "connections": len(self.connections),
                "retired_tokens": len(self._retired),
                "nonces": len(self._nonces),
                "journal": len(self._journal),
                "faults": len(self._faults),
            }

