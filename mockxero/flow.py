"""The three-legged flow and its lifecycle (SPEC.md §4, §5): RequestToken,
the Authorize consent page, AccessToken (exchange and OAuth Session
renewal on one URL) and the Add-ons page that disconnects an application."""

from __future__ import annotations

import datetime
import hmac
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from .context import core, signed_request
from .core import callback_redirect
from .operations import ControlError
from .problems import (
    BAD_VERIFIER,
    DENIED_ADVICE,
    FORM_CONTENT_TYPE,
    PARAMETER_ABSENT,
    PARAMETER_REJECTED,
    PERMISSION_DENIED,
    REVOKED_ADVICE,
    TOKEN_EXPIRED,
    TOKEN_REJECTED,
    OAuthProblem,
    form_encode,
)
from .store import RETIRED_REVOKED, Connection, Consumer, Organisation, RequestToken, StoreError

blueprint = Blueprint("flow", __name__)

#: Hosts a callback may always use, whatever the registered domain.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
MAX_CALLBACK = 2048
#: Control characters (CR/LF would split the redirect's Location header).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The double-submit cookie that ties the consent and Add-ons forms to the
#: page that showed them; SameSite=Strict keeps it off cross-site posts.
CSRF_COOKIE = "mockxero_csrf"
_CSRF_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def same(given: str | None, expected: str | None) -> bool:
    """Compare a secret in constant time (no timing oracle on tokens)."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _form(pairs: list[tuple[str, object]]) -> Response:
    return Response(form_encode(pairs), status=200, content_type=FORM_CONTENT_TYPE)


def _token_secret(consumer: Consumer, token: str) -> str | None:
    """The secret that goes with ``token`` in an HMAC-SHA1 key."""
    store = core().store
    rt = store.request_token(token)
    if rt is not None and rt.consumer_key == consumer.consumer_key:
        return rt.secret
    conn = store.connection_for_token(token)
    if conn is not None and conn.consumer_key == consumer.consumer_key:
        return conn.access_secret
    return None


def _private_app_refused(consumer: Consumer) -> OAuthProblem:
    return OAuthProblem(
        PERMISSION_DENIED,
        "Private applications do not use the three-legged flow: sign API calls "
        "with oauth_token set to the consumer key")


# -- RequestToken ---------------------------------------------------------------
@blueprint.route("/oauth/RequestToken", methods=["GET", "POST"])
def request_token() -> Response:
    the_mock = core()
    req = signed_request()
    consumer = the_mock.verifier.verify(req)
    if consumer.app_type == "private":
        raise _private_app_refused(consumer)
    callback = req.oauth.get("oauth_callback") or "oob"
    if callback.lower() == "oob":
        callback = "oob"
    else:
        _check_callback(consumer, callback)
    rt = the_mock.store.new_request_token(
        consumer.consumer_key, callback, the_mock.now() + the_mock.settings.request_token_ttl)
    return _form([("oauth_token", rt.token), ("oauth_token_secret", rt.secret),
                  ("oauth_callback_confirmed", "true")])


def _check_callback(consumer: Consumer, callback: str) -> None:
    if _CONTROL.search(callback) or len(callback) > MAX_CALLBACK:
        raise OAuthProblem(PARAMETER_REJECTED, "oauth_callback holds control characters or is longer "
                                               f"than {MAX_CALLBACK} characters", status=401)
    try:
        parts = urlsplit(callback)
        host = (parts.hostname or "").lower()
    except ValueError:
        host, parts = "", None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise OAuthProblem(PARAMETER_REJECTED, f"oauth_callback {callback!r} is not a URL or 'oob'",
                           status=401)
    domain = (consumer.callback_domain or "").lower().lstrip(".")
    if host in LOCAL_HOSTS or not domain or host == domain or host.endswith("." + domain):
        return
    raise OAuthProblem(PARAMETER_REJECTED, "Callback url is not the registered callback domain",
                       status=401)


# -- Authorize ------------------------------------------------------------------
def _page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(render_template(template, **context), status=status,
                    content_type="text/html; charset=utf-8")


def _form_page(template: str, **context: Any) -> Response:
    """A page with a form that posts back: it carries the CSRF token, and
    the browser gets the same token as a cookie."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if not _CSRF_SHAPE.fullmatch(token):
        token = secrets.token_urlsafe(32)
    response = _page(template, csrf_token=token, **context)
    response.set_cookie(CSRF_COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/")
    return response


def _csrf_refused() -> Response | None:
    """None when the posted form came from one of our pages, else the 403."""
    if same(request.form.get("csrf_token"), request.cookies.get(CSRF_COOKIE)):
        return None
    return _error_page("Form check failed",
                       "This form was not sent from its page here (the CSRF check failed). "
                       "Open the page again and use its buttons.", status=403)


def _error_page(title: str, message: str, status: int = 400) -> Response:
    return _page("error.html", status, title=title, message=message)


def _pending_token(token: str | None) -> RequestToken | Response:
    the_mock = core()
    if not token:
        return _error_page("Missing request token", "The oauth_token parameter is missing.")
    rt = the_mock.store.request_token(token)
    if rt is None:
        return _error_page("Unknown request token", f"The request token {token} is not recognised.")
    if rt.state != "pending":
        return _error_page("Request token already used",
                           f"The request token {token} has already been {rt.state}.")
    if the_mock.now() > rt.expires_at:
        return _error_page("Request token expired", f"The request token {token} has expired.")
    return rt


def _decided(rt: RequestToken, organisation: Organisation | None) -> Response | WerkzeugResponse:
    the_mock = core()
    target = callback_redirect(rt, organisation)
    if target is not None:
        return redirect(target, code=302)
    consumer = the_mock.store.consumer(rt.consumer_key)
    if rt.state == "denied":
        return _page("denied.html", consumer=consumer)
    return _page("verifier.html", consumer=consumer, organisation=organisation,
                 verifier=rt.verifier, token=rt.token)


@blueprint.route("/oauth/Authorize", methods=["GET"])
def authorize_page() -> Response | WerkzeugResponse:
    the_mock = core()
    found = _pending_token(request.args.get("oauth_token"))
    if isinstance(found, Response):
        return found
    rt = found
    consumer = the_mock.store.consumer(rt.consumer_key)
    if the_mock.auto_approve:
        try:
            decided, org = the_mock.decide(rt.token, True)
        except ControlError as exc:
            return _error_page("Cannot authorise", exc.message)
        return _decided(decided, org)
    days = the_mock.settings.authorization_ttl / 86400
    lifetime = f"{days:g} days" if days >= 1 else f"{the_mock.settings.authorization_ttl} seconds"
    return _form_page("authorize.html", consumer=consumer, token=rt.token, callback=rt.callback,
                      lifetime=lifetime, organisations=the_mock.store.organisations(),
                      default_id=the_mock.default_organisation().organisation_id)


@blueprint.route("/oauth/Authorize", methods=["POST"])
def authorize() -> Response | WerkzeugResponse:
    the_mock = core()
    refused = _csrf_refused()
    if refused is not None:
        return refused
    found = _pending_token(request.form.get("oauth_token"))
    if isinstance(found, Response):
        return found
    action = request.form.get("action", "allow")
    if action not in ("allow", "deny"):
        return _error_page("Unknown choice", f"'{action}' is neither allow nor deny.")
    try:
        rt, organisation = the_mock.decide(found.token, action == "allow", request.form.get("org") or None)
    except ControlError as exc:
        return _error_page("Cannot authorise", exc.message)
    return _decided(rt, organisation)


# -- AccessToken ----------------------------------------------------------------
@blueprint.route("/oauth/AccessToken", methods=["GET", "POST"])
def access_token() -> Response:
    the_mock = core()
    req = signed_request()
    consumer = the_mock.verifier.verify(req, required=("oauth_token",), token_secret=_token_secret)
    if consumer.app_type == "private":
        raise _private_app_refused(consumer)
    token = req.oauth["oauth_token"]
    rt = the_mock.store.request_token(token)
    if rt is not None and rt.consumer_key == consumer.consumer_key:
        return _exchange(consumer, rt, req.oauth.get("oauth_verifier"))
    return _renew(consumer, token, req.oauth.get("oauth_session_handle"))


def _exchange(consumer: Consumer, rt: RequestToken, verifier: str | None) -> Response:
    the_mock = core()
    settings = the_mock.settings
    now = the_mock.now()
    if rt.state == "used":
        raise OAuthProblem(TOKEN_REJECTED, f"Token {rt.token} does not match an expected REQUEST token")
    if now > rt.expires_at:
        raise OAuthProblem(TOKEN_EXPIRED, f"The request token {rt.token} has expired")
    if rt.state == "denied":
        raise OAuthProblem(PERMISSION_DENIED, DENIED_ADVICE)
    if rt.state == "pending":
        raise OAuthProblem(PERMISSION_DENIED, "The request token has not been authorised by the user")
    if not verifier:
        raise OAuthProblem(PARAMETER_ABSENT, "Missing required parameter(s): oauth_verifier",
                           extra={"oauth_parameters_absent": "oauth_verifier"})
    if not same(verifier, rt.verifier):
        raise OAuthProblem(BAD_VERIFIER, f"The oauth_verifier {verifier} does not match the request token")
    if not the_mock.store.use_request_token(rt.token):
        raise OAuthProblem(TOKEN_REJECTED, f"Token {rt.token} does not match an expected REQUEST token")
    assert rt.organisation_id is not None
    conn = the_mock.store.connect(consumer.consumer_key, rt.organisation_id, now,
                                  settings.access_token_ttl, settings.authorization_ttl)
    org = the_mock.store.organisation(conn.organisation_id)
    pairs: list[tuple[str, object]] = [("oauth_token", conn.access_token),
                                       ("oauth_token_secret", conn.access_secret),
                                       ("oauth_expires_in", settings.access_token_ttl)]
    if consumer.app_type == "partner":
        pairs += [("oauth_session_handle", conn.session_handle),
                  ("oauth_authorization_expires_in", settings.authorization_ttl)]
    pairs.append(("xero_org_muid", org.org_muid))
    return _form(pairs)


def _renew(consumer: Consumer, token: str, session_handle: str | None) -> Response:
    the_mock = core()
    store = the_mock.store
    # SPEC.md §5: a stale token or a mismatched handle gets the §4 advice;
    # Xero's AccessToken endpoint said "REQUEST" here too (xero-node#175).
    stale = f"Token {token} does not match an expected REQUEST token"
    conn = store.connection_for_token(token)
    if conn is None or conn.consumer_key != consumer.consumer_key:
        retired = store.retired(token)
        if retired is not None and retired[1] == RETIRED_REVOKED:
            raise OAuthProblem(TOKEN_REJECTED, REVOKED_ADVICE)
        raise OAuthProblem(TOKEN_REJECTED, stale)
    if consumer.app_type != "partner":
        raise OAuthProblem(PERMISSION_DENIED, "Only partner applications can renew access tokens; "
                                              "start again from RequestToken")
    if not session_handle:
        raise OAuthProblem(PARAMETER_ABSENT, "Missing required parameter(s): oauth_session_handle",
                           extra={"oauth_parameters_absent": "oauth_session_handle"})
    if not same(session_handle, conn.session_handle):
        raise OAuthProblem(TOKEN_REJECTED, stale)
    now = the_mock.now()
    if now > conn.authorization_expires_at:
        raise OAuthProblem(PERMISSION_DENIED,
                           "The authorisation has expired: the user must connect the application again")
    renewed = store.renew(token, now, the_mock.settings.access_token_ttl,
                          the_mock.settings.rotate_session_handle)
    if renewed is None:  # another renewal with the same token won the race
        raise OAuthProblem(TOKEN_REJECTED, stale)
    return _form(_session_pairs(renewed, now))


def _session_pairs(conn: Connection, now: float) -> list[tuple[str, object]]:
    return [("oauth_token", conn.access_token),
            ("oauth_token_secret", conn.access_secret),
            ("oauth_expires_in", core().settings.access_token_ttl),
            ("oauth_session_handle", conn.session_handle),
            ("oauth_authorization_expires_in", max(0, int(conn.authorization_expires_at - now)))]


# -- Add-ons --------------------------------------------------------------------
def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@blueprint.route("/addons", methods=["GET"])
def addons() -> Response:
    the_mock = core()
    rows: dict[str, list[dict[str, Any]]] = {}
    for conn in sorted(the_mock.store.connections_for(), key=lambda c: c.created_at):
        consumer = the_mock.store.consumer(conn.consumer_key)
        rows.setdefault(conn.organisation_id, []).append({
            "connection": conn,
            "consumer_name": consumer.name if consumer else conn.consumer_key,
            "connected": _when(conn.created_at),
            "token_expires": _when(conn.token_expires_at),
            "authorization_expires": _when(conn.authorization_expires_at),
        })
    return _form_page("addons.html", organisations=the_mock.store.organisations(), connections=rows,
                      now=_when(the_mock.now()), disconnected=request.args.get("disconnected"))


@blueprint.route("/addons/disconnect", methods=["POST"])
def disconnect() -> Response | WerkzeugResponse:
    the_mock = core()
    refused = _csrf_refused()
    if refused is not None:
        return refused
    handle = request.form.get("session_handle", "")
    try:
        conn = the_mock.store.revoke(session_handle=handle)
    except StoreError:
        return _error_page("Not connected", "That application is not connected (any more).")
    consumer = the_mock.store.consumer(conn.consumer_key)
    name = consumer.name if consumer else conn.consumer_key
    return redirect(url_for("flow.addons", disconnected=name), code=303)
