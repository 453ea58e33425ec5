"""What a Xero partner endpoint can refuse, as exception classes.

One class per ``oauth_problem`` (the model is oauthlib's
``oauth1.rfc5849.errors``), grouped so a caller can catch as widely as it
likes: every refusal is a :class:`XeroError`; the token problems an
application must act on (start the dance again, wait, fix its set-up) have
their own classes. :func:`error_from_response` reads a refused response the
way it arrives from Xero: a form-encoded ``oauth_problem`` body, the IIS
403.7 page of the client-certificate gateway, a plain-text 503 while the API
is offline, or an ``ApiException`` document in JSON or XML.

The problem names come from :mod:`mockxero.problems`, the one vocabulary the
client shares with the server; nothing here imports the server."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from typing import Any
from urllib.parse import parse_qsl

import requests

from . import problems


class XeroError(Exception):
    """A refusal from Xero. ``status``: the HTTP status; ``problem``: the
    ``oauth_problem`` (None when the refusal carried none); ``advice``: the
    reason in words (``oauth_problem_advice``, the page's or API's message)."""

    problem_name: str | None = None

    def __init__(self, status: int, problem: str | None, advice: str,
                 response: requests.Response | None = None) -> None:
        self.status = status
        self.problem = problem
        self.advice = advice
        #: The response that carried the refusal, for logging; None if built by hand.
        self.response = response
        label = f" {problem}" if problem else ""
        super().__init__(f"{status}{label}: {advice}")


class OAuthError(XeroError):
    """An ``oauth_problem`` with no more specific class below."""


# -- the token: what the application must act on ---------------------------------

class TokenExpired(OAuthError):
    """The access token's 30 minutes are over. :class:`~mockxero.client.PartnerClient`
    renews and retries once by itself; this reaches the caller only if that
    did not help."""

    problem_name = problems.TOKEN_EXPIRED


class TokenRejected(OAuthError):
    """The token is not (or no longer) one Xero knows: revoked by the user on
    the Add-ons page, superseded by a renewal, or a used request token. The
    application must start again from the request token."""

    problem_name = problems.TOKEN_REJECTED


class PermissionDenied(OAuthError):
    """The user denied the request token, it was not yet authorised, or the
    authorisation (a year by default) has ended: start the dance again."""

    problem_name = problems.PERMISSION_DENIED


class BadVerifier(OAuthError):
    """The verifier does not belong to the request token."""

    problem_name = problems.BAD_VERIFIER


# -- the consumer and its signature: set-up problems --------------------------------

class ConsumerError(OAuthError):
    """The request as the consumer made it is wrong: its key, its signature,
    its parameters. Retrying the same way will not help."""


class ConsumerKeyUnknown(ConsumerError):
    problem_name = problems.CONSUMER_KEY_UNKNOWN


class SignatureError(ConsumerError):
    """Xero could not accept the signature (key, method, timestamp or nonce)."""


class SignatureInvalid(SignatureError):
    """The signature does not verify with the uploaded application
    certificate (wrong RSA key, or the certificate has expired)."""

    problem_name = problems.SIGNATURE_INVALID


class SignatureMethodRejected(SignatureError):
    problem_name = problems.SIGNATURE_METHOD_REJECTED


class TimestampRefused(SignatureError):
    """This machine's clock is too far from Xero's."""

    problem_name = problems.TIMESTAMP_REFUSED


class NonceUsed(SignatureError):
    problem_name = problems.NONCE_USED


class ParameterAbsent(ConsumerError):
    problem_name = problems.PARAMETER_ABSENT


class ParameterRejected(ConsumerError):
    problem_name = problems.PARAMETER_REJECTED


class VersionRejected(ConsumerError):
    problem_name = problems.VERSION_REJECTED


# -- the gateway and the service ------------------------------------------------------

class ClientCertificateRefused(XeroError):
    """The Entrust gateway's "HTTP Error 403.7 - Forbidden" page: the client
    certificate is missing, expired, or not one registered for the consumer.
    The request never reached OAuth, so ``problem`` is None; ``advice`` is the
    page's reason (mockxero adds which check failed)."""


class RateLimited(XeroError):
    """503 ``rate limit exceeded``; ``window`` is ``"minute"`` or ``"day"``
    (from ``X-Rate-Limit-Problem``), or None if Xero did not say."""

    problem_name = problems.RATE_LIMIT_EXCEEDED

    def __init__(self, status: int, problem: str | None, advice: str,
                 response: requests.Response | None = None, window: str | None = None) -> None:
        super().__init__(status, problem, advice, response)
        self.window = window


class NotAvailable(XeroError):
    """A 503 without an ``oauth_problem``: the API is offline for maintenance."""


class NotFound(XeroError):
    """404: no such resource (or record)."""


class ApiError(XeroError):
    """Xero's ``ApiException`` document: ``number`` (ErrorNumber), ``kind``
    (Type, e.g. ``ApiMethodNotImplementedException``) and ``advice`` (Message)."""

    def __init__(self, status: int, advice: str, response: requests.Response | None = None,
                 number: int | None = None, kind: str | None = None,
                 messages: list[str] | None = None) -> None:
        super().__init__(status, None, advice, response)
        self.number = number
        self.kind = kind
        #: The ValidationErrors' messages, in order (empty for other exceptions).
        self.messages = messages or []


class ValidationError(ApiError):
    """A ``ValidationException`` (ErrorNumber 10): ``messages`` holds what
    Xero said about each refused record."""

    def __str__(self) -> str:
        return f"{self.status} {self.advice}: " + "; ".join(self.messages)


_BY_PROBLEM: dict[str, type[OAuthError]] = {
    cls.problem_name: cls
    for cls in (TokenExpired, TokenRejected, PermissionDenied, BadVerifier, ConsumerKeyUnknown,
                SignatureInvalid, SignatureMethodRejected, TimestampRefused, NonceUsed,
                ParameterAbsent, ParameterRejected, VersionRejected)
    if cls.problem_name is not None
}

_IIS_403_7 = "403.7"
_TAGS = re.compile(r"<[^>]+>")


def error_from_response(response: requests.Response) -> XeroError:
    """The exception for a refused response."""
    status = response.status_code
    text = response.text
    ctype = response.headers.get("Content-Type", "").lower()
    if status == 403 and _IIS_403_7 in text:
        return ClientCertificateRefused(status, None, _certificate_reason(text), response)
    form = dict(parse_qsl(text, keep_blank_values=True)) if "oauth_problem=" in text else {}
    problem = form.get("oauth_problem")
    advice = form.get("oauth_problem_advice") or (problem or "")
    window = response.headers.get("X-Rate-Limit-Problem")
    if window is not None or problem == problems.RATE_LIMIT_EXCEEDED:
        return RateLimited(status, problem, advice or "rate limit exceeded", response,
                           window=window.strip().lower() if window else None)
    if problem:
        return _BY_PROBLEM.get(problem, OAuthError)(status, problem, advice, response)
    api = _api_exception(text, ctype)
    if api is not None:
        number, kind, message, messages = api
        cls = ValidationError if kind == "ValidationException" else ApiError
        return cls(status, message, response, number=number, kind=kind, messages=messages)
    short = " ".join(_TAGS.sub(" ", text).split())[:300] or response.reason or "no reason given"
    if status == 503:
        return NotAvailable(status, None, short, response)
    if status == 404:
        return NotFound(status, None, short, response)
    return XeroError(status, None, short, response)


def _certificate_reason(page: str) -> str:
    # mockxero adds one line naming the failed check; Xero's page had only the IIS text.
    match = re.search(r'id="mockxero-reason">mockxero: ([^<]*)<', page)
    if match:
        return match.group(1).strip()
    return ("HTTP Error 403.7 - Forbidden: the server requires a Secure Sockets Layer (SSL) "
            "client certificate that it recognizes")


def _api_exception(text: str, ctype: str) -> tuple[int | None, str, str, list[str]] | None:
    """(ErrorNumber, Type, Message, validation messages) of an ApiException body."""
    body = text.lstrip()
    if body.startswith("{"):
        try:
            data: Any = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or "Type" not in data:
            return None
        messages = [str(err.get("Message", ""))
                    for element in data.get("Elements") or [] if isinstance(element, dict)
                    for err in element.get("ValidationErrors") or [] if isinstance(err, dict)]
        number = data.get("ErrorNumber")
        return (number if isinstance(number, int) else None, str(data["Type"]),
                str(data.get("Message", "")), messages)
    if body.startswith("<") and "ApiException" in body[:500]:
        if "<!DOCTYPE" in body or "<!ENTITY" in body:  # never expand entities from a response
            return None
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            return None

        def local(tag: str) -> str:
            return tag.rsplit("}", 1)[-1]

        fields = {local(child.tag): (child.text or "") for child in root}
        messages = [m.text or "" for ve in root.iter() if local(ve.tag) == "ValidationError"
                    for m in ve if local(m.tag) == "Message"]
        number_text = fields.get("ErrorNumber", "")
        return (int(number_text) if number_text.isdigit() else None, fields.get("Type", ""),
                fields.get("Message", ""), messages)
    return None
