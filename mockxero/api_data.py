"""The API's records: their shapes in Xero's field names, the demo data every
organisation is seeded with, and turning what a client sends (JSON or XML,
already decoded) into records, with Xero's validation messages.

Records are dicts in Xero's field order holding Python values — str, bool,
Decimal, ``date`` for date-only fields (Date, DueDate), aware ``datetime``
for UpdatedDateUTC — and the renderer picks the wire format. A stored record
is never changed in place: a save replaces the dict. The store publishes
each collection copy-on-write, so a save works on a snapshot outside the
store lock and hands back the collections it changed.

Saving is a :class:`Batch`: every element of a PUT/POST is checked against
the organisation's data plus the batch's own earlier elements, and nothing
is stored unless the whole batch is accepted (``summarizeErrors=false``
stores the good elements and reports the others, as Xero did).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from . import render
from .store import Collection, Organisation, Record
from .xero_query import Schema

#: What a save hands back for the store to publish: collection → its new records.
Changed = dict[str, "OrderedDict[str, Record]"]

CONTACTS = "Contacts"
INVOICES = "Invoices"
ORGANISATIONS = "Organisations"

ADDRESS_FIELDS = {
    "AddressType": "string", "AddressLine1": "string", "AddressLine2": "string", "AddressLine3": "string",
    "AddressLine4": "string", "City": "string", "Region": "string", "PostalCode": "string",
    "Country": "string", "AttentionTo": "string",
}
PHONE_FIELDS = {"PhoneType": "string", "PhoneNumber": "string", "PhoneAreaCode": "string",
                "PhoneCountryCode": "string"}
CONTACT_FIELDS = {
    "ContactID": "guid", "ContactNumber": "string", "AccountNumber": "string", "ContactStatus": "string",
    "Name": "string", "FirstName": "string", "LastName": "string", "EmailAddress": "string",
    "SkypeUserName": "string", "BankAccountDetails": "string", "TaxNumber": "string",
    "AccountsReceivableTaxType": "string", "AccountsPayableTaxType": "string", "Addresses": "list",
    "Phones": "list", "UpdatedDateUTC": "datetime", "ContactGroups": "list", "IsSupplier": "bool",
    "IsCustomer": "bool", "DefaultCurrency": "string", "Website": "string", "ContactPersons": "list",
    "HasAttachments": "bool", "HasValidationErrors": "bool",
}
LINE_ITEM_FIELDS = {
    "LineItemID": "guid", "Description": "string", "Quantity": "decimal", "UnitAmount": "decimal",
    "ItemCode": "string", "AccountCode": "string", "TaxType": "string", "TaxAmount": "decimal",
    "LineAmount": "decimal", "DiscountRate": "decimal", "Tracking": "list",
}
INVOICE_FIELDS = {
    "Type": "string", "InvoiceID": "guid", "InvoiceNumber": "string", "Reference": "string",
    "Payments": "list", "CreditNotes": "list", "Prepayments": "list", "Overpayments": "list",
    "AmountDue": "decimal", "AmountPaid": "decimal", "AmountCredited": "decimal",
    "CurrencyRate": "decimal", "IsDiscounted": "bool", "HasAttachments": "bool", "HasErrors": "bool",
    "Contact": "object", "Date": "date", "DueDate": "date", "ExpectedPaymentDate": "date",
    "PlannedPaymentDate": "date", "BrandingThemeID": "guid", "Status": "string",
    "LineAmountTypes": "string", "LineItems": "list", "SubTotal": "decimal", "TotalTax": "decimal",
    "Total": "decimal", "UpdatedDateUTC": "datetime", "CurrencyCode": "string",
    "FullyPaidOnDate": "date", "SentToContact": "bool", "Url": "string",
}
ORGANISATION_FIELDS = {
    "Name": "string", "LegalName": "string", "PaysTax": "bool", "Version": "string",
    "OrganisationType": "string", "BaseCurrency": "string", "CountryCode": "string",
    "IsDemoCompany": "bool", "OrganisationStatus": "string", "FinancialYearEndDay": "int",
    "FinancialYearEndMonth": "int", "SalesTaxBasis": "string", "SalesTaxPeriod": "string",
    "DefaultSalesTax": "string", "DefaultPurchasesTax": "string", "CreatedDateUTC": "datetime",
    "OrganisationEntityType": "string", "Timezone": "string", "ShortCode": "string",
    "OrganisationID": "guid", "Edition": "string", "Class": "string", "Addresses": "list",
    "Phones": "list", "ExternalLinks": "list", "PaymentTerms": "object",
}

CONTACT_SCHEMA = Schema("Contact", CONTACT_FIELDS)
INVOICE_SCHEMA = Schema("Invoice", INVOICE_FIELDS, {"Contact": CONTACT_SCHEMA})
ORGANISATION_SCHEMA = Schema("Organisation", ORGANISATION_FIELDS)
LINE_ITEM_SCHEMA = Schema("LineItem", LINE_ITEM_FIELDS)
SCHEMAS = {CONTACTS: CONTACT_SCHEMA, INVOICES: INVOICE_SCHEMA, ORGANISATIONS: ORGANISATION_SCHEMA}
#: Schemas for the items of nested lists (others keep their text fields as given).
_LIST_ITEMS = {"LineItems": LINE_ITEM_SCHEMA, "Addresses": Schema("Address", ADDRESS_FIELDS),
               "Phones": Schema("Phone", PHONE_FIELDS)}

CONTACT_STATUSES = ("ACTIVE", "ARCHIVED", "GDPRREQUEST")
INVOICE_TYPES = ("ACCREC", "ACCPAY")
INVOICE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED")
CREATE_STATUSES = ("DRAFT", "SUBMITTED", "AUTHORISED")
#: Status → the statuses an update may move it to (Xero's invoice workflow).
STATUS_CHANGES = {
    "DRAFT": ("DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"),
    "SUBMITTED": ("DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"),
    "AUTHORISED": ("AUTHORISED", "VOIDED"),
}
LINE_AMOUNT_TYPES = ("Exclusive", "Inclusive", "NoTax")
#: GST/VAT of the demo organisations' countries.
TAX_RATES = {"NZ": Decimal("0.15"), "AU": Decimal("0.10"), "GB": Decimal("0.20"), "UK": Decimal("0.20"),
             "ZA": Decimal("0.15"), "SG": Decimal("0.09")}
_TIMEZONES = {"NZ": "NEWZEALANDSTANDARDTIME", "AU": "AUSEASTERNSTANDARDTIME",
              "GB": "GMTSTANDARDTIME", "UK": "GMTSTANDARDTIME", "US": "EASTERNSTANDARDTIME"}
_CENT = Decimal("0.01")
_LIMIT = Decimal("1e12")
#: The most decimal places a number keeps (with _LIMIT, within Decimal's 28 digits).
_PLACES = 10
_FINEST = Decimal(f"1e-{_PLACES}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_INVOICE_NUMBER = re.compile(r"INV-(\d+)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

VALIDATION_MESSAGE = "A validation exception occurred"


class DataError(ValueError):
    """Data loaded through the control API that cannot be stored."""


class Invalid(Exception):
    """One element failed validation: what was understood of it, and why."""

    def __init__(self, type_name: str, record: Record, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.type_name = type_name
        self.record = record
        self.messages = messages


# -- values ---------------------------------------------------------------------------

def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _unit(value: Decimal) -> Decimal:
    """Two decimals, or four when the client gave more (Xero's unitdp)."""
    exponent = value.as_tuple().exponent
    places = Decimal("0.0001") if isinstance(exponent, int) and exponent < -2 else _CENT
    return value.quantize(places, rounding=ROUND_HALF_UP)


def _coerce(value: Any, kind: str, field: str, errors: list[str]) -> Any:
    """``value`` as the field's type; None (and a message) when it is not one."""
    if value is None:
        return None
    if kind in ("object", "list"):
        return value  # shaped by the caller
    if isinstance(value, (dict, list)):
        errors.append(f"{field} must be a single value")
        return None
    text = value if isinstance(value, str) else None
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        return render.clean_text(text if text is not None else str(value))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text is not None and text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        errors.append(f"{field} must be true or false")
        return None
    if kind == "guid":
        if text is not None and not text.strip():
            return None
        try:
            return str(uuid.UUID(str(value).strip().strip("{}")))
        except ValueError:
            errors.append(f"{field} '{value}' is not a valid GUID")
            return None
    if kind in ("decimal", "int"):
        try:
            number = Decimal(text.strip() if text is not None else str(value))
        except InvalidOperation:
            number = None
        if isinstance(value, bool) or number is None or not number.is_finite() or abs(number) >= _LIMIT:
            errors.append(f"{field} '{value}' is not a valid number")
            return None
        if kind == "int":
            if number != number.to_integral_value():
                errors.append(f"{field} '{value}' is not a whole number")
                return None
            return int(number)
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -_PLACES:
            # 1e-999999 is 8 characters of JSON but a million digits of XML.
            number = number.quantize(_FINEST, rounding=ROUND_HALF_UP)
        return number
    if kind == "date":
        day = value if type(value) is date else (
            value.date() if isinstance(value, datetime) else render.parse_date(str(value)))
        if day is None:
            errors.append(f"{field} '{value}' is not a valid date")
        return day
    if kind == "datetime":
        moment = value if isinstance(value, datetime) else render.parse_datetime(str(value))
        if moment is None:
            errors.append(f"{field} '{value}' is not a valid date")
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return render.truncate_ms(moment.astimezone(timezone.utc))
    return value


def _text_fields(value: Any) -> dict[str, Any]:
    """A nested object Xero has no schema for here (a ContactGroup, a
    Tracking category): its simple fields, kept as text."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _NAME.fullmatch(key) and not isinstance(item, (dict, list)):
                out[key] = _coerce(item, "string", key, [])
    return out


def fields_of(data: Mapping[str, Any], schema: Schema, errors: list[str]) -> Record:
    """The fields of ``data`` that ``schema`` knows (matched case-insensitively),
    converted to their types; unknown fields are ignored, as Xero did."""
    out: Record = {}
    for key, value in data.items():
        name = schema.resolve(key) if isinstance(key, str) else None
        if name is None:
            continue
        kind = schema.fields[name]
        if kind == "list":
            if value is None or value == "":
                out[name] = []
                continue
            if not isinstance(value, list):
                value = [value]  # one element given without its collection
            item_schema = _LIST_ITEMS.get(name)
            items = [item for item in value if isinstance(item, dict)]
            out[name] = [fields_of(item, item_schema, errors) if item_schema else _text_fields(item)
                         for item in items]
        elif kind == "object":
            if value is None or value == "":
                out[name] = None
                continue
            if not isinstance(value, dict):
                errors.append(f"{name} must be an object")
                continue
            child = schema.children.get(name)
            out[name] = fields_of(value, child, errors) if child else _text_fields(value)
        else:
            converted = _coerce(value, kind, name, errors)
            if converted is not None or value is None:
                out[name] = converted
    return out


def _ordered(record: Record, fields: Mapping[str, str]) -> Record:
    """The record in Xero's field order (fields it lacks are left out)."""
    return {name: record[name] for name in fields if name in record and record[name] is not None}


# -- the organisation record -------------------------------------------------------------

def organisation_record(org: Organisation, created: datetime | None = None) -> Record:
    """The Organisation as the API shows it; stored with the organisation
    when it is added, so a GET only reads."""
    country = org.country_code.upper()
    record: Record = {
        "Name": org.name, "LegalName": org.name, "PaysTax": True,
        "Version": country if country in ("NZ", "AU", "UK", "US") else "GLOBAL",
        "OrganisationType": "COMPANY", "BaseCurrency": org.base_currency, "CountryCode": country,
        "IsDemoCompany": org.name.startswith("Demo Company"), "OrganisationStatus": "ACTIVE",
        "FinancialYearEndDay": 31 if country != "AU" else 30,
        "FinancialYearEndMonth": {"NZ": 3, "AU": 6}.get(country, 12),
        "SalesTaxBasis": "PAYMENTS" if country == "NZ" else "ACCRUALS",
        "SalesTaxPeriod": "TWOMONTHS" if country == "NZ" else "QUARTERLY1",
        "DefaultSalesTax": "Tax Exclusive", "DefaultPurchasesTax": "Tax Inclusive",
        "CreatedDateUTC": created, "OrganisationEntityType": "COMPANY",
        "Timezone": _TIMEZONES.get(country, "UTC"), "ShortCode": org.short_code,
        "OrganisationID": org.organisation_id, "Edition": "BUSINESS",
        "Class": "DEMO" if org.name.startswith("Demo Company") else "PREMIUM",
        "Addresses": [], "Phones": [], "ExternalLinks": [], "PaymentTerms": {},
    }
    return _ordered(record, ORGANISATION_FIELDS)


# -- saving ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    record: Record
    messages: list[str]
    type_name: str


@dataclasses.dataclass(frozen=True)
class _Kind:
    """What saving a contact and saving an invoice share."""

    collection: str
    schema: Schema
    id_field: str
    #: Fields a client's element may not set (the control API and the seed may).
    protected: tuple[str, ...]


_CONTACT = _Kind(CONTACTS, CONTACT_SCHEMA, "ContactID", ("ContactID", "UpdatedDateUTC"))
_INVOICE = _Kind(INVOICES, INVOICE_SCHEMA, "InvoiceID",
                 ("InvoiceID", "UpdatedDateUTC", "AmountPaid", "AmountDue", "AmountCredited",
                  "FullyPaidOnDate", "Payments", "CreditNotes", "Prepayments", "Overpayments",
                  "HasErrors", "IsDiscounted", "HasAttachments"))


class Batch:
    """One PUT/POST (or control-API load) against one organisation's data.

    ``trusted`` (the control API and the seed) may set what a client may not:
    IDs of new records, UpdatedDateUTC, any status, payments. ``stored`` is
    a snapshot of the organisation's collections; the batch never changes
    it, and ``commit`` gives the collections to publish."""

    def __init__(self, org: Organisation, stored: Mapping[str, Collection], now: float,
                 trusted: bool = False, replace: bool = False) -> None:
        self.org = org
        self.now = render.truncate_ms(datetime.fromtimestamp(now, timezone.utc))
        self.trusted = trusted
        self.replace = replace
        empty: Collection = {}
        self.stored: dict[str, Collection] = {
            name: empty if replace else stored.get(name, empty) for name in (CONTACTS, INVOICES)
        }
        self.pending: dict[str, OrderedDict[str, Record]] = {CONTACTS: OrderedDict(), INVOICES: OrderedDict()}
        #: (collection, id, its pending record before, highest INV- number
        #: before) per staged change, to roll back one element.
        self._undo: list[tuple[str, str, Record | None, int]] = []
        #: Built on first use, kept up to date by _put, dropped by rollback:
        #: active contact names and ACCREC invoice numbers (casefolded) → id.
        self._names: dict[str, str] | None = None
        self._numbers: dict[str, str] | None = None
        self._highest = 0

    # reads through the batch
    def get(self, collection: str, record_id: str) -> Record | None:
        found = self.pending[collection].get(record_id)
        return found if found is not None else self.stored[collection].get(record_id)

    def records(self, collection: str) -> Iterable[Record]:
        pending = self.pending[collection]
        for key, record in self.stored[collection].items():
            if key not in pending:
                yield record
        yield from pending.values()

    @staticmethod
    def _name_key(record: Record) -> str | None:
        name = record.get("Name")
        if record.get("ContactStatus", "ACTIVE") != "ACTIVE" or not name:
            return None
        return str(name).strip().casefold()

    @staticmethod
    def _number_key(record: Record) -> str | None:
        number = record.get("InvoiceNumber")
        return str(number).casefold() if record.get("Type") == "ACCREC" and number else None

    def _index(self, collection: str, record: Record, record_id: str, add: bool) -> None:
        if collection == CONTACTS:
            index, key = self._names, self._name_key(record)
        else:
            index, key = self._numbers, self._number_key(record)
            if add and key is not None and (m := _INVOICE_NUMBER.fullmatch(record["InvoiceNumber"])):
                self._highest = max(self._highest, int(m.group(1)))
        if index is None or key is None:
            return
        if add:
            index[key] = record_id
        elif index.get(key) == record_id:
            del index[key]

    def contact_named(self, name: str) -> Record | None:
        if self._names is None:
            self._names = {}
            for record in self.records(CONTACTS):
                self._index(CONTACTS, record, record["ContactID"], True)
        found = self._names.get(name.strip().casefold())
        return self.get(CONTACTS, found) if found else None

    def invoice_numbered(self, number: str) -> tuple[str | None, int]:
        """The ACCREC invoice with this number (its id), and the highest INV- number."""
        if self._numbers is None:
            self._numbers, self._highest = {}, 0
            for record in self.records(INVOICES):
                self._index(INVOICES, record, record["InvoiceID"], True)
        return self._numbers.get(number.casefold()), self._highest

    def _put(self, collection: str, record_id: str, record: Record) -> None:
        old = self.get(collection, record_id)
        self._undo.append((collection, record_id, self.pending[collection].get(record_id), self._highest))
        self.pending[collection][record_id] = record
        if old is not None:
            self._index(collection, old, record_id, False)
        self._index(collection, record, record_id, True)

    def savepoint(self) -> int:
        return len(self._undo)

    def rollback(self, point: int) -> None:
        """Undo the changes staged since ``point``, indexes included, in time
        linear in what is undone (rebuilding the indexes instead made a
        batch of many invalid elements quadratic)."""
        while len(self._undo) > point:
            collection, record_id, before, highest = self._undo.pop()
            self._index(collection, self.pending[collection][record_id], record_id, False)
            if before is None:
                del self.pending[collection][record_id]
            else:
                self.pending[collection][record_id] = before
            visible = self.get(collection, record_id)
            if visible is not None:
                self._index(collection, visible, record_id, True)
            self._highest = highest

    def commit(self) -> Changed:
        """The collections this batch changed, with its records in them."""
        changed: Changed = {}
        for name in (CONTACTS, INVOICES):
            if self.replace:
                changed[name] = OrderedDict(self.pending[name])
            elif self.pending[name]:
                merged = OrderedDict(self.stored[name])
                merged.update(self.pending[name])
                changed[name] = merged
        return changed

    # -- one element ---------------------------------------------------------------
    def save(self, collection: str, data: Any, allow_update: bool, record_id: str | None = None) -> Outcome:
        """Validate and stage one element; the outcome says what was stored or why not."""
        type_name = "Contact" if collection == CONTACTS else "Invoice"
        if not isinstance(data, dict):
            return Outcome({}, [f"Each element must be a {type_name} object"], type_name)
        point = self.savepoint()
        try:
            if collection == CONTACTS:
                record = self.save_contact(data, allow_update, record_id)
            else:
                record = self.save_invoice(data, allow_update, record_id)
        except Invalid as exc:
            self.rollback(point)
            return Outcome(exc.record, exc.messages, exc.type_name)
        return Outcome(record, [], type_name)

    def _given(self, kind: _Kind, data: Mapping[str, Any], allow_update: bool,
               record_id: str | None) -> tuple[Record, str | None, Record | None, list[str]]:
        """What an element sets (less what a client may not), the id it names
        (the path's, else its own), the record stored under that id, and the
        errors so far."""
        errors: list[str] = []
        given = fields_of(data, kind.schema, errors)
        record_id = record_id or given.get(kind.id_field)
        existing = self.get(kind.collection, record_id) if record_id else None
        noun = kind.schema.type_name.lower()
        if record_id and existing is None and not self.trusted:
            errors.append(f"No {noun} with {kind.id_field} {record_id} exists in this organisation")
        elif existing is not None and not allow_update:
            article = "An" if noun[0] in "aeiou" else "A"
            errors.append(f"{article} {noun} with {kind.id_field} {record_id} already exists: "
                          "POST it to update it")
        if not self.trusted:
            for key in kind.protected:
                given.pop(key, None)
        return given, record_id, existing, errors

    def _stage(self, kind: _Kind, record: Record, given: Record) -> Record:
        """Stamp (unless a trusted load gave the time), order and stage a record."""
        if "UpdatedDateUTC" not in given:
            record["UpdatedDateUTC"] = self.now
        record = _ordered(record, kind.schema.fields)
        self._put(kind.collection, record[kind.id_field], record)
        return record

    def save_contact(self, data: Mapping[str, Any], allow_update: bool,
                     record_id: str | None = None) -> Record:
        given, contact_id, existing, errors = self._given(_CONTACT, data, allow_update, record_id)
        record: Record = dict(existing) if existing is not None else {
            "ContactID": contact_id or str(uuid.uuid4()), "ContactStatus": "ACTIVE", "Addresses": [],
            "Phones": [], "ContactGroups": [], "IsSupplier": False, "IsCustomer": False,
            "ContactPersons": [], "HasAttachments": False, "HasValidationErrors": False,
        }
        record.update(given)
        name = record.get("Name")
        if not isinstance(name, str) or not name.strip():
            errors.append("The contact name must be specified.")
        elif len(name) > 255:
            errors.append("The contact name must not be longer than 255 characters.")
        elif record.get("ContactStatus", "ACTIVE") == "ACTIVE":
            same = self.contact_named(name)
            if same is not None and same["ContactID"] != record["ContactID"]:
                errors.append(f"The contact name {name} is already assigned to another contact. "
                              "The contact name must be unique across all active contacts.")
        if record.get("ContactStatus") not in CONTACT_STATUSES:
            errors.append(f"ContactStatus must be one of {', '.join(CONTACT_STATUSES)}")
        email = record.get("EmailAddress")
        if email and not _EMAIL.fullmatch(email):
            errors.append("Email address must be valid.")
        if errors:
            raise Invalid("Contact", _ordered(record, CONTACT_FIELDS), errors)
        record = self._stage(_CONTACT, record, given)
        if existing is not None and existing.get("Name") != record["Name"]:
            self._rename_on_invoices(record)
        return record

    def _rename_on_invoices(self, contact: Record) -> None:
        for invoice in list(self.records(INVOICES)):
            ref = invoice.get("Contact") or {}
            if ref.get("ContactID") == contact["ContactID"]:
                self._put(INVOICES, invoice["InvoiceID"],
                          {**invoice, "Contact": {**ref, "Name": contact["Name"]}})

    def _contact_for(self, given: Any, errors: list[str]) -> Record | None:
        """The contact an invoice names: by ContactID, else by Name (an unknown
        name creates the contact, as Xero did)."""
        if not isinstance(given, dict) or not (given.get("ContactID") or given.get("Name")):
            errors.append("A Contact must be specified for this type of transaction")
            return None
        if given.get("ContactID"):
            found = self.get(CONTACTS, given["ContactID"])
            if found is None:
                errors.append(f"The contact with ContactID {given['ContactID']} could not be found")
            return found
        found = self.contact_named(given["Name"])
        if found is not None:
            return found
        try:
            return self.save_contact({k: v for k, v in given.items() if k != "ContactID"}, False)
        except Invalid as exc:
            errors.extend(exc.messages)
            return None

    def save_invoice(self, data: Mapping[str, Any], allow_update: bool,
                     record_id: str | None = None) -> Record:
        given, invoice_id, existing, errors = self._given(_INVOICE, data, allow_update, record_id)
        record: Record
        if existing is not None:
            record = dict(existing)
            old_status = existing.get("Status", "DRAFT")
            new_status = given.get("Status", old_status)
            if self.trusted and new_status not in INVOICE_STATUSES:
                errors.append(f"Status must be one of {', '.join(INVOICE_STATUSES)}")
            elif not self.trusted and new_status not in STATUS_CHANGES.get(old_status, ()):
                errors.append(
                    "Invoice not of valid status for modification" if old_status not in STATUS_CHANGES
                    else f"An invoice with status {old_status} cannot be given status {new_status}")
        else:
            record = {"Type": None, "InvoiceID": invoice_id or str(uuid.uuid4()), "Payments": [],
                      "CreditNotes": [], "Prepayments": [], "Overpayments": [], "IsDiscounted": False,
                      "HasAttachments": False, "HasErrors": False, "Status": "DRAFT",
                      "LineAmountTypes": "Exclusive", "CurrencyCode": self.org.base_currency,
                      "Date": self.now.date(), "SentToContact": False}
            status = given.get("Status", "DRAFT")
            allowed = INVOICE_STATUSES if self.trusted else CREATE_STATUSES
            if status not in allowed:
                errors.append("Invoice not of valid status for creation")
        record.update({k: v for k, v in given.items() if k != "Contact"})
        if record.get("Type") not in INVOICE_TYPES:
            errors.append("Invoice Type must be ACCREC or ACCPAY" if record.get("Type")
                          else "An invoice must have a Type (ACCREC or ACCPAY)")
        if record.get("LineAmountTypes") not in LINE_AMOUNT_TYPES:
            errors.append(f"LineAmountTypes must be one of {', '.join(LINE_AMOUNT_TYPES)}")
        if existing is None or "Contact" in given:
            contact = self._contact_for(given.get("Contact"), errors)
            if contact is not None:
                record["Contact"] = {"ContactID": contact["ContactID"], "Name": contact["Name"]}
            else:
                record["Contact"] = given.get("Contact")
        if len(record.get("InvoiceNumber") or "") > 255:
            errors.append("The invoice number must not be longer than 255 characters.")
        else:
            self._number(record, existing, errors)
        if existing is None and not record.get("LineItems") and not self.trusted:
            errors.append("One or more line items must be specified")
        if "LineItems" in given or "LineAmountTypes" in given or existing is None:
            self._totals(record, errors)
        due = record.get("DueDate")
        if isinstance(due, date) and isinstance(record.get("Date"), date) and due < record["Date"]:
            errors.append("Due Date must not be before the invoice Date")
        if errors:
            raise Invalid("Invoice", _ordered(record, INVOICE_FIELDS), errors)
        self._payments(record)
        record = self._stage(_INVOICE, record, given)
        self._mark_contact(record)
        return record

    def _number(self, record: Record, existing: Record | None, errors: list[str]) -> None:
        """ACCREC invoice numbers are unique; a new one without a number gets the next INV-."""
        if record.get("Type") != "ACCREC":
            return
        number = record.get("InvoiceNumber")
        holder, highest = self.invoice_numbered(number or "")
        if not number:
            if existing is None:
                record["InvoiceNumber"] = f"INV-{highest + 1:04d}"
            return
        if holder is not None and holder != record["InvoiceID"]:
            errors.append("Invoice # must be unique.")

    def _totals(self, record: Record, errors: list[str]) -> None:
        lines = record.get("LineItems") or []
        amount_types = record.get("LineAmountTypes", "Exclusive")
        rate = TAX_RATES.get(self.org.country_code.upper(), Decimal(0))
        if amount_types == "NoTax":
            rate = Decimal(0)
        default_tax = _default_tax_type(self.org.country_code, record.get("Type"), amount_types)
        if not lines and self.trusted:
            for key in ("SubTotal", "TotalTax", "Total"):
                record[key] = _money(record.get(key) or Decimal(0))
            return
        try:
            self._lines(record, lines, amount_types, rate, default_tax, errors)
            too_large = abs(record["Total"]) >= _LIMIT
        except ArithmeticError:  # decimal.InvalidOperation and friends: beyond 28 digits
            too_large = True
        if too_large:
            errors.append("The invoice amounts are too large")

    def _lines(self, record: Record, lines: list[Record], amount_types: str, rate: Decimal,
               default_tax: str, errors: list[str]) -> None:
        computed: list[Record] = []
        sub_total = total_tax = Decimal(0)
        for number, line in enumerate(lines, 1):
            if not line.get("Description") and not line.get("ItemCode"):
                errors.append("The description field is mandatory for each line item.")
            given_quantity: Decimal | None = line.get("Quantity")
            quantity = Decimal(1) if given_quantity is None else given_quantity
            given_unit: Decimal | None = line.get("UnitAmount")
            given_amount: Decimal | None = line.get("LineAmount")
            discount: Decimal = line.get("DiscountRate") or Decimal(0)
            if given_amount is None:
                unit = given_unit if given_unit is not None else Decimal(0)
                amount = _money(quantity * unit * (1 - discount / 100))
            else:
                amount = _money(given_amount)
                if given_unit is None:
                    unit = given_amount / quantity if quantity else given_amount
                else:
                    unit = given_unit
                    if abs(_money(quantity * unit * (1 - discount / 100)) - amount) > _CENT:
                        errors.append(f"Line {number}: LineAmount {amount} does not equal "
                                      "Quantity x UnitAmount")
            tax_type = line.get("TaxType") or default_tax
            line_rate = Decimal(0) if tax_type in ("NONE", "EXEMPTOUTPUT", "EXEMPTINPUT") else rate
            if amount_types == "Inclusive":
                tax = _money(amount * line_rate / (1 + line_rate))
                sub_total += amount - tax
            else:
                tax = _money(amount * line_rate)
                sub_total += amount
            total_tax += tax
            computed.append(_ordered({
                **line, "LineItemID": line.get("LineItemID") or str(uuid.uuid4()),
                "Quantity": quantity.quantize(Decimal("0.0001")), "UnitAmount": _unit(unit),
                "TaxType": tax_type, "TaxAmount": tax, "LineAmount": amount,
                "Tracking": line.get("Tracking", []),
            }, LINE_ITEM_FIELDS))
        record["LineItems"] = computed
        record["SubTotal"] = _money(sub_total)
        record["TotalTax"] = _money(total_tax)
        record["Total"] = _money(sub_total + total_tax)

    def _payments(self, record: Record) -> None:
        total = record.get("Total") or Decimal(0)
        paid = record.get("AmountPaid")
        if paid is None:
            paid = total if record.get("Status") == "PAID" else Decimal(0)
        record["AmountPaid"] = _money(paid)
        record["AmountCredited"] = _money(record.get("AmountCredited") or Decimal(0))
        record["AmountDue"] = _money(total - record["AmountPaid"] - record["AmountCredited"])
        if record.get("Status") == "PAID" and not record.get("FullyPaidOnDate"):
            record["FullyPaidOnDate"] = record.get("Date") or self.now.date()
        if record.get("Status") != "PAID":
            record.pop("FullyPaidOnDate", None)

    def _mark_contact(self, invoice: Record) -> None:
        """Xero's IsCustomer / IsSupplier follow the contact's invoices."""
        ref = invoice.get("Contact") or {}
        contact = self.get(CONTACTS, ref.get("ContactID", ""))
        flag = "IsCustomer" if invoice.get("Type") == "ACCREC" else "IsSupplier"
        if contact is not None and contact.get(flag) is not True:
            self._put(CONTACTS, contact["ContactID"], {**contact, flag: True})


def _default_tax_type(country: str, invoice_type: Any, amount_types: Any) -> str:
    if amount_types == "NoTax":
        return "NONE"
    suffix = "2" if country.upper() == "NZ" else ""
    return ("OUTPUT" if invoice_type == "ACCREC" else "INPUT") + suffix


def save(org: Organisation, stored: Mapping[str, Collection], collection: str, elements: list[Any],
         now: float, allow_update: bool, atomic: bool,
         record_id: str | None = None) -> tuple[list[Outcome], Changed]:
    """Validate ``elements`` against the snapshot ``stored``; the outcomes,
    and the collections to publish (all, or — unless ``atomic`` — the good
    elements; nothing when an atomic batch failed)."""
    batch = Batch(org, stored, now)
    outcomes = [batch.save(collection, data, allow_update, record_id) for data in elements]
    if atomic and any(o.messages for o in outcomes):
        return outcomes, {}
    return outcomes, batch.commit()


# -- seed and control-API loading ----------------------------------------------------------

def load(org: Organisation, stored: Mapping[str, Collection], now: float, contacts: Iterable[Any] = (),
         invoices: Iterable[Any] = (), replace: bool = False) -> tuple[dict[str, list[Record]], Changed]:
    """Add (or, with ``replace``, replace) an organisation's contacts and
    invoices, in Xero's field names; all or nothing. Records may carry their
    own IDs, UpdatedDateUTC, any status. Invoices refer to contacts by
    ContactID (in the organisation or this load) or by Name. Returns the
    loaded records and the collections to publish."""
    batch = Batch(org, stored, now, trusted=True, replace=replace)
    loaded: dict[str, list[Record]] = {CONTACTS: [], INVOICES: []}
    problems: list[str] = []
    for collection, items in ((CONTACTS, contacts), (INVOICES, invoices)):
        for index, data in enumerate(items):
            outcome = batch.save(collection, data, allow_update=True)
            if outcome.messages:
                problems.append(f"{collection}[{index}]: {'; '.join(outcome.messages)}")
            else:
                loaded[collection].append(outcome.record)
    if problems:
        raise DataError("nothing was loaded: " + " | ".join(problems))
    return loaded, batch.commit()


def dump(stored: Mapping[str, Collection]) -> dict[str, list[Record]]:
    return {name: list(stored.get(name, {}).values()) for name in (CONTACTS, INVOICES)}


def _ago(now: datetime, days: float) -> datetime:
    return render.truncate_ms(now - timedelta(days=days))


def new_organisation_data(org: Organisation, now: float, seed_data: bool = True) -> Changed:
    """A new organisation's collections: its Organisation record and, with
    ``seed_data``, the demo contacts and invoices."""
    if not seed_data:
        return {ORGANISATIONS: OrderedDict({org.organisation_id: organisation_record(org)}),
                CONTACTS: OrderedDict(), INVOICES: OrderedDict()}
    return seed(org, now)


def seed(org: Organisation, now: float) -> Changed:
    """A new organisation's demo contacts and invoices (Xero's demo company
    names), dated relative to ``now``."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    today = moment.date()
    organisation = OrderedDict({org.organisation_id: organisation_record(org, _ago(moment, 400))})
    city = {"AU": ("Sydney", "NSW", "2000"), "NZ": ("Wellington", "", "6011")}.get(
        org.country_code.upper(), ("Wellington", "", "6011"))

    def address(line: str) -> list[dict[str, str]]:
        return [{"AddressType": "POBOX", "AddressLine1": line, "City": city[0], "Region": city[1],
                 "PostalCode": city[2], "Country": ""},
                {"AddressType": "STREET", "City": "", "Region": "", "PostalCode": "", "Country": ""}]

    def phone(number: str) -> list[dict[str, str]]:
        return [{"PhoneType": "DEFAULT", "PhoneNumber": number, "PhoneAreaCode": "04",
                 "PhoneCountryCode": ""},
                {"PhoneType": "MOBILE", "PhoneNumber": "", "PhoneAreaCode": "", "PhoneCountryCode": ""}]

    ids = {name: str(uuid.uuid4()) for name in
           ("ABC Furniture", "Bayside Club", "City Agency", "PowerDirect", "Swanston Security",
            "Hamilton Smith Ltd")}
    contacts = [
        {"ContactID": ids["ABC Furniture"], "ContactStatus": "ACTIVE", "Name": "ABC Furniture",
         "FirstName": "Trish", "LastName": "Rawlings", "EmailAddress": "info@abfl.com",
         "Addresses": address("P O Box 8493"), "Phones": phone("8005001"),
         "UpdatedDateUTC": _ago(moment, 30), "DefaultCurrency": org.base_currency},
        {"ContactID": ids["Bayside Club"], "ContactStatus": "ACTIVE", "Name": "Bayside Club",
         "FirstName": "Bob", "LastName": "Partridge", "EmailAddress": "secretarybob@bayside.co",
         "Addresses": address("P O Box 3354"), "Phones": phone("2024455"),
         "UpdatedDateUTC": _ago(moment, 25), "DefaultCurrency": org.base_currency},
        {"ContactID": ids["City Agency"], "ContactStatus": "ACTIVE", "Name": "City Agency",
         "EmailAddress": "rayong@cityagency.co", "Addresses": address("L4, CA House, 14 Boulevard Quay"),
         "Phones": phone("9173555"), "UpdatedDateUTC": _ago(moment, 20)},
        {"ContactID": ids["PowerDirect"], "ContactStatus": "ACTIVE", "Name": "PowerDirect",
         "AccountNumber": "PD-88412", "EmailAddress": "accounts@powerdirect.co",
         "Addresses": address("P O Box 8900"), "Phones": phone("8001234"),
         "UpdatedDateUTC": _ago(moment, 15)},
        {"ContactID": ids["Swanston Security"], "ContactStatus": "ACTIVE", "Name": "Swanston Security",
         "EmailAddress": "accounts@swanstonsecurity.co", "Addresses": address("P O Box 1021"),
         "Phones": phone("4448000"), "UpdatedDateUTC": _ago(moment, 12)},
        {"ContactID": ids["Hamilton Smith Ltd"], "ContactStatus": "ARCHIVED", "Name": "Hamilton Smith Ltd",
         "EmailAddress": "accounts@hamiltonsmith.co", "UpdatedDateUTC": _ago(moment, 300)},
    ]

    def day(offset: int) -> str:
        return (today + timedelta(days=offset)).isoformat()

    def invoice(kind: str, number: str, contact: str, status: str, issued: int, due: int,
                lines: list[tuple[str, str, str, str]], updated: float, reference: str = "") -> Record:
        return {
            "Type": kind, "InvoiceID": str(uuid.uuid4()), "InvoiceNumber": number, "Reference": reference,
            "Contact": {"ContactID": ids[contact]}, "Date": day(issued), "DueDate": day(due),
            "Status": status, "LineAmountTypes": "Exclusive",
            "LineItems": [{"Description": d, "Quantity": q, "UnitAmount": u, "AccountCode": a}
                          for d, q, u, a in lines],
            "UpdatedDateUTC": _ago(moment, updated),
        }

    invoices = [
        invoice("ACCREC", "INV-0001", "ABC Furniture", "AUTHORISED", -20, 10,
                [("Desk chair, ergonomic", "4", "120.00", "200")], 18, "Order 1011"),
        invoice("ACCREC", "INV-0002", "Bayside Club", "PAID", -45, -15,
                [("Clubhouse event sponsorship", "1", "500.00", "200")], 10, "Sponsorship"),
        invoice("ACCREC", "INV-0003", "City Agency", "DRAFT", -2, 28,
                [("Consulting, hours", "10", "95.00", "200"), ("Travel", "1", "42.50", "200")], 2),
        invoice("ACCPAY", "PD-1042", "PowerDirect", "AUTHORISED", -10, 20,
                [("Electricity, monthly", "1", "186.40", "445")], 8),
        invoice("ACCPAY", "SS-2201", "Swanston Security", "PAID", -35, -5,
                [("Monitoring, monthly", "1", "75.00", "485")], 5),
    ]
    _, changed = load(org, {}, now, contacts, invoices)
    return {ORGANISATIONS: organisation, CONTACTS: OrderedDict(), INVOICES: OrderedDict(), **changed}
