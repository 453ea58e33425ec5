""""This request" and "the operations", for the endpoints.

The one place an endpoint gets the mock it serves (:func:`core`) and the
request as the OAuth checks see it (:func:`signed_request`), so that no
endpoint imports the module that assembles the app."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote

from flask import Request, current_app, g, request
from flask.ctx import _AppCtxGlobals
from werkzeug.exceptions import HTTPException

from .core import MockCore
from .oauth import SignedRequest
from .peer import PEER_ENVIRON

CORE_KEY = "mockxero"
FORM = "application/x-www-form-urlencoded"
_HEADER_CONSUMER = re.compile(r'oauth_consumer_key="([^"]*)"')


def this_request() -> Request:
    """The request object itself: each attribute read through Flask's
    ``request`` proxy costs ~0.8 us, and a signed call reads dozens."""
    return request._get_current_object()  # type: ignore[attr-defined,no-any-return]


def this_g() -> _AppCtxGlobals:
    """Flask's ``g`` itself, for the same reason as :func:`this_request`."""
    return g._get_current_object()  # type: ignore[no-any-return]


def core() -> MockCore:
    """The mock this app serves."""
    return current_app.extensions[CORE_KEY]  # type: ignore[no-any-return]


def signed_request() -> SignedRequest:
    """This request as the OAuth checks see it (built once per request).
    The URI comes from the raw request target, not Flask's decoded URL:
    the base string must use the bytes the client signed."""
    state = this_g()
    cached = state.get("signed")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    req = this_request()
    env = req.environ
    raw_uri = env.get("REQUEST_URI") or env.get("RAW_URI")
    if raw_uri:
        path = raw_uri.split("?", 1)[0]
        if "://" in path:  # absolute-form request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
    else:
        path = quote(env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""), safe="/%!$&'()*+,;=:@~")
    base = core().settings.public_base_url
    if base:
        uri = base.rstrip("/") + path
    else:
        host = (env.get("HTTP_HOST")
                or f"{env.get('SERVER_NAME', 'localhost')}:{env.get('SERVER_PORT', '')}")
        uri = f"{req.scheme}://{host}{path}"
    method = req.method
    form_body = ""
    if method not in ("GET", "HEAD") and req.mimetype == FORM:
        form_body = req.get_data(cache=True).decode("utf-8", "replace")
    signed = SignedRequest(
        method=method,
        uri=uri,
        query=env.get("QUERY_STRING", ""),
        form_body=form_body,
        authorization=env.get("HTTP_AUTHORIZATION"),
        peer=env.get(PEER_ENVIRON),
    )
    state.signed = signed
    return signed


def consumer_key_hint() -> str | None:
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
    if request.mimetype == FORM:
        try:
            body = request.get_data(cache=True)
        except HTTPException:  # a body refused as too large: it names no one
            return None
        for name, value in parse_qsl(body.decode("utf-8", "replace")):
            if name == "oauth_consumer_key":
                return value
    return None
