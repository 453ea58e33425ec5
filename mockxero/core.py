"""``MockCore``: the state of one mock and every control operation on it.

No Flask and no sockets: the endpoints (:mod:`mockxero.flow`,
:mod:`mockxero.api`) and the control routes (:mod:`mockxero.control`) are
faces of what is decided here, and :class:`mockxero.mock.MockXero` adds the
app and the HTTPS listener. Each operation of :mod:`mockxero.operations`
checks its arguments with the same words as the control API and returns
JSON-shaped values; the Authorize page and the control API decide a
request token through the same :meth:`MockCore.decide`.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from cryptography import x509

from . import api_data, render
from .certs import CertBundle
from .clientcert import ClientCertificateChecker
from .clock import ClockError, MockClock
from .oauth import OAuthVerifier
from .operations import JSON, ControlError, check_arguments
from .settings import Settings, SettingsError, parse_rate_limit
from .statefile import StateFile, StateFileError
from .store import (
    FAULT_KINDS,
    Consumer,
    Fault,
    Organisation,
    RequestToken,
    Store,
    StoreError,
    fingerprint,
    new_token,
)

DEMO_ORGANISATIONS = (
    ("Demo Company (NZ)", "NZ", "NZD"),
    ("Demo Company (AU)", "AU", "AUD"),
)

_F = TypeVar("_F", bound=Callable[..., Any])


def operation(method: _F) -> _F:
    """Check the arguments as :data:`mockxero.operations.OPERATIONS` says,
    and turn the store's refusals into ``ControlError``."""
    signature = inspect.signature(method)
    name = method.__name__

    @functools.wraps(method)
    def checked(self: MockCore, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(self, *args, **kwargs)  # a missing argument is named below
        check_arguments(name, {k: v for k, v in bound.arguments.items() if k != "self"})
        try:
            return method(self, *args, **kwargs)
        except StoreError as exc:
            raise ControlError(str(exc)) from None

    return cast(_F, checked)


_LIFETIMES = ("access_token_ttl", "authorization_ttl", "request_token_ttl")


def _switches(auto_approve: bool, rate_limit: tuple[int, int] | None, settings: Settings,
              organisation_id: str | None) -> JSON:
    """The runtime switches as a state file keeps them (JSON values)."""
    return {"auto_approve": auto_approve, "rate_limit": list(rate_limit) if rate_limit else None,
            "organisation": organisation_id, **{name: getattr(settings, name) for name in _LIFETIMES}}


def callback_redirect(rt: RequestToken, organisation: Organisation | None) -> str | None:
    """Where the browser goes after a decision; None for an oob callback."""
    if rt.callback == "oob":
        return None
    if rt.state == "denied":
        params = [("error", "access_denied"), ("error_description", "The user denied your request")]
    else:
        assert organisation is not None
        params = [("oauth_token", rt.token), ("oauth_verifier", rt.verifier or ""),
                  ("org", organisation.short_code)]
    separator = "&" if "?" in rt.callback else "?"
    return rt.callback + separator + urlencode(params)


class MockCore:
    """One mock's settings, clock, store and certificates, the checks that
    read them, and the operations that change them."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        base = settings or Settings()
        #: What the mock runs with now: ``change_settings`` swaps in a copy
        #: with other token lifetimes; a full reset puts back the settings
        #: it started with (``_started_with``).
        self.settings = base.replace(**overrides) if overrides else base
        self.settings.validate()
        self._started_with = self.settings
        #: The organisation an authorisation picks when none is named (and
        #: ``load_data``/``data`` use): None is the first one.
        self._organisation: str | None = None
        self._clock = MockClock()
        self.store = Store(journal_size=self.settings.journal_size)
        self.certs = CertBundle.ensure(self.settings.certs, self.settings.hostnames)
        self.cert_checker = ClientCertificateChecker([self.certs.client_ca_certificate])
        self.verifier = OAuthVerifier(self.store, self.settings, self._clock.now_datetime,
                                      self.cert_checker)
        self._auto_approve = self.settings.auto_approve
        self._rate_limit = self.settings.rate_limit
        self._state_file = self._open_state_file()
        if self._state_file is None:
            self._seed()
            self.store.mark_baseline()

    def _open_state_file(self) -> StateFile | None:
        """With ``settings.state``: carry on from the file, or seed and fill
        a new one; from then on every durable change (the clock's and the
        runtime switches' too) is written through. Refusals are StateFileError."""
        if self.settings.state is None:
            return None
        file = StateFile.open(self.settings.state, fingerprint(self.certs.client_ca_certificate))
        try:
            snapshot = file.load()
            if snapshot.baseline is None:  # new
                self._seed()
                self.store.mark_baseline()
                self.store.attach(file, None)
            else:
                self.store.attach(file, snapshot)
                self._clock.restore(snapshot.clock.offset, snapshot.clock.frozen_at)
                if snapshot.switches is not None:
                    self._restore_switches(snapshot.switches)
        except (StoreError, SettingsError, ValueError, TypeError, IndexError, KeyError) as exc:
            file.close()  # a row this mockxero cannot use (e.g. a certificate edited by hand)
            raise StateFileError(f"state file {file.path} holds something mockxero cannot use "
                                 f"({type(exc).__name__}: {exc}); move it away to start afresh") from None
        except BaseException:
            file.close()
            raise
        self._clock.on_change = self.store.save_clock
        return file

    def _restore_switches(self, switches: Mapping[str, Any]) -> None:
        """The runtime switches a state file kept (see ``_switches``)."""
        limit = switches["rate_limit"]
        self._auto_approve = bool(switches["auto_approve"])
        self._rate_limit = (int(limit[0]), int(limit[1])) if limit else None
        self.settings = self.settings.replace(**{name: int(switches[name]) for name in _LIFETIMES})
        self.settings.validate()
        org_id = switches["organisation"]
        self._organisation = org_id if org_id is None else self.store.organisation(org_id).organisation_id

    def close(self) -> None:
        """Let go of the state file (written through already, so nothing is lost)."""
        if self._state_file is not None:
            self._state_file.close()

    def _seed(self) -> None:
        for name, country, currency in DEMO_ORGANISATIONS:
            self._add_organisation(name, None, country, currency, seed_data=True)
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

    # -- what the endpoints read -----------------------------------------------
    @property
    def auto_approve(self) -> bool:
        """Runtime switch (``change_settings``); a full reset restores the setting."""
        return self._auto_approve

    @property
    def rate_limit(self) -> tuple[int, int] | None:
        """(per minute, per day) or None; runtime switch, reset restores the setting."""
        return self._rate_limit

    def now(self) -> float:
        """Mock time, epoch seconds: what every lifetime is measured on."""
        return self._clock.now()

    @property
    def demo_consumer(self) -> Consumer:
        consumer = self.store.consumer(self.certs.consumer_key)
        assert consumer is not None
        return consumer

    def decide(self, oauth_token: str, approve: bool,
               org: str | None = None) -> tuple[RequestToken, Organisation | None]:
        """Approve (for ``org``, default the first organisation) or deny a
        pending, unexpired request token: what the Authorize page's buttons
        and the control API's ``authorize`` both do."""
        try:
            organisation = self._organisation_for(org) if approve else None
            rt = self.store.decide(oauth_token, approve,
                                   organisation.organisation_id if organisation else None, self._clock.now())
        except StoreError as exc:
            raise ControlError(str(exc)) from None
        return rt, organisation

    def default_organisation(self) -> Organisation:
        """The organisation an approval picks when none is named."""
        return self._organisation_for(None)

    def _organisation_for(self, ref: str | None) -> Organisation:
        """The organisation ``ref`` names, or the default one (see
        ``change_settings(organisation=...)``)."""
        return self.store.organisation(ref if ref is not None else self._organisation)

    # -- conveniences for clients of the mock ------------------------------------
    @property
    def ca_path(self) -> Path:
        """The CA to trust to talk to the mock."""
        return self.certs.path("ca.pem")

    @property
    def client_cert(self) -> tuple[str, str]:
        """The demo consumer's Entrust client certificate and key files."""
        return (str(self.certs.path("entrust-cert.pem")), str(self.certs.path("entrust-private-nopass.pem")))

    def requests_kwargs(self) -> dict[str, Any]:
        """``verify`` and ``cert`` as ``requests`` takes them, per request
        (a ``REQUESTS_CA_BUNDLE`` in the environment overrides a session's
        ``verify``, never a request's)."""
        return {"verify": str(self.ca_path), "cert": self.client_cert}

    @property
    def certs_dir(self) -> Path:
        """The certificates folder (``consumer.json``, ``entrust-client.p12``, ...)."""
        return self.certs.directory

    @property
    def consumer_key(self) -> str:
        """The demo partner consumer's key."""
        return self.certs.consumer_key

    @property
    def consumer_secret(self) -> str:
        return self.certs.consumer_secret

    @property
    def rsa_key(self) -> str:
        """The demo consumer's RSA application key (PEM) that signs RSA-SHA1."""
        return self.certs.application_key

    # -- the control operations ----------------------------------------------------
    @operation
    def health(self) -> JSON:
        return {"status": "ok"}

    @operation
    def reset(self, consumer_key: str | None = None) -> JSON:
        """Forget tokens, connections, nonces, the journal, rate-limit windows,
        faults and data added since start; consumers and organisations are
        back to those the server started with. A full reset also puts the
        clock back on real time and the runtime switches back to their
        settings; ``consumer_key`` limits it to that consumer's state. With a
        state file, the file is reset with it (in one transaction)."""
        self.store.reset(consumer_key)
        if consumer_key is None:
            self._clock.reset()
            self.settings = self._started_with
            self._auto_approve = self.settings.auto_approve
            self._rate_limit = self.settings.rate_limit
            self._organisation = None
            return {"status": "reset"}
        return {"status": "reset", "consumer_key": consumer_key}

    @operation
    def clock(self) -> JSON:
        """The mock clock: ``now`` (epoch seconds), ``frozen``, and its
        ``offset`` from real time."""
        return dict(self._clock.state())

    @operation
    def move_clock(self, advance: float | None = None, set: float | None = None,
                   freeze: bool | None = None, reset: bool = False) -> JSON:
        """Move the mock clock: ``reset`` (back on real time), then
        ``freeze`` (True stops it, False lets it run), then ``set`` (epoch
        seconds) or ``advance`` (seconds, may be negative); all or nothing."""
        if advance is None and set is None and freeze is None and not reset:
            raise ControlError("give 'advance' (seconds), 'set' (epoch seconds), 'freeze' or 'reset'")
        try:
            self._clock.change(advance=advance, set=set, freeze=freeze, reset=reset)
        except ClockError as exc:
            raise ControlError(f"'{'set' if set is not None else 'advance'}': {exc}") from None
        return dict(self._clock.state())

    def advance(self, seconds: float) -> JSON:
        """Move the mock clock ``seconds`` forward (the short name tests use)."""
        return self.move_clock(advance=seconds)

    @operation
    def runtime_settings(self) -> JSON:
        limit = self._rate_limit
        s = self.settings
        return {"auto_approve": self._auto_approve,
                "rate_limit": f"{limit[0]}/{limit[1]}" if limit else "off",
                "access_token_ttl": s.access_token_ttl, "authorization_ttl": s.authorization_ttl,
                "request_token_ttl": s.request_token_ttl,
                "organisation": self._organisation_for(None).short_code}

    @operation
    def change_settings(self, auto_approve: bool | None = None, rate_limit: str | None = None,
                        access_token_ttl: int | None = None, authorization_ttl: int | None = None,
                        request_token_ttl: int | None = None, organisation: str | None = None) -> JSON:
        """The runtime switches: ``auto_approve``, ``rate_limit`` ("MINUTE/DAY"
        or "off"), the lifetimes of tokens issued from now on (seconds), and
        the default ``organisation`` (id, short code or name) that
        authorisations, ``load_data`` and ``data`` use when none is named.
        All or nothing; a full reset puts every one back."""
        limit = self._rate_limit
        if rate_limit is not None:
            try:
                limit = parse_rate_limit(rate_limit)
            except SettingsError as exc:
                raise ControlError(str(exc)) from None
        given = (access_token_ttl, authorization_ttl, request_token_ttl)
        lifetimes = {name: value for name, value in zip(_LIFETIMES, given, strict=True) if value is not None}
        settings = self.settings.replace(**lifetimes) if lifetimes else self.settings
        try:
            settings.validate()
        except SettingsError as exc:
            raise ControlError(str(exc)) from None
        org_id = self._organisation
        if organisation is not None:
            org_id = self.store.organisation(organisation).organisation_id
        approve = self._auto_approve if auto_approve is None else auto_approve
        if any(v is not None for v in (auto_approve, rate_limit, organisation, *lifetimes.values())):
            self.store.save_switches(_switches(approve, limit, settings, org_id))  # kept until a full reset
        self._rate_limit, self.settings, self._organisation = limit, settings, org_id
        self._auto_approve = approve
        return self.runtime_settings()

    @operation
    def consumers(self) -> list[JSON]:
        return [c.to_json() for c in self.store.consumers()]

    @operation
    def add_consumer(
        self,
        app_type: str = "partner",
        certificate: str | None = None,
        require_client_cert: bool | None = None,
        callback_domain: str | None = None,
        name: str | None = None,
        consumer_key: str | None = None,
        consumer_secret: str | None = None,
        client_certificates: Sequence[str] | None = None,
        organisation: str | None = None,
    ) -> JSON:
        """Register an application. ``require_client_cert`` defaults to on for
        partner apps; ``client_certificates`` (PEMs) defaults to the mock's
        own Entrust client certificate; a private app is bound to
        ``organisation`` (default: the first)."""
        if require_client_cert is None:
            require_client_cert = app_type == "partner"
        _check_token_text("consumer_key", consumer_key)
        _check_token_text("consumer_secret", consumer_secret)
        name = _checked_text("name", name)
        callback_domain = _checked_text("callback_domain", callback_domain)
        org_id = None
        if app_type == "private":
            org_id = self._organisation_for(organisation).organisation_id
        certs = ([_load_cert(pem) for pem in _pems(client_certificates)]
                 if client_certificates is not None else [self.certs.client_certificate])
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
        self.store.add_consumer(consumer)
        for cert in certs:
            self.store.register_client_certificate(consumer.consumer_key, cert)
        return self._consumer_json(consumer.consumer_key)

    @operation
    def update_consumer(self, consumer_key: str, name: str | None = None,
                        callback_domain: str | None = None, certificate: str | None = None,
                        require_client_cert: bool | None = None,
                        consumer_secret: str | None = None) -> JSON:
        """Change a registered application: its name, callback domain,
        uploaded application certificate (PEM), whether it must present a
        client certificate, or its secret. What is not given stays."""
        _check_token_text("consumer_secret", consumer_secret)
        changes: dict[str, Any] = {
            "name": _checked_text("name", name), "callback_domain": _checked_text("callback_domain",
                                                                                   callback_domain),
            "certificate": certificate, "require_client_cert": require_client_cert,
            "consumer_secret": consumer_secret,
        }
        self.store.update_consumer(consumer_key, **{k: v for k, v in changes.items() if v is not None})
        return self._consumer_json(consumer_key)

    def _consumer_json(self, consumer_key: str) -> JSON:
        consumer = self.store.consumer(consumer_key)
        assert consumer is not None
        return consumer.to_json()

    @operation
    def register_client_certificate(self, consumer_key: str, certificate: str) -> JSON:
        """Register one more client certificate (PEM) to a consumer. Old and
        new work side by side, as during an Entrust renewal."""
        fp = self.store.register_client_certificate(consumer_key, _load_cert(certificate))
        return {"consumer_key": consumer_key, "fingerprint": fp}

    @operation
    def unregister_client_certificate(self, consumer_key: str, fingerprint: str) -> JSON:
        self.store.unregister_client_certificate(consumer_key, fingerprint)
        return {"consumer_key": consumer_key, "removed": fingerprint}

    @operation
    def issue_client_certificate(self, consumer_key: str | None = None, not_before: float | None = None,
                                 not_after: float | None = None, foreign: bool = False) -> JSON:
        """A new client certificate and key (PEMs) from the mock's Entrust CA
        (or, with ``foreign``, from a CA it does not trust); registered to
        ``consumer_key`` when given. Times are epoch seconds."""

        def when(ts: float | None) -> datetime.datetime | None:
            if ts is None:
                return None
            try:
                return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
            except (OverflowError, OSError, ValueError):
                raise ControlError(f"{ts} is not a time a certificate can carry") from None

        leaf = self.certs.issue_client_cert(when(not_before), when(not_after), foreign=foreign)
        cert_pem = leaf.cert_chain_pems[0].bytes().decode()
        fp = ""
        if consumer_key is not None:
            fp = self.store.register_client_certificate(consumer_key, _load_cert(cert_pem))
        return {"certificate": cert_pem, "private_key": leaf.private_key_pem.bytes().decode(),
                "fingerprint": fp or fingerprint(_load_cert(cert_pem))}

    @operation
    def organisations(self) -> list[JSON]:
        return [self._organisation_json(o) for o in self.store.organisations()]

    def _organisation_json(self, org: Organisation) -> JSON:
        counts = self.store.counts(org.organisation_id)
        return org.to_json({name: counts.get(name, 0) for name in (api_data.CONTACTS, api_data.INVOICES)})

    @operation
    def add_organisation(self, name: str, short_code: str | None = None,
                         country_code: str = "NZ", base_currency: str = "NZD",
                         seed_data: bool = True) -> JSON:
        name = _checked_text("name", name) or ""
        short_code = _checked_text("short_code", short_code)
        country_code = _checked_text("country_code", country_code) or ""
        base_currency = _checked_text("base_currency", base_currency) or ""
        if not name:
            raise ControlError("an organisation needs a name")
        org = self._add_organisation(name, short_code, country_code, base_currency, seed_data)
        return self._organisation_json(org)

    def _add_organisation(self, name: str, short_code: str | None, country_code: str,
                          base_currency: str, seed_data: bool) -> Organisation:
        org = Organisation(organisation_id=str(uuid.uuid4()), name=name,
                           short_code=short_code or "!" + new_token()[:5], org_muid=new_token()[:22],
                           country_code=country_code, base_currency=base_currency)
        # Added with its data in one step: no API call sees it without.
        return self.store.add_organisation(org, api_data.new_organisation_data(org, self._clock.now(),
                                                                              seed_data))

    @operation
    def load_data(self, org: str | None = None, contacts: Sequence[Mapping[str, Any]] | None = None,
                  invoices: Sequence[Mapping[str, Any]] | None = None,
                  replace: bool = False) -> JSON:
        """Add API data to an organisation (``org``: id, short code or name;
        default the first): contacts and invoices in Xero's field names, all
        or nothing. Records may carry their own IDs, UpdatedDateUTC and any
        status; invoices name their contact by ContactID or Name. ``replace``
        drops the organisation's contacts and invoices first. Returns the
        stored records as Xero JSON. A full reset brings the seeded data back."""
        organisation = self._organisation_for(org)
        now = self._clock.now()
        try:
            loaded = self.store.update_data(
                organisation.organisation_id,
                lambda seen: api_data.load(organisation, seen, now, contacts or (), invoices or (), replace))
        except api_data.DataError as exc:
            raise ControlError(str(exc)) from None
        return {name: [render.json_record(r) for r in records] for name, records in loaded.items()}

    @operation
    def data(self, org: str | None = None) -> JSON:
        """An organisation's contacts and invoices, as Xero JSON."""
        organisation = self._organisation_for(org)
        dumped = api_data.dump(self.store.collections(organisation.organisation_id))
        return {name: [render.json_record(r) for r in records] for name, records in dumped.items()}

    @operation
    def authorize(self, oauth_token: str, org: str | None = None, deny: bool = False) -> JSON:
        """Approve (for ``org``, default the first organisation) or deny a
        request token, as the Authorize page would. Returns the verifier, the
        organisation's short code and the URL the browser would be sent to."""
        if not deny:
            self._organisation_for(org)  # an unknown organisation is named first
        rt, organisation = self.decide(oauth_token, not deny, org)
        return {
            "oauth_token": rt.token,
            "oauth_verifier": rt.verifier,
            "org": organisation.short_code if organisation else None,
            "denied": deny,
            "redirect": callback_redirect(rt, organisation),
        }

    @operation
    def revoke(self, oauth_token: str | None = None, session_handle: str | None = None) -> JSON:
        """Disconnect a connection, as the Add-ons page does."""
        if not oauth_token and not session_handle:
            raise ControlError("give oauth_token or session_handle")
        conn = self.store.revoke(oauth_token, session_handle)
        return {"status": "revoked", "connection": conn.to_json()}

    @operation
    def expire(self, oauth_token: str | None = None, session_handle: str | None = None) -> JSON:
        """Make a connection's current access token expired now (mock time)."""
        if not oauth_token and not session_handle:
            raise ControlError("give oauth_token or session_handle")
        conn = self.store.expire_now(oauth_token, session_handle, self._clock.now())
        return {"status": "expired", "connection": conn.to_json()}

    @operation
    def connections(self, consumer_key: str | None = None) -> list[JSON]:
        return [c.to_json() for c in self.store.connections_for(consumer_key)]

    @operation
    def journal(self, consumer_key: str | None = None, since: int = 0) -> list[JSON]:
        """The request journal, oldest first (a ring buffer of
        ``journal_size`` entries)."""
        return self.store.journal(consumer_key, since)

    @operation
    def wait_for_request(self, path: str | None = None, consumer_key: str | None = None,
                         status: int | None = None, since: int = 0,
                         timeout: float = 5.0) -> JSON | None:
        """The first journal entry after ``since`` matching all the given
        fields (``path`` case-insensitively), waiting up to ``timeout``
        seconds (at most 60) for it; None if none came."""
        if not 0 <= timeout <= 60:
            raise ControlError("timeout must be between 0 and 60 seconds")
        if status is not None and not 100 <= status <= 599:
            raise ControlError("status must be an HTTP status code")

        def match(entry: Mapping[str, Any]) -> bool:
            return ((path is None or entry["path"].lower() == path.lower())
                    and (consumer_key is None or entry.get("consumer_key") == consumer_key)
                    and (status is None or entry["status"] == status))

        return self.store.wait_for_entry(match, since, timeout, time.monotonic)

    @operation
    def faults(self) -> list[JSON]:
        return [f.to_json() for f in self.store.faults()]

    @operation
    def add_fault(self, kind: str, path: str = "*", count: int = 1, consumer_key: str | None = None,
                  problem: str | None = None, advice: str | None = None, status: int | None = None,
                  delay: float = 0.0, window: str = "minute") -> JSON:
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
        fault = self.store.add_fault(Fault(kind=kind, path=path, count=count, consumer_key=consumer_key,
                                           problem=problem, advice=advice, status=status,
                                           delay=delay, window=window))
        return fault.to_json()

    @operation
    def clear_faults(self) -> JSON:
        return {"cleared": self.store.clear_faults()}

    @operation
    def clear_fault(self, fault_id: int) -> JSON:
        cleared = self.store.clear_faults(fault_id)
        if not cleared:
            raise ControlError(f"no queued fault {fault_id}", status=404)
        return {"cleared": cleared}

    @operation
    def ca_pem(self) -> str:
        """The CA to trust to talk to the mock (``ca.pem``)."""
        return self.certs.read("ca.pem").decode()


_TOKEN_TEXT = re.compile(r"[!-~]{1,255}")


def _check_token_text(field: str, value: str | None) -> None:
    if value is not None and not _TOKEN_TEXT.fullmatch(value):
        raise ControlError(f"{field} must be 1 to 255 printable ASCII characters without spaces")


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


def _pems(values: Sequence[Any]) -> list[str]:
    if not all(isinstance(pem, str) for pem in values):
        raise ControlError("'client_certificates' must be a list of PEM strings")
    return list(values)


def _load_cert(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ControlError(f"not a PEM certificate: {exc}") from None
