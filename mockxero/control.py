"""The ``/_mockxero`` control API: JSON over HTTP, one route per operation
in :data:`mockxero.operations.OPERATIONS`, each a thin face of the
:class:`mockxero.core.MockCore` method of the same name (which checks the
arguments and decides). What is left here is HTTP's part: reading the JSON
body, the path and the query, the admin token, and the status codes."""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .context import core
from .operations import OPERATIONS, ControlError, Field, Operation

blueprint = Blueprint("control", __name__, url_prefix="/_mockxero")


def json_error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


@blueprint.errorhandler(ControlError)
def _control_error(exc: ControlError) -> Response:
    return json_error(exc.status, exc.message)


@blueprint.before_request
def _admin_token() -> Response | None:
    token = core().settings.admin_token
    if not token:
        return None
    given = request.headers.get("Authorization", "")
    if given[:7].lower() == "bearer " and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
        return None
    response = json_error(401, "this control API wants Authorization: Bearer <admin token>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="mockxero"'
    return response


def _json_body(op: Operation) -> dict[str, Any]:
    """The request's JSON object as the operation's arguments (by their
    Python names). An empty body is an empty object."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise ControlError("the body is not valid JSON")
    if not isinstance(data, dict):
        raise ControlError("the body must be a JSON object")
    by_wire = {op.wire(name): name for name, field in op.fields.items() if field.source == "body"}
    unknown = sorted(set(data) - set(by_wire))
    if unknown:
        raise ControlError(f"unknown field(s): {', '.join(unknown)}; "
                           f"expected some of: {', '.join(by_wire)}")
    arguments: dict[str, Any] = {}
    for wire, value in data.items():
        name = by_wire[wire]
        if value is None and not op.fields[name].nullable:  # Python's None means "not given"
            raise ControlError(f"'{wire}' has the wrong type (NoneType)")
        arguments[name] = value
    return arguments


def _query_value(name: str, field: Field, raw: str) -> Any:
    if field.type not in ("int", "number"):
        return raw
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ControlError(f"query parameter '{name}' must be a number")
    return int(value) if field.type == "int" else value


def _view(op: Operation) -> Callable[..., Response]:
    def view(**path_arguments: Any) -> Response:
        arguments = dict(path_arguments)
        for name, field in op.fields.items():
            if field.source == "query" and name in request.args:
                arguments[name] = _query_value(name, field, request.args[name])
        if op.method in ("POST", "PATCH", "PUT"):
            arguments.update(_json_body(op))
        result = getattr(core(), op.name)(**arguments)
        if result is None and op.none_status is not None:
            return json_error(op.none_status, "no matching request arrived in time")
        if isinstance(result, str):
            return Response(result, content_type="application/x-pem-file")
        response = jsonify(result)
        response.status_code = op.status
        return response

    view.__name__ = op.name
    return view


for _op in OPERATIONS.values():
    blueprint.add_url_rule(_op.path, _op.name, _view(_op), methods=[_op.method])
