"""The ordered checks every signed request goes through (SPEC.md §3).

One path for every endpoint, so the order of the checks lives in one place
instead of inside oauthlib's endpoint/validator callbacks (which demand a
verifier on renewal, refuse ``oauth_version=1.0a`` and refuse pyxero's
header-plus-query split). The pieces that must agree with clients to the
byte — parameter collection, normalisation, the base string, and the
RSA-SHA1 and HMAC-SHA1 verification — are oauthlib's own
``rfc5849.signature`` functions. The base string is built once, by those
functions, and RSA-SHA1 is then checked with cryptography directly against
the consumer's public key object, loaded once at registration (what
oauthlib's ``verify_rsa_sha1`` would reach through PyJWT after building the
base string again); ``tests/test_speed_signature.py`` holds the two to the
same answers.
"""

from __future__ import annotations

import binascii
import dataclasses
import functools
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from types import SimpleNamespace
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from oauthlib.common import safe_string_equals
from oauthlib.oauth1.rfc5849 import signature as rfc5849
from oauthlib.oauth1.rfc5849 import utils as rfc5849_utils

from .clientcert import ClientCertificateChecker
from .peer import PeerCertificate
from .problems import (
    CONSUMER_KEY_UNKNOWN,
    NONCE_USED,
    PARAMETER_ABSENT,
    PARAMETER_REJECTED,
    SIGNATURE_INVALID,
    SIGNATURE_METHOD_REJECTED,
    TIMESTAMP_REFUSED,
    VERSION_REJECTED,
    OAuthProblem,
)
from .settings import Settings
from .store import Consumer, Store

RSA_SHA1 = "RSA-SHA1"
HMAC_SHA1 = "HMAC-SHA1"

#: Parameters every signed request needs (PLAINTEXT is not offered).
REQUIRED = ("oauth_consumer_key", "oauth_signature_method", "oauth_signature",
            "oauth_timestamp", "oauth_nonce")

#: Signature method each app type must use (Xero).
METHOD_FOR_APP_TYPE = {"partner": RSA_SHA1, "private": RSA_SHA1, "public": HMAC_SHA1}

_SOURCE_NAMES = {"header": "the Authorization header", "query": "the query string",
                 "body": "the form body"}


@dataclasses.dataclass
class SignedRequest:
    """What the checks need of an HTTP request, free of any web framework."""

    method: str
    #: scheme://host[:port]/path as the client addressed it (no query).
    uri: str
    #: The raw (still percent-encoded) query string.
    query: str = ""
    #: The raw body, only when it is application/x-www-form-urlencoded.
    form_body: str = ""
    authorization: str | None = None
    peer: PeerCertificate | None = None
    #: Filled while checking, for the journal and the endpoints.
    oauth: dict[str, str] = dataclasses.field(default_factory=dict)
    consumer: Consumer | None = None

    @property
    def consumer_key(self) -> str | None:
        return self.oauth.get("oauth_consumer_key") or None


TokenSecretLookup = Callable[[Consumer, str], "str | None"]


class OAuthVerifier:
    def __init__(self, store: Store, settings: Settings, mock_now: Callable[[], datetime],
                 certificates: ClientCertificateChecker,
                 real_now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.mock_now = mock_now
        self.certificates = certificates
        #: The real clock: the timestamp window and the nonces' lifetimes
        #: (SPEC.md §3.6) are measured on it, not on the mock clock.
        self.real_now = real_now

    def verify(self, req: SignedRequest, required: Sequence[str] = (),
               token_secret: TokenSecretLookup | None = None) -> Consumer:
        """Run checks 1-8 of SPEC.md §3 in order; the first failure raises
        :class:`OAuthProblem` (or ``ClientCertificateRefused``). Returns the
        consumer; ``req.oauth`` holds the OAuth parameters. Token checks (9)
        are the endpoint's."""
        params = collect(req)
        oauth = req.oauth
        # 1. every required parameter present (and not empty)
        absent = [name for name in (*REQUIRED, *required) if not oauth.get(name)]
        if absent:
            raise OAuthProblem(
                PARAMETER_ABSENT, f"Missing required parameter(s): {', '.join(absent)}",
                extra={"oauth_parameters_absent": "&".join(absent)})
        # 2. version: 1.0, and the 1.0a / 1.0A that xero-node sends
        version = oauth.get("oauth_version")
        if version is not None and version.lower() not in ("1.0", "1.0a"):
            raise OAuthProblem(VERSION_REJECTED, f"oauth_version {version} is not supported; use 1.0")
        # 3. consumer
        consumer = self.store.consumer(oauth["oauth_consumer_key"])
        if consumer is None:
            raise OAuthProblem(CONSUMER_KEY_UNKNOWN, "Consumer key was not recognised")
        req.consumer = consumer
        # 4. the Entrust client certificate, at mock time
        self.certificates.check(consumer, req.peer, self.mock_now())
        # 5. signature method for the app type
        method = oauth["oauth_signature_method"]
        expected = METHOD_FOR_APP_TYPE[consumer.app_type]
        if method != expected:
            raise OAuthProblem(
                SIGNATURE_METHOD_REJECTED,
                f"{consumer.app_type.capitalize()} applications must sign with {expected}, "
                f"not {method}")
        if method == RSA_SHA1 and consumer.public_key is None:
            raise OAuthProblem(SIGNATURE_METHOD_REJECTED,
                               "No certificates have been registered for the consumer", status=400)
        # 6. timestamp window, on the real clock
        timestamp = self._timestamp(oauth["oauth_timestamp"])
        # 7. nonce
        nonce = oauth["oauth_nonce"]
        if self.store.nonce_seen(consumer.consumer_key, nonce):
            raise OAuthProblem(NONCE_USED, f'The nonce value "{nonce}" has already been used')
        # 8. signature
        token = oauth.get("oauth_token", "")
        public = consumer.app_type == "public"  # only HMAC-SHA1 is keyed with the token secret
        secret = token_secret(consumer, token) if public and token_secret and token else None
        if secret is None and token and token_secret and public:
            # HMAC-SHA1 cannot be checked without the secret of a token the
            # store no longer (or never) knew: leave it to the endpoint's token
            # check (9), which refuses it as token_rejected (e.g. revoked) —
            # not signature_invalid. No nonce is recorded for it.
            return consumer
        self._check_signature(req, consumer, params, secret or "")
        # Recorded only once the signature holds, so a forged request cannot
        # burn a nonce; atomic, so two copies of one request race safely.
        forget_at = timestamp + self.settings.timestamp_past + 1
        if not self.store.remember_nonce(consumer.consumer_key, nonce, forget_at, self.real_now()):
            raise OAuthProblem(NONCE_USED, f'The nonce value "{nonce}" has already been used')
        return consumer

    def _timestamp(self, raw: str) -> int:
        try:
            timestamp = int(raw)
        except ValueError:
            raise OAuthProblem(
                TIMESTAMP_REFUSED,
                f"oauth_timestamp must be whole seconds since the epoch, not {raw!r}") from None
        now = self.real_now()
        low, high = now - self.settings.timestamp_past, now + self.settings.timestamp_future
        if not low <= timestamp <= high:
            raise OAuthProblem(
                TIMESTAMP_REFUSED,
                f"oauth_timestamp {timestamp} is outside {int(low)}-{int(high)} "
                f"(the server's real clock is {int(now)})")
        return timestamp

    def _check_signature(self, req: SignedRequest, consumer: Consumer,
                         params: list[tuple[str, str]], token_secret: str) -> None:
        try:
            uri = _base_string_uri(req.uri)
        except ValueError as exc:
            raise OAuthProblem(PARAMETER_REJECTED,
                               f"Cannot build the signature base string URI: {exc}") from None
        # Built once, by oauthlib, and used for the check and the journal.
        base = signature_base_string(req.method, uri, params)
        signature = req.oauth["oauth_signature"]
        advice = "Failed to validate signature"
        if consumer.app_type == "public":
            ok = hmac_sha1_matches(base, signature, consumer.consumer_secret, token_secret)
        else:
            assert consumer.public_key is not None  # checked with the signature method (5)
            ok = rsa_sha1_matches(base, signature, consumer.public_key)
            expires = consumer.certificate_not_after
            if expires is not None and self.mock_now() > expires:
                ok = False
                advice = (f"The application certificate expired at {expires.isoformat()}; "
                          "upload a new one")
        if not ok:
            problem = OAuthProblem(SIGNATURE_INVALID, advice)
            problem.base_string = base  # for the journal
            raise problem


def signature_base_string(method: str, base_string_uri: str, params: list[tuple[str, str]]) -> str:
    """RFC 5849 §3.4.1's base string, made by oauthlib's own functions (the
    ones its ``verify_*`` functions call), from an already built base string
    URI."""
    base: str = rfc5849.signature_base_string(method, base_string_uri,
                                              rfc5849.normalize_parameters(params))
    return base


_PKCS1V15 = padding.PKCS1v15()
_SHA1 = hashes.SHA1()


def rsa_sha1_matches(base_string: str, signature: str, public_key: RSAPublicKey) -> bool:
    """What oauthlib's ``verify_rsa_sha1`` answers for this base string, with
    cryptography called directly: oauthlib would rebuild the base string and
    go through PyJWT to the very same ``RSAPublicKey.verify``. A signature
    that is not base64 (which oauthlib lets escape as ``binascii.Error``)
    is simply wrong."""
    try:
        raw = binascii.a2b_base64(signature.encode("ascii"))
        public_key.verify(raw, base_string.encode("ascii"), _PKCS1V15, _SHA1)
    except (ValueError, InvalidSignature):  # also UnicodeError and binascii.Error
        return False
    return True


def hmac_sha1_matches(base_string: str, signature: str, consumer_secret: str, token_secret: str) -> bool:
    """oauthlib's ``verify_hmac_sha1`` for an already built base string."""
    secrets = SimpleNamespace(client_secret=consumer_secret, resource_owner_secret=token_secret)
    expected = rfc5849.sign_hmac_sha1_with_client(base_string, secrets)
    return bool(safe_string_equals(expected, signature))


#: oauthlib's base string URI, remembered: clients call the same few URLs.
#: Worked out before the base string so that a bad Host is
#: parameter_rejected, not an error. Only URIs up to CACHED_URI characters
#: are remembered: the cache is bounded in bytes (4096 x 512), not only in
#: entries, whatever paths and Host headers clients invent.
CACHED_URI = 512
_cached_base_string_uri = functools.lru_cache(maxsize=4096)(rfc5849.base_string_uri)


def _base_string_uri(uri: str) -> str:
    if len(uri) > CACHED_URI:
        return str(rfc5849.base_string_uri(uri))
    return str(_cached_base_string_uri(uri))


#: One ``name="value"`` of RFC 5849 §3.5.1, and the comma after it.
_HEADER_PARAM = re.compile(r'[ \t]*([^\s=,"]+)="([^"\\]*)"[ \t]*(?:,|\Z)')


def parse_oauth_header(header: str) -> list[tuple[str, str]]:
    """The parameters of an ``Authorization: OAuth ...`` header, exactly as
    oauthlib's ``parse_authorization_header`` gives them (still escaped; a
    repeated name keeps its last value). Headers in RFC 5849's own grammar
    take a regular-expression fast path — oauthlib's general HTTP-list
    parser costs ~100 us a request, the largest single cost of a signed
    call — and anything else goes through oauthlib."""
    body = header[6:]
    found: dict[str, str] = {}
    pos, end = 0, len(body.rstrip())
    # Blank after "OAuth ", or blank after a final comma: oauthlib decides.
    while pos < end or (pos < len(body) and (not end or body[pos - 1] == ",")):
        match = _HEADER_PARAM.match(body, pos)
        if match is None:
            try:
                return list(rfc5849_utils.parse_authorization_header("OAuth " + body))
            except (ValueError, IndexError):
                raise OAuthProblem(PARAMETER_REJECTED,
                                   "The OAuth Authorization header is malformed") from None
        found[match.group(1)] = match.group(2)
        pos = match.end()
    return list(found.items())


def collect(req: SignedRequest) -> list[tuple[str, str]]:
    """All request parameters for the base string (without
    ``oauth_signature``), filling ``req.oauth``. The same ``oauth_*``
    parameter from two places is refused (400 ``parameter_rejected``)."""
    header_params: list[tuple[str, str]] = []
    auth = req.authorization
    if auth and auth[:6].lower() == "oauth ":
        header_params = [p for p in parse_oauth_header(auth) if p[0] != "realm"]
    query_params = parse_qsl(req.query, keep_blank_values=True) if req.query else []
    body_params = parse_qsl(req.form_body, keep_blank_values=True) if req.form_body else []
    seen: dict[str, str] = {}
    for source, pairs in (("header", header_params), ("query", query_params), ("body", body_params)):
        for name, _ in pairs:
            if not name.startswith("oauth_"):
                continue
            if name in seen:
                where = (f"twice in {_SOURCE_NAMES[source]}" if seen[name] == source else
                         f"in both {_SOURCE_NAMES[seen[name]]} and {_SOURCE_NAMES[source]}")
                raise OAuthProblem(PARAMETER_REJECTED, f"{name} was given {where}")
            seen[name] = source
    # oauthlib's own collection (it unescapes oauth_* values as clients do
    # when they sign); the header is passed already parsed.
    params = rfc5849.collect_parameters(
        body=[*query_params, *header_params, *body_params], exclude_oauth_signature=False)
    req.oauth = {k: v for k, v in params if k.startswith("oauth_")}
    return [p for p in params if p[0] != "oauth_signature"]
