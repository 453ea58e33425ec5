"""Creating and updating contacts and invoices (PUT and POST, JSON and XML,
the form-encoded ``xml=`` of old clients), Xero's validation errors, bodies
that are not JSON or XML, and the data the control API loads."""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import requests

from mockxero import MockXero, api_data

from .api_support import (
    JAN31_MS,
    JSON,
    JSON_TYPE,
    XML_TYPE,
    fixed_contacts,
    fixed_invoices,
    get_json,
    get_xml,
    names,
)
from .helpers import Control, Partner, Tokens

XSI = "{http://www.w3.org/2001/XMLSchema-instance}type"
ALPHA = "11111111-1111-4111-8111-111111111111"
NOW = JAN31_MS // 1000 + 12 * 3600  # 2026-01-31T12:00:00Z
XML_BODY = {"Content-Type": "application/xml"}


@pytest.fixture
def tokens(xero: MockXero, partner: Partner) -> Tokens:
    xero.load_data(contacts=fixed_contacts(), invoices=fixed_invoices(), replace=True)
    xero.move_clock(freeze=True)
    xero.move_clock(set=NOW)
    return partner.connect()


def put(partner: Partner, tokens: Tokens, path: str, method: str = "PUT", **kwargs: Any) -> requests.Response:
    return partner.api(tokens, path, method=method, **kwargs)


def validation_errors(response: requests.Response) -> list[list[str]]:
    """The messages of each element of a JSON ValidationException."""
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == JSON_TYPE
    body = response.json()
    assert (body["ErrorNumber"], body["Type"], body["Message"]) == \
        (10, "ValidationException", "A validation exception occurred")
    return [[e["Message"] for e in element["ValidationErrors"]] for element in body["Elements"]]


def post_data_invalid(response: requests.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["ErrorNumber"], body["Type"]) == (14, "PostDataInvalidException")
    return str(body["Message"])


# -- contacts ---------------------------------------------------------------------------------

def test_put_contacts_json(partner: Partner, tokens: Tokens) -> None:
    response = put(partner, tokens, "Contacts", headers=JSON,
                   json={"Contacts": [{"Name": "Delta Ltd", "EmailAddress": "d@delta.co",
                                       "IsSupplier": True, "Unknown": "ignored",
                                       "Addresses": [{"AddressType": "STREET", "City": "Nelson"}]}]})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["Status"] == "OK"
    [created] = data["Contacts"]
    uuid.UUID(created["ContactID"])
    assert created["Name"] == "Delta Ltd"
    assert created["ContactStatus"] == "ACTIVE"
    assert created["IsSupplier"] is True
    assert created["UpdatedDateUTC"] == f"/Date({NOW * 1000}+0000)/"
    assert created["StatusAttributeString"] == "OK"
    assert created["Addresses"] == [{"AddressType": "STREET", "City": "Nelson"}]
    assert "Unknown" not in created
    [fetched] = get_json(partner, tokens, f"Contacts/{created['ContactID']}")["Contacts"]
    assert fetched["EmailAddress"] == "d@delta.co"
    assert "StatusAttributeString" not in fetched


def test_put_contacts_xml_collection_and_single(partner: Partner, tokens: Tokens) -> None:
    response = put(partner, tokens, "Contacts", headers=XML_BODY,
                   data="<Contacts><Contact><Name>A &amp; B &lt;Co&gt;</Name><IsCustomer>true</IsCustomer>"
                        "<Phones><Phone><PhoneType>DEFAULT</PhoneType><PhoneNumber>123</PhoneNumber></Phone>"
                        "</Phones></Contact><Contact><Name>Café Māori</Name></Contact></Contacts>")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == XML_TYPE
    root = ET.fromstring(response.content)
    created = list(root.iter("Contact"))
    assert [c.get("status") for c in created] == ["OK", "OK"]
    assert [c.findtext("Name") for c in created] == ["A & B <Co>", "Café Māori"]
    assert created[0].findtext("IsCustomer") == "true"
    assert created[0].findtext("Phones/Phone/PhoneNumber") == "123"
    # pyxero's shape: one bare element
    response = put(partner, tokens, "contacts", headers={**XML_BODY, **JSON},
                   data=b"<Contact><Name>Epsilon</Name><EmailAddress>e@e.co</EmailAddress></Contact>")
    assert response.status_code == 200, response.text
    assert names(response.json()) == ["Epsilon"]
    assert names(get_json(partner, tokens, "Contacts")) == [
        "Alpha Ltd", "beta Traders", "Gamma Co", "A & B <Co>", "Café Māori", "Epsilon"]


def test_post_creates_and_updates_contacts(partner: Partner, tokens: Tokens, xero: MockXero) -> None:
    response = put(partner, tokens, "Contacts", method="POST", headers=JSON, json={"Name": "Zeta"})
    assert response.status_code == 200, response.text
    zeta_id = response.json()["Contacts"][0]["ContactID"]
    xero.advance(60)
    response = put(partner, tokens, "Contacts", method="POST", headers=JSON,
                   json={"Contacts": [{"ContactID": ALPHA, "Name": "Alpha Holdings", "FirstName": "Ann"}]})
    assert response.status_code == 200, response.text
    [updated] = response.json()["Contacts"]
    assert (updated["ContactID"], updated["Name"], updated["FirstName"]) == (ALPHA, "Alpha Holdings", "Ann")
    assert updated["EmailAddress"] == "a@alpha.co"  # kept
    assert updated["UpdatedDateUTC"] == f"/Date({(NOW + 60) * 1000}+0000)/"
    contacts = names(get_json(partner, tokens, "Contacts"))
    assert contacts == ["Alpha Holdings", "beta Traders", "Gamma Co", "Zeta"]
    [invoice] = get_json(partner, tokens, "Invoices/INV-0101")["Invoices"]
    assert invoice["Contact"]["Name"] == "Alpha Holdings"  # the invoice follows the rename
    # POST Contacts/{id}: the path names the record
    response = put(partner, tokens, f"Contacts/{zeta_id}", method="POST", headers={**XML_BODY, **JSON},
                   data="<Contact><EmailAddress>z@zeta.co</EmailAddress></Contact>")
    assert response.status_code == 200, response.text
    [fetched] = get_json(partner, tokens, f"Contacts/{zeta_id}")["Contacts"]
    assert (fetched["Name"], fetched["EmailAddress"]) == ("Zeta", "z@zeta.co")


def test_form_encoded_xml_body_of_old_clients(partner: Partner, tokens: Tokens) -> None:
    response = put(partner, tokens, "Contacts", method="POST", headers=JSON,
                   data={"xml": "<Contacts><Contact><Name>Form Co</Name></Contact></Contacts>"})
    assert response.status_code == 200, response.text
    assert names(response.json()) == ["Form Co"]


@pytest.mark.parametrize(("body", "expected"), [
    ({"EmailAddress": "x@y.co"}, ["The contact name must be specified."]),
    ({"Name": "  "}, ["The contact name must be specified."]),
    ({"Name": "GAMMA CO"}, ["The contact name GAMMA CO is already assigned to another contact. "
                            "The contact name must be unique across all active contacts."]),
    ({"Name": "New", "EmailAddress": "not an email"}, ["Email address must be valid."]),
    ({"Name": "New", "ContactStatus": "GONE"},
     ["ContactStatus must be one of ACTIVE, ARCHIVED, GDPRREQUEST"]),
    ({"Name": "New", "IsCustomer": "maybe"}, ["IsCustomer must be true or false"]),
    ({"Name": "New", "ContactID": "nope"}, ["ContactID 'nope' is not a valid GUID"]),
    ({"Name": "New", "ContactID": ALPHA},
     [f"A contact with ContactID {ALPHA} already exists: POST it to update it"]),
    ({"Name": "New", "ContactID": str(uuid.UUID(int=7))},
     [f"No contact with ContactID {uuid.UUID(int=7)} exists in this organisation"]),
])
def test_contact_validation_errors(partner: Partner, tokens: Tokens, body: dict[str, Any],
                                   expected: list[str]) -> None:
    response = put(partner, tokens, "Contacts", headers=JSON, json=body)
    assert validation_errors(response) == [expected]


def test_validation_errors_in_xml_and_nothing_is_stored(partner: Partner, tokens: Tokens) -> None:
    response = put(partner, tokens, "Contacts", headers=XML_BODY,
                   data="<Contacts><Contact><Name>Fine</Name></Contact><Contact><Name>Alpha Ltd</Name>"
                        "<EmailAddress>bad</EmailAddress></Contact></Contacts>")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == XML_TYPE
    root = ET.fromstring(response.content)
    assert root.tag == "ApiException"
    assert [root.findtext(k) for k in ("ErrorNumber", "Type", "Message")] == \
        ["10", "ValidationException", "A validation exception occurred"]
    [element] = root.findall("Elements/DataContractBase")
    assert element.get(XSI) == "Contact"
    assert [m.text for m in element.iter("Message")] == [
        "The contact name Alpha Ltd is already assigned to another contact. "
        "The contact name must be unique across all active contacts.",
        "Email address must be valid."]
    assert element.findtext("Name") == "Alpha Ltd"
    assert "Fine" not in names(get_json(partner, tokens, "Contacts"))  # all or nothing


def test_summarize_errors_false_keeps_the_good_elements(partner: Partner, tokens: Tokens) -> None:
    body = {"Contacts": [{"Name": "Fine"}, {"Name": ""}, {"Name": "Also Fine"}]}
    response = put(partner, tokens, "Contacts", headers=JSON, json=body, params={"summarizeErrors": "false"})
    assert response.status_code == 200, response.text
    results = response.json()["Contacts"]
    assert [r["StatusAttributeString"] for r in results] == ["OK", "ERROR", "OK"]
    assert results[1]["ValidationErrors"] == [{"Message": "The contact name must be specified."}]
    assert names(get_json(partner, tokens, "Contacts"))[-2:] == ["Fine", "Also Fine"]
    response = put(partner, tokens, "Contacts", headers=XML_BODY, params={"summarizeErrors": "false"},
                   data="<Contacts><Contact><Name>Fine</Name></Contact></Contacts>")
    [contact] = ET.fromstring(response.content).iter("Contact")
    assert contact.get("status") == "ERROR"
    assert "already assigned" in (contact.findtext("ValidationErrors/ValidationError/Message") or "")


def test_text_no_response_can_carry_is_dropped(partner: Partner, tokens: Tokens) -> None:
    """JSON can carry a lone surrogate (\\ud800) and control characters; UTF-8
    and XML 1.0 cannot. A stored lone surrogate made every later GET of the
    organisation's contacts a 500, and one quoted in a message the PUT itself."""
    as_json = {**JSON, "Content-Type": "application/json"}
    body = b'{"Name": "Lone \\ud800Surrogate\\u0001 Ltd"}'
    response = put(partner, tokens, "Contacts", headers=as_json, data=body)
    assert response.status_code == 200, response.text
    assert names(response.json()) == ["Lone Surrogate Ltd"]
    assert "Lone Surrogate Ltd" in names(get_json(partner, tokens, "Contacts"))
    root = get_xml(partner, tokens, "Contacts")
    assert "Lone Surrogate Ltd" in [c.findtext("Name") for c in root.iter("Contact")]
    bad = b'{"Name": "Bad Id", "ContactID": "\\ud800\\u0001x"}'
    response = put(partner, tokens, "Contacts", headers=as_json, data=bad)
    assert validation_errors(response) == [["ContactID 'x' is not a valid GUID"]]
    for params in ({}, {"summarizeErrors": "false"}):
        response = put(partner, tokens, "Contacts", headers={"Content-Type": "application/json"}, data=bad,
                       params=params)
        assert response.headers["Content-Type"] == XML_TYPE
        root = ET.fromstring(response.content)  # well-formed: no control character in it
        assert "ContactID 'x' is not a valid GUID" in [m.text for m in root.iter("Message")]


# -- invoices -----------------------------------------------------------------------------------

def test_put_invoice_json(partner: Partner, tokens: Tokens) -> None:
    body = {"Invoices": [{
        "Type": "ACCREC", "Contact": {"ContactID": ALPHA}, "DueDate": "2026-02-14T00:00:00",
        "Reference": "PO 9", "LineItems": [
            {"Description": "Consulting", "Quantity": 3, "UnitAmount": 120.5, "AccountCode": "200"},
            {"Description": "Discounted", "Quantity": 1, "UnitAmount": 100, "DiscountRate": 10},
        ]}]}
    response = put(partner, tokens, "Invoices", headers=JSON, json=body)
    assert response.status_code == 200, response.text
    [invoice] = response.json()["Invoices"]
    uuid.UUID(invoice["InvoiceID"])
    assert invoice["InvoiceNumber"] == "INV-0102"  # after the highest INV- number
    assert invoice["Status"] == "DRAFT"
    assert invoice["Date"] == f"/Date({JAN31_MS}+0000)/"  # today, on the mock clock
    assert invoice["DueDateString"] == "2026-02-14T00:00:00"
    assert invoice["Contact"] == {"ContactID": ALPHA, "Name": "Alpha Ltd"}
    assert [line["LineAmount"] for line in invoice["LineItems"]] == [361.5, 90.0]
    assert (invoice["SubTotal"], invoice["TotalTax"], invoice["Total"]) == (451.5, 67.73, 519.23)
    assert (invoice["AmountDue"], invoice["AmountPaid"]) == (519.23, 0.0)
    assert invoice["CurrencyCode"] == "NZD"
    assert invoice["UpdatedDateUTC"] == f"/Date({NOW * 1000}+0000)/"
    assert "INV-0102" in [i["InvoiceNumber"] for i in get_json(partner, tokens, "Invoices")["Invoices"]]


def test_put_invoice_xml_creates_its_contact_by_name(partner: Partner, tokens: Tokens) -> None:
    body = ("<Invoices><Invoice><Type>ACCPAY</Type><InvoiceNumber>SUP-1</InvoiceNumber>"
            "<Contact><Name>Brand New Supplier</Name></Contact><Date>2026-01-20T00:00:00</Date>"
            "<DueDate>2026-02-20T00:00:00</DueDate><Status>AUTHORISED</Status>"
            "<LineAmountTypes>Inclusive</LineAmountTypes><LineItems><LineItem><Description>Paper</Description>"
            "<Quantity>2</Quantity><UnitAmount>57.50</UnitAmount></LineItem></LineItems>"
            "</Invoice></Invoices>")
    root = ET.fromstring(put(partner, tokens, "Invoices", headers=XML_BODY, data=body).content)
    invoice = next(root.iter("Invoice"))
    assert invoice.get("status") == "OK"
    fields = ("Type", "InvoiceNumber", "Status", "Date", "Total", "TotalTax")
    assert [invoice.findtext(k) for k in fields] == \
        ["ACCPAY", "SUP-1", "AUTHORISED", "2026-01-20T00:00:00", "115.00", "15.00"]
    assert invoice.findtext("LineItems/LineItem/TaxType") == "INPUT2"
    where = {"where": 'Name=="Brand New Supplier"'}
    [contact] = get_json(partner, tokens, "Contacts", params=where)["Contacts"]
    assert contact["IsSupplier"] is True
    assert invoice.findtext("Contact/ContactID") == contact["ContactID"]


@pytest.mark.parametrize(("invoice", "expected"), [
    ({"Type": "ACCREC", "LineItems": [{"Description": "x", "UnitAmount": 1}]},
     ["A Contact must be specified for this type of transaction"]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA}}, ["One or more line items must be specified"]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA}, "Status": "PAID",
      "LineItems": [{"Description": "x", "UnitAmount": 1}]}, ["Invoice not of valid status for creation"]),
    ({"Type": "BILL", "Contact": {"ContactID": ALPHA}, "LineItems": [{"Description": "x"}]},
     ["Invoice Type must be ACCREC or ACCPAY"]),
    ({"Contact": {"ContactID": ALPHA}, "LineItems": [{"Description": "x"}]},
     ["An invoice must have a Type (ACCREC or ACCPAY)"]),
    ({"Type": "ACCREC", "InvoiceNumber": "inv-0101", "Contact": {"ContactID": ALPHA},
      "LineItems": [{"Description": "x"}]}, ["Invoice # must be unique."]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA}, "Date": "someday",
      "LineItems": [{"Description": "x"}]}, ["Date 'someday' is not a valid date"]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA},
      "LineItems": [{"Description": "x", "UnitAmount": "abc"}]},
     ["UnitAmount 'abc' is not a valid number"]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA}, "LineItems": [{"Quantity": 1, "UnitAmount": 5}]},
     ["The description field is mandatory for each line item."]),
    ({"Type": "ACCREC", "Contact": {"ContactID": str(uuid.UUID(int=9))}, "LineItems": [{"Description": "x"}]},
     [f"The contact with ContactID {uuid.UUID(int=9)} could not be found"]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA}, "Date": "2026-02-10", "DueDate": "2026-02-01",
      "LineItems": [{"Description": "x"}]}, ["Due Date must not be before the invoice Date"]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA}, "LineAmountTypes": "Gross",
      "LineItems": [{"Description": "x"}]}, ["LineAmountTypes must be one of Exclusive, Inclusive, NoTax"]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA},
      "LineItems": [{"Description": "x", "Quantity": 2, "UnitAmount": 5, "LineAmount": 99}]},
     ["Line 1: LineAmount 99.00 does not equal Quantity x UnitAmount"]),
    ({"Type": "ACCREC", "Contact": {"ContactID": ALPHA},
      "LineItems": [{"Description": "x", "Quantity": 999999999999, "UnitAmount": 999999999999}] * 20},
     ["The invoice amounts are too large"]),
])
def test_invoice_validation_errors(partner: Partner, tokens: Tokens, invoice: dict[str, Any],
                                   expected: list[str]) -> None:
    response = put(partner, tokens, "Invoices", headers=JSON, json={"Invoices": [invoice]})
    assert validation_errors(response) == [expected]
    assert len(get_json(partner, tokens, "Invoices")["Invoices"]) == 2


def test_numbers_keep_at_most_ten_decimal_places(partner: Partner, tokens: Tokens) -> None:
    """0e-999999 is 9 bytes of JSON; kept as given, its XML was a million zeros."""
    body = (b'{"Type": "ACCPAY", "Contact": {"ContactID": "%s"}, "CurrencyRate": 0e-999999,'
            b' "LineItems": [{"Description": "x", "UnitAmount": 1, "DiscountRate": 1.00000000004999}]}'
            % ALPHA.encode())
    response = put(partner, tokens, "Invoices", headers={"Content-Type": "application/json"}, data=body)
    assert response.status_code == 200, response.text
    assert len(response.content) < 5000
    invoice = next(ET.fromstring(response.content).iter("Invoice"))
    assert invoice.findtext("CurrencyRate") == "0.0000000000"
    assert invoice.findtext("LineItems/LineItem/DiscountRate") == "1.0000000000"


def test_invoice_numbers_are_at_most_255_characters(partner: Partner, tokens: Tokens) -> None:
    """An ACCREC number INV-<5000 digits> was a 500: int() refuses over 4300 digits."""
    def invoice(**fields: str) -> dict[str, Any]:
        return {"Type": "ACCREC", "Contact": {"ContactID": ALPHA},
                "LineItems": [{"Description": "x", "UnitAmount": 1}], **fields}

    too_long = ["The invoice number must not be longer than 255 characters."]
    for body in (invoice(InvoiceNumber="INV-" + "9" * 5000), invoice(Type="ACCPAY", InvoiceNumber="B" * 256)):
        assert validation_errors(put(partner, tokens, "Invoices", headers=JSON, json=body)) == [too_long]
    response = put(partner, tokens, "Invoices", headers=JSON, json=invoice(InvoiceNumber="INV-" + "9" * 251))
    assert response.status_code == 200, response.text
    # the next number follows the highest one, however long
    response = put(partner, tokens, "Invoices", headers=JSON, json=invoice())
    assert response.json()["Invoices"][0]["InvoiceNumber"] == "INV-1" + "0" * 251


def test_invoice_validation_error_in_xml_names_the_invoice(partner: Partner, tokens: Tokens) -> None:
    response = put(partner, tokens, "Invoices", headers=XML_BODY,
                   data="<Invoice><Type>ACCREC</Type><Status>PAID</Status></Invoice>")
    root = ET.fromstring(response.content)
    assert response.status_code == 400
    element = root.find("Elements/DataContractBase")
    assert element is not None and element.get(XSI) == "Invoice"
    assert [m.text for m in element.iter("Message")] == [
        "Invoice not of valid status for creation",
        "A Contact must be specified for this type of transaction",
        "One or more line items must be specified",
    ]


def test_invoice_status_workflow(partner: Partner, tokens: Tokens) -> None:
    created = put(partner, tokens, "Invoices", headers=JSON, json={
        "Type": "ACCREC", "Contact": {"Name": "Gamma Co"},
        "LineItems": [{"Description": "x", "UnitAmount": 10}]})
    invoice_id = created.json()["Invoices"][0]["InvoiceID"]
    response = put(partner, tokens, f"Invoices/{invoice_id}", method="POST", headers=JSON,
                   json={"Status": "AUTHORISED", "Reference": "approved"})
    assert response.status_code == 200, response.text
    [invoice] = response.json()["Invoices"]
    assert (invoice["Status"], invoice["Reference"], invoice["Total"]) == ("AUTHORISED", "approved", 11.5)
    back = put(partner, tokens, "Invoices", method="POST", headers=JSON,
               json={"InvoiceID": invoice_id, "Status": "DRAFT"})
    assert validation_errors(back) == [["An invoice with status AUTHORISED cannot be given status DRAFT"]]
    paid = put(partner, tokens, "Invoices", method="POST", headers=JSON,
               json={"InvoiceID": "aaaaaaaa-0000-4000-8000-000000000002", "Reference": "edit"})
    assert validation_errors(paid) == [["Invoice not of valid status for modification"]]
    lines = put(partner, tokens, f"Invoices/{invoice_id}", method="POST", headers=JSON,
                json={"LineItems": [{"Description": "y", "Quantity": 2, "UnitAmount": 10}]})
    assert lines.json()["Invoices"][0]["Total"] == 23.0
    voided = put(partner, tokens, f"Invoices/{invoice_id}", method="POST", headers=JSON,
                 json={"Status": "VOIDED"})
    assert voided.json()["Invoices"][0]["Status"] == "VOIDED"


# -- bodies that are not JSON or XML ------------------------------------------------------------

UTF16_DTD = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b"><!ENTITY b "&a;&a;&a;">]>'
             "<Contact><Name>&b;</Name></Contact>").encode("utf-16")


@pytest.mark.parametrize(("content_type", "body", "message"), [
    ("application/json", b'{"Name": ', "Invalid JSON data"),
    ("application/json", b'"just a string"', "an object or a list of objects"),
    ("application/json", b"[" * 100000, "Invalid JSON data"),
    ("application/json", b"\xff\xfe", "not UTF-8"),
    ("application/xml", b"<Contact><Name>x</Contact>", "not well-formed"),
    ("application/xml", b"<Invoice><Type>ACCREC</Type></Invoice>", "must be <Contacts> or <Contact>"),
    ("application/xml", b'<!DOCTYPE x [<!ENTITY a "b">]><Contact><Name>&a;</Name></Contact>', "DTD"),
    # a byte search for "<!DOCTYPE" missed UTF-16, and the entities were expanded
    ("application/xml", UTF16_DTD, "DTD"),
    # was a 500 (LookupError)
    ("application/xml", b'<?xml version="1.0" encoding="no-such-codec"?><Contact />', "unknown encoding"),
    ("text/xml", b"", "The request body is empty"),
    ("text/plain", b"Name=Foo", "neither XML nor JSON"),
    ("application/x-www-form-urlencoded", b"Name=Foo", "'xml' field"),
    ("application/xml", b"<Contacts></Contacts>", "There are no Contacts"),
])
def test_unreadable_bodies_are_post_data_invalid(partner: Partner, tokens: Tokens, content_type: str,
                                                  body: bytes, message: str) -> None:
    response = put(partner, tokens, "Contacts", headers={**JSON, "Content-Type": content_type}, data=body)
    assert message in post_data_invalid(response)


def test_doctype_as_text_is_only_text(partner: Partner, tokens: Tokens) -> None:
    response = put(partner, tokens, "Contacts", headers={**XML_BODY, **JSON},
                   data=b"<Contact><Name><![CDATA[The <!DOCTYPE> Co]]></Name></Contact>")
    assert response.status_code == 200, response.text
    assert names(response.json()) == ["The <!DOCTYPE> Co"]


def test_elements_that_are_not_objects(partner: Partner, tokens: Tokens) -> None:
    response = put(partner, tokens, "Contacts", headers=JSON, json={"Contacts": [1, {"Name": "ok"}]})
    assert validation_errors(response) == [["Each element must be a Contact object"]]
    response = put(partner, tokens, "Contacts/" + ALPHA, method="POST", headers=JSON, json=[{}, {}])
    assert "takes one Contact" in post_data_invalid(response)


# -- loading data through the control API ----------------------------------------------------------

def test_load_data_over_http(xero: MockXero, partner: Partner, control: Control) -> None:
    au = xero.organisations()[1]
    response = control.call("POST", f"/organisations/{au['short_code']}/data", json={
        "Contacts": [{"Name": "Loaded Pty", "ContactStatus": "ACTIVE",
                      "UpdatedDateUTC": "2026-01-01T00:00:00Z"}],
        "Invoices": [{"Type": "ACCREC", "InvoiceNumber": "L-1", "Contact": {"Name": "Loaded Pty"},
                      "Status": "PAID", "Date": "2026-01-02",
                      "LineItems": [{"Description": "x", "UnitAmount": 10}]}],
    })
    assert response.status_code == 201, response.text
    loaded = response.json()
    assert [c["Name"] for c in loaded["Contacts"]] == ["Loaded Pty"]
    [invoice] = loaded["Invoices"]
    assert (invoice["Status"], invoice["Total"], invoice["AmountDue"]) == ("PAID", 11.0, 0.0)  # AU GST 10%
    tokens = partner.connect(org=au["short_code"])
    assert "Loaded Pty" in names(get_json(partner, tokens, "Contacts"))
    [fetched] = get_json(partner, tokens, "Invoices/L-1")["Invoices"]
    assert fetched["UpdatedDateUTC"].startswith("/Date(")
    data = control.call("GET", f"/organisations/{au['organisation_id']}/data").json()
    assert "Loaded Pty" in [c["Name"] for c in data["Contacts"]]
    assert "L-1" in [i["InvoiceNumber"] for i in data["Invoices"]]


def test_load_data_errors_load_nothing(xero: MockXero, control: Control) -> None:
    before = xero.data()
    response = control.call("POST", "/organisations/Demo Company (NZ)/data", json={
        "Contacts": [{"Name": "Good"}, {"EmailAddress": "no name"}],
        "Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": str(uuid.uuid4())}}]})
    assert response.status_code == 400
    message = response.json()["error"]
    assert "Contacts[1]: The contact name must be specified." in message
    assert "Invoices[0]: The contact with ContactID" in message
    assert xero.data() == before
    assert control.call("POST", "/organisations/nowhere/data", json={}).status_code == 400
    assert control.call("POST", f"/organisations/{xero.organisations()[0]['short_code']}/data",
                        json={"Contacts": "no"}).status_code == 400


def test_reset_restores_the_seeded_data(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    assert names(get_json(partner, tokens, "Contacts")) == ["Alpha Ltd", "beta Traders", "Gamma Co"]
    xero.reset()
    tokens = partner.connect()
    assert {"ABC Furniture", "PowerDirect"} <= set(names(get_json(partner, tokens, "Contacts")))
    assert len(xero.data()["Invoices"]) == 5


def test_new_organisations_are_seeded_or_empty(xero: MockXero, partner: Partner) -> None:
    seeded = xero.add_organisation("Seeded Ltd", country_code="AU", base_currency="AUD")
    empty = xero.add_organisation("Empty Ltd", seed_data=False)
    assert len(xero.data(seeded["organisation_id"])["Invoices"]) == 5
    assert seeded["counts"] == {"Contacts": 6, "Invoices": 5}
    assert empty["counts"] == {"Contacts": 0, "Invoices": 0}
    tokens = partner.connect(org=empty["short_code"])
    assert get_json(partner, tokens, "Contacts")["Contacts"] == []
    root = get_xml(partner, tokens, "Invoices")
    assert root.find("Invoices") is not None and len(list(root.iter("Invoice"))) == 0
    [org] = get_json(partner, tokens, "Organisation")["Organisations"]
    assert (org["Name"], org["IsDemoCompany"]) == ("Empty Ltd", False)


def test_a_new_organisation_is_never_seen_without_its_data(xero: MockXero) -> None:
    """An organisation and its seeded data enter the store in one step:
    a reader racing the addition sees it with all its data or not at all."""
    seen: list[dict[str, int]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.extend(org["counts"] for org in xero.organisations() if org["name"].startswith("Race "))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            xero.add_organisation(f"Race {i} Ltd")
    finally:
        stop.set()
        reader.join(10)
    assert seen, "the reader never saw the new organisations"
    assert all(counts == {"Contacts": 6, "Invoices": 5} for counts in seen)


def test_a_save_never_changes_what_a_reader_holds(xero: MockXero) -> None:
    """Collections are published copy-on-write: a snapshot taken before a
    save is the same after it, while the store shows the new record."""
    org = xero.store.organisation(None)
    before = xero.store.records(org.organisation_id, api_data.CONTACTS)
    names = [r["Name"] for r in before.values()]
    xero.load_data(contacts=[{"Name": "Copy On Write Ltd"}])
    assert [r["Name"] for r in before.values()] == names
    after = xero.store.records(org.organisation_id, api_data.CONTACTS)
    assert "Copy On Write Ltd" in [r["Name"] for r in after.values()]
    with pytest.raises(TypeError):
        before["x"] = {}  # type: ignore[index]
