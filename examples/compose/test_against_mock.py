"""Run by the compose stack's ``pytest`` service against the mockxero
container, through the pytest plugin's remote mode::

    pytest --mockxero-url https://mockxero:8443 --mockxero-certs /certs test_against_mock.py

The same file runs unchanged against the in-process mock (plain ``pytest``):
only the URL differs. ``xero_client`` is a ``mockxero.client.PartnerClient``
already connected; ``mockxero`` is the handle on the mock, reset before each
test."""

from __future__ import annotations

from typing import Any

import pytest

from mockxero.client import PartnerClient, TokenRejected


def test_the_connected_client_reads_its_organisation(xero_client: PartnerClient) -> None:
    organisation = xero_client.get("Organisation")["Organisations"][0]
    assert organisation["Name"].startswith("Demo Company")


def test_a_contact_written_is_read_back(xero_client: PartnerClient) -> None:
    created = xero_client.put("Contacts", json={"Contacts": [{"Name": "Compose Stack Ltd"}]})
    contact_id = created["Contacts"][0]["ContactID"]
    found = xero_client.get(f"Contacts/{contact_id}")["Contacts"][0]
    assert found["Name"] == "Compose Stack Ltd"


def test_an_expired_token_is_renewed_by_the_client(mockxero: Any, xero_client: PartnerClient) -> None:
    assert xero_client.tokens is not None
    before = xero_client.tokens.token
    mockxero.advance(31 * 60)  # past the 30-minute access token, on the mock's clock only
    assert xero_client.get("Organisation")["Organisations"]
    assert xero_client.tokens.token != before


def test_a_disconnected_app_is_refused(mockxero: Any, xero_client: PartnerClient) -> None:
    assert xero_client.tokens is not None
    mockxero.revoke(session_handle=xero_client.tokens.session_handle)
    with pytest.raises(TokenRejected):
        xero_client.get("Organisation")


def test_the_mock_saw_the_call(mockxero: Any, xero_client: PartnerClient) -> None:
    xero_client.get("Contacts")
    calls = [(e["method"], e["path"], e["status"]) for e in mockxero.journal()]
    assert ("GET", "/api.xro/2.0/Contacts", 200) in calls
