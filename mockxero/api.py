"""``/api.xro/2.0``: the API calls an integration makes after the dance.

Routing (case-insensitive, as Xero's IIS), authentication (SPEC.md §3, §5:
the OAuth checks, the access token, the rate limit), content negotiation
(JSON for ``Accept: application/json``, XML otherwise) and Xero's error
bodies. The records and their validation live in :mod:`mockxero.api_data`,
the wire formats in :mod:`mockxero.render`, ``where``/``order`` in
:mod:`mockxero.xero_query`.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from . import api_data, render
from .context import core, signed_request, this_request
from .problems import (
    RATE_LIMIT_EXCEEDED,
    REVOKED_ADVICE,
    TOKEN_EXPIRED,
    TOKEN_REJECTED,
    OAuthProblem,
)
from .store import RETIRED_REVOKED, Consumer, Organisation
from .xero_query import QueryError, compile_order, compile_where

blueprint = Blueprint("api", __name__)

NOT_FOUND_BODY = "The resource you're looking for cannot be found"
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH"]

#: Resources of Xero's Accounting API 2.0 the mock does not have: 501.
NOT_IMPLEMENTED_RESOURCES = frozenset(name.lower() for name in (
    "Accounts", "Attachments", "BankTransactions", "BankTransfers", "BatchPayments", "BrandingThemes",
    "Budgets", "ContactGroups", "CreditNotes", "Currencies", "Employees", "ExpenseClaims", "Items",
    "InvoiceReminders", "Journals", "LinkedTransactions", "ManualJournals", "Overpayments",
    "PaymentServices", "Payments", "Prepayments", "PurchaseOrders", "Quotes", "Receipts",
    "RepeatingInvoices", "Reports", "Setup", "TaxRates", "TrackingCategories", "Users",
))


def _token_secret(consumer: Consumer, token: str) -> str | None:
    conn = core().store.connection_for_token(token)
    if conn is not None and conn.consumer_key == consumer.consumer_key:
        return conn.access_secret
    return None


def authenticate() -> tuple[Consumer, Organisation]:
    """The OAuth checks, the access token (SPEC.md §5) and the rate limit;
    the consumer and the organisation the call is for."""
    the_mock = core()
    store = the_mock.store
    req = signed_request()
    consumer = the_mock.verifier.verify(req, required=("oauth_token",), token_secret=_token_secret)
    token = req.oauth["oauth_token"]
    if consumer.app_type == "private":
        if token != consumer.consumer_key:
            raise OAuthProblem(TOKEN_REJECTED,
                               "Private applications sign with oauth_token set to the consumer key")
        assert consumer.organisation_id is not None
        org = store.organisation(consumer.organisation_id)
    else:
        conn = store.connection_for_token(token)
        if conn is None or conn.consumer_key != consumer.consumer_key:
            retired = store.retired(token)
            if retired is not None and retired[1] == RETIRED_REVOKED:
                raise OAuthProblem(TOKEN_REJECTED, REVOKED_ADVICE)
            raise OAuthProblem(TOKEN_REJECTED, f"Token {token} does not match an expected ACCESS token")
        if the_mock.now() > min(conn.token_expires_at, conn.authorization_expires_at):
            raise OAuthProblem(TOKEN_EXPIRED, "The access token has expired")
        org = store.organisation(conn.organisation_id)
    limit = the_mock.rate_limit
    if limit is not None:
        window = store.rate_limit_hit(consumer.consumer_key, org.organisation_id,
                                      the_mock.now(), limit[0], limit[1])
        if window is not None:
            raise OAuthProblem(RATE_LIMIT_EXCEEDED, status=503,
                               headers={"X-Rate-Limit-Problem": window})
    return consumer, org


def not_found() -> Response:
    return Response(NOT_FOUND_BODY, status=404, content_type="text/html; charset=utf-8")


def http_error(exc: HTTPException) -> Response:
    """An HTTP-level refusal on the API (a method it has no route for, a
    body too large or unreadable) as Xero's ApiException, not a bare page."""
    if exc.code == 405:
        return _api_error(not_implemented())
    if exc.code == 413:
        return _api_error(ApiError(413, 14, "PostDataInvalidException",
                                   "The request body is larger than the API accepts (10 MB)"))
    return _api_error(ApiError(exc.code or 400, 14, "PostDataInvalidException", exc.description or exc.name))


# -- errors ----------------------------------------------------------------------------

class ApiError(Exception):
    """Xero's ``ApiException``: rendered as JSON or XML per ``Accept``."""

    def __init__(self, status: int, number: int, kind: str, message: str,
                 elements: Sequence[tuple[str, Mapping[str, Any], Sequence[str]]] = (),
                 xml_only: bool = False) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status = status
        self.number = number
        self.kind = kind
        self.message = message
        self.elements = elements
        self.xml_only = xml_only


def not_implemented() -> ApiError:
    # Always XML: pyxero parses a 501 body as XML whatever it asked for, and
    # its fixture of the live API's 501 is XML.
    return ApiError(501, 20, "ApiMethodNotImplementedException", "The Api Method called is not implemented",
                    xml_only=True)


def query_error(message: str) -> ApiError:
    return ApiError(400, 16, "QueryParseException", message)


def post_data_invalid(message: str) -> ApiError:
    return ApiError(400, 14, "PostDataInvalidException", message)


@blueprint.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    if exc.xml_only or not wants_json():
        body = render.exception_xml(exc.number, exc.kind, exc.message, exc.elements)
        return Response(body, status=exc.status, content_type=render.XML_TYPE)
    body = render.exception_json(exc.number, exc.kind, exc.message, exc.elements)
    return Response(body, status=exc.status, content_type=render.JSON_TYPE)


# -- negotiation and answers ------------------------------------------------------------

def wants_json() -> bool:
    """``Accept`` prefers JSON to XML (XML is Xero's default)."""
    accept = this_request().environ.get("HTTP_ACCEPT", "").lower()  # media types are case-insensitive
    if "json" not in accept:
        return False
    if accept.strip() == "application/json":  # what clients send: skip the parser
        return True
    return bool(request.accept_mimetypes.best_match(
        ("text/xml", "application/xml", "application/json")) == "application/json")


def respond(consumer: Consumer, collection: str, records: Sequence[Mapping[str, Any]],
            stored: bool = True) -> Response:
    """The envelope around ``records``; ``stored``: they are the stored
    (never changed in place) records, whose rendered text is reused."""
    now = core().now()
    if wants_json():
        return Response(render.envelope_json(consumer.name, now, collection, records, stored),
                        content_type=render.JSON_TYPE)
    return Response(render.envelope_xml(consumer.name, now, collection, records, stored),
                    content_type=render.XML_TYPE)


def _args() -> dict[str, str]:
    """Query parameters by lower-cased name (ASP.NET read them case-insensitively)."""
    args: dict[str, str] = {}
    for key, value in request.args.items(multi=True):
        args.setdefault(key.lower(), value)
    return args


# -- routing ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Collection:
    name: str
    element: str
    id_field: str
    number_field: str
    #: Xero's sub-resources of one record (``Contacts/{id}/History``): 501.
    sub_resources: frozenset[str]
    filters: Callable[[list[dict[str, Any]], Mapping[str, str]], list[dict[str, Any]]]


def _guid_set(text: str) -> set[str]:
    return {part.strip().strip("{}").replace("-", "").lower() for part in text.split(",") if part.strip()}


def _norm_guid(value: Any) -> str:
    return str(value or "").replace("-", "").lower()


def _contact_filters(records: list[dict[str, Any]], args: Mapping[str, str]) -> list[dict[str, Any]]:
    if args.get("includearchived", "").lower() != "true":
        records = [r for r in records if r.get("ContactStatus") != "ARCHIVED"]
    if args.get("ids"):
        wanted = _guid_set(args["ids"])
        records = [r for r in records if _norm_guid(r.get("ContactID")) in wanted]
    term = args.get("searchterm", "").strip().casefold()
    if term:
        fields = ("Name", "FirstName", "LastName", "ContactNumber", "EmailAddress")
        records = [r for r in records if any(term in str(r.get(f) or "").casefold() for f in fields)]
    return records


def _invoice_filters(records: list[dict[str, Any]], args: Mapping[str, str]) -> list[dict[str, Any]]:
    if args.get("ids"):
        wanted = _guid_set(args["ids"])
        records = [r for r in records if _norm_guid(r.get("InvoiceID")) in wanted]
    if args.get("invoicenumbers"):
        numbers = {n.strip().casefold() for n in args["invoicenumbers"].split(",") if n.strip()}
        records = [r for r in records if str(r.get("InvoiceNumber") or "").casefold() in numbers]
    if args.get("contactids"):
        wanted = _guid_set(args["contactids"])
        records = [r for r in records if _norm_guid((r.get("Contact") or {}).get("ContactID")) in wanted]
    if args.get("statuses"):
        statuses = {s.strip().upper() for s in args["statuses"].split(",") if s.strip()}
        records = [r for r in records if r.get("Status") in statuses]
    return records


CONTACTS = Collection(api_data.CONTACTS, "Contact", "ContactID", "ContactNumber",
                      frozenset({"attachments", "history", "cissettings"}), _contact_filters)
INVOICES = Collection(api_data.INVOICES, "Invoice", "InvoiceID", "InvoiceNumber",
                      frozenset({"attachments", "history", "email", "onlineinvoice", "payments"}),
                      _invoice_filters)
COLLECTIONS = {"contacts": CONTACTS, "invoices": INVOICES}
_ORGANISATION = frozenset({"organisation", "organisations"})


@blueprint.route("/api.xro/2.0/<path:rest>", methods=_METHODS)
def api(rest: str) -> Response:
    consumer, org = authenticate()
    parts = [part for part in rest.split("/") if part]
    if not parts:
        return not_found()
    name = parts[0].lower()
    if name in _ORGANISATION:
        return _organisation(consumer, org, parts[1:])
    collection = COLLECTIONS.get(name)
    if collection is not None:
        return _collection(collection, consumer, org, parts[1:])
    if name in NOT_IMPLEMENTED_RESOURCES:
        raise not_implemented()
    return not_found()


def _organisation(consumer: Consumer, org: Organisation, rest: list[str]) -> Response:
    if rest:
        # Organisation/Actions and Organisation/{id}/CISSettings are Xero's.
        if rest[-1].lower() in ("actions", "cissettings") and len(rest) <= 2:
            raise not_implemented()
        return not_found()
    if this_request().method not in ("GET", "HEAD"):
        raise not_implemented()  # Xero: "e.g. POST Organisation"
    record = core().store.records(org.organisation_id, api_data.ORGANISATIONS)[org.organisation_id]
    return respond(consumer, api_data.ORGANISATIONS, [record])


def _collection(collection: Collection, consumer: Consumer, org: Organisation, rest: list[str]) -> Response:
    method = "GET" if request.method == "HEAD" else request.method
    if not rest:
        if method == "GET":
            return respond(consumer, collection.name, _list(collection, org))
        if method in ("PUT", "POST"):
            return _save(collection, consumer, org, method)
        raise not_implemented()
    record = _find(collection, org, rest[0])
    if len(rest) == 2 and rest[1].lower() in collection.sub_resources and record is not None:
        raise not_implemented()
    if len(rest) > 1 or record is None:
        return not_found()
    if method == "GET":
        return respond(consumer, collection.name, [record])
    if method == "POST":
        return _save(collection, consumer, org, method, record[collection.id_field])
    raise not_implemented()


def _records(collection: Collection, org: Organisation) -> list[dict[str, Any]]:
    """A published collection: never changed once handed out, so it is read
    (and filtered, ordered, rendered) without holding the store lock."""
    return list(core().store.records(org.organisation_id, collection.name).values())


def _find(collection: Collection, org: Organisation, key: str) -> dict[str, Any] | None:
    """By ID (any GUID spelling) or by number (ContactNumber, InvoiceNumber)."""
    try:
        record_id: str | None = str(uuid.UUID(key.strip("{}")))
    except ValueError:
        record_id = None
    records = core().store.records(org.organisation_id, collection.name)
    if record_id is not None and record_id in records:
        return records[record_id]
    return next((r for r in records.values() if r.get(collection.number_field) == key), None)


def _if_modified_since() -> datetime | None:
    header = request.headers.get("If-Modified-Since")
    if not header or not header.strip():
        return None
    moment = render.parse_datetime(header)
    if moment is None:
        raise query_error(f"The If-Modified-Since header '{header}' is not a date the mock understands "
                          "(use e.g. 'Sat, 31 Jan 2026 10:00:00 GMT' or '2026-01-31T10:00:00')")
    return moment


def _list(collection: Collection, org: Organisation) -> list[dict[str, Any]]:
    args = _args()
    schema = api_data.SCHEMAS[collection.name]
    try:
        where = compile_where(args["where"], schema) if args.get("where", "").strip() else None
        order = compile_order(args["order"], schema) if args.get("order", "").strip() else None
    except QueryError as exc:
        raise query_error(str(exc)) from None
    page = _page_number(args)
    records = _records(collection, org)
    since = _if_modified_since()
    if since is not None:
        records = [r for r in records if (updated := r.get("UpdatedDateUTC")) is not None and updated > since]
    records = collection.filters(records, args)
    if where is not None:
        records = [r for r in records if where(r)]
    if order is not None:
        records = order(records)
    if page is not None:
        size = _page_size(args)
        records = records[(page - 1) * size: page * size]
    return records


#: ASCII digits only: str.isdigit() also passes '²', which int() refuses.
_WHOLE = re.compile(r"-?[0-9]{1,9}")


def _page_number(args: Mapping[str, str]) -> int | None:
    if "page" not in args:
        return None
    raw = args["page"].strip()
    if not raw:
        return 1
    if not _WHOLE.fullmatch(raw):
        raise query_error(f"page must be a whole number, not '{args['page']}'")
    return max(1, int(raw))


def _page_size(args: Mapping[str, str]) -> int:
    raw = args.get("pagesize", "").strip()
    if not raw:
        return PAGE_SIZE
    if not _WHOLE.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise query_error(f"pageSize must be a whole number from 1 to {MAX_PAGE_SIZE}, not '{raw}'")
    return int(raw)


# -- saving -------------------------------------------------------------------------------

def _elements(collection: Collection) -> list[Any]:
    """The elements of a PUT/POST body: JSON (``{"Contacts": [...]}``, a list,
    or one object), XML (``<Contacts><Contact>…`` or one ``<Contact>``), or
    the old form-encoded ``xml=<Contacts>…`` of XeroOAuth-PHP and Xero-Net."""
    raw = request.get_data(cache=True)
    mimetype = request.mimetype
    kind: str | None = None
    if mimetype == "application/x-www-form-urlencoded":
        fields = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        xml = next((value for key, value in fields if key.lower() == "xml"), None)
        if xml is None:
            raise post_data_invalid("A form-encoded body must carry the elements as XML in its 'xml' field")
        raw, kind = xml.encode("utf-8"), "xml"
    elif "json" in mimetype:
        kind = "json"
    elif "xml" in mimetype:
        kind = "xml"
    else:
        start = raw.lstrip()[:1]
        kind = "xml" if start == b"<" else "json" if start in (b"{", b"[") else None
    if not raw.strip():
        raise post_data_invalid(f"The request body is empty: send {collection.name} as XML or JSON")
    if kind is None:
        raise post_data_invalid("The request body is neither XML nor JSON")
    try:
        if kind == "json":
            return _json_elements(collection, render.parse_json(raw))
        return _xml_elements(collection, *render.parse_xml(raw))
    except render.BodyError as exc:
        raise post_data_invalid(str(exc)) from None


def _json_elements(collection: Collection, data: Any) -> list[Any]:
    if isinstance(data, dict):
        key = next((k for k in data if k.lower() == collection.name.lower()), None)
        if key is not None:
            data = data[key]
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return [data]
    raise post_data_invalid(f"The JSON body must hold {collection.name}: an object or a list of objects")


def _xml_elements(collection: Collection, tag: str, data: Any) -> list[Any]:
    if tag.lower() == collection.name.lower():
        return data if isinstance(data, list) else []
    if tag.lower() == collection.element.lower():
        return [data if isinstance(data, dict) else {}]
    raise post_data_invalid(f"The XML root element must be <{collection.name}> or <{collection.element}>, "
                            f"not <{tag}>")


def _save(collection: Collection, consumer: Consumer, org: Organisation, method: str,
          record_id: str | None = None) -> Response:
    elements = _elements(collection)
    if not elements:
        raise post_data_invalid(f"There are no {collection.name} in the request body")
    if record_id is not None and len(elements) > 1:
        raise post_data_invalid(f"A POST to {collection.name}/{{id}} takes one {collection.element}")
    atomic = _args().get("summarizeerrors", "true").strip().lower() != "false"
    the_mock = core()
    now = the_mock.now()
    # Validated outside the store lock against a snapshot; published in one
    # brief step (built again if another save published first).
    outcomes: list[api_data.Outcome] = the_mock.store.update_data(
        org.organisation_id,
        lambda seen: api_data.save(org, seen, collection.name, elements, now,
                                   allow_update=method == "POST", atomic=atomic, record_id=record_id))
    failed = [o for o in outcomes if o.messages]
    if failed and atomic:
        raise ApiError(400, 10, "ValidationException", api_data.VALIDATION_MESSAGE,
                       [(o.type_name, {**o.record, "HasErrors": True}, o.messages) for o in failed])
    records = [
        {**o.record, "HasErrors": True, "StatusAttributeString": "ERROR",
         "ValidationErrors": [{"Message": render.clean_text(m)} for m in o.messages]} if o.messages
        else {**o.record, "StatusAttributeString": "OK"}
        for o in outcomes
    ]
    return respond(consumer, collection.name, records, stored=False)
