"""The API's resources over real mutual TLS, signed by requests-oauthlib:
Organisation (every spelling), Contacts and Invoices in JSON and XML,
the envelope and Xero's date formats, 404 and 501, and the token checks on
every resource."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET

import pytest

from mockxero import MockXero, render
from mockxero.problems import REVOKED_ADVICE

from .api_support import (
    FEB28_MS,
    JAN31_MS,
    JSON,
    JSON_TYPE,
    WCF_DATE,
    fixed_contacts,
    fixed_invoices,
    get_json,
    get_xml,
    names,
)
from .helpers import Partner, Tokens, assert_problem, tokens_from

NOT_FOUND = "The resource you're looking for cannot be found"
SEEDED_CONTACTS = {"ABC Furniture", "Bayside Club", "City Agency", "PowerDirect", "Swanston Security"}


@pytest.fixture
def fixed(xero: MockXero) -> None:
    """The default organisation's data replaced by records with known values."""
    xero.load_data(contacts=fixed_contacts(), invoices=fixed_invoices(), replace=True)


# -- Organisation ----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["Organisation", "Organisations", "organisation", "organisations",
                                  "ORGANISATION", "Organisation/"])
def test_every_organisation_spelling_answers_one_organisations_collection(
        xero: MockXero, partner: Partner, tokens: Tokens, path: str) -> None:
    data = get_json(partner, tokens, path)
    org = xero.organisations()[0]
    assert list(data) == ["Id", "Status", "ProviderName", "DateTimeUTC", "Organisations"]
    [record] = data["Organisations"]
    assert record["Name"] == org["name"] == "Demo Company (NZ)"
    assert record["OrganisationID"] == org["organisation_id"]
    assert record["ShortCode"] == org["short_code"]
    assert record["BaseCurrency"] == "NZD" and record["CountryCode"] == "NZ"
    assert WCF_DATE.fullmatch(record["CreatedDateUTC"])


def test_organisation_xml(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    root = get_xml(partner, tokens, "organisations")
    orgs = root.find("Organisations")
    assert orgs is not None
    [org] = list(orgs)
    assert org.tag == "Organisation"
    assert org.findtext("Name") == "Demo Company (NZ)"
    assert org.findtext("PaysTax") == "true"
    assert org.findtext("OrganisationID") == xero.organisations()[0]["organisation_id"]


def test_organisation_is_the_connected_one(xero: MockXero, partner: Partner) -> None:
    au = xero.organisations()[1]
    tokens = partner.connect(org=au["short_code"])
    [record] = get_json(partner, tokens, "Organisation")["Organisations"]
    assert record["Name"] == "Demo Company (AU)"
    assert record["BaseCurrency"] == "AUD"
    assert record["Timezone"] == "AUSEASTERNSTANDARDTIME"


def test_organisation_cannot_be_changed(partner: Partner, tokens: Tokens) -> None:
    response = partner.api(tokens, "Organisation", method="POST", data="<Organisation />",
                           headers={"Content-Type": "application/xml"})
    assert response.status_code == 501
    assert ET.fromstring(response.content).findtext("Type") == "ApiMethodNotImplementedException"


# -- the envelope -----------------------------------------------------------------------

def test_json_envelope(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    xero.move_clock(freeze=True)
    xero.move_clock(set=JAN31_MS / 1000 + 3600)
    data = get_json(partner, tokens, "Contacts")
    uuid.UUID(data["Id"])
    assert data["Status"] == "OK"
    assert data["ProviderName"] == "mockxero demo partner app"
    assert data["DateTimeUTC"] == f"/Date({JAN31_MS + 3_600_000})/"
    assert set(names(data)) == SEEDED_CONTACTS
    other = get_json(partner, tokens, "Contacts")
    assert other["Id"] != data["Id"]


def test_xml_is_the_default(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    xero.move_clock(freeze=True)
    xero.move_clock(set=JAN31_MS / 1000 + 3600.25)
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "text/xml"}, {"Accept": "application/xml"},
                    {"Accept": "application/json;q=0.1, text/xml"}):
        root = get_xml(partner, tokens, "Contacts", headers=headers)
        assert [child.tag for child in root] == ["Id", "Status", "ProviderName", "DateTimeUTC", "Contacts"]
        uuid.UUID(root.findtext("Id") or "")
        assert root.findtext("ProviderName") == "mockxero demo partner app"
        assert root.findtext("DateTimeUTC") == "2026-01-31T01:00:00.2500000Z"
        assert {c.findtext("Name") for c in root.iter("Contact")} == SEEDED_CONTACTS


def test_json_when_json_is_preferred(partner: Partner, tokens: Tokens) -> None:
    for accept in ("application/json", "application/json, text/plain, */*", "*/*, application/json",
                   "Application/JSON", "APPLICATION/JSON, text/plain"):  # the last two were answered in XML
        response = partner.api(tokens, "Invoices", headers={"Accept": accept})
        assert response.headers["Content-Type"] == JSON_TYPE, accept
        assert response.json()["Status"] == "OK"


# -- Contacts -------------------------------------------------------------------------------

def test_seeded_contacts_json(partner: Partner, tokens: Tokens) -> None:
    data = get_json(partner, tokens, "Contacts")
    by_name = {c["Name"]: c for c in data["Contacts"]}
    abc = by_name["ABC Furniture"]
    uuid.UUID(abc["ContactID"])
    assert abc["ContactStatus"] == "ACTIVE"
    assert abc["EmailAddress"] == "info@abfl.com"
    assert abc["IsCustomer"] is True and abc["IsSupplier"] is False
    assert by_name["PowerDirect"]["IsSupplier"] is True
    assert WCF_DATE.fullmatch(abc["UpdatedDateUTC"])
    assert abc["Addresses"][0]["AddressType"] == "POBOX"
    assert abc["Phones"][0]["PhoneType"] == "DEFAULT"
    assert "Hamilton Smith Ltd" not in by_name  # archived: only with includeArchived


def test_contacts_xml(partner: Partner, tokens: Tokens, fixed: None) -> None:
    root = get_xml(partner, tokens, "contacts")
    contacts = root.find("Contacts")
    assert contacts is not None
    alpha = contacts[0]
    assert alpha.tag == "Contact"
    assert alpha.findtext("ContactID") == "11111111-1111-4111-8111-111111111111"
    assert alpha.findtext("Name") == "Alpha Ltd"
    assert alpha.findtext("UpdatedDateUTC") == "2026-01-10T08:00:00"
    assert contacts[1].findtext("UpdatedDateUTC") == "2026-01-20T08:00:00.25"
    assert alpha.findtext("IsCustomer") == "true"
    assert alpha.find("Addresses") is not None and len(alpha.find("Addresses") or []) == 0


def test_one_contact_by_id_json_and_xml(partner: Partner, tokens: Tokens, fixed: None) -> None:
    for key in ("22222222-2222-4222-8222-222222222222", "22222222222242228222222222222222",
                "22222222-2222-4222-8222-222222222222".upper()):
        [contact] = get_json(partner, tokens, f"Contacts/{key}")["Contacts"]
        assert contact["Name"] == "beta Traders"
        assert contact["UpdatedDateUTC"] == "/Date(1768896000250+0000)/"
    root = get_xml(partner, tokens, "CONTACTS/22222222-2222-4222-8222-222222222222")
    assert [c.findtext("Name") for c in root.iter("Contact")] == ["beta Traders"]


def test_unknown_contact_is_404(partner: Partner, tokens: Tokens) -> None:
    for key in (str(uuid.uuid4()), "deadbeef"):
        response = partner.api(tokens, f"Contacts/{key}", headers=JSON)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.text == NOT_FOUND


# -- Invoices -------------------------------------------------------------------------------

def test_invoices_json(partner: Partner, tokens: Tokens, fixed: None) -> None:
    data = get_json(partner, tokens, "Invoices")
    first, second = data["Invoices"]
    assert first["Type"] == "ACCREC" and second["Type"] == "ACCPAY"
    assert first["InvoiceNumber"] == "INV-0101"
    assert first["Contact"] == {"ContactID": "11111111-1111-4111-8111-111111111111", "Name": "Alpha Ltd"}
    assert first["Date"] == f"/Date({JAN31_MS}+0000)/"
    assert first["DateString"] == "2026-01-31T00:00:00"
    assert first["DueDate"] == f"/Date({FEB28_MS}+0000)/"
    assert first["DueDateString"] == "2026-02-28T00:00:00"
    assert first["UpdatedDateUTC"] == f"/Date({JAN31_MS + 9 * 3_600_000}+0000)/"
    assert first["Status"] == "AUTHORISED"
    assert first["LineAmountTypes"] == "Exclusive"
    assert (first["SubTotal"], first["TotalTax"], first["Total"]) == (100.0, 15.0, 115.0)
    assert (first["AmountDue"], first["AmountPaid"]) == (115.0, 0.0)
    assert first["CurrencyCode"] == "NZD"
    [line] = first["LineItems"]
    assert (line["Quantity"], line["UnitAmount"], line["LineAmount"], line["TaxAmount"]) == (2, 50, 100, 15)
    assert line["TaxType"] == "OUTPUT2" and line["AccountCode"] == "200"
    assert second["Status"] == "PAID" and second["AmountDue"] == 0 and second["AmountPaid"] == 230.0
    assert second["Contact"]["Name"] == "beta Traders"
    assert second["FullyPaidOnDate"] == second["Date"]


def test_invoices_xml(partner: Partner, tokens: Tokens, fixed: None) -> None:
    root = get_xml(partner, tokens, "Invoices")
    invoice = next(root.iter("Invoice"))
    assert invoice.findtext("Date") == "2026-01-31T00:00:00"
    assert invoice.findtext("DueDate") == "2026-02-28T00:00:00"
    assert invoice.find("DateString") is None  # JSON only
    assert invoice.findtext("UpdatedDateUTC") == "2026-01-31T09:00:00"
    assert invoice.findtext("Total") == "115.00"
    assert invoice.findtext("Contact/Name") == "Alpha Ltd"
    assert [li.findtext("Description") for li in invoice.iter("LineItem")] == ["Widgets"]
    assert invoice.findtext("LineItems/LineItem/Quantity") == "2.0000"


def test_seeded_invoices_have_both_types_and_realistic_fields(partner: Partner, tokens: Tokens) -> None:
    invoices = get_json(partner, tokens, "Invoices")["Invoices"]
    assert {i["Type"] for i in invoices} == {"ACCREC", "ACCPAY"}
    assert {i["Status"] for i in invoices} >= {"AUTHORISED", "PAID", "DRAFT"}
    for invoice in invoices:
        uuid.UUID(invoice["InvoiceID"])
        assert invoice["Total"] == pytest.approx(invoice["SubTotal"] + invoice["TotalTax"])
        assert invoice["AmountDue"] == pytest.approx(invoice["Total"] - invoice["AmountPaid"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00", invoice["DateString"])


def test_one_invoice_by_id_or_number(partner: Partner, tokens: Tokens, fixed: None) -> None:
    for key in ("aaaaaaaa-0000-4000-8000-000000000002", "B-7"):
        [invoice] = get_json(partner, tokens, f"invoices/{key}")["Invoices"]
        assert invoice["InvoiceNumber"] == "B-7"
    root = get_xml(partner, tokens, "Invoices/INV-0101")
    assert [i.findtext("InvoiceID") for i in root.iter("Invoice")] == ["aaaaaaaa-0000-4000-8000-000000000001"]
    response = partner.api(tokens, f"Invoices/{uuid.uuid4()}")
    assert (response.status_code, response.text) == (404, NOT_FOUND)


def test_each_organisation_has_its_own_data(xero: MockXero, partner: Partner, fixed: None) -> None:
    nz = partner.connect()
    au = partner.connect(org=xero.organisations()[1]["short_code"])
    assert names(get_json(partner, nz, "Contacts")) == ["Alpha Ltd", "beta Traders", "Gamma Co"]
    au_contacts = get_json(partner, au, "Contacts")["Contacts"]
    assert {c["Name"] for c in au_contacts} == SEEDED_CONTACTS
    au_invoices = get_json(partner, au, "Invoices")["Invoices"]
    assert {i["CurrencyCode"] for i in au_invoices} == {"AUD"}
    response = partner.api(au, "Contacts/11111111-1111-4111-8111-111111111111")
    assert response.status_code == 404


# -- 404 and 501 ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["Nothing", "Contactz", "Contacts/x/y/z", "Organisation/whatever",
                                  "Invoices/INV-0001/Unknown"])
def test_unknown_resources_are_404(partner: Partner, tokens: Tokens, path: str) -> None:
    response = partner.api(tokens, path, headers=JSON)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.text == NOT_FOUND


def test_the_base_path_matches_in_any_case(partner: Partner, tokens: Tokens) -> None:
    # Signed for the path as sent: the routing ignores case, the base string does not.
    auth = partner.auth(tokens.oauth_token, tokens.oauth_token_secret)
    response = partner.request("GET", "/API.XRO/2.0/contacts", auth=auth, headers=JSON)
    assert response.status_code == 200, response.text
    assert set(names(response.json())) == SEEDED_CONTACTS


def test_unknown_api_version_is_404_without_authentication(xero: MockXero, partner: Partner) -> None:
    response = partner.request("GET", "/api.xro/3.0/Contacts")
    assert (response.status_code, response.text) == (404, NOT_FOUND)


@pytest.mark.parametrize("path", ["Accounts", "BankTransactions", "payments", "Items", "TaxRates",
                                  "CreditNotes", "ManualJournals", "Journals", "Users", "Currencies",
                                  "TrackingCategories", "Reports/BalanceSheet", "Organisation/Actions"])
def test_real_resources_the_mock_lacks_are_501(partner: Partner, tokens: Tokens, path: str) -> None:
    response = partner.api(tokens, path, headers=JSON)
    assert response.status_code == 501
    root = ET.fromstring(response.content)
    assert root.tag == "ApiException"
    assert root.findtext("ErrorNumber") == "20"
    assert root.findtext("Type") == "ApiMethodNotImplementedException"
    assert root.findtext("Message") == "The Api Method called is not implemented"


def test_real_subresources_and_methods_the_mock_lacks_are_501(
        xero: MockXero, partner: Partner, tokens: Tokens, fixed: None) -> None:
    for method, path in (("GET", "Contacts/11111111-1111-4111-8111-111111111111/History"),
                         ("GET", "Invoices/INV-0101/Attachments"),
                         ("POST", "Invoices/INV-0101/Email"),
                         ("DELETE", "Contacts/11111111-1111-4111-8111-111111111111"),
                         ("DELETE", "Invoices"), ("PUT", "Invoices/INV-0101")):
        response = partner.api(tokens, path, method=method)
        assert response.status_code == 501, (method, path)
        assert ET.fromstring(response.content).findtext("ErrorNumber") == "20"


# -- token checks on every resource -------------------------------------------------------------

RESOURCES = ["Organisation", "Contacts", "Invoices", "Contacts/{contact}", "Invoices/{invoice}"]


def _path(template: str) -> str:
    return template.format(contact="11111111-1111-4111-8111-111111111111", invoice="INV-0101")


@pytest.mark.parametrize("resource", RESOURCES)
def test_expired_token(xero: MockXero, partner: Partner, tokens: Tokens, fixed: None, resource: str) -> None:
    assert partner.api(tokens, _path(resource)).status_code == 200
    xero.advance(1801)
    assert_problem(partner.api(tokens, _path(resource)), 401, "token_expired",
                         "The access token has expired")


@pytest.mark.parametrize("resource", RESOURCES)
def test_revoked_token(xero: MockXero, partner: Partner, tokens: Tokens, fixed: None, resource: str) -> None:
    xero.revoke(oauth_token=tokens.oauth_token)
    assert_problem(partner.api(tokens, _path(resource)), 401, "token_rejected", REVOKED_ADVICE)


@pytest.mark.parametrize("resource", RESOURCES)
def test_superseded_token(partner: Partner, tokens: Tokens, fixed: None, resource: str) -> None:
    renewed = partner.renew(tokens)
    assert renewed.status_code == 200, renewed.text
    assert_problem(partner.api(tokens, _path(resource)), 401, "token_rejected")
    assert partner.api(tokens_from(renewed), _path(resource)).status_code == 200


@pytest.mark.parametrize("resource", RESOURCES)
def test_client_certificate_rule(xero: MockXero, partner: Partner, tokens: Tokens, fixed: None,
                                 resource: str) -> None:
    bare = Partner(xero, partner.consumer_key, partner.consumer_secret, rsa_key=partner.rsa_key, cert=None)
    try:
        response = bare.api(tokens, _path(resource))
    finally:
        bare.close()
    assert response.status_code == 403
    assert "HTTP Error 403.7 - Forbidden" in response.text
    assert partner.api(tokens, _path(resource)).status_code == 200


def test_unsigned_calls_and_unknown_tokens_are_refused(partner: Partner, tokens: Tokens) -> None:
    assert_problem(partner.request("GET", "/api.xro/2.0/Contacts"), 400, "parameter_absent")
    unknown = Tokens("NOTATOKEN000000000000000000000", tokens.oauth_token_secret)
    assert_problem(partner.api(unknown, "Contacts"), 401, "token_rejected")


def test_rendered_records_kept_for_reuse_are_bounded_in_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache was bounded at 5,000 entries whatever their size: 5,000
    versions of a megabyte invoice (each update replaces the record) held
    gigabytes."""
    monkeypatch.setattr(render, "_FRAGMENTS", {})
    monkeypatch.setattr(render, "_fragment_chars", 0)  # what earlier tests rendered counts no more
    monkeypatch.setattr(render, "_FRAGMENT_CHARS", 50_000)
    records = [{"Name": "x" * 10_000, "N": n} for n in range(20)]
    for record in records:
        render.envelope_json("p", 0.0, "Contacts", [record])
        render.envelope_xml("p", 0.0, "Contacts", [record])
        assert sum(len(text) for _, text in render._FRAGMENTS.values()) <= 50_000
    assert (id(records[-1]), "json") in render._FRAGMENTS  # still a cache


def test_xml_and_json_agree(partner: Partner, tokens: Tokens) -> None:
    data = get_json(partner, tokens, "Invoices")
    root = get_xml(partner, tokens, "Invoices")
    xml_invoices = list(root.iter("Invoice"))
    assert [i["InvoiceID"] for i in data["Invoices"]] == [i.findtext("InvoiceID") for i in xml_invoices]
    assert [f"{i['Total']:.2f}" for i in data["Invoices"]] == [i.findtext("Total") for i in xml_invoices]
