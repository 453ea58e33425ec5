"""The Flask application, assembled: the endpoints' blueprints, the request
journal, queued faults and the rendering of every refusal. No route answers
a 500 by design: the checks raise ``OAuthProblem`` /
``ClientCertificateRefused`` / the API's own errors, each rendered the Xero
way here; anything else is journalled as an internal error."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from . import api, control, flow
from .context import CORE_KEY, consumer_key_hint, this_g, this_request
from .core import MockCore
from .problems import PARAMETER_REJECTED, RATE_LIMIT_EXCEEDED, ClientCertificateRefused, OAuthProblem
from .statefile import StateFileError

log = logging.getLogger("mockxero")

CONTROL_PREFIX = "/_mockxero"
OAUTH_PREFIX = "/oauth/"
OFFLINE_BODY = "The Xero API is currently offline for maintenance"
#: Xero's token requests are well under 1 KB; a body beyond this on
#: /oauth/* is refused before it is read (the API takes up to 10 MB).
OAUTH_MAX_BODY = 64 * 1024
#: Journalled text an attacker controls is cut to this many characters:
#: the base string stays the mock's best diagnosis without letting
#: unsigned traffic fill memory.
JOURNAL_TEXT_LIMIT = 4096


def _cut(text: str | None, limit: int = JOURNAL_TEXT_LIMIT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


#: A refused body up to this size is read and dropped before the answer, so
#: a client still sending it gets the 413 rather than a reset connection.
DRAIN_LIMIT = 1024 * 1024


def _drain() -> None:
    length = request.content_length
    if length is None or length > DRAIN_LIMIT:
        return
    stream = request.environ["wsgi.input"]
    while length > 0:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            return
        length -= len(chunk)


def _http_problem(exc: HTTPException) -> OAuthProblem:
    """An HTTP-level refusal on /oauth/* (405, 413, a body that cannot be
    read) in the shape every OAuth client there parses."""
    status = exc.code or 400
    if status == 405:
        advice = f"{request.method} is not allowed on {request.path}: use GET or POST"
    elif status == 413:
        advice = f"The request body is larger than the {OAUTH_MAX_BODY // 1024} KB an OAuth request may send"
    else:
        advice = exc.description or exc.name
    headers = {"Allow": "GET, POST"} if status == 405 else None
    return OAuthProblem(PARAMETER_REJECTED, advice, status=status, headers=headers)


API_PREFIX = "/api.xro/2.0/"


def _api_prefix_in_any_case(wsgi_app: Any) -> Any:
    """Route ``/API.XRO/2.0/...`` like ``/api.xro/2.0/...``: Xero's IIS
    matched paths case-insensitively, Flask's router does not. Only the
    routing path changes; the signature base string is built from the raw
    request URI as the client sent it."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if path[:len(API_PREFIX)].lower() == API_PREFIX and not path.startswith(API_PREFIX):
            environ["PATH_INFO"] = API_PREFIX + path[len(API_PREFIX):]
        return wsgi_app(environ, start_response)

    return app


def create_app(the_mock: MockCore) -> Flask:
    app = Flask("mockxero")
    app.wsgi_app = _api_prefix_in_any_case(app.wsgi_app)  # type: ignore[method-assign]
    app.extensions[CORE_KEY] = the_mock
    app.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]

    app.register_blueprint(flow.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(control.blueprint)

    @app.before_request
    def _start() -> Response | None:
        state = this_g()
        state.started = time.perf_counter()
        req = this_request()
        path = req.path
        if path.startswith(OAUTH_PREFIX):
            req.max_content_length = OAUTH_MAX_BODY  # chunked bodies too
        if not the_mock.store.has_faults or path.startswith(CONTROL_PREFIX):
            return None
        fault = the_mock.store.take_fault(path, consumer_key_hint())
        if fault is None:
            return None
        state.fault = fault.fault_id
        if fault.kind == "delay":
            time.sleep(fault.delay)
            return None
        if fault.kind == "offline":
            return Response(OFFLINE_BODY, status=fault.status or 503,
                            content_type="text/plain; charset=utf-8")
        if fault.kind == "rate_limit":
            raise OAuthProblem(RATE_LIMIT_EXCEEDED, status=fault.status or 503,
                               headers={"X-Rate-Limit-Problem": fault.window})
        assert fault.problem is not None
        raise OAuthProblem(fault.problem, fault.advice, fault.status)

    @app.errorhandler(OAuthProblem)
    @app.errorhandler(ClientCertificateRefused)
    def _refused(exc: OAuthProblem | ClientCertificateRefused) -> Response:
        g.problem = exc
        status, headers, body = exc.render()
        return Response(body, status=status, headers=headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response | WerkzeugResponse:
        if exc.code == 413:
            _drain()
        if request.path.lower().startswith("/api.xro/"):
            return api.not_found() if exc.code == 404 else api.http_error(exc)
        if request.path.startswith(CONTROL_PREFIX):
            return control.json_error(exc.code or 500, exc.description or exc.name)
        if request.path.startswith(OAUTH_PREFIX) and exc.code != 404:
            return _refused(_http_problem(exc))
        return exc.get_response()

    def _note_internal_error(exc: Exception) -> None:
        """For the journal: the test that caused it should fail with this."""
        g.internal_error = f"{type(exc).__name__}: {exc}"
        g.traceback = traceback.format_exc()

    @app.errorhandler(StateFileError)
    def _unwritable(exc: StateFileError) -> Response:
        # The change was not made (the store writes the file first); say why.
        log.error("state file: %s", exc)
        _note_internal_error(exc)
        if request.path.startswith(CONTROL_PREFIX):
            return control.json_error(503, str(exc))
        return Response(f"mockxero cannot keep this change: {exc}\n", status=503,
                        content_type="text/plain; charset=utf-8")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        _note_internal_error(exc)
        return Response(f"mockxero internal error: {type(exc).__name__}: {exc}\n", status=500,
                        content_type="text/plain; charset=utf-8")

    @app.after_request
    def _journal(response: Response) -> Response:
        # Read once from the request and g themselves (not their proxies),
        # and the consumer from the signed request when it was built.
        req = this_request()
        state = this_g()
        path = req.path
        internal_error = state.get("internal_error")
        if path.startswith(CONTROL_PREFIX) and not internal_error:
            return response  # the control API's own calls are not the user's traffic
        problem = state.get("problem")
        signed = state.get("signed")
        consumer_key = signed.consumer_key if signed is not None else None
        ended = time.perf_counter()
        entry: dict[str, Any] = {
            "time": time.time(),
            "mock_time": the_mock.now(),
            "method": req.method,
            "path": _cut(path),
            "consumer_key": _cut(consumer_key or consumer_key_hint(), 256),
            "status": response.status_code,
            "oauth_problem": None if problem is None else problem.problem,
            "advice": None if problem is None else _cut(problem.advice),
            "duration_ms": round((ended - state.get("started", ended)) * 1000, 3),
        }
        if problem is not None and problem.base_string is not None:
            entry["base_string"] = _cut(problem.base_string)
        fault = state.get("fault")
        if fault is not None:
            entry["fault"] = fault
        if internal_error:
            # A bug of the mock's: the test that caused it should fail with this.
            entry["error"] = internal_error
            entry["traceback"] = state.traceback
        the_mock.store.record(entry)
        return response

    @app.after_request
    def _no_framing(response: Response) -> Response:
        """The consent and Add-ons pages are never shown inside another
        site's frame (clickjacking)."""
        if response.mimetype == "text/html":
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response

    return app
