"""``/api.xro/2.0``: the API calls an integration makes after the dance."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from .app import mock, signed_request
from .problems import (
    RATE_LIMIT_EXCEEDED,
    REVOKED_ADVICE,
    TOKEN_EXPIRED,
    TOKEN_REJECTED,
    OAuthProblem,
)
from .store import RETIRED_REVOKED, Consumer, Organisation

blueprint = Blueprint("api", __name__)

NOT_FOUND_BODY = "The resource you're looking for cannot be found"


def _token_secret(consumer: Consumer, token: str) -> str | None:
    conn = mock().store.connection_for_token(token)
    if conn is not None and conn.consumer_key == consumer.consumer_key:
        return conn.access_secret
    return None


def authenticate() -> tuple[Consumer, Organisation]:
    """The OAuth checks, the access token (SPEC.md §5) and the rate limit;
    the consumer and the organisation the call is for."""
    the_mock = mock()
    store = the_mock.store
    req = signed_request()
    consumer = the_mock.verifier.verify(req, required=("oauth_token",), token_secret=_token_secret)
    token = req.oauth["oauth_token"]
    if consumer.app_type == "private":
        if token != consumer.consumer_key:
            raise OAuthProblem(TOKEN_REJECTED,
                               "Private applications sign with oauth_token set to the consumer key")
        assert consumer.organisation_id is not None
        org = store.organisations[consumer.organisation_id]
    else:
        conn = store.connection_for_token(token)
        if conn is None or conn.consumer_key != consumer.consumer_key:
            retired = store.retired(token)
            if retired is not None and retired[1] == RETIRED_REVOKED:
                raise OAuthProblem(TOKEN_REJECTED, REVOKED_ADVICE)
            raise OAuthProblem(TOKEN_REJECTED, f"Token {token} does not match an expected ACCESS token")
        if the_mock.clock.now() > min(conn.token_expires_at, conn.authorization_expires_at):
            raise OAuthProblem(TOKEN_EXPIRED, "The access token has expired")
        org = store.organisations[conn.organisation_id]
    limit = the_mock.rate_limit
    if limit is not None:
        window = store.rate_limit_hit(consumer.consumer_key, org.organisation_id,
                                      the_mock.clock.now(), limit[0], limit[1])
        if window is not None:
            raise OAuthProblem(RATE_LIMIT_EXCEEDED, status=503,
                               headers={"X-Rate-Limit-Problem": window})
    return consumer, org


def not_found() -> Response:
    return Response(NOT_FOUND_BODY, status=404, content_type="text/html; charset=utf-8")


def http_error(exc: HTTPException) -> Response:
    return Response(exc.description or exc.name, status=exc.code or 500,
                    content_type="text/html; charset=utf-8")


@blueprint.route("/api.xro/2.0/Organisation", methods=["GET"])
def organisation() -> Response:
    _, org = authenticate()
    return jsonify({"Status": "OK", "Organisations": [{"Name": org.name}]})
