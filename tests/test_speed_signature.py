"""The fast signature path agrees with oauthlib's own verify functions.

The verifier builds the base string once (with oauthlib's functions) and
checks RSA-SHA1 with cryptography directly, where oauthlib's
``verify_rsa_sha1`` would rebuild the base string and go through PyJWT.
These properties hold it to oauthlib's answer on random requests: valid
signatures, signatures of a different request, and garbage."""

from __future__ import annotations

import binascii
import functools
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauthlib.oauth1.rfc5849 import signature as rfc5849

from mockxero.oauth import hmac_sha1_matches, rsa_sha1_matches, signature_base_string

from .oauth_support import rsa_key


@functools.cache
def small_key() -> rsa.RSAPrivateKey:
    """A second key, to sign with the wrong one."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


hosts = st.sampled_from(["localhost", "127.0.0.1", "API.Xero.com", "[::1]", "mockxero", "a-b.example"])
ports = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
path_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="?#"), max_size=20)
param_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
oauth_names = st.sampled_from(["oauth_token", "oauth_nonce", "oauth_timestamp", "oauth_verifier",
                               "oauth_callback", "oauth_session_handle"])
params = st.lists(st.tuples(st.one_of(param_text, oauth_names), param_text), max_size=8)


@st.composite
def requests_(draw: st.DrawFn) -> SimpleNamespace:
    port = draw(ports)
    netloc = draw(hosts) + (f":{port}" if port is not None else "")
    scheme = draw(st.sampled_from(["https", "http", "HTTPS"]))
    return SimpleNamespace(
        http_method=draw(st.sampled_from(["GET", "POST", "PUT", "get", "DELETE"])),
        uri=f"{scheme}://{netloc}/{draw(path_text)}",
        params=draw(params),
    )


def oauthlib_base(req: SimpleNamespace) -> str:
    base: str = rfc5849.signature_base_string(req.http_method, rfc5849.base_string_uri(req.uri),
                                              rfc5849.normalize_parameters(req.params))
    return base


def ours(req: SimpleNamespace) -> str:
    return signature_base_string(req.http_method, rfc5849.base_string_uri(req.uri), req.params)


def oauthlib_rsa(req: SimpleNamespace, key: rsa.RSAPublicKey) -> bool:
    """oauthlib's verdict, with the one exception it lets escape (a
    signature that is not base64) counted as a refusal, as the server does."""
    try:
        return bool(rfc5849.verify_rsa_sha1(req, key))
    except binascii.Error:
        return False


def rsa_sign(key: rsa.RSAPrivateKey, base: str) -> str:
    return str(rfc5849.sign_rsa_sha1_with_client(base, SimpleNamespace(rsa_key=key)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(req=requests_(), other=requests_(), how=st.sampled_from(["valid", "other request", "wrong key"]))
def test_rsa_sha1_agrees_with_oauthlib_on_signed_requests(req: SimpleNamespace, other: SimpleNamespace,
                                                          how: str) -> None:
    key = rsa_key()
    if how == "valid":
        req.signature = rsa_sign(key, oauthlib_base(req))
    elif how == "other request":
        req.signature = rsa_sign(key, oauthlib_base(other))
    else:
        req.signature = rsa_sign(small_key(), oauthlib_base(req))
    base = ours(req)
    assert base == oauthlib_base(req)
    expected = oauthlib_rsa(req, key.public_key())
    assert rsa_sha1_matches(base, req.signature, key.public_key()) is expected
    if how == "valid":
        assert expected is True
    elif how == "wrong key" or oauthlib_base(other) != base:
        assert expected is False


@settings(max_examples=200, deadline=None)
@given(req=requests_(), signature=st.one_of(
    st.text(max_size=400),
    st.binary(min_size=250, max_size=260).map(lambda b: binascii.b2a_base64(b).decode()),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=350),
))
def test_rsa_sha1_agrees_with_oauthlib_on_garbage(req: SimpleNamespace, signature: str) -> None:
    req.signature = signature
    key = rsa_key().public_key()
    assert rsa_sha1_matches(ours(req), signature, key) is oauthlib_rsa(req, key) is False


@settings(max_examples=200, deadline=None)
@given(req=requests_(), consumer_secret=param_text, token_secret=param_text,
       how=st.sampled_from(["valid", "other secret", "garbage"]), garbage=st.text(max_size=40))
def test_hmac_sha1_agrees_with_oauthlib(req: SimpleNamespace, consumer_secret: str, token_secret: str,
                                        how: str, garbage: str) -> None:
    secrets = SimpleNamespace(client_secret=consumer_secret, resource_owner_secret=token_secret)
    if how == "valid":
        req.signature = rfc5849.sign_hmac_sha1_with_client(oauthlib_base(req), secrets)
    elif how == "other secret":
        secrets.resource_owner_secret = token_secret + "x"
        req.signature = rfc5849.sign_hmac_sha1_with_client(oauthlib_base(req), secrets)
    else:
        req.signature = garbage
    expected = rfc5849.verify_hmac_sha1(req, consumer_secret, token_secret)
    assert hmac_sha1_matches(ours(req), req.signature, consumer_secret, token_secret) is expected
    assert expected is (how == "valid" or (how == "garbage" and garbage == rfc5849.sign_hmac_sha1_with_client(
        oauthlib_base(req), SimpleNamespace(client_secret=consumer_secret,
                                            resource_owner_secret=token_secret))))


@pytest.mark.parametrize("uri", ["https://localhost:8443/api.xro/2.0/Organisation",
                                 "HTTPS://API.XERO.COM:443/oauth/RequestToken",
                                 "http://[::1]:80/a b/%41",
                                 "https://127.0.0.1/"])
def test_base_string_uri_is_worked_out_once_and_oauthlib_agrees(uri: str) -> None:
    """The verifier passes oauthlib's base string URI to the base string;
    oauthlib's own verify works it out from the raw URI. Same string."""
    req = SimpleNamespace(http_method="GET", uri=uri, params=[("a", "1"), ("oauth_nonce", "n")])
    assert ours(req) == oauthlib_base(req)
