"""``MockXero``: one running mock — its settings, clock, store and
certificates, the HTTPS listener, and every control operation as a method.

The ``/_mockxero`` control API is a thin JSON face of these methods, so a
test can drive an in-process mock from Python or a container over HTTP and
get the same behaviour."""

from __future__ import annotations

import datetime
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509

from . import api_data, render
from .certs import CertBundle
from .clientcert import ClientCertificateChecker
from .clock import MockClock
from .oauth import OAuthVerifier
from .settings import Settings
from .store import (
    FAULT_KINDS,
    Consumer,
    Fault,
    Organisation,
    Store,
    StoreError,
    fingerprint,
    new_token,
)
from .tls import HTTPSServer, make_context

DEMO_ORGANISATIONS = (
    ("Demo Company (NZ)", "NZ", "NZD"),
    ("Demo Company (AU)", "AU", "AUD"),
)


class ControlError(ValueError):
    """A control operation was asked something it cannot do (a 400 over HTTP)."""


class MockXero:
    """A mock Xero partner API.

    ``MockXero(port=0, certs=tmpdir).start()`` serves HTTPS on a free port in
    a background thread; ``stop()`` (or leaving a ``with`` block) closes it.
    Without ``start()`` the Flask app (``.app``) can be mounted elsewhere.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        base = settings or Settings()
        self.settings = base.replace(**overrides) if overrides else base
        self.settings.validate()
        self.clock = MockClock()
        self.store = Store(journal_size=self.settings.journal_size)
        self.certs = CertBundle.ensure(self.settings.certs, self.settings.hostnames)
        self.cert_checker = ClientCertificateChecker([self.certs.client_ca_certificate])
        self.verifier = OAuthVerifier(self.store, self.settings, self.clock.now_datetime,
                                      self.cert_checker)
        #: Runtime switch (``POST /_mockxero/settings``); reset restores the setting.
        self.auto_approve = self.settings.auto_approve
        #: (per minute, per day) or None; runtime switch, reset restores the setting.
        self.rate_limit = self.settings.rate_limit
        self._seed()
        self.store.mark_baseline()
        from .app import create_app  # the app imports this module's types

        self.app = create_app(self)
        self._server: HTTPSServer | None = None
        self._lock = threading.Lock()

    # -- seeding ---------------------------------------------------------------
    def _seed(self) -> None:
        for name, country, currency in DEMO_ORGANISATIONS:
            org = self.store.add_organisation(name, country_code=country, base_currency=currency)
            api_data.seed(org, self.store.lock, self.clock.now())
        demo = Consumer(
            consumer_key=self.certs.consumer_key,
            consumer_secret=self.certs.consumer_secret,
            app_type="partner",
            name="mockxero demo partner app",
            callback_domain="localhost",
            certificate=self.certs.application_certificate,
            require_client_cert=True,
        )
        self.store.add_consumer(demo)
        self.store.register_client_certificate(demo.consumer_key, self.certs.client_certificate)

    @property
    def demo_consumer(self) -> Consumer:
        consumer = self.store.consumer(self.certs.consumer_key)
        assert consumer is not None
        return consumer

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> MockXero:
        with self._lock:
            if self._server is not None:
                raise RuntimeError("this mock is already serving")
            context = make_context(self.certs.path("server.pem"), self.certs.path("server-key.pem"),
                                   self.certs.path("entrust-ca.pem"))
            server = HTTPSServer(self.app, context, self.settings.host, self.settings.port,
                                 threads=self.settings.threads, timeout=self.settings.socket_timeout,
                                 handshake_timeout=self.settings.handshake_timeout)
            server.start()
            self._server = server
        return self

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def __enter__(self) -> MockXero:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the mock is not serving; call start()")
        return self._server.port

    @property
    def url(self) -> str:
        """The base URL clients use (``api_url`` for pyxero)."""
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    # -- the control operations ----------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    def reset(self, consumer_key: str | None = None) -> None:
        """Forget tokens, connections, nonces, the journal, rate-limit windows,
        faults and data added since start; consumers and organisations are
        back to those the server started with. A full reset also puts the
        clock back on real time and the runtime switches back to their
        settings; ``consumer_key`` limits it to that consumer's state."""
        try:
            self.store.reset(consumer_key)
        except StoreError as exc:
            raise ControlError(str(exc)) from None
        if consumer_key is None:
            self.clock.reset()
            self.auto_approve = self.settings.auto_approve
            self.rate_limit = self.settings.rate_limit

    def add_consumer(
        self,
        app_type: str = "partner",
        certificate: str | None = None,
        require_client_cert: bool | None = None,
        callback_domain: str | None = None,
        name: str | None = None,
        consumer_key: str | None = None,
        consumer_secret: str | None = None,
        client_certificates: Iterable[str] | None = None,
        organisation: str | None = None,
    ) -> Consumer:
        """Register an application. ``require_client_cert`` defaults to on for
        partner apps; ``client_certificates`` (PEMs) defaults to the mock's
        own Entrust client certificate; a private app is bound to
        ``organisation`` (default: the first)."""
        if require_client_cert is None:
            require_client_cert = app_type == "partner"
        for field, value in (("consumer_key", consumer_key), ("consumer_secret", consumer_secret)):
            if value is not None and not _TOKEN_TEXT.fullmatch(value):
                raise ControlError(f"{field} must be 1 to 255 printable ASCII characters without spaces")
        name = _checked_text("name", name)
        callback_domain = _checked_text("callback_domain", callback_domain)
        org_id = None
        if app_type == "private":
            org_id = self._organisation(organisation).organisation_id
        try:
            consumer = Consumer(
                consumer_key=consumer_key or new_token(),
                consumer_secret=consumer_secret or new_token(),
                app_type=app_type,
                name=name or f"{app_type} application",
                callback_domain=callback_domain,
                certificate=certificate,
                require_client_cert=require_client_cert,
                organisation_id=org_id,
            )
            certs = ([_load_cert(pem) for pem in client_certificates]
                     if client_certificates is not None else [self.certs.client_certificate])
            self.store.add_consumer(consumer)
            for cert in certs:
                self.store.register_client_certificate(consumer.consumer_key, cert)
        except StoreError as exc:
            raise ControlError(str(exc)) from None
        return consumer

    def consumers(self) -> list[Consumer]:
        with self.store.lock:
            return list(self.store.consumers.values())

    def register_client_certificate(self, consumer_key: str, certificate: str) -> str:
        """Register one more client certificate (PEM) to a consumer; returns
        its SHA-256 fingerprint. Old and new work side by side, as during an
        Entrust renewal."""
        try:
            return self.store.register_client_certificate(consumer_key, _load_cert(certificate))
        except StoreError as exc:
            raise ControlError(str(exc)) from None

    def unregister_client_certificate(self, consumer_key: str, fingerprint: str) -> None:
        try:
            self.store.unregister_client_certificate(consumer_key, fingerprint)
        except StoreError as exc:
            raise ControlError(str(exc)) from None

    def issue_client_certificate(
        self,
        consumer_key: str | None = None,
        not_before: float | None = None,
        not_after: float | None = None,
        foreign: bool = False,
    ) -> dict[str, str]:
        """A new client certificate and key (PEMs) from the mock's Entrust CA
        (or, with ``foreign``, from a CA it does not trust); registered to
        ``consumer_key`` when given. Times are epoch seconds."""

        def when(ts: float | None) -> datetime.datetime | None:
            return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)

        leaf = self.certs.issue_client_cert(when(not_before), when(not_after), foreign=foreign)
        cert_pem = leaf.cert_chain_pems[0].bytes().decode()
        fp = ""
        if consumer_key is not None:
            fp = self.register_client_certificate(consumer_key, cert_pem)
        return {"certificate": cert_pem, "private_key": leaf.private_key_pem.bytes().decode(),
                "fingerprint": fp or fingerprint(_load_cert(cert_pem))}

    def add_organisation(self, name: str, short_code: str | None = None,
                         country_code: str = "NZ", base_currency: str = "NZD",
                         seed_data: bool = True) -> Organisation:
        name = _checked_text("name", name) or ""
        short_code = _checked_text("short_code", short_code)
        country_code = _checked_text("country_code", country_code) or ""
        base_currency = _checked_text("base_currency", base_currency) or ""
        if not name:
            raise ControlError("an organisation needs a name")
        with self.store.lock:  # seen by API calls only with its data
            try:
                org = self.store.add_organisation(name, short_code, country_code=country_code,
                                                  base_currency=base_currency)
            except StoreError as exc:
                raise ControlError(str(exc)) from None
            if seed_data:
                api_data.seed(org, self.store.lock, self.clock.now())
        return org

    def organisations(self) -> list[Organisation]:
        with self.store.lock:
            return list(self.store.organisations.values())

    def _organisation(self, ref: str | None) -> Organisation:
        try:
            return self.store.organisation(ref)
        except StoreError as exc:
            raise ControlError(str(exc)) from None

    def load_data(self, org: str | None = None, contacts: Iterable[Mapping[str, Any]] = (),
                  invoices: Iterable[Mapping[str, Any]] = (),
                  replace: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Add API data to an organisation (``org``: id, short code or name;
        default the first): contacts and invoices in Xero's field names, all
        or nothing. Records may carry their own IDs, UpdatedDateUTC and any
        status; invoices name their contact by ContactID or Name. ``replace``
        drops the organisation's contacts and invoices first. Returns the
        stored records as Xero JSON. A full reset brings the seeded data back."""
        organisation = self._organisation(org)
        try:
            loaded = api_data.load(organisation, self.store.lock, self.clock.now(), contacts, invoices,
                                   replace)
        except api_data.DataError as exc:
            raise ControlError(str(exc)) from None
        return {name: [render.json_record(r) for r in records] for name, records in loaded.items()}

    def data(self, org: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """An organisation's contacts and invoices, as Xero JSON."""
        dumped = api_data.dump(self._organisation(org), self.store.lock)
        return {name: [render.json_record(r) for r in records] for name, records in dumped.items()}

    def authorize(self, oauth_token: str, org: str | None = None, deny: bool = False) -> dict[str, Any]:
        """Approve (for ``org``, default the first organisation) or deny a
        request token, as the Authorize page would. Returns the verifier, the
        organisation's short code and the URL the browser would be sent to."""
        organisation = self._organisation(org)
        rt = self.store.request_token(oauth_token)
        if rt is not None and rt.state == "pending" and self.clock.now() > rt.expires_at:
            raise ControlError(f"request token {oauth_token} has expired")
        try:
            rt = self.store.decide(oauth_token, not deny, organisation.organisation_id)
        except StoreError as exc:
            raise ControlError(str(exc)) from None
        from .flow import callback_redirect

        return {
            "oauth_token": rt.token,
            "oauth_verifier": rt.verifier,
            "org": organisation.short_code if not deny else None,
            "denied": deny,
            "redirect": callback_redirect(rt, organisation),
        }

    def revoke(self, oauth_token: str | None = None, session_handle: str | None = None) -> dict[str, Any]:
        """Disconnect a connection, as the Add-ons page does."""
        if not oauth_token and not session_handle:
            raise ControlError("give oauth_token or session_handle")
        try:
            conn = self.store.revoke(oauth_token, session_handle)
        except StoreError as exc:
            raise ControlError(str(exc)) from None
        return conn.to_json()

    def expire(self, oauth_token: str | None = None, session_handle: str | None = None) -> dict[str, Any]:
        """Make a connection's current access token expired now (mock time)."""
        if not oauth_token and not session_handle:
            raise ControlError("give oauth_token or session_handle")
        try:
            return self.store.expire_now(oauth_token, session_handle, self.clock.now()).to_json()
        except StoreError as exc:
            raise ControlError(str(exc)) from None

    def connections(self, consumer_key: str | None = None) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.store.connections_for(consumer_key)]

    def journal(self, consumer_key: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """The request journal, oldest first (a ring buffer of
        ``journal_size`` entries)."""
        return self.store.journal(consumer_key, since)

    def wait_for_request(self, path: str | None = None, consumer_key: str | None = None,
                         status: int | None = None, since: int = 0,
                         timeout: float = 5.0) -> dict[str, Any] | None:
        """The first journal entry after ``since`` matching all the given
        fields (``path`` case-insensitively), waiting up to ``timeout``
        seconds for it; None if none came."""
        deadline = time.monotonic() + timeout

        def match(entry: Mapping[str, Any]) -> bool:
            return ((path is None or entry["path"].lower() == path.lower())
                    and (consumer_key is None or entry.get("consumer_key") == consumer_key)
                    and (status is None or entry["status"] == status))

        with self.store.journal_changed:
            while True:
                for entry in self.store.journal(None, since):
                    if match(entry):
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.store.journal_changed.wait(remaining)

    def add_fault(self, kind: str, path: str = "*", count: int = 1, consumer_key: str | None = None,
                  problem: str | None = None, advice: str | None = None, status: int | None = None,
                  delay: float = 0.0, window: str = "minute") -> Fault:
        """Queue a fault for the next ``count`` requests matching ``path`` (a
        case-insensitive glob such as ``/api.xro/2.0/*``)."""
        if kind not in FAULT_KINDS:
            raise ControlError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if kind == "problem" and not problem:
            raise ControlError("a 'problem' fault needs an oauth_problem in 'problem'")
        if count < 1:
            raise ControlError("count must be at least 1")
        if kind == "delay" and not 0 < delay <= 60:
            raise ControlError("a 'delay' fault needs 'delay' between 0 and 60 seconds")
        if window not in ("minute", "day"):
            raise ControlError("window must be 'minute' or 'day'")
        if status is not None and not 100 <= status <= 599:
            raise ControlError("status must be an HTTP status code")
        return self.store.add_fault(Fault(kind=kind, path=path, count=count, consumer_key=consumer_key,
                                          problem=problem, advice=advice, status=status,
                                          delay=delay, window=window))

    def faults(self) -> list[Fault]:
        return self.store.faults()

    def clear_faults(self, fault_id: int | None = None) -> int:
        return self.store.clear_faults(fault_id)

    def ca_pem(self) -> str:
        """The CA to trust to talk to the mock (``ca.pem``)."""
        return self.certs.read("ca.pem").decode()


_TOKEN_TEXT = re.compile(r"[!-~]{1,255}")


def _checked_text(field: str, value: str | None) -> str | None:
    """Text that ends up in every page and API response (an app's or an
    organisation's name): refused if XML or UTF-8 could not carry it, rather
    than breaking each response later."""
    if value is None:
        return None
    if render.clean_text(value) != value or any(c in value for c in "\r\n\t"):
        raise ControlError(f"{field} holds control characters or lone surrogates")
    if len(value) > 255:
        raise ControlError(f"{field} is longer than 255 characters")
    return value


def _load_cert(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError) as exc:
        raise ControlError(f"not a PEM certificate: {exc}") from None

