"""The mockxero pytest plugin: fixtures, options and a marker, wired to
mockxero's public API.

* ``mockxero_server`` (session): a mock over mutual TLS on a free port of
  127.0.0.1 in a background thread, with fresh certificates in a temporary
  folder removed at the end; or, with ``--mockxero-url URL`` (or
  ``MOCKXERO_URL``) and ``--mockxero-certs DIR`` (or ``MOCKXERO_CERTS``),
  a :class:`mockxero.remote.RemoteMock` of a mock running elsewhere (a
  container). Either way a :class:`mockxero.remote.MockHandle`: ``url``,
  ``ca_path``, ``client_cert``, ``requests_kwargs()``, the demo consumer
  (``consumer_key``, ``consumer_secret``, ``rsa_key``), ``certs_dir`` and
  every control operation.
* ``mockxero`` (function): the same handle after a full reset, with the
  test's ``@pytest.mark.mockxero(...)`` settings applied and undone after.
* ``xero_client`` (function): a :class:`mockxero.client.PartnerClient` for
  the demo consumer, through the whole OAuth dance, ready for API calls.

A test during which the mock hit an internal error fails, with the mock's
error (and traceback, when the mock journals one) in its report.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from mockxero.client import PartnerClient
    from mockxero.remote import MockHandle

#: What ``@pytest.mark.mockxero(...)`` takes.
MARKER_SETTINGS = ("auto_approve", "require_client_cert", "rate_limit", "access_token_ttl",
                   "authorization_ttl", "request_token_ttl", "organisation")
MARKER_HELP = ("mockxero(auto_approve=None, require_client_cert=None, rate_limit=None, "
               "access_token_ttl=None, authorization_ttl=None, request_token_ttl=None, "
               "organisation=None): settings of the mock for this test (through the 'mockxero' "
               "and 'xero_client' fixtures), undone after it. rate_limit: 'MINUTE/DAY', "
               "(MINUTE, DAY) or 'off'; lifetimes in seconds; organisation: id, short code or name "
               "of the organisation authorisations pick by default.")

_ReportWrapper = Generator[None, pytest.TestReport, pytest.TestReport]
_WATCH = pytest.StashKey["tuple[MockHandle, int]"]()
_LAST_SEEN = pytest.StashKey["dict[int, int]"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mockxero", "mockxero (a mock Xero partner API)")
    group.addoption("--mockxero-url", metavar="URL", default=None,
                    help="use the mock running at URL (e.g. a container) instead of starting one "
                         "in-process; default $MOCKXERO_URL")
    group.addoption("--mockxero-certs", metavar="DIR", default=None,
                    help="that mock's certificates folder (ca.pem, consumer.json, privatekey.pem, "
                         "entrust-cert.pem, ...); default $MOCKXERO_CERTS")
    group.addoption("--mockxero-admin-token", metavar="TOKEN", default=None,
                    help="that mock's control API token; default $MOCKXERO_ADMIN_TOKEN")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[_LAST_SEEN] = {}
    workers = config.getoption("numprocesses", None)  # pytest-xdist's -n
    url = _option(config, "--mockxero-url", "MOCKXERO_URL")
    if url and workers not in (None, 0, 1) and not hasattr(config, "workerinput"):
        config.issue_config_time_warning(pytest.PytestWarning(
            f"mockxero: {workers} xdist workers share the one mock at {url}, and every test resets "
            "it; give each worker its own mock or run without -n"), stacklevel=2)


def _option(config: pytest.Config, name: str, env: str) -> str | None:
    value: str | None = config.getoption(name) or os.environ.get(env) or None
    return value


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mockxero_server(pytestconfig: pytest.Config) -> Iterator[MockHandle]:
    """A running mock for the whole session (one per xdist worker)."""
    url = _option(pytestconfig, "--mockxero-url", "MOCKXERO_URL")
    if url:
        yield from _remote(pytestconfig, url)
    else:
        yield from _in_process()


def _remote(config: pytest.Config, url: str) -> Iterator[MockHandle]:
    import requests

    from mockxero.operations import ControlError
    from mockxero.remote import RemoteMock

    certs = _option(config, "--mockxero-certs", "MOCKXERO_CERTS")
    if not certs:
        raise pytest.UsageError(f"--mockxero-url {url} needs --mockxero-certs DIR (or MOCKXERO_CERTS): "
                                "the mock's certificates folder, for its CA and demo consumer")
    try:
        remote = RemoteMock(url, certs, admin_token=_option(config, "--mockxero-admin-token",
                                                            "MOCKXERO_ADMIN_TOKEN"))
    except ValueError as exc:
        raise pytest.UsageError(f"--mockxero-certs: {exc}") from None
    with remote:
        try:
            remote.health()
        except ControlError as exc:
            raise pytest.UsageError(f"the mock at {url} refused its control API: {exc}") from None
        except requests.RequestException as exc:
            raise pytest.UsageError(f"no mock answers at {url}: {exc}") from None
        yield remote


def _in_process() -> Iterator[MockHandle]:
    import trustme

    from mockxero import CertBundle, MockXero, Settings

    with tempfile.TemporaryDirectory(prefix="mockxero-") as folder:
        # ECDSA for every TLS key (the client's too): one RSA key to make,
        # the application's, which RSA-SHA1 needs.
        CertBundle.generate(folder, client_key_type=trustme.KeyType.ECDSA)
        settings = Settings.from_env(host="127.0.0.1", port=0, certs=Path(folder), hostnames=())
        with MockXero(settings) as mock:
            yield mock


@pytest.fixture
def mockxero(mockxero_server: MockHandle, request: pytest.FixtureRequest) -> Iterator[MockHandle]:
    """The session's mock after a full reset (clock, tokens, journal, faults,
    runtime switches, added consumers and data), with this test's
    ``@pytest.mark.mockxero(...)`` applied; undone after the test."""
    mockxero_server.reset()
    settings = marker_settings(request.node)
    undo = apply_settings(mockxero_server, settings) if settings else None
    yield mockxero_server
    if undo is not None:
        undo()


@pytest.fixture(scope="session")
def _mockxero_rsa_key(mockxero_server: MockHandle) -> RSAPrivateKey:
    """The demo consumer's RSA key, parsed once: RSA's load-time check costs
    about 0.1 s, and each ``xero_client`` would pay it again."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(mockxero_server.rsa_key.encode(), None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, RSAPrivateKey)
    return key


@pytest.fixture
def xero_client(mockxero: MockHandle, _mockxero_rsa_key: RSAPrivateKey) -> Iterator[PartnerClient]:
    """The demo partner application connected (request token, approval,
    access token) to the default organisation (see the marker's
    ``organisation``)."""
    from mockxero.client import PartnerClient

    client = PartnerClient(mockxero.consumer_key, _mockxero_rsa_key,
                           consumer_secret=mockxero.consumer_secret, client_cert=mockxero.client_cert,
                           verify=str(mockxero.ca_path), base_url=mockxero.url,
                           authorize_url=mockxero.url + "/oauth/Authorize")
    with client:
        request_token = client.fetch_request_token()
        client.fetch_access_token(request_token, mockxero.authorize(request_token.token)["oauth_verifier"])
        yield client


@pytest.fixture(autouse=True)
def _mockxero_marker(request: pytest.FixtureRequest) -> None:
    """A marked test gets its settings even if it asked only for ``mockxero_server``."""
    if request.node.get_closest_marker("mockxero") is not None:
        request.getfixturevalue("mockxero")


# -- the marker ----------------------------------------------------------------------------
def marker_settings(node: pytest.Item) -> dict[str, Any]:
    """The ``mockxero`` marks on a test, nearest last (a test's own mark
    overrides its class's and module's)."""
    merged: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers("mockxero"))):
        if mark.args:
            pytest.fail(f"@pytest.mark.mockxero takes keyword arguments only "
                        f"({', '.join(MARKER_SETTINGS)})", pytrace=False)
        unknown = sorted(set(mark.kwargs) - set(MARKER_SETTINGS))
        if unknown:
            pytest.fail(f"@pytest.mark.mockxero does not know {', '.join(unknown)}; "
                        f"it takes {', '.join(MARKER_SETTINGS)}", pytrace=False)
        merged.update(mark.kwargs)
    return merged


def _rate_limit_text(value: Any) -> str:
    if value in (None, False, "off"):
        return "off"
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}/{value[1]}"
    return str(value)


def apply_settings(handle: MockHandle, settings: Mapping[str, Any]) -> Callable[[], None]:
    """Apply a marker's settings; returns what puts the earlier ones back."""
    switches = {name: settings[name] for name in MARKER_SETTINGS
                if name in settings and name != "require_client_cert"}
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


# -- internal errors of the mock fail the test -----------------------------------------------
def _latest_journal_id(config: pytest.Config, handle: MockHandle) -> int:
    """The id of the newest journal entry (ids only grow, resets or not)."""
    seen = config.stash[_LAST_SEEN]
    last = seen.get(id(handle), 0)
    entries = handle.journal(since=last)
    if entries:
        last = max(last, int(entries[-1]["id"]))
    seen[id(handle)] = last
    return last


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    handle = getattr(item, "funcargs", {}).get("mockxero_server")
    if handle is not None:
        item.stash[_WATCH] = (handle, _latest_journal_id(item.config, handle))
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> _ReportWrapper:
    report: pytest.TestReport = yield
    watched = item.stash.get(_WATCH, None)
    if call.when != "call" or watched is None:
        return report
    handle, since = watched
    try:
        errors = [e for e in handle.journal(since=since) if e.get("error")]
    except Exception as exc:  # the mock is gone: say so, do not hide the test's own outcome
        report.sections.append(("mockxero", f"could not read the mock's journal: {exc!r}"))
        return report
    if errors:
        text = describe_errors(errors)
        if report.passed:
            report.outcome = "failed"
            report.longrepr = text
        else:  # the test's own failure first, then why the mock answered as it did
            report.sections.append(("mockxero server errors", text))
    return report


def describe_errors(entries: list[dict[str, Any]]) -> str:
    lines = [f"the mock hit {len(entries)} internal error(s) during this test:"]
    for entry in entries:
        where = f"{entry.get('method')} {entry.get('path')} -> {entry.get('status')}"
        lines.append(f"  {where}: {entry['error']}")
        if entry.get("traceback"):
            lines.append("    " + str(entry["traceback"]).rstrip().replace("\n", "\n    "))
    return "\n".join(lines)
