"""Test support: what the pytest plugin's fixtures do, as plain functions, so
that a ``unittest`` suite or a script gets the same mock the same way.

* :func:`in_process_mock`: a mock over mutual TLS on a free port of
  127.0.0.1, with fresh certificates in a temporary folder removed after.
* :func:`connect_remote`: the handle of a mock running elsewhere (a
  container), checked to answer.
* :func:`apply_settings`: one test's settings (auto-approve, rate limit,
  lifetimes, ...), with what undoes them.
* :class:`ErrorWatch` and :func:`describe_errors`: the internal errors the
  mock journalled during a test, told with their tracebacks.
* :func:`connected_client`: a :class:`~mockxero.client.PartnerClient` for the
  demo consumer, through the whole OAuth dance.

A ``unittest`` suite (run by the project's tests as written)::

    import unittest
    from contextlib import ExitStack

    from mockxero.testing import (ErrorWatch, apply_settings, connected_client, describe_errors,
                                  in_process_mock)


    class ContactsTest(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            stack = ExitStack()
            cls.addClassCleanup(stack.close)
            cls.mock = stack.enter_context(in_process_mock())
            cls.watch = ErrorWatch(cls.mock)

        def setUp(self):
            self.mock.reset()
            self.addCleanup(apply_settings(self.mock, {"organisation": "Demo Company (AU)"}))
            self.client = connected_client(self.mock)
            self.addCleanup(self.client.close)
            self.watch.start()

        def tearDown(self):
            errors = self.watch.errors()
            self.assertFalse(errors, describe_errors(errors))

        def test_contacts(self):
            self.mock.load_data(contacts=[{"Name": "Acme Pty Ltd"}])
            names = [contact["Name"] for contact in self.client.get("Contacts")["Contacts"]]
            self.assertIn("Acme Pty Ltd", names)
            organisation = self.client.get("Organisation")["Organisations"][0]
            self.assertEqual(organisation["BaseCurrency"], "AUD")

This module loads the server (it starts one); nothing here imports pytest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import trustme
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from .certs import CertBundle
from .client import PartnerClient
from .mock import MockXero
from .operations import JSON, ControlError
from .remote import MockHandle, RemoteMock
from .settings import Settings

__all__ = ["SETTINGS", "ErrorWatch", "MockUnavailable", "UnknownSettings", "apply_settings",
           "connect_remote", "connected_client", "describe_errors", "in_process_mock", "load_rsa_key"]

#: The settings :func:`apply_settings` takes (and ``@pytest.mark.mockxero``).
SETTINGS = ("auto_approve", "require_client_cert", "rate_limit", "access_token_ttl",
            "authorization_ttl", "request_token_ttl", "organisation")


# -- a mock to test against ------------------------------------------------------------------
@contextmanager
def in_process_mock() -> Iterator[MockXero]:
    """A mock serving mutual TLS on a free port of 127.0.0.1 in a background
    thread, with fresh certificates in a temporary folder; stopped, and the
    folder removed, on leaving the block.

    Every TLS key is ECDSA, the Entrust client key's too, so the one RSA key
    to make is the application's (RSA-SHA1 needs it): start-up stays well
    under a second. Other settings come from the ``MOCKXERO_*`` environment
    (``MOCKXERO_RATE_LIMIT=off``, ...); host, port and folder are this
    function's, so parallel test processes cannot clash."""
    with tempfile.TemporaryDirectory(prefix="mockxero-") as folder:
        CertBundle.generate(folder, client_key_type=trustme.KeyType.ECDSA)
        settings = Settings.from_env(host="127.0.0.1", port=0, certs=Path(folder), hostnames=())
        with MockXero(settings) as mock:
            yield mock


class MockUnavailable(Exception):
    """A remote mock that does not answer, or refuses its control API."""


def connect_remote(url: str, certs_dir: str | Path, admin_token: str | None = None) -> RemoteMock:
    """The handle of the mock at ``url`` whose certificates folder is
    ``certs_dir``, once it has answered a health check; close it after (it is
    a context manager).

    Raises :class:`ValueError` when ``certs_dir`` is not a mockxero
    certificates folder, and :class:`MockUnavailable` (saying which) when
    nothing answers at ``url`` or the mock refuses the admin token: a
    misconfigured stack fails once, clearly, not in every test."""
    remote = RemoteMock(url, certs_dir, admin_token=admin_token)
    try:
        remote.health()
    except ControlError as exc:
        remote.close()
        raise MockUnavailable(f"the mock at {url} refused its control API: {exc}") from None
    except requests.RequestException as exc:
        remote.close()
        raise MockUnavailable(f"no mock answers at {url}: {exc}") from None
    return remote


# -- one test's settings -----------------------------------------------------------------------
class UnknownSettings(TypeError):
    """Settings :func:`apply_settings` does not know; ``names`` lists them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        super().__init__(f"unknown mock settings {', '.join(self.names)}; the settings are "
                         f"{', '.join(SETTINGS)}")


def apply_settings(handle: MockHandle, settings: Mapping[str, Any]) -> Callable[[], None]:
    """Apply ``settings`` (names from :data:`SETTINGS`) to the mock; returns
    what puts the earlier values back.

    ``rate_limit`` is ``"MINUTE/DAY"``, ``(MINUTE, DAY)`` or ``"off"`` (None
    and False too); ``require_client_cert`` is the demo consumer's; the
    lifetimes are seconds; ``organisation`` an id, short code or name. Unknown
    names raise :class:`UnknownSettings` before anything changes; values the
    mock refuses raise its :class:`~mockxero.ControlError`."""
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise UnknownSettings(unknown)
    switches = {name: value for name, value in settings.items() if name != "require_client_cert"}
    if "rate_limit" in switches:
        switches["rate_limit"] = _rate_limit_text(switches["rate_limit"])
    before = handle.runtime_settings()
    require_before: bool | None = None
    if "require_client_cert" in settings:
        demo = next(c for c in handle.consumers() if c["consumer_key"] == handle.consumer_key)
        require_before = bool(demo["require_client_cert"])
    handle.change_settings(**switches)
    if require_before is not None:
        handle.update_consumer(handle.consumer_key, require_client_cert=bool(settings["require_client_cert"]))

    def undo() -> None:
        handle.change_settings(**{name: before[name] for name in switches})
        if require_before is not None:
            handle.update_consumer(handle.consumer_key, require_client_cert=require_before)

    return undo


def _rate_limit_text(value: Any) -> str:
    if value in (None, False, "off"):
        return "off"
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}/{value[1]}"
    return str(value)


# -- the mock's internal errors ------------------------------------------------------------------
class ErrorWatch:
    """The internal errors (a 500, with the server's traceback) one mock
    journals from :meth:`start` on: a test that passed though the mock broke
    under it should fail. Journal ids only grow, resets or not, so one watch
    serves test after test and reads only the entries it has not seen."""

    def __init__(self, handle: MockHandle) -> None:
        self.handle = handle
        self.since = 0

    def start(self) -> None:
        """Watch from the newest entry on."""
        entries = self.handle.journal(since=self.since)
        if entries:
            self.since = max(self.since, int(entries[-1]["id"]))

    def errors(self) -> list[JSON]:
        """The journal entries with an internal error since :meth:`start`."""
        return [entry for entry in self.handle.journal(since=self.since) if entry.get("error")]


def describe_errors(entries: Iterable[Mapping[str, Any]]) -> str:
    """The errors of :meth:`ErrorWatch.errors`, one line each, with the
    mock's traceback under it when it journalled one."""
    entries = list(entries)
    lines = [f"the mock hit {len(entries)} internal error(s) during this test:"]
    for entry in entries:
        where = f"{entry.get('method')} {entry.get('path')} -> {entry.get('status')}"
        lines.append(f"  {where}: {entry['error']}")
        if entry.get("traceback"):
            lines.append("    " + str(entry["traceback"]).rstrip().replace("\n", "\n    "))
    return "\n".join(lines)


# -- a connected client --------------------------------------------------------------------------
def load_rsa_key(pem: str) -> RSAPrivateKey:
    """An RSA key, parsed without RSA's load-time check (about 0.1 s): parse
    the demo consumer's once and hand it to every :func:`connected_client`."""
    key = load_pem_private_key(pem.encode(), None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def connected_client(handle: MockHandle, rsa_key: RSAPrivateKey | None = None) -> PartnerClient:
    """A :class:`~mockxero.client.PartnerClient` for the demo consumer (its
    client certificate, the mock's CA), through request token, approval
    (for the mock's default organisation) and access token, ready for API
    calls; close it after (it is a context manager). ``rsa_key``: the demo
    consumer's, parsed (:func:`load_rsa_key`), to save the parse."""
    client = PartnerClient(handle.consumer_key, rsa_key or load_rsa_key(handle.rsa_key),
                           consumer_secret=handle.consumer_secret, client_cert=handle.client_cert,
                           verify=str(handle.ca_path), base_url=handle.url,
                           authorize_url=handle.url + "/oauth/Authorize")
    try:
        request_token = client.fetch_request_token()
        client.fetch_access_token(request_token, handle.authorize(request_token.token)["oauth_verifier"])
    except BaseException:
        client.close()
        raise
    return client
