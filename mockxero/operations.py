"""The control operations, written down once.

Three faces share them: the in-process mock (:class:`mockxero.core.MockCore`),
the ``/_mockxero`` HTTP routes (:mod:`mockxero.control`) and the remote handle
that drives a mock in a container over those routes. :class:`Operations` is
the typed interface; :data:`OPERATIONS` says, per operation, which HTTP route
carries it and which arguments of which JSON types it takes, so one
validation (:func:`check_arguments`) gives the same error from Python and
over HTTP. Every operation returns JSON-shaped values (dicts, lists, str,
numbers), never live objects.

Nothing here imports Flask, sockets or the server: a client can import it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

JSON = dict[str, Any]


class ControlError(ValueError):
    """A control operation was asked something it cannot do. ``status`` is
    the HTTP status the control API answers with (400 unless said)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


#: JSON types, as the control API sees them. ``number`` accepts int and float
#: (never bool); ``list``/``dict`` are JSON arrays/objects.
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "number": (int, float),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}


@dataclasses.dataclass(frozen=True)
class Field:
    """One argument of an operation: its JSON type, whether the control API
    takes a JSON null for it (from Python, None always means "not given"),
    and where it travels over HTTP (``path``, ``query`` or ``body``)."""

    type: str
    nullable: bool = False
    source: str = "body"
    #: The JSON name when it differs from the Python name (``Contacts``).
    wire: str | None = None


@dataclasses.dataclass(frozen=True)
class Operation:
    name: str
    method: str
    #: Flask-style route under ``/_mockxero`` (``/consumers/<consumer_key>``).
    path: str
    fields: Mapping[str, Field] = dataclasses.field(default_factory=dict)
    required: tuple[str, ...] = ()
    #: Status of a successful answer.
    status: int = 200
    #: The status that stands for a ``None`` answer (``wait_for_request``).
    none_status: int | None = None
    #: Checks between arguments, the same for both faces.
    one_of: tuple[str, ...] = ()

    def wire(self, name: str) -> str:
        return self.fields[name].wire or name


def _f(type_: str, nullable: bool = False, source: str = "body", wire: str | None = None) -> Field:
    return Field(type_, nullable, source, wire)


_OPT_STR = _f("str", nullable=True)
_Q = "query"
_P = "path"

OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("health", "GET", "/health"),
    Operation("reset", "POST", "/reset", {"consumer_key": _f("str")}),
    Operation("clock", "GET", "/clock"),
    Operation("move_clock", "POST", "/clock",
              {"advance": _f("number"), "set": _f("number"), "freeze": _f("bool"),
               "reset": _f("bool")},
              one_of=("advance", "set", "reset")),
    Operation("runtime_settings", "GET", "/settings"),
    Operation("change_settings", "POST", "/settings",
              {"auto_approve": _f("bool"), "rate_limit": _f("str"),
               "access_token_ttl": _f("int"), "authorization_ttl": _f("int"),
               "request_token_ttl": _f("int"), "organisation": _f("str")}),
    Operation("consumers", "GET", "/consumers"),
    Operation("add_consumer", "POST", "/consumers", {
        "app_type": _f("str"), "certificate": _OPT_STR,
        "require_client_cert": _f("bool", nullable=True), "callback_domain": _OPT_STR,
        "name": _OPT_STR, "consumer_key": _OPT_STR, "consumer_secret": _OPT_STR,
        "client_certificates": _f("list", nullable=True), "organisation": _OPT_STR,
    }, status=201),
    Operation("update_consumer", "PATCH", "/consumers/<consumer_key>", {
        "consumer_key": _f("str", source=_P), "name": _OPT_STR,
        "callback_domain": _OPT_STR, "certificate": _OPT_STR,
        "require_client_cert": _f("bool", nullable=True), "consumer_secret": _OPT_STR,
    }, required=("consumer_key",)),
    Operation("register_client_certificate", "POST", "/consumers/<consumer_key>/client-certificates",
              {"consumer_key": _f("str", source=_P),
               "certificate": _f("str")},
              required=("consumer_key", "certificate"), status=201),
    Operation("unregister_client_certificate", "DELETE",
              "/consumers/<consumer_key>/client-certificates/<fingerprint>",
              {"consumer_key": _f("str", source=_P),
               "fingerprint": _f("str", source=_P)},
              required=("consumer_key", "fingerprint")),
    Operation("issue_client_certificate", "POST", "/client-certificates",
              {"consumer_key": _OPT_STR, "not_before": _f("number", nullable=True),
               "not_after": _f("number", nullable=True),
               "foreign": _f("bool")}, status=201),
    Operation("organisations", "GET", "/organisations"),
    Operation("add_organisation", "POST", "/organisations",
              {"name": _f("str"), "short_code": _OPT_STR,
               "country_code": _f("str"), "base_currency": _f("str"),
               "seed_data": _f("bool")},
              required=("name",), status=201),
    Operation("load_data", "POST", "/organisations/<org>/data",
              {"org": _f("str", source=_P), "contacts": _f("list", wire="Contacts"),
               "invoices": _f("list", wire="Invoices"), "replace": _f("bool")},
              status=201),
    Operation("data", "GET", "/organisations/<org>/data", {"org": _f("str", source=_P)}),
    Operation("authorize", "POST", "/authorize",
              {"oauth_token": _f("str"), "org": _OPT_STR,
               "deny": _f("bool")},
              required=("oauth_token",)),
    Operation("revoke", "POST", "/revoke", {"oauth_token": _f("str"), "session_handle": _f("str")}),
    Operation("expire", "POST", "/expire", {"oauth_token": _f("str"), "session_handle": _f("str")}),
    Operation("connections", "GET", "/connections", {"consumer_key": _f("str", source=_Q)}),
    Operation("journal", "GET", "/requests",
              {"consumer_key": _f("str", source=_Q), "since": _f("int", source=_Q)}),
    Operation("wait_for_request", "GET", "/requests/wait",
              {"path": _f("str", source=_Q), "consumer_key": _f("str", source=_Q),
               "status": _f("int", source=_Q), "since": _f("int", source=_Q),
               "timeout": _f("number", source=_Q)},
              none_status=408),
    Operation("faults", "GET", "/faults"),
    Operation("add_fault", "POST", "/faults",
              {"kind": _f("str"), "path": _f("str"),
               "count": _f("int"), "consumer_key": _OPT_STR, "problem": _OPT_STR,
               "advice": _OPT_STR, "status": _f("int", nullable=True), "delay": _f("number"),
               "window": _f("str")},
              required=("kind",), status=201),
    Operation("clear_faults", "DELETE", "/faults"),
    Operation("clear_fault", "DELETE", "/faults/<int:fault_id>",
              {"fault_id": _f("int", source=_P)}, required=("fault_id",)),
    Operation("ca_pem", "GET", "/ca.pem"),
)}


def check_arguments(operation: str, arguments: Mapping[str, Any]) -> None:
    """Refuse (``ControlError``) an argument of the wrong JSON type, a
    missing required one, or a combination the operation cannot take.
    The same words whether the call came from Python or over HTTP."""
    op = OPERATIONS[operation]
    for name in op.required:
        if arguments.get(name) is None:
            raise ControlError(f"'{op.wire(name)}' is required")
    for name, value in arguments.items():
        field = op.fields.get(name)
        if field is None:
            raise ControlError(f"unknown field '{name}'")
        if value is None:  # absent: Python's default; the control API refuses a JSON null itself
            continue
        accepted = _TYPES[field.type]
        if isinstance(value, bool) and bool not in accepted:
            raise ControlError(f"'{op.wire(name)}' has the wrong type (bool)")
        if not isinstance(value, accepted):
            raise ControlError(f"'{op.wire(name)}' has the wrong type ({type(value).__name__})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ControlError(f"'{op.wire(name)}' must be a finite number")
    if op.one_of and sum(arguments.get(name) not in (None, False) for name in op.one_of) > 1:
        raise ControlError("give one of " + ", ".join(f"'{n}'" for n in op.one_of[:-1])
                           + f" or '{op.one_of[-1]}'")


@runtime_checkable
class Operations(Protocol):
    """What a test or a tool can ask of a running mock, in-process or remote.

    Every method validates its arguments the way the control API does
    (``ControlError`` with the server's message) and returns JSON-shaped
    values. ``ca_path`` and ``client_cert`` are files a client needs;
    ``requests_kwargs()`` is them as ``requests`` takes them."""

    @property
    def url(self) -> str: ...
    @property
    def ca_path(self) -> Path: ...
    @property
    def client_cert(self) -> tuple[str, str]: ...
    def requests_kwargs(self) -> dict[str, Any]: ...

    def health(self) -> JSON: ...
    def reset(self, consumer_key: str | None = None) -> JSON: ...
    def clock(self) -> JSON: ...
    def move_clock(self, advance: float | None = None, set: float | None = None,
                   freeze: bool | None = None, reset: bool = False) -> JSON: ...
    def advance(self, seconds: float) -> JSON: ...
    def runtime_settings(self) -> JSON: ...
    def change_settings(self, auto_approve: bool | None = None, rate_limit: str | None = None,
                        access_token_ttl: int | None = None, authorization_ttl: int | None = None,
                        request_token_ttl: int | None = None, organisation: str | None = None) -> JSON: ...
    def consumers(self) -> list[JSON]: ...
    def add_consumer(self, app_type: str = "partner", certificate: str | None = None,
                     require_client_cert: bool | None = None, callback_domain: str | None = None,
                     name: str | None = None, consumer_key: str | None = None,
                     consumer_secret: str | None = None,
                     client_certificates: Sequence[str] | None = None,
                     organisation: str | None = None) -> JSON: ...
    def update_consumer(self, consumer_key: str, name: str | None = None,
                        callback_domain: str | None = None, certificate: str | None = None,
                        require_client_cert: bool | None = None,
                        consumer_secret: str | None = None) -> JSON: ...
    def register_client_certificate(self, consumer_key: str, certificate: str) -> JSON: ...
    def unregister_client_certificate(self, consumer_key: str, fingerprint: str) -> JSON: ...
    def issue_client_certificate(self, consumer_key: str | None = None, not_before: float | None = None,
                                 not_after: float | None = None, foreign: bool = False) -> JSON: ...
    def organisations(self) -> list[JSON]: ...
    def add_organisation(self, name: str, short_code: str | None = None, country_code: str = "NZ",
                         base_currency: str = "NZD", seed_data: bool = True) -> JSON: ...
    def load_data(self, org: str | None = None, contacts: Sequence[Mapping[str, Any]] | None = None,
                  invoices: Sequence[Mapping[str, Any]] | None = None,
                  replace: bool = False) -> JSON: ...
    def data(self, org: str | None = None) -> JSON: ...
    def authorize(self, oauth_token: str, org: str | None = None, deny: bool = False) -> JSON: ...
    def revoke(self, oauth_token: str | None = None, session_handle: str | None = None) -> JSON: ...
    def expire(self, oauth_token: str | None = None, session_handle: str | None = None) -> JSON: ...
    def connections(self, consumer_key: str | None = None) -> list[JSON]: ...
    def journal(self, consumer_key: str | None = None, since: int = 0) -> list[JSON]: ...
    def wait_for_request(self, path: str | None = None, consumer_key: str | None = None,
                         status: int | None = None, since: int = 0,
                         timeout: float = 5.0) -> JSON | None: ...
    def faults(self) -> list[JSON]: ...
    def add_fault(self, kind: str, path: str = "*", count: int = 1, consumer_key: str | None = None,
                  problem: str | None = None, advice: str | None = None, status: int | None = None,
                  delay: float = 0.0, window: str = "minute") -> JSON: ...
    def clear_faults(self) -> JSON: ...
    def clear_fault(self, fault_id: int) -> JSON: ...
    def ca_pem(self) -> str: ...
