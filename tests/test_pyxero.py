"""pyxero 0.9.5's ``PartnerCredentials`` and ``Xero``, unchanged, against the
mock: the dance, the API, the 30-minute expiry and ``refresh()``.

pyxero 0.9 cannot present a client certificate, so the consumer is
registered with ``require_client_cert=False`` (as Xero allowed after it
dropped the Entrust certificates). pyxero calls module-level ``requests``
without ``verify=``, so the mock's CA comes in through REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from xero import Xero
from xero.auth import PartnerCredentials
from xero.exceptions import (
    XeroBadRequest,
    XeroNotAvailable,
    XeroNotFound,
    XeroNotImplemented,
    XeroRateLimitExceeded,
    XeroUnauthorized,
)

from mockxero import MockXero

SEEDED = {"ABC Furniture", "Bayside Club", "City Agency", "PowerDirect", "Swanston Security"}


@pytest.fixture
def credentials(xero: MockXero, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A verified PartnerCredentials, through pyxero's own dance."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(xero.ca_path))
    consumer = xero.add_consumer(app_type="partner", certificate=xero.certs.application_certificate,
                                 require_client_cert=False, name="pyxero partner app")
    credentials = PartnerCredentials(consumer["consumer_key"], consumer["consumer_secret"],
                                     xero.certs.application_key, api_url=xero.url)
    assert credentials.url == f"{xero.url}/oauth/Authorize?oauth_token={credentials.oauth_token}"
    decision = xero.authorize(credentials.oauth_token)
    credentials.verify(decision["oauth_verifier"])
    assert credentials.verified
    assert credentials.oauth_session_handle
    yield credentials


def test_dance_api_expiry_and_refresh(xero: MockXero, credentials: Any) -> None:
    api = Xero(credentials)

    contacts = api.contacts.all()
    assert {c["Name"] for c in contacts} == SEEDED
    assert all(isinstance(c["UpdatedDateUTC"], datetime.datetime) for c in contacts)

    [org] = api.organisations.all()
    assert org["Name"] == "Demo Company (NZ)"
    assert org["PaysTax"] is True
    assert isinstance(org["CreatedDateUTC"], datetime.datetime)

    [abc] = api.contacts.filter(Name="ABC Furniture")
    assert abc["EmailAddress"] == "info@abfl.com"
    assert api.contacts.get(abc["ContactID"])[0]["Name"] == "ABC Furniture"

    [created] = api.contacts.put({"Name": "Pyxero Test Co", "EmailAddress": "hello@pyxero.test",
                                  "IsSupplier": True})
    assert created["ContactID"]
    assert created["Name"] == "Pyxero Test Co"
    assert created["IsSupplier"] is True
    assert "Pyxero Test Co" in {c["Name"] for c in api.contacts.all()}

    invoices = api.invoices.all()
    assert {i["Type"] for i in invoices} == {"ACCREC", "ACCPAY"}
    assert all(isinstance(i["Date"], datetime.datetime) for i in invoices)
    [paid] = api.invoices.filter(Status="PAID", Type="ACCREC")
    assert paid["InvoiceNumber"] == "INV-0002"

    xero.advance(1801)
    with pytest.raises(XeroUnauthorized) as refused:
        api.contacts.all()
    assert refused.value.errors[0] == "token_expired"
    assert str(refused.value) == "The access token has expired"

    old_token = credentials.oauth_token
    credentials.refresh()
    assert credentials.oauth_token != old_token
    assert "Pyxero Test Co" in {c["Name"] for c in api.contacts.all()}


def test_invoices_put_save_and_filters(xero: MockXero, credentials: Any) -> None:
    api = Xero(credentials)
    [abc] = api.contacts.filter(Name="ABC Furniture")
    [invoice] = api.invoices.put({
        "Type": "ACCREC",
        "Contact": {"ContactID": abc["ContactID"]},
        "Date": datetime.date(2026, 1, 31),
        "DueDate": datetime.date(2026, 2, 28),
        "LineAmountTypes": "Exclusive",
        "LineItems": [{"Description": "Chairs", "Quantity": 2, "UnitAmount": 100, "AccountCode": "200"}],
    })
    assert invoice["InvoiceNumber"] == "INV-0004"
    assert invoice["Total"] == 230.0
    assert invoice["DateString"] == datetime.date(2026, 1, 31)
    assert invoice["DueDate"].replace(tzinfo=None) == datetime.datetime(2026, 2, 28)  # pyxero: a datetime

    invoice["Status"] = "AUTHORISED"
    [saved] = api.invoices.save(invoice)
    assert saved["Status"] == "AUTHORISED"

    mine = api.invoices.filter(Contact_ContactID=abc["ContactID"])
    assert {i["InvoiceNumber"] for i in mine} == {"INV-0001", "INV-0004"}
    assert api.invoices.filter(InvoiceNumbers=["INV-0004"])[0]["InvoiceID"] == invoice["InvoiceID"]
    assert [c["Name"] for c in api.contacts.filter(Name__startswith="Bay")] == ["Bayside Club"]
    assert len(api.contacts.filter(page=1, order="Name DESC")) == 5
    assert api.contacts.filter(since=datetime.datetime.now(datetime.timezone.utc)
                               + datetime.timedelta(days=1)) == []


def test_pyxero_reads_the_mocks_errors(xero: MockXero, credentials: Any) -> None:
    api = Xero(credentials)

    with pytest.raises(XeroBadRequest) as bad:
        api.contacts.put({"Name": "", "EmailAddress": "nope"})
    assert bad.value.errors == ["The contact name must be specified.", "Email address must be valid."]
    assert str(bad.value).startswith("ValidationException: A validation exception occurred")

    with pytest.raises(XeroNotFound) as missing:
        api.contacts.get("deadbeef")
    assert str(missing.value) == "The resource you're looking for cannot be found"

    with pytest.raises(XeroNotImplemented) as not_implemented:
        api.organisations.save({})
    assert str(not_implemented.value) == "The Api Method called is not implemented"
    with pytest.raises(XeroNotImplemented):
        api.accounts.all()

    xero.add_fault("offline", path="/api.xro/2.0/*")
    with pytest.raises(XeroNotAvailable) as offline:
        api.invoices.all()
    assert str(offline.value) == "The Xero API is currently offline for maintenance"

    xero.change_settings(rate_limit="1/100")
    xero.advance(61)  # out of the minute of the calls above
    api.contacts.all()
    with pytest.raises(XeroRateLimitExceeded) as limited:
        api.contacts.all()
    assert limited.value.errors == ["rate limit exceeded"]
    assert limited.value.response.headers["X-Rate-Limit-Problem"] == "minute"

    xero.revoke(oauth_token=credentials.oauth_token)
    with pytest.raises(XeroUnauthorized) as revoked:
        api.organisations.all()
    assert revoked.value.errors == ["token_rejected"]
