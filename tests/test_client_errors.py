"""Every refusal reaches the caller as its typed XeroError, made from the
response the mock really sent over mutual TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mockxero import MockXero, problems
from mockxero.client import (
    ApiError,
    BadVerifier,
    ClientCertificateRefused,
    ConsumerError,
    ConsumerKeyUnknown,
    NonceUsed,
    NotAvailable,
    NotFound,
    OAuthError,
    ParameterAbsent,
    ParameterRejected,
    PermissionDenied,
    RateLimited,
    SignatureError,
    SignatureInvalid,
    SignatureMethodRejected,
    TimestampRefused,
    TokenExpired,
    TokenRejected,
    ValidationError,
    VersionRejected,
    XeroError,
)

from .client_support import MakeClient, connect, make_client

__all__ = ["make_client"]  # the fixture, imported for the tests below

API = "/api.xro/2.0/*"


def test_unknown_consumer_key(make_client: MakeClient) -> None:
    client = make_client(consumer_key="UNKNOWNCONSUMERKEY000000000000")
    with pytest.raises(ConsumerKeyUnknown) as caught:
        client.fetch_request_token()
    error = caught.value
    assert isinstance(error, ConsumerError) and isinstance(error, XeroError)
    assert (error.status, error.problem, error.advice) == (
        401, "consumer_key_unknown", "Consumer key was not recognised")
    assert error.response is not None and error.response.status_code == 401


def test_signature_with_the_wrong_rsa_key(make_client: MakeClient) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    client = make_client(rsa_key=pem)
    with pytest.raises(SignatureInvalid) as caught:
        client.fetch_request_token()
    assert isinstance(caught.value, SignatureError) and isinstance(caught.value, ConsumerError)
    assert caught.value.advice == "Failed to validate signature"


def test_denied_request_token(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    request_token = client.fetch_request_token()
    xero.authorize(request_token.token, deny=True)
    with pytest.raises(PermissionDenied) as caught:
        client.fetch_access_token(request_token, "WHATEVER")
    assert caught.value.advice == problems.DENIED_ADVICE


def test_wrong_verifier(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    request_token = client.fetch_request_token()
    xero.authorize(request_token.token)
    with pytest.raises(BadVerifier) as caught:
        client.fetch_access_token(request_token, "NOTTHEVERIFIER")
    assert caught.value.status == 401


def test_authorisation_over_after_a_year(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    xero.advance(31536000 + 1)
    with pytest.raises(PermissionDenied):
        client.get("Contacts")  # token_expired, then the renewal is refused: raised, not looped
    with pytest.raises(PermissionDenied):
        client.renew()
    assert [e["status"] for e in xero.journal() if e["path"] == "/oauth/AccessToken"] == [200, 401]


def test_a_used_request_token(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    request_token = client.fetch_request_token()
    verifier = xero.authorize(request_token.token)["oauth_verifier"]
    client.fetch_access_token(request_token, verifier)
    with pytest.raises(TokenRejected) as caught:
        client.fetch_access_token(request_token, verifier)
    assert caught.value.advice == f"Token {request_token.token} does not match an expected REQUEST token"


def test_client_certificate_from_another_ca(xero: MockXero, make_client: MakeClient, tmp_path: Path) -> None:
    folder = tmp_path
    issued = xero.issue_client_certificate(foreign=True)
    (folder / "cert.pem").write_text(issued["certificate"])
    (folder / "key.pem").write_text(issued["private_key"])
    client = make_client(client_cert=(folder / "cert.pem", folder / "key.pem"))
    with pytest.raises(ClientCertificateRefused) as caught:
        client.fetch_request_token()
    assert caught.value.status == 403 and caught.value.problem is None
    assert "unknown issuer" in caught.value.advice


def test_rate_limited_minute(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    xero.change_settings(rate_limit="1/5000")
    client.get("Organisation")
    with pytest.raises(RateLimited) as caught:
        client.get("Organisation")
    error = caught.value
    assert (error.status, error.problem, error.window) == (503, "rate limit exceeded", "minute")
    assert error.advice == "please wait before retrying the xero api"


def test_rate_limited_day(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    xero.add_fault(kind="rate_limit", path=API, window="day")
    with pytest.raises(RateLimited) as caught:
        client.get("Contacts")
    assert caught.value.window == "day"


def test_offline_is_not_available(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    xero.add_fault(kind="offline", path=API)
    with pytest.raises(NotAvailable) as caught:
        client.get("Contacts")
    assert caught.value.status == 503 and caught.value.problem is None
    assert "offline" in caught.value.advice
    assert client.get("Contacts")["Contacts"]  # one fault, then the API is back


@pytest.mark.parametrize("accept", ["application/json", "text/xml"])
def test_validation_error_carries_xeros_messages(xero: MockXero, make_client: MakeClient,
                                                 accept: str) -> None:
    client = make_client()
    connect(xero, client)
    with pytest.raises(ValidationError) as caught:
        client.put("Contacts", json={"Contacts": [{"EmailAddress": "not an address"}]},
                   headers={"Accept": accept})
    error = caught.value
    assert isinstance(error, ApiError)
    assert (error.status, error.number, error.kind) == (400, 10, "ValidationException")
    assert error.advice == "A validation exception occurred"
    assert "The contact name must be specified." in error.messages
    assert "Email address must be valid." in error.messages
    assert "The contact name must be specified." in str(error)


def test_not_implemented_is_an_api_error(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    with pytest.raises(ApiError) as caught:
        client.get("Employees")
    error = caught.value
    assert not isinstance(error, ValidationError)
    assert (error.status, error.number, error.kind) == (501, 20, "ApiMethodNotImplementedException")


def test_unknown_resource_is_not_found(xero: MockXero, make_client: MakeClient) -> None:
    client = make_client()
    connect(xero, client)
    with pytest.raises(NotFound) as caught:
        client.get("NoSuchThing")
    assert caught.value.status == 404
    assert "cannot be found" in caught.value.advice


@pytest.mark.parametrize(("problem", "cls", "status"), [
    (problems.TOKEN_EXPIRED, TokenExpired, 401),
    (problems.TOKEN_REJECTED, TokenRejected, 401),
    (problems.PERMISSION_DENIED, PermissionDenied, 401),
    (problems.BAD_VERIFIER, BadVerifier, 401),
    (problems.CONSUMER_KEY_UNKNOWN, ConsumerKeyUnknown, 401),
    (problems.SIGNATURE_INVALID, SignatureInvalid, 401),
    (problems.SIGNATURE_METHOD_REJECTED, SignatureMethodRejected, 401),
    (problems.TIMESTAMP_REFUSED, TimestampRefused, 401),
    (problems.NONCE_USED, NonceUsed, 401),
    (problems.PARAMETER_ABSENT, ParameterAbsent, 400),
    (problems.PARAMETER_REJECTED, ParameterRejected, 400),
    (problems.VERSION_REJECTED, VersionRejected, 400),
    ("a_problem_from_the_future", OAuthError, 401),
])
def test_each_oauth_problem_has_its_class(xero: MockXero, make_client: MakeClient, problem: str,
                                          cls: type[XeroError], status: int) -> None:
    client = make_client()
    xero.add_fault(kind="problem", path="/oauth/RequestToken", problem=problem, status=status,
                   advice=f"advice for {problem}")
    with pytest.raises(cls) as caught:
        client.fetch_request_token()
    error = caught.value
    assert type(error) is cls
    assert (error.status, error.problem, error.advice) == (status, problem, f"advice for {problem}")
    assert isinstance(error, OAuthError)
