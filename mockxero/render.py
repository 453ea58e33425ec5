"""The API's wire formats, both ways: records → Xero's JSON and XML
(envelopes and ``ApiException`` bodies), request bodies → Python data, and
Xero's date formats.

Records hold Python values; the format decides their text (Xero):

=================  =============================  =========================
value              JSON                           XML
=================  =============================  =========================
aware datetime     ``/Date(1769817600000+0000)/``  ``2026-01-31T00:00:00.78``
date (date only)   ``/Date(1769817600000+0000)/``  ``2026-01-31T00:00:00``
                   plus ``DateString`` for Date
                   and DueDate
Decimal            number                         ``1000.00``
bool               true / false                   ``true`` / ``false``
=================  =============================  =========================

The envelope's ``DateTimeUTC`` is ``/Date(ms)/`` in JSON (no offset, as
Xero) and ``2026-01-31T06:07:35.3732460Z`` in XML.
"""

from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from xml.sax.saxutils import escape

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"
_XMLNS = ('xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
          'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')

#: Xero's collections and their elements, for XML both ways.
PLURALS: dict[str, str] = {
    "Addresses": "Address", "Allocations": "Allocation", "Attachments": "Attachment",
    "ContactGroups": "ContactGroup", "ContactPersons": "ContactPerson", "Contacts": "Contact",
    "CreditNotes": "CreditNote", "ExternalLinks": "ExternalLink", "Invoices": "Invoice",
    "LineItems": "LineItem", "Organisations": "Organisation", "Overpayments": "Overpayment",
    "Payments": "Payment", "Phones": "Phone", "Prepayments": "Prepayment",
    "PurchasesTrackingCategories": "PurchasesTrackingCategory",
    "SalesTrackingCategories": "SalesTrackingCategory", "Tracking": "TrackingCategory",
    "ValidationErrors": "ValidationError", "Warnings": "Warning",
}
#: Date fields that JSON also gives as a plain ``…String`` (Xero).
_DATE_STRING_FIELDS = frozenset({"Date", "DueDate"})
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


#: For the envelopes' ``Id``: a label that must look like Xero's GUIDs, not a
#: secret, so a generator seeded once instead of ``uuid4``'s system call per
#: response.
_ids = random.Random()


def envelope_id() -> str:
    """A random version-4 UUID, as text."""
    bits = _ids.getrandbits(128) & ~(0xF << 76) & ~(0xC << 60) | (4 << 76) | (8 << 60)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class BodyError(ValueError):
    """A request body that is not well-formed JSON or XML."""


# -- dates ------------------------------------------------------------------------

def epoch_ms(value: datetime | date) -> int:
    if type(value) is date:
        return (value.toordinal() - _EPOCH_ORDINAL) * 86_400_000
    assert isinstance(value, datetime)
    return (value - _EPOCH) // _MS


def json_date(value: datetime | date) -> str:
    return f"/Date({epoch_ms(value)}+0000)/"


def xml_date(value: datetime | date) -> str:
    if type(value) is date:
        return f"{value.isoformat()}T00:00:00"
    assert isinstance(value, datetime)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    ms = value.microsecond // 1000
    return f"{text}.{ms:03d}".rstrip("0") if ms else text


_WCF_DATE = re.compile(r"/Date\((-?\d+)(?:[+-]\d{4})?\)/")
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
                  r"\s*(Z|[+-]\d{2}:?\d{2})?", re.I)


def parse_datetime(text: str) -> datetime | None:
    """A moment (aware, UTC) from the forms clients send: Xero's
    ``/Date(ms+0000)/``, ISO 8601 (``2026-01-31``, ``2026-01-31T10:00:00``,
    with fractions, ``Z`` or an offset; no offset = UTC) and HTTP dates
    (``Sat, 31 Jan 2026 10:00:00 GMT``). None if it is none of them."""
    text = text.strip().strip('"')
    m = _WCF_DATE.fullmatch(text)
    try:
        if m:
            return _EPOCH + timedelta(milliseconds=int(m.group(1)))
        m = _ISO.fullmatch(text)
        if m:
            year, month, day, hour, minute, second, fraction, zone = m.groups()
            micro = int((fraction or "0")[:6].ljust(6, "0"))
            tz = timezone.utc
            if zone and zone.upper() != "Z":
                sign = -1 if zone[0] == "-" else 1
                digits = zone[1:].replace(":", "")
                tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
            value = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                             int(second or 0), micro, tzinfo=tz)
            return value.astimezone(timezone.utc)
        if "," in text or "GMT" in text.upper():
            value = parsedate_to_datetime(text)
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.astimezone(timezone.utc)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return None


def parse_date(text: str) -> date | None:
    """A calendar date: the date an ISO value is written with (whatever its
    offset), or the UTC date of ``/Date(ms)/``."""
    text = text.strip().strip('"')
    m = _ISO.fullmatch(text)
    if m:
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            return None
    moment = parse_datetime(text)
    return moment.date() if moment is not None else None


def truncate_ms(value: datetime) -> datetime:
    """Xero keeps milliseconds: what a client reads back must equal what is stored."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


# -- rendered records, reused --------------------------------------------------------

#: (id of a stored record, format) → (the record, its text). The record is
#: held so its id cannot be reused while the entry lives; stored records are
#: replaced, never changed, so the text stays right. Bounded by clearing, at
#: a number of entries or of characters (a record, and the replaced versions
#: the cache still holds, can each be megabytes: an invoice of 10,000 lines).
_FRAGMENTS: dict[tuple[int, str], tuple[Mapping[str, Any], str]] = {}
_FRAGMENT_LIMIT = 5_000
_FRAGMENT_CHARS = 16_000_000
_fragment_chars = 0  # of the texts in _FRAGMENTS (approximate under threads: only a trigger)


def _fragment(record: Mapping[str, Any], kind: str, make: Callable[[Mapping[str, Any]], str]) -> str:
    global _fragment_chars
    key = (id(record), kind)
    hit = _FRAGMENTS.get(key)
    if hit is not None and hit[0] is record:
        return hit[1]
    text = make(record)
    if len(_FRAGMENTS) >= _FRAGMENT_LIMIT or _fragment_chars + len(text) > _FRAGMENT_CHARS:
        _FRAGMENTS.clear()
        _fragment_chars = 0
    _FRAGMENTS[key] = (record, text)
    _fragment_chars += len(text)
    return text


# -- JSON -----------------------------------------------------------------------------

def json_value(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return value
    if kind is dict:
        return json_record(value)
    if kind is list:
        return [json_value(item) for item in value]
    if kind is Decimal:
        return float(value)
    if kind is datetime or kind is date:
        return json_date(value)
    return str(value)


def json_record(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if value is None:
            continue
        if key in _DATE_STRING_FIELDS and type(value) is date:
            out[key + "String"] = xml_date(value)
        out[key] = json_value(value)
    return out


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # one encoder, not one a call


def _json_text(record: Mapping[str, Any]) -> str:
    return _dumps(json_record(record))


def envelope_json(provider: str, now: float, collection: str, records: Iterable[Mapping[str, Any]],
                  cache: bool = True) -> str:
    """The JSON envelope; ``cache``: the records are stored ones, never
    changed in place, so each one's text can be reused."""
    body = ",".join(_fragment(r, "json", _json_text) if cache else _json_text(r) for r in records)
    # The head by hand (only the provider's name needs encoding): the same
    # text as dumping its dict (tests/test_speed_render.py), without the dict.
    return (f'{{"Id":"{envelope_id()}","Status":"OK","ProviderName":{_dumps(provider)},'
            f'"DateTimeUTC":"/Date({int(now * 1000)})/","{collection}":[{body}]}}')


def exception_json(number: int, kind: str, message: str,
                   elements: Sequence[tuple[str, Mapping[str, Any], Sequence[str]]] = ()) -> str:
    # Messages quote what the client sent (clean_text: a lone surrogate cannot be encoded).
    data: dict[str, Any] = {"ErrorNumber": number, "Type": kind, "Message": clean_text(message)}
    if elements:
        data["Elements"] = [
            {**json_record(fields), "ValidationErrors": [{"Message": clean_text(m)} for m in messages]}
            for _, fields, messages in elements
        ]
    return _dumps(data)


# -- XML ------------------------------------------------------------------------------

_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """Drop the characters XML 1.0 cannot carry, and lone surrogates (which
    JSON's ``\\ud800`` can carry in, but no UTF-8 response can carry out)."""
    return _NOT_XML_CHAR.sub("", text) if _NOT_XML_CHAR.search(text) else text


def xml_scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return escape(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is Decimal:
        return format(value, "f")
    if kind is datetime or kind is date:
        return xml_date(value)
    return escape(str(value))


def _singular(tag: str) -> str:
    if tag in PLURALS:
        return PLURALS[tag]
    if tag.endswith("ies"):
        return tag[:-3] + "y"
    return tag[:-1] if tag.endswith("s") else tag


def _xml(parts: list[str], tag: str, value: Any) -> None:
    if value is None:
        return
    kind = type(value)
    if kind is dict:
        # Xero answers a PUT/POST element's outcome as a ``status`` attribute.
        status = value.get("StatusAttributeString")
        parts.append(f'<{tag} status="{escape(status)}">' if status else f"<{tag}>")
        for key, item in value.items():
            if key != "StatusAttributeString":
                _xml(parts, key, item)
        parts.append(f"</{tag}>")
    elif kind is list:
        if not value:
            parts.append(f"<{tag} />")
            return
        child = _singular(tag)
        parts.append(f"<{tag}>")
        for item in value:
            _xml(parts, child, item)
        parts.append(f"</{tag}>")
    else:
        parts.append(f"<{tag}>{xml_scalar(value)}</{tag}>")


def xml_datetime_utc(now: float) -> str:
    moment = datetime.fromtimestamp(now, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def envelope_xml(provider: str, now: float, collection: str, records: Iterable[Mapping[str, Any]],
                 cache: bool = True) -> str:
    """The XML envelope (``cache`` as for :func:`envelope_json`)."""
    element = _singular(collection)
    kind = "xml:" + element

    def text(record: Mapping[str, Any]) -> str:
        parts: list[str] = []
        _xml(parts, element, record)
        return "".join(parts)

    body = "".join(_fragment(r, kind, text) if cache else text(r) for r in records)
    return (f"<Response {_XMLNS}><Id>{envelope_id()}</Id><Status>OK</Status>"
            f"<ProviderName>{escape(provider)}</ProviderName>"
            f"<DateTimeUTC>{xml_datetime_utc(now)}</DateTimeUTC>"
            + (f"<{collection}>{body}</{collection}>" if body else f"<{collection} />")
            + "</Response>")


def exception_xml(number: int, kind: str, message: str,
                  elements: Sequence[tuple[str, Mapping[str, Any], Sequence[str]]] = ()) -> str:
    parts = [f"<ApiException {_XMLNS}>",
             f"<ErrorNumber>{number}</ErrorNumber><Type>{escape(kind)}</Type>",
             f"<Message>{escape(clean_text(message))}</Message>"]
    if elements:
        parts.append("<Elements>")
        for type_name, fields, messages in elements:
            parts.append(f'<DataContractBase xsi:type="{escape(type_name)}"><ValidationErrors>')
            for text in messages:
                parts.append(f"<ValidationError><Message>{escape(clean_text(text))}</Message></ValidationError>")
            parts.append("</ValidationErrors>")
            for key, value in fields.items():
                _xml(parts, key, value)
            parts.append("</DataContractBase>")
        parts.append("</Elements>")
    parts.append("</ApiException>")
    return "".join(parts)


# -- request bodies -----------------------------------------------------------------

_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_NO_DTD = "The XML body may not contain a DTD or entity declarations"


class _NoDtdBuilder(ET.TreeBuilder):
    """Refuses a document type declaration when expat meets it, before any
    entity it declares is read (so in any encoding: a byte search for
    ``<!DOCTYPE`` misses UTF-16). Entities can only be declared in a DTD."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise BodyError(_NO_DTD)


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8-sig"), parse_float=Decimal)
    except UnicodeDecodeError:
        raise BodyError("The JSON body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise BodyError(f"Invalid JSON data: {exc}") from None


def parse_xml(raw: bytes | str) -> tuple[str, Any]:
    """(root tag, its content as dicts/lists/strings)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        parser = ET.XMLParser(target=_NoDtdBuilder())
        parser.feed(data)
        root = parser.close()
        return _local(root.tag), _from_xml(root)
    except BodyError:
        raise
    except ET.ParseError as exc:
        raise BodyError(f"The XML body is not well-formed: {exc}") from None
    except LookupError as exc:  # <?xml encoding="..."?> names no codec Python has
        raise BodyError(f"The XML body is not well-formed: {exc}") from None
    except (ValueError, RecursionError):
        raise BodyError("The XML body could not be read") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _from_xml(element: ET.Element) -> Any:
    if element.get(_XSI_NIL) == "true":
        return None
    children = list(element)
    tag = _local(element.tag)
    if tag in PLURALS:
        return [_from_xml(child) for child in children]
    if not children:
        return element.text or ""
    tags = {_local(child.tag) for child in children}
    if len(children) > 1 and len(tags) == 1 and _singular(tag) in tags:
        return [_from_xml(child) for child in children]
    return {_local(child.tag): _from_xml(child) for child in children}
