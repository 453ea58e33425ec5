"""Shared pieces of the protocol tests (test_oauth_checks, test_flow,
test_renewal, test_control): the Xero-shaped refusal assertion, a control-API
client, RSA application key pairs, and an oauthlib client whose
``oauth_version`` (or any protocol parameter) can be changed before signing."""

from __future__ import annotations

import datetime
import functools
from typing import Any
from urllib.parse import parse_qsl

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from requests_oauthlib import OAuth1

from .helpers import HEADER, Control, ExtraParamsClient, Partner

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"


def assert_form_success(response: requests.Response) -> list[tuple[str, str]]:
    """A 200 form-encoded token response; its fields in order."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == FORM_CONTENT_TYPE
    return parse_qsl(response.text, keep_blank_values=True, strict_parsing=True)


@functools.cache
def rsa_key(tag: str = "default") -> rsa.RSAPrivateKey:
    """An RSA key, made once per tag for the whole run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def application_certificate(key: rsa.RSAPrivateKey, not_after: datetime.datetime | None = None) -> str:
    """A self-signed application certificate (PEM) for ``key``, as partners
    made with ``openssl req -x509``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test application")])
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(not_after or now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class ProtocolClient(ExtraParamsClient):
    """oauthlib's Client with a settable ``oauth_version`` (None: left out)."""

    oauth_version: str | None = "1.0"

    def get_oauth_params(self, request: Any) -> list[tuple[str, str]]:
        params = [p for p in super().get_oauth_params(request) if p[0] != "oauth_version"]
        if self.oauth_version is not None:
            params.append(("oauth_version", self.oauth_version))
        return params


def protocol_auth(partner: Partner, version: str | None = "1.0", token: str | None = None,
                  token_secret: str | None = None, signature_type: str = HEADER,
                  **kwargs: Any) -> OAuth1:
    auth = OAuth1(
        partner.consumer_key,
        client_secret=partner.consumer_secret or None,
        resource_owner_key=token,
        resource_owner_secret=token_secret,
        signature_method=kwargs.pop("signature_method", partner.signature_method),
        signature_type=signature_type,
        rsa_key=partner.rsa_key,
        client_class=ProtocolClient,
        **kwargs,
    )
    auth.client.oauth_version = version
    return auth


def register(control: Control, status: int = 201, **fields: Any) -> dict[str, Any]:
    """Register a consumer through the control API."""
    data: dict[str, Any] = control.ok("POST", "/consumers", json=fields, status=status)
    return data
