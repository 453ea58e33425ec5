"""The ``oauth_problem`` vocabulary and how the server renders a refusal.

Xero answered an OAuth refusal with a form-encoded body
``oauth_problem=X&oauth_problem_advice=Y`` (both keys always present) served
as ``text/html; charset=utf-8`` — pyxero and xero-php look for exactly that —
and put nothing about the problem into ``WWW-Authenticate`` (the Ruby oauth
gem would otherwise pre-empt xeroizer's own handling). The client library
imports the names from here; nothing in this module needs Flask."""

from __future__ import annotations

import html
from collections.abc import Mapping
from urllib.parse import quote, urlencode

PARAMETER_ABSENT = "parameter_absent"
PARAMETER_REJECTED = "parameter_rejected"
VERSION_REJECTED = "version_rejected"
CONSUMER_KEY_UNKNOWN = "consumer_key_unknown"
SIGNATURE_METHOD_REJECTED = "signature_method_rejected"
TIMESTAMP_REFUSED = "timestamp_refused"
NONCE_USED = "nonce_used"
SIGNATURE_INVALID = "signature_invalid"
TOKEN_REJECTED = "token_rejected"
TOKEN_EXPIRED = "token_expired"
PERMISSION_DENIED = "permission_denied"
BAD_VERIFIER = "bad_verifier"
RATE_LIMIT_EXCEEDED = "rate limit exceeded"
#: Not an OAuth problem: the mutual-TLS gateway refused the client certificate.
CLIENT_CERTIFICATE = "client_certificate"

#: Problem → the HTTP status Xero gave it when nothing more specific applies.
DEFAULT_STATUS: dict[str, int] = {
    PARAMETER_ABSENT: 400,
    PARAMETER_REJECTED: 400,
    VERSION_REJECTED: 400,
    CONSUMER_KEY_UNKNOWN: 401,
    SIGNATURE_METHOD_REJECTED: 401,
    TIMESTAMP_REFUSED: 401,
    NONCE_USED: 401,
    SIGNATURE_INVALID: 401,
    TOKEN_REJECTED: 401,
    TOKEN_EXPIRED: 401,
    PERMISSION_DENIED: 401,
    BAD_VERIFIER: 401,
    RATE_LIMIT_EXCEEDED: 503,
}

#: Advice used when the caller gives none (the Xero wording where known).
DEFAULT_ADVICE: dict[str, str] = {
    PARAMETER_ABSENT: "A required OAuth parameter was not supplied",
    PARAMETER_REJECTED: "A parameter was not accepted",
    VERSION_REJECTED: "The oauth_version must be 1.0",
    CONSUMER_KEY_UNKNOWN: "Consumer key was not recognised",
    SIGNATURE_METHOD_REJECTED: "The signature method is not allowed for this application",
    TIMESTAMP_REFUSED: "The timestamp is too far from the current time",
    NONCE_USED: "The nonce value has already been used",
    SIGNATURE_INVALID: "Failed to validate signature",
    TOKEN_REJECTED: "The access token has not been authorized, or has been revoked by the user",
    TOKEN_EXPIRED: "The access token has expired",
    PERMISSION_DENIED: "The consumer was denied access to this resource.",
    BAD_VERIFIER: "The verifier does not match the request token",
    RATE_LIMIT_EXCEEDED: "please wait before retrying the xero api",
}

#: Advice Xero gave for a revoked connection's token, and for a denied request token.
REVOKED_ADVICE = "The access token has not been authorized, or has been revoked by the user"
DENIED_ADVICE = "The consumer was denied access to this resource."

OAUTH_CONTENT_TYPE = "text/html; charset=utf-8"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def form_encode(pairs: Mapping[str, object] | list[tuple[str, object]]) -> str:
    """Percent-encode like Xero: spaces as %20, not '+'."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return urlencode([(k, str(v)) for k, v in items], quote_via=quote)


class OAuthProblem(Exception):
    """A refusal with an ``oauth_problem``; raised by the first failing check."""

    def __init__(
        self,
        problem: str,
        advice: str | None = None,
        status: int | None = None,
        extra: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.problem = problem
        self.advice = advice if advice is not None else DEFAULT_ADVICE.get(problem, problem)
        self.status = status if status is not None else DEFAULT_STATUS.get(problem, 401)
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        #: Filled by the signature check for the journal: what the server signed.
        self.base_string: str | None = None
        super().__init__(f"{self.status} {problem}: {self.advice}")

    def body(self) -> str:
        pairs: list[tuple[str, object]] = [
            ("oauth_problem", self.problem),
            ("oauth_problem_advice", self.advice),
        ]
        pairs.extend(self.extra.items())
        return form_encode(pairs)

    def render(self) -> tuple[int, dict[str, str], str]:
        headers = {"Content-Type": OAUTH_CONTENT_TYPE, **self.headers}
        return self.status, headers, self.body()


#: The reasons the gateway gives for refusing a client certificate.
CERT_MISSING = "missing"
CERT_EXPIRED = "expired"
CERT_NOT_YET_VALID = "not yet valid"
CERT_UNKNOWN_ISSUER = "unknown issuer"
CERT_NOT_REGISTERED = "not registered for this consumer"

_IIS_403 = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" \
"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8"/>
<title>IIS 7.5 Detailed Error - 403.7 - Forbidden</title>
</head>
<body>
<div id="header"><h1>Server Error in Application "DEFAULT WEB SITE"</h1></div>
<div id="content">
<div class="content-container">
<h3>HTTP Error 403.7 - Forbidden</h3>
<h4>The page you are attempting to access requires your browser to have a \
Secure Sockets Layer (SSL) client certificate that the Web server recognizes.</h4>
</div>
<div class="content-container">
<p id="mockxero-reason">mockxero: client certificate {reason}{detail}.</p>
</div>
</div>
</body>
</html>
"""


class ClientCertificateRefused(Exception):
    """The 403 of the Entrust gateway: the request never reached OAuth."""

    status = 403
    problem = CLIENT_CERTIFICATE

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.advice = f"client certificate {reason}" + (f": {detail}" if detail else "")
        self.base_string: str | None = None
        super().__init__(f"403 {self.advice}")

    def render(self) -> tuple[int, dict[str, str], str]:
        # One line naming the failed check: "... unknown issuer: it was not issued by ...".
        detail = f": {html.escape(self.detail.rstrip('.'), quote=False)}" if self.detail else ""
        body = _IIS_403.format(reason=html.escape(self.reason), detail=detail)
        return 403, {"Content-Type": OAUTH_CONTENT_TYPE}, body
