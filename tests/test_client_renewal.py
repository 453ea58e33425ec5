"""Renewal the caller never thinks about: proactive (the client's clock says
the token is nearly over), reactive (the mock's clock moved past expiry),
once across many threads, and never a loop on a revoked connection."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mockxero import MockXero
from mockxero.client import PartnerClient, TokenExpired, TokenRejected, Tokens

from .client_support import MakeClient, connect, journal_paths, make_client, renewals

__all__ = ["make_client"]  # the fixture, imported for the tests below

API = "/api.xro/2.0/Contacts"
ACCESS = "/oauth/AccessToken"


def nearly_expired(tokens: Tokens, seconds: float = 30) -> Tokens:
    """The same tokens, as a client whose clock is ``seconds`` from expiry sees them."""
    return dataclasses.replace(tokens, expires_at=time.time() + seconds)


def in_threads(count: int, call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` in ``count`` threads released together; each result or exception."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # collected for the test to judge
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results


def test_proactive_renewal_before_expiry(xero: MockXero, make_client: MakeClient) -> None:
    first = make_client()
    tokens = connect(xero, first)
    saved: list[Tokens] = []
    client = make_client(tokens=nearly_expired(tokens), on_token_update=saved.append)
    mark = xero.journal()[-1]["id"]

    assert client.get("Contacts")["Contacts"]

    # Renewed before the call, so Xero never had to refuse anything.
    assert journal_paths(xero, since=mark) == [("POST", ACCESS, 200, None), ("GET", API, 200, None)]
    assert len(saved) == 1 and saved[0] == client.tokens
    assert saved[0].token != tokens.token and saved[0].expires_at > time.time() + 1700


def test_reactive_renewal_after_token_expired(xero: MockXero, make_client: MakeClient) -> None:
    saved: list[Tokens] = []
    client = make_client(on_token_update=saved.append)
    tokens = connect(xero, client)
    xero.advance(1801)  # the mock's clock: this machine's still thinks the token is fresh
    mark = xero.journal()[-1]["id"]

    assert client.get("Contacts")["Contacts"]

    assert journal_paths(xero, since=mark) == [
        ("GET", API, 401, "token_expired"), ("POST", ACCESS, 200, None), ("GET", API, 200, None)]
    assert len(saved) == 2 and saved[-1].token != tokens.token


def test_short_tokens_are_not_renewed_on_every_call(certs_dir: Path) -> None:
    # A mock set to 2-minute tokens: the client's 2-minute margin shrinks to a quarter of that.
    with MockXero(port=0, certs=certs_dir, access_token_ttl=120) as short:
        client = PartnerClient(short.certs.consumer_key, short.certs.application_key,
                               client_cert=short.client_cert, verify=str(short.ca_path), base_url=short.url)
        tokens = connect(short, client)
        for _ in range(3):
            client.get("Organisation")
        assert client.tokens == tokens
        assert len(renewals(short)) == 1  # the exchange only
        client.close()


def test_a_put_is_retried_with_its_body(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    xero.advance(1801)
    created = client.put("Contacts", json={"Name": "Retried Ltd"})
    assert created["Contacts"][0]["Name"] == "Retried Ltd"
    names = [c["Name"] for c in xero.data()["Contacts"]]
    assert names.count("Retried Ltd") == 1


def test_still_expired_after_renewal_raises_and_does_not_loop(xero: MockXero,
                                                              make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    xero.add_fault(kind="problem", path=API, problem="token_expired", count=5)
    mark = xero.journal()[-1]["id"]
    with pytest.raises(TokenExpired) as caught:
        client.get("Contacts")
    assert caught.value.status == 401 and caught.value.problem == "token_expired"
    assert journal_paths(xero, since=mark) == [
        ("GET", API, 401, "token_expired"), ("POST", ACCESS, 200, None), ("GET", API, 401, "token_expired")]


def test_many_threads_renew_once_reactively(xero: MockXero, make_client: MakeClient) -> None:
    saved: list[Tokens] = []
    client = make_client(on_token_update=saved.append)
    connect(xero, client)
    before = len(renewals(xero))
    xero.advance(1801)
    # The renewal waits at the mock a while, so the other threads' calls are
    # answered token_expired too and they all want to renew.
    xero.add_fault(kind="delay", path=ACCESS, delay=1.0)

    results = in_threads(12, lambda: client.get("Contacts"))

    assert all(isinstance(r, dict) and r["Contacts"] for r in results), results
    expired = [e for e in xero.journal() if e["oauth_problem"] == "token_expired"]
    assert len(expired) >= 2  # more than one thread found the token expired ...
    assert [e["status"] for e in renewals(xero)[before:]] == [200]  # ... and one renewed, no loser
    assert len(saved) == 2


def test_many_threads_renew_once_proactively(xero: MockXero, make_client: MakeClient) -> None:
    tokens = connect(xero, make_client())
    saved: list[Tokens] = []
    client = make_client(tokens=nearly_expired(tokens), on_token_update=saved.append)
    before = len(renewals(xero))

    results = in_threads(12, lambda: client.get("Organisation"))

    assert all(isinstance(r, dict) and r["Organisations"] for r in results), results
    assert [e["status"] for e in renewals(xero)[before:]] == [200]
    assert len(saved) == 1
    api = [e for e in xero.journal() if e["path"].startswith("/api.xro/")]
    assert [e["status"] for e in api] == [200] * 12  # nobody used the old token


def test_a_call_racing_a_renewal_is_retried_with_the_new_token(xero: MockXero,
                                                               make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    # The call reaches the mock (its fault is taken) and waits there while
    # another thread renews; then its token is checked: superseded.
    xero.add_fault(kind="delay", path=API, delay=0.5)
    mark = xero.journal()[-1]["id"]
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(client.get("Contacts")))
    thread.start()
    deadline = time.monotonic() + 10
    while xero.faults() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not xero.faults(), "the call never reached the mock"
    client.renew()
    thread.join(10)
    assert results and results[0]["Contacts"]
    assert journal_paths(xero, since=mark) == [
        ("POST", ACCESS, 200, None), ("GET", API, 401, "token_rejected"), ("GET", API, 200, None)]


def test_revoked_raises_and_never_renews(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    tokens = connect(xero, client)
    xero.revoke(oauth_token=tokens.token)
    mark = xero.journal()[-1]["id"]
    with pytest.raises(TokenRejected) as caught:
        client.get("Contacts")
    assert caught.value.advice == "The access token has not been authorized, or has been revoked by the user"
    assert journal_paths(xero, since=mark) == [("GET", API, 401, "token_rejected")]


def test_revoked_while_due_many_threads_one_attempt(xero: MockXero, make_client: MakeClient) -> None:
    tokens = connect(xero, make_client())
    client = make_client(tokens=nearly_expired(tokens))
    xero.revoke(oauth_token=tokens.token)
    mark = xero.journal()[-1]["id"]

    results = in_threads(8, lambda: client.get("Contacts"))

    assert all(isinstance(r, TokenRejected) for r in results), results
    assert journal_paths(xero, since=mark) == [("POST", ACCESS, 401, "token_rejected")]
    with pytest.raises(TokenRejected):  # later calls too, still without asking again
        client.get("Contacts")
    assert len(xero.journal(since=mark)) == 1


def test_revoked_after_expiry_reactive_path_one_attempt(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    tokens = connect(xero, client)
    xero.advance(1801)
    xero.add_fault(kind="problem", path=ACCESS, problem="token_rejected")  # revoked as it renews
    mark = xero.journal()[-1]["id"]
    with pytest.raises(TokenRejected):
        client.get("Contacts")
    with pytest.raises(TokenRejected):
        client.get("Contacts")
    assert journal_paths(xero, since=mark) == [
        ("GET", API, 401, "token_expired"), ("POST", ACCESS, 401, "token_rejected"),
        ("GET", API, 401, "token_expired")]
    assert client.tokens == tokens


def test_a_new_dance_after_revocation_works_again(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    tokens = connect(xero, client)
    xero.revoke(oauth_token=tokens.token)
    with pytest.raises(TokenRejected):
        client.renew()
    connect(xero, client)
    assert client.get("Contacts")["Contacts"]
    assert client.renew().token != tokens.token


def test_renewal_needs_a_session_handle(xero: MockXero, make_client: MakeClient) -> None:
    tokens = connect(xero, make_client())
    client = make_client(tokens=dataclasses.replace(tokens, session_handle=None))
    with pytest.raises(RuntimeError, match="session handle"):
        client.renew()


def test_a_failing_save_reaches_the_caller(xero: MockXero, make_client: MakeClient) -> None:
    def broken(tokens: Tokens) -> None:
        raise OSError("disk full")

    tokens = connect(xero, make_client())
    client: PartnerClient = make_client(tokens=tokens, on_token_update=broken)
    with pytest.raises(OSError, match="disk full"):
        client.renew()
