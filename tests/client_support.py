"""Making PartnerClients for the mock in the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mockxero import MockXero
from mockxero.client import PartnerClient, Tokens

MakeClient = Callable[..., PartnerClient]


@pytest.fixture
def make_client(xero: MockXero) -> Iterator[MakeClient]:
    """PartnerClients for the demo consumer (PEM client certificate unless
    told otherwise), closed after the test."""
    made: list[PartnerClient] = []

    def make(**overrides: Any) -> PartnerClient:
        kwargs: dict[str, Any] = {
            "client_cert": (xero.certs.path("entrust-cert.pem"),
                            xero.certs.path("entrust-private-nopass.pem")),
            "verify": str(xero.certs.path("ca.pem")),
            "base_url": xero.url,
            "authorize_url": xero.url + "/oauth/Authorize",
        }
        kwargs.update(overrides)
        consumer_key = kwargs.pop("consumer_key", xero.certs.consumer_key)
        rsa_key = kwargs.pop("rsa_key", xero.certs.application_key)
        client = PartnerClient(consumer_key, rsa_key, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def connect(xero: MockXero, client: PartnerClient, org: str | None = None) -> Tokens:
    """The whole dance, approved through the control operations."""
    request_token = client.fetch_request_token()
    verifier = xero.authorize(request_token.token, org=org)["oauth_verifier"]
    return client.fetch_access_token(request_token, verifier)


def journal_paths(xero: MockXero, since: int = 0) -> list[tuple[str, str, int, str | None]]:
    """(method, path, status, oauth_problem) of every journal entry."""
    return [(e["method"], e["path"], e["status"], e["oauth_problem"]) for e in xero.journal(since=since)]


def renewals(xero: MockXero) -> list[dict[str, Any]]:
    """Journal entries of /oauth/AccessToken calls (exchanges and renewals)."""
    return [e for e in xero.journal() if e["path"] == "/oauth/AccessToken"]
