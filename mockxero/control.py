"""The ``/_mockxero`` control API: JSON over HTTP, one route per operation
of :class:`mockxero.mock.MockXero` (which is where the behaviour lives).
Bad JSON, unknown fields and wrong types get a 400 with a message."""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .app import mock
from .clock import ClockError
from .mock import ControlError
from .settings import SettingsError, parse_rate_limit

blueprint = Blueprint("control", __name__, url_prefix="/_mockxero")

_NUMBER = (int, float)
_OPT_STR = (str, type(None))


def json_error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _body(fields: Mapping[str, tuple[type, ...] | type],
          required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object of the request, checked against ``fields`` (name →
    accepted types). An empty body is an empty object."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        data: Any = {}
    else:
        data = request.get_json(force=True, silent=True)
        if data is None:
            raise BadRequest("the body is not valid JSON")
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; expected some of: {', '.join(fields)}")
    for name in required:
        if data.get(name) is None:
            raise BadRequest(f"'{name}' is required")
    for name, value in data.items():
        accepted = fields[name]
        types: tuple[type, ...] = accepted if isinstance(accepted, tuple) else (accepted,)
        if isinstance(value, bool) and bool not in types:
            raise BadRequest(f"'{name}' has the wrong type ({type(value).__name__})")
        if not isinstance(value, types):
            raise BadRequest(f"'{name}' has the wrong type ({type(value).__name__})")
    return data


def _query_number(name: str, default: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # nan/inf would 500 in int()
        raise BadRequest(f"query parameter '{name}' must be a number")
    return value


@blueprint.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> Response:
    return json_error(400, exc.message)


@blueprint.errorhandler(ControlError)
def _control_error(exc: ControlError) -> Response:
    return json_error(400, str(exc))


@blueprint.before_request
def _admin_token() -> Response | None:
    token = mock().settings.admin_token
    if not token:
        return None
    given = request.headers.get("Authorization", "")
    if given[:7].lower() == "bearer " and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
        return None
    response = json_error(401, "this control API wants Authorization: Bearer <admin token>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="mockxero"'
    return response


@blueprint.get("/health")
def health() -> Response:
    return jsonify(mock().health())


@blueprint.post("/reset")
def reset() -> Response:
    data = _body({"consumer_key": str})
    mock().reset(data.get("consumer_key"))
    return jsonify({"status": "reset", **({"consumer_key": data["consumer_key"]} if data else {})})


@blueprint.get("/clock")
def clock() -> Response:
    return jsonify(mock().clock.state())


@blueprint.post("/clock")
def move_clock() -> Response:
    data = _body({"advance": _NUMBER, "set": _NUMBER, "freeze": bool, "reset": bool})
    if sum(k in data for k in ("advance", "set", "reset")) > 1:
        raise BadRequest("give one of 'advance', 'set' or 'reset'")
    if not data:
        raise BadRequest("give 'advance' (seconds), 'set' (epoch seconds), 'freeze' or 'reset'")
    the_clock = mock().clock
    try:
        the_clock.change(advance=data.get("advance"), set=data.get("set"), freeze=data.get("freeze"),
                         reset=bool(data.get("reset")))
    except ClockError as exc:
        raise BadRequest(f"'{'set' if 'set' in data else 'advance'}': {exc}") from None
    return jsonify(the_clock.state())


def _runtime_settings() -> Response:
    the_mock = mock()
    limit = the_mock.rate_limit
    return jsonify({"auto_approve": the_mock.auto_approve,
                    "rate_limit": f"{limit[0]}/{limit[1]}" if limit else "off"})


@blueprint.get("/settings")
def get_settings() -> Response:
    return _runtime_settings()


@blueprint.post("/settings")
def change_settings() -> Response:
    """The runtime switches: ``auto_approve`` (bool) and ``rate_limit``
    ("MINUTE/DAY" or "off"). A full reset puts both back."""
    data = _body({"auto_approve": bool, "rate_limit": str})
    the_mock = mock()
    if "rate_limit" in data:
        try:
            the_mock.rate_limit = parse_rate_limit(data["rate_limit"])
        except SettingsError as exc:
            raise BadRequest(str(exc)) from None
    if "auto_approve" in data:
        the_mock.auto_approve = data["auto_approve"]
    return _runtime_settings()


@blueprint.get("/consumers")
def consumers() -> Response:
    return jsonify([c.to_json() for c in mock().consumers()])


@blueprint.post("/consumers")
def add_consumer() -> Response:
    data = _body({
        "app_type": str, "certificate": _OPT_STR, "require_client_cert": (bool, type(None)),
        "callback_domain": _OPT_STR, "name": _OPT_STR, "consumer_key": _OPT_STR,
        "consumer_secret": _OPT_STR, "client_certificates": (list, type(None)),
        "organisation": _OPT_STR,
    })
    for pem in data.get("client_certificates") or []:
        if not isinstance(pem, str):
            raise BadRequest("'client_certificates' must be a list of PEM strings")
    consumer = mock().add_consumer(**data)
    response = jsonify(consumer.to_json())
    response.status_code = 201
    return response


@blueprint.post("/consumers/<consumer_key>/client-certificates")
def register_client_certificate(consumer_key: str) -> Response:
    data = _body({"certificate": str}, required=("certificate",))
    fp = mock().register_client_certificate(consumer_key, data["certificate"])
    response = jsonify({"consumer_key": consumer_key, "fingerprint": fp})
    response.status_code = 201
    return response


@blueprint.delete("/consumers/<consumer_key>/client-certificates/<fingerprint>")
def unregister_client_certificate(consumer_key: str, fingerprint: str) -> Response:
    mock().unregister_client_certificate(consumer_key, fingerprint)
    return jsonify({"consumer_key": consumer_key, "removed": fingerprint})


@blueprint.post("/client-certificates")
def issue_client_certificate() -> Response:
    data = _body({"consumer_key": _OPT_STR, "not_before": (int, float, type(None)),
                  "not_after": (int, float, type(None)), "foreign": bool})
    response = jsonify(mock().issue_client_certificate(**data))
    response.status_code = 201
    return response


@blueprint.get("/organisations")
def organisations() -> Response:
    return jsonify([o.to_json() for o in mock().organisations()])


@blueprint.post("/organisations")
def add_organisation() -> Response:
    data = _body({"name": str, "short_code": _OPT_STR, "country_code": str, "base_currency": str,
                  "seed_data": bool}, required=("name",))
    response = jsonify(mock().add_organisation(**data).to_json())
    response.status_code = 201
    return response


@blueprint.post("/organisations/<org>/data")
def load_data(org: str) -> Response:
    """Add (``replace``: instead of its own) contacts and invoices to an
    organisation: ``{"Contacts": [...], "Invoices": [...]}`` in Xero's field names."""
    data = _body({"Contacts": list, "Invoices": list, "replace": bool})
    loaded = mock().load_data(org, data.get("Contacts") or [], data.get("Invoices") or [],
                              data.get("replace", False))
    response = jsonify(loaded)
    response.status_code = 201
    return response


@blueprint.get("/organisations/<org>/data")
def organisation_data(org: str) -> Response:
    return jsonify(mock().data(org))


@blueprint.post("/authorize")
def authorize() -> Response:
    data = _body({"oauth_token": str, "org": _OPT_STR, "deny": bool}, required=("oauth_token",))
    return jsonify(mock().authorize(**data))


@blueprint.post("/revoke")
def revoke() -> Response:
    data = _body({"oauth_token": str, "session_handle": str})
    return jsonify({"status": "revoked", "connection": mock().revoke(**data)})


@blueprint.post("/expire")
def expire() -> Response:
    data = _body({"oauth_token": str, "session_handle": str})
    return jsonify({"status": "expired", "connection": mock().expire(**data)})


@blueprint.get("/connections")
def connections() -> Response:
    return jsonify(mock().connections(request.args.get("consumer_key")))


@blueprint.get("/requests")
def requests_journal() -> Response:
    since = int(_query_number("since", 0))
    return jsonify(mock().journal(request.args.get("consumer_key"), since))


@blueprint.get("/requests/wait")
def wait_for_request() -> Response:
    timeout = _query_number("timeout", 5.0)
    if not 0 <= timeout <= 60:
        raise BadRequest("timeout must be between 0 and 60 seconds")
    status = request.args.get("status")
    if status is not None and not status.isdigit():
        raise BadRequest("status must be an HTTP status code")
    entry = mock().wait_for_request(
        path=request.args.get("path"), consumer_key=request.args.get("consumer_key"),
        status=int(status) if status else None, since=int(_query_number("since", 0)),
        timeout=timeout)
    if entry is None:
        return json_error(408, "no matching request arrived in time")
    return jsonify(entry)


@blueprint.get("/faults")
def faults() -> Response:
    return jsonify([f.to_json() for f in mock().faults()])


@blueprint.post("/faults")
def add_fault() -> Response:
    data = _body({"kind": str, "path": str, "count": int, "consumer_key": _OPT_STR,
                  "problem": _OPT_STR, "advice": _OPT_STR, "status": (int, type(None)),
                  "delay": _NUMBER, "window": str}, required=("kind",))
    response = jsonify(mock().add_fault(**data).to_json())
    response.status_code = 201
    return response


@blueprint.delete("/faults")
def clear_faults() -> Response:
    return jsonify({"cleared": mock().clear_faults()})


@blueprint.delete("/faults/<int:fault_id>")
def clear_fault(fault_id: int) -> Response:
    cleared = mock().clear_faults(fault_id)
    if not cleared:
        return json_error(404, f"no queued fault {fault_id}")
    return jsonify({"cleared": cleared})


@blueprint.get("/ca.pem")
def ca_pem() -> Response:
    return Response(mock().ca_pem(), content_type="application/x-pem-file")
