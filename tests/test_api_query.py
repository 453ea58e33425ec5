"""``where``, ``order``, ``page``, If-Modified-Since and the per-resource
filters, over HTTPS; unsupported queries are Xero's 400 QueryParseException
in JSON or XML, never a 500."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from mockxero import MockXero, api_data
from mockxero.xero_query import CACHED_TEXT, QueryError, compile_order, compile_where

from .api_support import (
    JSON,
    JSON_TYPE,
    fixed_contacts,
    fixed_invoices,
    get_json,
    get_xml,
    names,
    numbers,
)
from .helpers import Partner, Tokens


@pytest.fixture
def tokens(xero: MockXero, partner: Partner) -> Tokens:
    xero.load_data(contacts=fixed_contacts(), invoices=fixed_invoices(), replace=True)
    return partner.connect()


def contacts(partner: Partner, tokens: Tokens, **params: str) -> list[str]:
    return names(get_json(partner, tokens, "Contacts", params=params))


def invoices(partner: Partner, tokens: Tokens, **params: str) -> list[str]:
    return numbers(get_json(partner, tokens, "Invoices", params=params))


# -- where ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "expected"), [
    ('Name=="Alpha Ltd"', ["Alpha Ltd"]),
    ('name == "ALPHA LTD"', ["Alpha Ltd"]),
    ('Name="Gamma Co"', ["Gamma Co"]),
    ('ContactID==Guid("22222222-2222-4222-8222-222222222222")', ["beta Traders"]),
    ('ContactID=Guid("22222222222242228222222222222222")', ["beta Traders"]),
    ('ContactID=="22222222-2222-4222-8222-222222222222"', ["beta Traders"]),
    ('Name.StartsWith("Gam")', ["Gamma Co"]),
    ('Name.Contains("TRADERS")', ["beta Traders"]),
    ('Name.ToLower()=="gamma co"', ["Gamma Co"]),
    ('Name!="Alpha Ltd" && Name!="Gamma Co"', ["beta Traders"]),
    ('Name=="Alpha Ltd" || Name=="Gamma Co"', ["Alpha Ltd", "Gamma Co"]),
    ('Name=="Alpha Ltd" OR Name=="Gamma Co"', ["Alpha Ltd", "Gamma Co"]),
    ('(Name=="Alpha Ltd" || Name=="Gamma Co") && EmailAddress!=null', ["Alpha Ltd"]),
    ('EmailAddress==null', ["beta Traders", "Gamma Co"]),
    ("IsCustomer==true", ["Alpha Ltd"]),
    ("IsSupplier", ["beta Traders"]),
    ('!IsSupplier && ContactStatus=="ACTIVE"', ["Alpha Ltd", "Gamma Co"]),
    ("UpdatedDateUTC>=DateTime(2026,1,20,8,0,0)", ["beta Traders", "Gamma Co"]),
    ('Name=="Nobody"', []),
])
def test_where_on_contacts(partner: Partner, tokens: Tokens, where: str, expected: list[str]) -> None:
    assert contacts(partner, tokens, where=where) == expected


@pytest.mark.parametrize(("where", "expected"), [
    ('Type=="ACCREC"', ["INV-0101"]),
    ('Type=="ACCPAY"', ["B-7"]),
    ('Status=="AUTHORISED"', ["INV-0101"]),
    ('Status=="PAID" AND Type=="ACCPAY"', ["B-7"]),
    ('Status=="PAID" && Type=="ACCREC"', []),
    ('Contact.ContactID==Guid("11111111-1111-4111-8111-111111111111")', ["INV-0101"]),
    ('Contact.Name=="BETA TRADERS"', ["B-7"]),
    ("Total>200", ["B-7"]),
    ("Total>=115 && Total<=115.00", ["INV-0101"]),
    ("AmountDue > 0", ["INV-0101"]),
    ("Date>=DateTime(2026, 01, 20)", ["INV-0101"]),
    ("DueDate<DateTime(2026,2,20)", ["B-7"]),
    ('InvoiceNumber.EndsWith("101")', ["INV-0101"]),
    ('InvoiceID==Guid("aaaaaaaa-0000-4000-8000-000000000002")', ["B-7"]),
])
def test_where_on_invoices(partner: Partner, tokens: Tokens, where: str, expected: list[str]) -> None:
    assert invoices(partner, tokens, where=where) == expected


def test_where_in_xml(partner: Partner, tokens: Tokens) -> None:
    root = get_xml(partner, tokens, "Invoices", params={"where": 'Type=="ACCPAY"'})
    assert [i.findtext("InvoiceNumber") for i in root.iter("Invoice")] == ["B-7"]


def test_query_parameter_names_are_case_insensitive(partner: Partner, tokens: Tokens) -> None:
    assert contacts(partner, tokens, WHERE='Name=="Gamma Co"') == ["Gamma Co"]
    assert contacts(partner, tokens, Order="Name DESC") == ["Gamma Co", "beta Traders", "Alpha Ltd"]


BAD_WHERE = [
    ('Foo=="x"', "No property or field 'Foo' exists in type 'Contact'"),
    ('Contact.Foo=="x"', "No property or field 'Contact' exists in type 'Contact'"),
    ("Name==", "Expression expected"),
    ('Name=="unterminated', "Unterminated string literal"),
    ("Name=='single'", "double quotes"),
    ("Name>5", "Operator '>' incompatible with operand types 'String' and 'Decimal'"),
    ('IsCustomer=="yes"', "incompatible with operand types 'Boolean' and 'String'"),
    ("IsCustomer>true", "incompatible"),
    ("Name", "Expression of type 'Boolean' expected"),
    ('Name=="a" &&', "Expression expected"),
    ('Name.Foo("x")', "No applicable method 'Foo'"),
    ('ContactID==Guid("nope")', "Guid should contain 32 digits"),
    ("UpdatedDateUTC>DateTime(2026,13,1)", "Invalid DateTime"),
    ('Addresses.Any(a => a.City=="Wellington")', "No applicable method 'Any'"),
    ('Name=="x")', "unexpected ')'"),
    ('Name=="a" # 1', "unexpected character '#'"),
    ('Name=="a" Name=="b"', "Syntax error: unexpected 'Name'"),
    ('Name "b"', "operator expected"),
    ("(" * 40 + 'Name=="a"' + ")" * 40, "nested more than"),
    # were 500s: a RecursionError when the predicate ran, an OverflowError, int()'s digit limit
    ("Name" + ".ToLower()" * 2000 + '=="x"', "nested more than"),
    ("UpdatedDateUTC>DateTime(99999999999999999999,1,1)", "Invalid DateTime"),
    ("UpdatedDateUTC>DateTime(" + "9" * 5000 + ",1,1)", "Invalid DateTime"),
]


@pytest.mark.parametrize(("where", "message"), BAD_WHERE)
def test_unsupported_where_is_a_query_parse_exception(partner: Partner, tokens: Tokens, where: str,
                                                       message: str) -> None:
    response = partner.api(tokens, "Contacts", params={"where": where}, headers=JSON)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == JSON_TYPE
    body = response.json()
    assert (body["ErrorNumber"], body["Type"]) == (16, "QueryParseException")
    assert message in body["Message"]


def test_unsupported_where_in_xml(partner: Partner, tokens: Tokens) -> None:
    response = partner.api(tokens, "Invoices", params={"where": 'Nope=="x"'})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    root = ET.fromstring(response.content)
    assert root.tag == "ApiException"
    assert (root.findtext("ErrorNumber"), root.findtext("Type")) == ("16", "QueryParseException")
    assert "No property or field 'Nope' exists in type 'Invoice'" in (root.findtext("Message") or "")


def test_method_chains_within_the_nesting_limit_still_work() -> None:
    predicate = compile_where("Name" + ".Trim()" * 20 + '.ToLower()=="x"', api_data.CONTACT_SCHEMA)
    assert predicate({"Name": " X "}) is True
    with pytest.raises(QueryError, match="nested more than"):
        compile_where("(" * 30 + "Name" + ".Trim()" * 5 + '=="x"' + ")" * 30, api_data.CONTACT_SCHEMA)


def test_messages_quoting_control_characters_are_well_formed_xml(partner: Partner, tokens: Tokens) -> None:
    for params in ({"where": "Name==\x01"}, {"page": "\x01"}):
        response = partner.api(tokens, "Contacts", params=params)
        assert response.status_code == 400
        root = ET.fromstring(response.content)  # the \x01 quoted in the message made it not well-formed
        assert root.findtext("Type") == "QueryParseException"


def test_only_short_queries_keep_their_compiled_form() -> None:
    """Both caches held their last 256 texts whatever their length (a
    request line has no limit): 256 megabyte-long where strings, held twice."""
    short, long = 'Name=="x"', 'Name=="' + "x" * CACHED_TEXT + '"'
    assert compile_where(short, api_data.CONTACT_SCHEMA) is compile_where(short, api_data.CONTACT_SCHEMA)
    assert compile_where(long, api_data.CONTACT_SCHEMA) is not compile_where(long, api_data.CONTACT_SCHEMA)
    assert compile_where(long, api_data.CONTACT_SCHEMA)({"Name": "X" * CACHED_TEXT}) is True
    order = "Name, " * (CACHED_TEXT // 6 + 1)
    assert compile_order(order, api_data.CONTACT_SCHEMA) is not compile_order(order, api_data.CONTACT_SCHEMA)
    assert compile_order("Name", api_data.CONTACT_SCHEMA) is compile_order("Name", api_data.CONTACT_SCHEMA)


def test_random_where_strings_never_break_the_parser() -> None:
    """Whatever is typed: a predicate that answers a bool, or QueryError."""
    pieces = ['Name', 'Total', 'Contact', '.', 'Name', 'ContactID', '==', '!=', '>', '<=', '=', '"x"',
              '"', '(', ')', '&&', '||', '!', 'true', 'null', 'Guid("1")', 'DateTime(2026,1,1)',
              '5', '-', '1.5', ',', 'Contains("a")', 'ToLower()', 'and', 'or', 'Status', '#', "'"]
    records: list[dict[str, Any]] = [{}, {"Name": "x", "Total": 5, "Contact": {"Name": "y"}}]
    rng = random.Random(4)
    for _ in range(3000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 9)))
        try:
            predicate = compile_where(text, api_data.INVOICE_SCHEMA)
        except QueryError:
            continue
        for record in records:
            assert predicate(record) in (True, False), text


# -- order ----------------------------------------------------------------------------------

def test_order(partner: Partner, tokens: Tokens) -> None:
    assert contacts(partner, tokens) == ["Alpha Ltd", "beta Traders", "Gamma Co"]  # as stored
    assert contacts(partner, tokens, order="Name DESC") == ["Gamma Co", "beta Traders", "Alpha Ltd"]
    assert contacts(partner, tokens, order="name") == ["Alpha Ltd", "beta Traders", "Gamma Co"]
    assert contacts(partner, tokens, order="UpdatedDateUTC DESC") == ["Gamma Co", "beta Traders", "Alpha Ltd"]
    assert invoices(partner, tokens, order="Total DESC") == ["B-7", "INV-0101"]
    assert invoices(partner, tokens, order="Contact.Name ASC") == ["INV-0101", "B-7"]
    assert invoices(partner, tokens, order="Type, Date DESC") == ["B-7", "INV-0101"]
    assert invoices(partner, tokens, order="Type DESC") == ["INV-0101", "B-7"]
    assert contacts(partner, tokens, where="Name.Contains(\"a\")", order="Name DESC") == \
        ["Gamma Co", "beta Traders", "Alpha Ltd"]


@pytest.mark.parametrize(("order", "message"), [
    ("Foo", "No property or field 'Foo' exists in type 'Contact'"),
    ("Name DOWN", "Syntax error in order"),
    ("Addresses", "not a single value"),
    ("Name; drop", "Syntax error in order"),
])
def test_unsupported_order(partner: Partner, tokens: Tokens, order: str, message: str) -> None:
    response = partner.api(tokens, "Contacts", params={"order": order}, headers=JSON)
    assert response.status_code == 400
    assert response.json()["Type"] == "QueryParseException"
    assert message in response.json()["Message"]


def test_order_units() -> None:
    sort = compile_order("Reference DESC, Total", api_data.INVOICE_SCHEMA)
    rows = [{"Reference": "b", "Total": 2}, {"Reference": "B", "Total": 1}, {"Reference": None, "Total": 0},
            {"Reference": "a"}]
    assert sort(rows) == [rows[1], rows[0], rows[3], rows[2]]


# -- paging ---------------------------------------------------------------------------------

def test_paging(xero: MockXero, partner: Partner) -> None:
    xero.load_data(contacts=[{"Name": f"Contact {n:03d}"} for n in range(1, 251)], replace=True)
    tokens = partner.connect()
    assert len(contacts(partner, tokens)) == 250  # no page: everything
    page1 = contacts(partner, tokens, page="1", order="Name")
    assert (len(page1), page1[0], page1[-1]) == (100, "Contact 001", "Contact 100")
    page3 = contacts(partner, tokens, page="3", order="Name")
    assert (len(page3), page3[0], page3[-1]) == (50, "Contact 201", "Contact 250")
    assert contacts(partner, tokens, page="4") == []
    assert contacts(partner, tokens, page="2", order="Name DESC")[0] == "Contact 150"
    assert contacts(partner, tokens, page="0", order="Name")[0] == "Contact 001"
    assert contacts(partner, tokens, page="", order="Name") == page1
    assert contacts(partner, tokens, page="2", pageSize="30", order="Name")[0] == "Contact 031"
    assert len(contacts(partner, tokens, page="1", where='Name.EndsWith("5")')) == 25
    root = get_xml(partner, tokens, "Contacts", params={"page": "3"})
    assert len(list(root.iter("Contact"))) == 50


@pytest.mark.parametrize("params", [{"page": "abc"}, {"page": "1.5"}, {"page": "1", "pageSize": "5000"},
                                    {"page": "1", "pageSize": "x"},
                                    # were 500s (int() refuses them) or slipped past the 1000 limit
                                    {"page": "--1"}, {"page": "²"}, {"page": "1", "pageSize": "²"},
                                    {"page": "1", "pageSize": "00010000"}])
def test_bad_paging(partner: Partner, tokens: Tokens, params: dict[str, str]) -> None:
    response = partner.api(tokens, "Invoices", params=params, headers=JSON)
    assert response.status_code == 400
    assert response.json()["Type"] == "QueryParseException"


# -- If-Modified-Since ------------------------------------------------------------------------

@pytest.mark.parametrize(("since", "expected"), [
    ("Tue, 20 Jan 2026 08:00:00 GMT", ["beta Traders", "Gamma Co"]),  # .250 s after
    ("2026-01-20T08:00:00.250", ["Gamma Co"]),  # strictly after
    ('"2026-01-29T00:00:00"', ["Gamma Co"]),  # pyxero quotes a string
    ("2026-01-20T09:00:00+01:00", ["beta Traders", "Gamma Co"]),
    ("2026-01-05", ["Alpha Ltd", "beta Traders", "Gamma Co"]),
    ("2026-01-31T00:00:00", []),
])
def test_if_modified_since(partner: Partner, tokens: Tokens, since: str, expected: list[str]) -> None:
    data = get_json(partner, tokens, "Contacts", headers={"If-Modified-Since": since})
    assert names(data) == expected


def test_if_modified_since_sees_new_records_and_combines(xero: MockXero, partner: Partner,
                                                        tokens: Tokens) -> None:
    xero.move_clock(freeze=True)
    xero.move_clock(set=1800000000)  # 2027-01-15T08:00:00Z
    tokens = partner.connect()
    response = partner.api(tokens, "Contacts", method="PUT", json={"Name": "Delta"}, headers=JSON)
    assert response.status_code == 200, response.text
    since = {"If-Modified-Since": "Fri, 15 Jan 2027 07:59:59 GMT"}
    assert names(get_json(partner, tokens, "Contacts", headers=since)) == ["Delta"]
    assert invoices(partner, tokens) == ["INV-0101", "B-7"]
    data = get_json(partner, tokens, "Invoices",
                    headers={"If-Modified-Since": "2026-01-20T00:00:00"}, params={"where": 'Type=="ACCREC"'})
    assert numbers(data) == ["INV-0101"]
    root = get_xml(partner, tokens, "Invoices", headers={"If-Modified-Since": "2026-01-20T00:00:00"})
    assert [i.findtext("InvoiceNumber") for i in root.iter("Invoice")] == ["INV-0101"]


def test_bad_if_modified_since(partner: Partner, tokens: Tokens) -> None:
    response = partner.api(tokens, "Contacts", headers={**JSON, "If-Modified-Since": "last tuesday"})
    assert response.status_code == 400
    assert "If-Modified-Since" in response.json()["Message"]


# -- per-resource filters ------------------------------------------------------------------------

def test_contact_filters(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    xero.load_data(contacts=[{"Name": "Old Co", "ContactStatus": "ARCHIVED"}])
    assert "Old Co" not in contacts(partner, tokens)
    assert "Old Co" in contacts(partner, tokens, includeArchived="true")
    ids = "11111111111141118111111111111111,33333333-3333-4333-8333-333333333333"
    assert contacts(partner, tokens, IDs=ids) == ["Alpha Ltd", "Gamma Co"]
    assert contacts(partner, tokens, searchTerm="alpha.co") == ["Alpha Ltd"]
    assert contacts(partner, tokens, searchTerm="TRADERS") == ["beta Traders"]


def test_invoice_filters(partner: Partner, tokens: Tokens) -> None:
    assert invoices(partner, tokens, Statuses="PAID,DRAFT") == ["B-7"]
    assert invoices(partner, tokens, InvoiceNumbers="inv-0101,nothing") == ["INV-0101"]
    assert invoices(partner, tokens, ContactIDs="11111111-1111-4111-8111-111111111111") == ["INV-0101"]
    assert invoices(partner, tokens, IDs="aaaaaaaa000040008000000000000002") == ["B-7"]
