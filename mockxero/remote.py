"""``RemoteMock``: the control operations of a mock running elsewhere (a
container in a docker-compose stack, ``mockxero serve``), over its
``/_mockxero`` API.

It implements :class:`mockxero.operations.Operations` like the in-process
:class:`mockxero.MockXero`, so a test moves between the two by changing a
URL. Each method is one line naming its operation; how the arguments
travel (path, query or JSON body, under which name) and what status means
what comes from :data:`mockxero.operations.OPERATIONS`, the table the
server builds its routes from, so the two cannot drift apart. Arguments are
checked here first with the same :func:`~mockxero.operations.check_arguments`
(a query string cannot carry a Python type), and the server's refusals come
back as :class:`~mockxero.operations.ControlError` with its message and
status.

Nothing here imports the server (Flask, cheroot, pyOpenSSL, trustme).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

import requests

from .operations import JSON, OPERATIONS, ControlError, Operations, check_arguments

__all__ = ["MockHandle", "RemoteMock"]

_PATH_ARGUMENT = re.compile(r"<(?:\w+:)?(\w+)>")


@runtime_checkable
class MockHandle(Operations, Protocol):
    """What the pytest plugin hands out, in-process (:class:`mockxero.MockXero`)
    or remote (:class:`RemoteMock`): the operations, plus the demo partner
    consumer and the certificates folder a client needs."""

    @property
    def certs_dir(self) -> Path: ...
    @property
    def consumer_key(self) -> str: ...
    @property
    def consumer_secret(self) -> str: ...
    @property
    def rsa_key(self) -> str: ...


class RemoteMock:
    """The operations of a running mock at ``url``, over HTTPS.

    ``certs_dir`` is the mock's certificates folder (as ``mockxero serve
    --certs`` or the container wrote it): its ``ca.pem`` is trusted, and its
    demo consumer (``consumer.json``, ``privatekey.pem``,
    ``entrust-cert.pem`` + ``entrust-private-nopass.pem``) is what
    :attr:`consumer_key`, :attr:`rsa_key` and :attr:`client_cert` give.
    ``admin_token`` is sent as ``Authorization: Bearer`` when the mock
    wants one; ``timeout`` bounds every call (``wait_for_request`` gets its
    own wait on top)."""

    def __init__(self, url: str, certs_dir: str | Path, *, admin_token: str | None = None,
                 timeout: float = 10.0) -> None:
        self._url = url.rstrip("/")
        self._certs = Path(certs_dir)
        try:
            consumer = json.loads((self._certs / "consumer.json").read_text())
            self._consumer_key: str = consumer["consumer_key"]
            self._consumer_secret: str = consumer["consumer_secret"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self._certs} is not a mockxero certificates folder "
                             f"(consumer.json: {exc})") from None
        for name in ("ca.pem", "privatekey.pem", "entrust-cert.pem", "entrust-private-nopass.pem"):
            if not (self._certs / name).is_file():
                raise ValueError(f"{self._certs} is not a mockxero certificates folder (no {name})")
        self.timeout = timeout
        self._session = requests.Session()
        # REQUESTS_CA_BUNDLE would otherwise override the session's verify.
        self._session.trust_env = False
        self._session.verify = str(self.ca_path)
        if admin_token:
            self._session.headers["Authorization"] = f"Bearer {admin_token}"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RemoteMock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteMock({self._url!r}, {str(self._certs)!r})"

    # -- what a client needs ----------------------------------------------------------
    @property
    def url(self) -> str:
        return self._url

    @property
    def certs_dir(self) -> Path:
        return self._certs

    @property
    def ca_path(self) -> Path:
        return self._certs / "ca.pem"

    @property
    def client_cert(self) -> tuple[str, str]:
        return (str(self._certs / "entrust-cert.pem"), str(self._certs / "entrust-private-nopass.pem"))

    def requests_kwargs(self) -> dict[str, Any]:
        return {"verify": str(self.ca_path), "cert": self.client_cert}

    @property
    def consumer_key(self) -> str:
        return self._consumer_key

    @property
    def consumer_secret(self) -> str:
        return self._consumer_secret

    @property
    def rsa_key(self) -> str:
        return (self._certs / "privatekey.pem").read_text()

    # -- the wire ---------------------------------------------------------------------
    def call(self, operation: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Run one operation of :data:`OPERATIONS` by name; None values mean
        "not given", as in Python."""
        op = OPERATIONS[operation]
        given = {k: v for k, v in (arguments or {}).items() if v is not None}
        check_arguments(operation, given)
        path_arguments = {n for n, f in op.fields.items() if f.source == "path"}

        def fill(match: re.Match[str]) -> str:
            return quote(str(given[match.group(1)]), safe="")

        path = _PATH_ARGUMENT.sub(fill, op.path)
        query = {op.wire(n): _query_text(v) for n, v in given.items() if op.fields[n].source == "query"}
        body = {op.wire(n): _json_value(v) for n, v in given.items()
                if n not in path_arguments and op.fields[n].source == "body"}
        timeout = self.timeout + float(given.get("timeout", 0)) if op.none_status else self.timeout
        response = self._session.request(
            op.method, f"{self._url}/_mockxero{path}", params=query,
            json=body if op.method in ("POST", "PATCH", "PUT") else None, timeout=timeout)
        if op.none_status is not None and response.status_code == op.none_status:
            return None
        if response.status_code >= 400:
            raise ControlError(_error_message(response), response.status_code)
        if operation == "ca_pem":
            return response.text
        return response.json()

    def _dict(self, operation: str, arguments: Mapping[str, Any] | None = None) -> JSON:
        return _shaped(operation, self.call(operation, arguments), dict)

    def _list(self, operation: str, arguments: Mapping[str, Any] | None = None) -> list[JSON]:
        return _shaped(operation, self.call(operation, arguments), list)

    def _maybe(self, operation: str, arguments: Mapping[str, Any] | None = None) -> JSON | None:
        result = self.call(operation, arguments)
        return None if result is None else _shaped(operation, result, dict)

    def _text(self, operation: str, arguments: Mapping[str, Any] | None = None) -> str:
        return _shaped(operation, self.call(operation, arguments), str)

    def _default_organisation(self, org: str | None) -> str:
        """An operation whose route names the organisation, called without
        one: the mock's default, as the in-process mock would take it."""
        if org is not None:
            return org
        return str(self.runtime_settings()["organisation"])

    # -- the operations (mockxero.operations.Operations) ---------------------------------
    def health(self) -> JSON:
        return self._dict("health")

    def reset(self, consumer_key: str | None = None) -> JSON:
        return self._dict("reset", {"consumer_key": consumer_key})

    def clock(self) -> JSON:
        return self._dict("clock")

    def move_clock(self, advance: float | None = None, set: float | None = None,
                   freeze: bool | None = None, reset: bool = False) -> JSON:
        return self._dict("move_clock", {"advance": advance, "set": set, "freeze": freeze, "reset": reset})

    def advance(self, seconds: float) -> JSON:
        """Move the mock clock ``seconds`` forward."""
        return self.move_clock(advance=seconds)

    def runtime_settings(self) -> JSON:
        return self._dict("runtime_settings")

    def change_settings(self, auto_approve: bool | None = None, rate_limit: str | None = None,
                        access_token_ttl: int | None = None, authorization_ttl: int | None = None,
                        request_token_ttl: int | None = None, organisation: str | None = None) -> JSON:
        return self._dict("change_settings", {
            "auto_approve": auto_approve, "rate_limit": rate_limit,
            "access_token_ttl": access_token_ttl, "authorization_ttl": authorization_ttl,
            "request_token_ttl": request_token_ttl, "organisation": organisation})

    def consumers(self) -> list[JSON]:
        return self._list("consumers")

    def add_consumer(self, app_type: str = "partner", certificate: str | None = None,
                     require_client_cert: bool | None = None, callback_domain: str | None = None,
                     name: str | None = None, consumer_key: str | None = None,
                     consumer_secret: str | None = None,
                     client_certificates: Sequence[str] | None = None,
                     organisation: str | None = None) -> JSON:
        return self._dict("add_consumer", {
            "app_type": app_type, "certificate": certificate,
            "require_client_cert": require_client_cert, "callback_domain": callback_domain,
            "name": name, "consumer_key": consumer_key, "consumer_secret": consumer_secret,
            "client_certificates": client_certificates, "organisation": organisation})

    def update_consumer(self, consumer_key: str, name: str | None = None,
                        callback_domain: str | None = None, certificate: str | None = None,
                        require_client_cert: bool | None = None,
                        consumer_secret: str | None = None) -> JSON:
        return self._dict("update_consumer", {
            "consumer_key": consumer_key, "name": name, "callback_domain": callback_domain,
            "certificate": certificate, "require_client_cert": require_client_cert,
            "consumer_secret": consumer_secret})

    def register_client_certificate(self, consumer_key: str, certificate: str) -> JSON:
        return self._dict("register_client_certificate",
                         {"consumer_key": consumer_key, "certificate": certificate})

    def unregister_client_certificate(self, consumer_key: str, fingerprint: str) -> JSON:
        return self._dict("unregister_client_certificate",
                         {"consumer_key": consumer_key, "fingerprint": fingerprint})

    def issue_client_certificate(self, consumer_key: str | None = None, not_before: float | None = None,
                                 not_after: float | None = None, foreign: bool = False) -> JSON:
        return self._dict("issue_client_certificate", {
            "consumer_key": consumer_key, "not_before": not_before, "not_after": not_after,
            "foreign": foreign})

    def organisations(self) -> list[JSON]:
        return self._list("organisations")

    def add_organisation(self, name: str, short_code: str | None = None, country_code: str = "NZ",
                         base_currency: str = "NZD", seed_data: bool = True) -> JSON:
        return self._dict("add_organisation", {
            "name": name, "short_code": short_code, "country_code": country_code,
            "base_currency": base_currency, "seed_data": seed_data})

    def load_data(self, org: str | None = None, contacts: Sequence[Mapping[str, Any]] | None = None,
                  invoices: Sequence[Mapping[str, Any]] | None = None,
                  replace: bool = False) -> JSON:
        check_arguments("load_data", {k: v for k, v in {"org": org, "contacts": contacts,
                                                          "invoices": invoices}.items() if v is not None})
        return self._dict("load_data", {
            "org": self._default_organisation(org), "contacts": contacts, "invoices": invoices,
            "replace": replace})

    def data(self, org: str | None = None) -> JSON:
        check_arguments("data", {"org": org} if org is not None else {})
        return self._dict("data", {"org": self._default_organisation(org)})

    def authorize(self, oauth_token: str, org: str | None = None, deny: bool = False) -> JSON:
        return self._dict("authorize",
                         {"oauth_token": oauth_token, "org": org, "deny": deny})

    def revoke(self, oauth_token: str | None = None, session_handle: str | None = None) -> JSON:
        return self._dict("revoke",
                         {"oauth_token": oauth_token, "session_handle": session_handle})

    def expire(self, oauth_token: str | None = None, session_handle: str | None = None) -> JSON:
        return self._dict("expire",
                         {"oauth_token": oauth_token, "session_handle": session_handle})

    def connections(self, consumer_key: str | None = None) -> list[JSON]:
        return self._list("connections", {"consumer_key": consumer_key})

    def journal(self, consumer_key: str | None = None, since: int = 0) -> list[JSON]:
        return self._list("journal",
                         {"consumer_key": consumer_key, "since": since})

    def wait_for_request(self, path: str | None = None, consumer_key: str | None = None,
                         status: int | None = None, since: int = 0,
                         timeout: float = 5.0) -> JSON | None:
        return self._maybe("wait_for_request", {
            "path": path, "consumer_key": consumer_key, "status": status, "since": since,
            "timeout": timeout})

    def faults(self) -> list[JSON]:
        return self._list("faults")

    def add_fault(self, kind: str, path: str = "*", count: int = 1, consumer_key: str | None = None,
                  problem: str | None = None, advice: str | None = None, status: int | None = None,
                  delay: float = 0.0, window: str = "minute") -> JSON:
        return self._dict("add_fault", {
            "kind": kind, "path": path, "count": count, "consumer_key": consumer_key,
            "problem": problem, "advice": advice, "status": status, "delay": delay,
            "window": window})

    def clear_faults(self) -> JSON:
        return self._dict("clear_faults")

    def clear_fault(self, fault_id: int) -> JSON:
        return self._dict("clear_fault", {"fault_id": fault_id})

    def ca_pem(self) -> str:
        return self._text("ca_pem")


_T = TypeVar("_T")


def _shaped(operation: str, value: Any, kind: type[_T]) -> _T:
    if not isinstance(value, kind):
        raise ControlError(f"{operation}: the mock answered a {type(value).__name__}, "
                           f"not a {kind.__name__}", 502)
    return value


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_value(value: Any) -> Any:
    """What JSON carries for a Python value: a tuple or another iterable of
    records as a list."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        return value
    return [dict(v) if isinstance(v, Mapping) else v for v in value]


def _error_message(response: requests.Response) -> str:
    """The server's ``{"error": ...}``, or what else it sent."""
    try:
        data = response.json()
    except ValueError:
        data = None
    message = data.get("error") if isinstance(data, dict) else None
    if isinstance(message, str):
        return message
    text = response.text.strip()
    return text[:500] if text else f"HTTP {response.status_code}"
