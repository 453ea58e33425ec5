"""``RemoteMock`` against a ``mockxero serve`` in its own process, and the
same operations run on the in-process mock and on the remote handle: the
same results (shape and, where they do not depend on random tokens, value)
and the same ``ControlError`` messages and statuses."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests_oauthlib import OAuth1

from mockxero import MockXero
from mockxero.core import MockCore
from mockxero.operations import OPERATIONS, ControlError, Operations
from mockxero.remote import MockHandle, RemoteMock

from .remote_support import ADMIN_TOKEN, serving


@pytest.fixture(scope="module")
def remote_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote") / "certs"


@pytest.fixture(scope="module")
def remote_url(remote_certs: Path) -> Iterator[str]:
    with serving(remote_certs, "--admin-token", ADMIN_TOKEN) as url:
        yield url


@pytest.fixture
def remote(remote_url: str, remote_certs: Path) -> Iterator[RemoteMock]:
    with RemoteMock(remote_url, remote_certs, admin_token=ADMIN_TOKEN, timeout=10) as handle:
        handle.reset()
        yield handle


@pytest.fixture(params=["in-process", "remote"])
def handle(request: pytest.FixtureRequest) -> MockHandle:
    fixture = "xero" if request.param == "in-process" else "remote"
    found: MockHandle = request.getfixturevalue(fixture)
    return found


def request_token(handle: MockHandle) -> str:
    """A real request token, signed by requests-oauthlib over mutual TLS."""
    auth = OAuth1(handle.consumer_key, signature_method="RSA-SHA1", rsa_key=handle.rsa_key,
                  callback_uri="oob")
    reply = requests.post(handle.url + "/oauth/RequestToken", auth=auth, timeout=10,
                          **handle.requests_kwargs())
    assert reply.status_code == 200, reply.text
    return dict(p.split("=", 1) for p in reply.text.split("&"))["oauth_token"]


# -- the interface --------------------------------------------------------------------------
def test_every_operation_has_the_in_process_signature() -> None:
    for name in [*OPERATIONS, "advance"]:
        ours = inspect.signature(getattr(RemoteMock, name))
        theirs = inspect.signature(getattr(MockCore, name))
        assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in theirs.parameters.values()], name


def test_both_are_handles(xero: MockXero, remote: RemoteMock) -> None:
    for handle in (xero, remote):
        assert isinstance(handle, Operations) and isinstance(handle, MockHandle)
        assert handle.ca_path.name == "ca.pem" and handle.ca_path.is_file()
        cert, key = handle.client_cert
        assert Path(cert).is_file() and Path(key).is_file()
        assert handle.requests_kwargs() == {"verify": str(handle.ca_path), "cert": handle.client_cert}
        assert handle.rsa_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
        assert len(handle.consumer_key) == 30 and len(handle.consumer_secret) == 30
        assert (handle.certs_dir / "consumer.json").is_file()
        assert handle.health() == {"status": "ok"}
        assert handle.ca_pem() == handle.ca_path.read_text()


# -- the same story on both faces -------------------------------------------------------------
Step = Callable[[MockHandle, dict[str, Any]], Any]

CONTACT = {"Name": "Zed Ltd", "EmailAddress": "zed@example.com"}


def _cert(h: MockHandle, seen: dict[str, Any]) -> Any:
    seen["issued"] = h.issue_client_certificate()
    return seen["issued"]


def _fault(h: MockHandle, seen: dict[str, Any]) -> Any:
    seen["fault"] = h.add_fault(kind="offline", path="/api.xro/*", count=2)
    return seen["fault"]


def _token(h: MockHandle, seen: dict[str, Any]) -> Any:
    seen["token"] = request_token(h)
    return h.authorize(seen["token"], org="Demo Company (AU)")


def _switches(h: MockHandle) -> dict[str, Any]:
    return {k: v for k, v in h.runtime_settings().items() if k != "organisation"}


STORY: list[tuple[str, Step]] = [
    ("health", lambda h, s: h.health()),
    ("settings", lambda h, s: h.runtime_settings()),
    ("change settings", lambda h, s: h.change_settings(rate_limit="5/50", access_token_ttl=60)),
    ("bad rate limit", lambda h, s: h.change_settings(rate_limit="lots")),
    ("bad lifetime", lambda h, s: h.change_settings(authorization_ttl=0)),
    ("unknown organisation", lambda h, s: h.change_settings(organisation="nowhere")),
    ("wrong type", lambda h, s: h.change_settings(auto_approve="yes")),  # type: ignore[arg-type]
    ("settings changed", lambda h, s: _switches(h)),
    ("clock without a move", lambda h, s: h.move_clock()),
    ("clock two moves", lambda h, s: h.move_clock(advance=1, set=5)),
    ("clock bad number", lambda h, s: h.move_clock(advance=float("inf"))),
    ("advance", lambda h, s: round(h.advance(3600)["offset"] / 100)),
    ("freeze", lambda h, s: h.move_clock(freeze=True)["frozen"]),
    ("consumers", lambda h, s: h.consumers()),
    ("add consumer", lambda h, s: h.add_consumer(app_type="public", name="Public app",
                                                 callback_domain="example.com")),
    ("bad app type", lambda h, s: h.add_consumer(app_type="enterprise")),
    ("bad consumer key", lambda h, s: h.add_consumer(consumer_key="has spaces")),
    ("bad certificate list", lambda h, s: h.add_consumer(client_certificates="PEM")),
    ("rename", lambda h, s: h.update_consumer(h.consumer_key, name="Renamed")["name"]),
    ("unknown consumer", lambda h, s: h.update_consumer("NOSUCHCONSUMER", name="x")),
    ("issue certificate", _cert),
    ("register it", lambda h, s: h.register_client_certificate(h.consumer_key, s["issued"]["certificate"])),
    ("not a PEM", lambda h, s: h.register_client_certificate(h.consumer_key, "not a PEM")),
    ("unregister it", lambda h, s: h.unregister_client_certificate(h.consumer_key,
                                                                    s["issued"]["fingerprint"])),
    ("organisations", lambda h, s: [o["name"] for o in h.organisations()]),
    ("add organisation", lambda h, s: h.add_organisation("Acme Ltd", short_code="ACME", seed_data=False)),
    ("nameless organisation", lambda h, s: h.add_organisation("")),
    ("load data", lambda h, s: h.load_data(contacts=[CONTACT])["Contacts"][0]["Name"]),
    ("load into a named one", lambda h, s: len(h.load_data("ACME", contacts=[CONTACT])["Contacts"])),
    ("load a bad invoice", lambda h, s: h.load_data("ACME", invoices=[{"Type": "NOPE"}])),
    ("load nowhere", lambda h, s: h.load_data("nowhere", contacts=[CONTACT])),
    ("data", lambda h, s: [c["Name"] for c in h.data("Acme Ltd")["Contacts"]]),
    ("default organisation", lambda h, s: h.change_settings(organisation="ACME")["organisation"]),
    ("data of the default", lambda h, s: [c["Name"] for c in h.data()["Contacts"]]),
    ("authorize", _token),
    ("authorize again", lambda h, s: h.authorize(s["token"])),
    ("authorize nothing", lambda h, s: h.authorize("NOSUCHTOKEN")),
    ("deny", lambda h, s: h.authorize(request_token(h), deny=True)),
    ("connections", lambda h, s: h.connections()),
    ("revoke nothing", lambda h, s: h.revoke()),
    ("expire unknown", lambda h, s: h.expire(oauth_token="NOSUCHTOKEN")),
    ("journal", lambda h, s: [(e["method"], e["path"], e["status"]) for e in h.journal()]),
    ("journal of one consumer", lambda h, s: len(h.journal(consumer_key="NOBODY"))),
    ("journal since", lambda h, s: h.journal(since=10**12)),
    ("wait finds", lambda h, s: h.wait_for_request(path="/OAUTH/requesttoken",
                                                   status=200)["path"]),  # type: ignore[index]
    ("wait for nothing", lambda h, s: h.wait_for_request(path="/nothing", timeout=0.1)),
    ("wait too long", lambda h, s: h.wait_for_request(timeout=61)),
    ("wait bad status", lambda h, s: h.wait_for_request(status=99)),
    ("wait wrong type", lambda h, s: h.wait_for_request(since="0")),  # type: ignore[arg-type]
    ("add fault", _fault),
    ("bad fault", lambda h, s: h.add_fault(kind="nonsense")),
    ("problem without one", lambda h, s: h.add_fault(kind="problem")),
    ("faults", lambda h, s: len(h.faults())),
    ("clear unknown fault", lambda h, s: h.clear_fault(10**9)),
    ("clear fault", lambda h, s: h.clear_fault(s["fault"]["id"])),
    ("clear faults", lambda h, s: h.clear_faults()),
    ("reset unknown consumer", lambda h, s: h.reset(consumer_key="NOSUCHCONSUMER")),
    ("reset", lambda h, s: h.reset()),
    ("settings after reset", lambda h, s: _switches(h)),
]


def skeleton(value: Any) -> Any:
    """The shape of a result: keys and JSON types, not the random values."""
    if isinstance(value, dict):
        return {k: skeleton(v) for k, v in value.items()}
    if isinstance(value, list):
        return [skeleton(v) for v in value]
    return type(value).__name__


def tell(handle: MockHandle) -> list[tuple[str, Any, Any]]:
    seen: dict[str, Any] = {}
    told: list[tuple[str, Any, Any]] = []
    for name, step in STORY:
        try:
            result = step(handle, seen)
        except ControlError as exc:
            message = exc.message.replace(seen["token"], "<token>") if "token" in seen else exc.message
            told.append((name, "ControlError", (exc.status, message)))
        else:
            told.append((name, skeleton(result), result if not isinstance(result, (dict, list)) else None))
    return told


def test_the_same_story_on_both_faces(xero: MockXero, remote: RemoteMock) -> None:
    in_process, over_http = tell(xero), tell(remote)
    for ours, theirs in zip(in_process, over_http, strict=True):
        assert ours == theirs
    outcomes = dict((name, (shape, value)) for name, shape, value in in_process)
    # The story did what it says, on both.
    assert outcomes["bad rate limit"][0] == "ControlError" and outcomes["bad rate limit"][1][0] == 400
    assert outcomes["unknown organisation"][1] == (400, "no organisation 'nowhere'")
    assert outcomes["wrong type"][1] == (400, "'auto_approve' has the wrong type (str)")
    assert outcomes["wait wrong type"][1] == (400, "'since' has the wrong type (str)")
    assert outcomes["clear unknown fault"][1][0] == 404
    assert outcomes["wait for nothing"] == ("NoneType", None)
    assert outcomes["wait finds"] == ("str", "/oauth/RequestToken")
    assert outcomes["advance"] == ("int", 36)
    assert outcomes["data of the default"] == (["str"], None)  # the contact loaded into ACME
    for name in ("load data", "load into a named one", "freeze"):
        assert outcomes[name][0] != "ControlError", name


def test_data_in_the_story_matches(xero: MockXero, remote: RemoteMock) -> None:
    """Where results carry no random values they are equal, not only alike."""
    for handle in (xero, remote):
        handle.add_organisation("Acme Ltd", short_code="ACME", seed_data=False)
        handle.load_data("ACME", contacts=[CONTACT])
    strip = ("ContactID", "UpdatedDateUTC")
    ours, theirs = ([{k: v for k, v in c.items() if k not in strip} for c in h.data("ACME")["Contacts"]]
                    for h in (xero, remote))
    assert ours == theirs and ours[0]["Name"] == "Zed Ltd"


# -- the remote handle's own edges --------------------------------------------------------------
def test_wrong_admin_token_is_the_servers_message(remote_url: str, remote_certs: Path) -> None:
    with RemoteMock(remote_url, remote_certs, admin_token="wrong") as handle, \
            pytest.raises(ControlError) as refused:
        handle.health()
    assert refused.value.status == 401 and "Bearer" in refused.value.message


def test_not_a_certificates_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a mockxero certificates folder"):
        RemoteMock("https://127.0.0.1:1", tmp_path)


def test_nothing_listening_is_a_connection_error(remote_url: str, remote_certs: Path) -> None:
    """A real certificates folder (the served one's), but nothing on the port."""
    with RemoteMock("https://127.0.0.1:9", remote_certs, timeout=2) as handle, \
            pytest.raises(requests.ConnectionError):
        handle.health()


def test_wait_for_request_waits_longer_than_the_call_timeout(remote: RemoteMock) -> None:
    remote.timeout = 0.5
    assert remote.wait_for_request(path="/nothing", timeout=1.0) is None


def test_organisation_names_travel_in_the_path(remote: RemoteMock) -> None:
    remote.add_organisation("Smith & Sons? #1 (100%)", seed_data=False)
    loaded = remote.load_data("Smith & Sons? #1 (100%)", contacts=[CONTACT])
    assert loaded["Contacts"][0]["Name"] == "Zed Ltd"
    assert [c["Name"] for c in remote.data("smith & sons? #1 (100%)")["Contacts"]] == ["Zed Ltd"]
