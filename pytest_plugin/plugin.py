"""The mockxero pytest plugin: options, the marker and the fixtures
(``mockxero_server``, ``mockxero``, ``xero_client``; see the README), each
a few lines calling :mod:`mockxero.testing`, which a ``unittest`` suite can
call as well. A test during which the mock hit an internal error fails, with
the mock's traceback in its report.

pytest loads this module in every run: ``mockxero.testing`` (which loads
the server: Flask, cheroot, pyOpenSSL, trustme) is imported where a fixture
or hook first needs it, by name from ``mockxero.testing`` so that pytester's
fresh module snapshots get a fresh copy, never a stale package attribute.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from mockxero.client import PartnerClient
    from mockxero.remote import MockHandle
    from mockxero.testing import ErrorWatch

MARKER_HELP = ("mockxero(auto_approve=None, require_client_cert=None, rate_limit=None, "
               "access_token_ttl=None, authorization_ttl=None, request_token_ttl=None, "
               "organisation=None): settings of the mock for this test (through the 'mockxero' "
               "and 'xero_client' fixtures), undone after it. rate_limit: 'MINUTE/DAY', "
               "(MINUTE, DAY) or 'off'; lifetimes in seconds; organisation: id, short code or name "
               "of the organisation authorisations pick by default.")

_ReportWrapper = Generator[None, pytest.TestReport, pytest.TestReport]
_WATCH: pytest.StashKey[ErrorWatch] = pytest.StashKey()
_WATCHES: pytest.StashKey[dict[int, ErrorWatch]] = pytest.StashKey()


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
    config.stash[_WATCHES] = {}
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
    from mockxero.testing import MockUnavailable, connect_remote, in_process_mock

    url = _option(pytestconfig, "--mockxero-url", "MOCKXERO_URL")
    if not url:
        with in_process_mock() as mock:
            yield mock
        return
    certs = _option(pytestconfig, "--mockxero-certs", "MOCKXERO_CERTS")
    if not certs:
        raise pytest.UsageError(f"--mockxero-url {url} needs --mockxero-certs DIR (or MOCKXERO_CERTS): "
                                "the mock's certificates folder, for its CA and demo consumer")
    token = _option(pytestconfig, "--mockxero-admin-token", "MOCKXERO_ADMIN_TOKEN")
    try:
        remote = connect_remote(url, certs, token)
    except MockUnavailable as exc:
        raise pytest.UsageError(str(exc)) from None
    except ValueError as exc:
        raise pytest.UsageError(f"--mockxero-certs: {exc}") from None
    with remote:
        yield remote


@pytest.fixture
def mockxero(mockxero_server: MockHandle, request: pytest.FixtureRequest) -> Iterator[MockHandle]:
    """The session's mock after a full reset (clock, tokens, journal, faults,
    runtime switches, added consumers and data), with this test's
    ``@pytest.mark.mockxero(...)`` applied; undone after the test."""
    from mockxero.testing import SETTINGS, UnknownSettings, apply_settings

    mockxero_server.reset()
    settings = _marker_settings(request.node)
    try:
        undo = apply_settings(mockxero_server, settings) if settings else None
    except UnknownSettings as exc:
        pytest.fail(f"@pytest.mark.mockxero does not know {', '.join(exc.names)}; "
                    f"it takes {', '.join(SETTINGS)}", pytrace=False)
    yield mockxero_server
    if undo is not None:
        undo()


@pytest.fixture(scope="session")
def _mockxero_rsa_key(mockxero_server: MockHandle) -> RSAPrivateKey:
    """The demo consumer's RSA key, parsed once: each ``xero_client`` would
    pay the parse (0.1 s) again."""
    from mockxero.testing import load_rsa_key

    return load_rsa_key(mockxero_server.rsa_key)


@pytest.fixture
def xero_client(mockxero: MockHandle, _mockxero_rsa_key: RSAPrivateKey) -> Iterator[PartnerClient]:
    """The demo partner application connected (request token, approval,
    access token) to the default organisation (see the marker's
    ``organisation``)."""
    from mockxero.testing import connected_client

    with connected_client(mockxero, _mockxero_rsa_key) as client:
        yield client


@pytest.fixture(autouse=True)
def _mockxero_marker(request: pytest.FixtureRequest) -> None:
    """A marked test gets its settings even if it asked only for ``mockxero_server``."""
    if request.node.get_closest_marker("mockxero") is not None:
        request.getfixturevalue("mockxero")


def _marker_settings(node: pytest.Item) -> dict[str, Any]:
    """The ``mockxero`` marks on a test merged, nearest last (a test's own
    mark overrides its class's and module's)."""
    from mockxero.testing import SETTINGS

    merged: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers("mockxero"))):
        if mark.args:
            pytest.fail(f"@pytest.mark.mockxero takes keyword arguments only ({', '.join(SETTINGS)})",
                        pytrace=False)
        merged.update(mark.kwargs)
    return merged


# -- internal errors of the mock fail the test -----------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    handle = getattr(item, "funcargs", {}).get("mockxero_server")
    if handle is not None:
        from mockxero.testing import ErrorWatch

        watch = item.config.stash[_WATCHES].setdefault(id(handle), ErrorWatch(handle))
        watch.start()
        item.stash[_WATCH] = watch
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> _ReportWrapper:
    report: pytest.TestReport = yield
    watch = item.stash.get(_WATCH, None)
    if call.when != "call" or watch is None:
        return report
    from mockxero.testing import describe_errors

    try:
        errors = watch.errors()
    except Exception as exc:  # the mock is gone: say so, do not hide the test's own outcome
        report.sections.append(("mockxero", f"could not read the mock's journal: {exc!r}"))
        return report
    if errors:
        if report.passed:
            report.outcome = "failed"
            report.longrepr = describe_errors(errors)
        else:  # the test's own failure first, then why the mock answered as it did
            report.sections.append(("mockxero server errors", describe_errors(errors)))
    return report
