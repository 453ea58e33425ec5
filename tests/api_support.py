"""Helpers for the API tests: reading Xero's envelopes in JSON and XML, a
client for the control API over HTTPS, and fixed data to load."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any

from .helpers import Partner, Tokens

JSON = {"Accept": "application/json"}
XML_TYPE = "text/xml; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
WCF_DATE = re.compile(r"/Date\((\d+)\+0000\)/")

#: 2026-01-31T00:00:00Z and 2026-02-28T00:00:00Z in ms.
JAN31_MS = 1769817600000
FEB28_MS = 1772236800000


def ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp() * 1000)


def get_json(partner: Partner, tokens: Tokens, path: str, **kwargs: Any) -> dict[str, Any]:
    headers = {**JSON, **kwargs.pop("headers", {})}
    response = partner.api(tokens, path, headers=headers, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSON_TYPE
    data: dict[str, Any] = response.json()
    assert data["Status"] == "OK"
    return data


def get_xml(partner: Partner, tokens: Tokens, path: str, **kwargs: Any) -> ET.Element:
    response = partner.api(tokens, path, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == XML_TYPE
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    assert root.findtext("Status") == "OK"
    return root


def names(data: dict[str, Any], collection: str = "Contacts") -> list[str]:
    return [item["Name"] for item in data[collection]]


def numbers(data: dict[str, Any]) -> list[str]:
    return [item.get("InvoiceNumber", "") for item in data["Invoices"]]


def fixed_contacts() -> list[dict[str, Any]]:
    """Contacts with known IDs and times, for exact assertions."""
    return [
        {"ContactID": "11111111-1111-4111-8111-111111111111", "Name": "Alpha Ltd",
         "EmailAddress": "a@alpha.co", "UpdatedDateUTC": "2026-01-10T08:00:00"},
        {"ContactID": "22222222-2222-4222-8222-222222222222", "Name": "beta Traders",
         "UpdatedDateUTC": "2026-01-20T08:00:00.250Z"},
        {"ContactID": "33333333-3333-4333-8333-333333333333", "Name": "Gamma Co",
         "ContactStatus": "ACTIVE", "UpdatedDateUTC": "2026-01-30T08:00:00"},
    ]


def fixed_invoices() -> list[dict[str, Any]]:
    return [
        {"Type": "ACCREC", "InvoiceID": "aaaaaaaa-0000-4000-8000-000000000001", "InvoiceNumber": "INV-0101",
         "Contact": {"ContactID": "11111111-1111-4111-8111-111111111111"}, "Date": "2026-01-31",
         "DueDate": "2026-02-28", "Status": "AUTHORISED",
         "LineItems": [{"Description": "Widgets", "Quantity": 2, "UnitAmount": 50, "AccountCode": "200"}],
         "UpdatedDateUTC": "2026-01-31T09:00:00"},
        {"Type": "ACCPAY", "InvoiceID": "aaaaaaaa-0000-4000-8000-000000000002", "InvoiceNumber": "B-7",
         "Contact": {"Name": "beta Traders"}, "Date": "2026-01-15", "DueDate": "2026-02-15",
         "Status": "PAID", "LineItems": [{"Description": "Stock", "Quantity": 1, "UnitAmount": 200}],
         "UpdatedDateUTC": "2026-01-16T09:00:00"},
    ]


def new_id() -> str:
    return str(uuid.uuid4())
