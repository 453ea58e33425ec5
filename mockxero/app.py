"""The Flask application: blueprints, the request journal, queued faults and
the rendering of every refusal. No route answers a 500 by design: the
checks raise ``OAuthProblem`` / ``ClientCertificateRefused`` / the API's own
errors, each rendered the Xero way here."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from .oauth import SignedRequest
from .problems import RATE_LIMIT_EXCEEDED, ClientCertificateRefused, OAuthProblem
from .tls import PEER_ENVIRON

if TYPE_CHECKING:
    from .mock import MockXero

log = logging.getLogger("mockxero")

CONTROL_PREFIX = "/_mockxero"
OFFLINE_BODY = "The Xero API is currently offline for maintenance"
_FORM = "application/x-www-form-urlencoded"
_HEADER_CONSUMER = re.compile(r'oauth_consumer_key="([^"]*)"')


def mock() -> MockXero:
    return current_app.config["MOCKXERO"]  # type: ignore[no-any-return]


def signed_request() -> SignedRequest:
    """This request as the OAuth checks see it (built once per request)."""
    cached = g.get("signed")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    env = request.environ
    raw_uri = env.get("REQUEST_URI") or env.get("RAW_URI")
    if raw_uri:
        path = raw_uri.split("?", 1)[0]
        if "://" in path:  # absolute-form request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
    else:
        path = quote(env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""), safe="/%!$&'()*+,;=:@~")
    base = mock().settings.public_base_url
    if base:
        uri = base.rstrip("/") + path
    else:
        host = (request.headers.get("Host")
                or f"{env.get('SERVER_NAME', 'localhost')}:{env.get('SERVER_PORT', '')}")
        uri = f"{request.scheme}://{host}{path}"
    form_body = ""
    if (request.mimetype == _FORM) and request.method not in ("GET", "HEAD"):
        form_body = request.get_data(cache=True).decode("utf-8", "replace")
    signed = SignedRequest(
        method=request.method,
        uri=uri,
        query=env.get("QUERY_STRING", ""),
        form_body=form_body,
        authorization=request.headers.get("Authorization"),
        peer=env.get(PEER_ENVIRON),
    )
    g.signed = signed
    return signed


def _consumer_key_hint() -> str | None:
    """The consumer a request names, read leniently (for faults and the
    journal of requests refused before their parameters were parsed)."""
    signed = g.get("signed")
    if signed is not None and signed.consumer_key:
        return str(signed.consumer_key)
    found = _HEADER_CONSUMER.search(request.headers.get("Authorization", ""))
    if found:
        return str(found.group(1))
    query: str = request.environ.get("QUERY_STRING", "")
    for name, value in parse_qsl(query):
        if name == "oauth_consumer_key":
            return value
    if request.mimetype == _FORM:
        for name, value in parse_qsl(request.get_data(cache=True).decode("utf-8", "replace")):
            if name == "oauth_consumer_key":
                return value
    return None


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


def create_app(the_mock: MockXero) -> Flask:
    app = Flask("mockxero")
    app.wsgi_app = _api_prefix_in_any_case(app.wsgi_app)  # type: ignore[method-assign]
    app.config["MOCKXERO"] = the_mock
    app.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from . import api, control, flow

    app.register_blueprint(flow.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(control.blueprint)

    @app.before_request
    def _start() -> Response | None:
        g.started = time.perf_counter()
        if not the_mock.store.has_faults or request.path.startswith(CONTROL_PREFIX):
            return None
        fault = the_mock.store.take_fault(request.path, _consumer_key_hint())
        if fault is None:
            return None
        g.fault = fault.fault_id
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
        if request.path.lower().startswith("/api.xro/"):
            return api.not_found() if exc.code == 404 else api.http_error(exc)
        response = exc.get_response()
        if request.path.startswith(CONTROL_PREFIX):
            response = control.json_error(exc.code or 500, exc.description or exc.name)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        g.internal_error = f"{type(exc).__name__}: {exc}"
        return Response(f"mockxero internal error: {type(exc).__name__}: {exc}\n", status=500,
                        content_type="text/plain; charset=utf-8")

    @app.after_request
    def _journal(response: Response) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return response
        problem = g.get("problem")
        entry: dict[str, Any] = {
            "time": time.time(),
            "mock_time": the_mock.clock.now(),
            "method": request.method,
            "path": request.path,
            "consumer_key": _consumer_key_hint(),
            "status": response.status_code,
            "oauth_problem": getattr(problem, "problem", None),
            "advice": getattr(problem, "advice", None),
            "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 3),
        }
        if problem is not None and problem.base_string is not None:
            entry["base_string"] = problem.base_string
        if g.get("fault") is not None:
            entry["fault"] = g.fault
        if g.get("internal_error"):
            entry["error"] = g.internal_error
        the_mock.store.record(entry)
        return response

    return app
