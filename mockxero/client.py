"""A Xero partner application client: OAuth 1.0a with RSA-SHA1, the Entrust
client certificate over mutual TLS, and 30-minute access tokens renewed
through the OAuth Session extension without the caller thinking about it.

It talks to the real partner endpoints by default; point ``base_url`` and
``authorize_url`` at a mockxero to test against the mock::

    client = PartnerClient(consumer_key, "privatekey.pem",
                           client_cert=("entrust-client.p12", p12_password),
                           on_token_update=save)
    request_token = client.fetch_request_token()
    # send the user to client.authorization_url(request_token); they come back with a verifier
    client.fetch_access_token(request_token, verifier)
    contacts = client.get("Contacts")["Contacts"]

Signatures are oauthlib's (through requests-oauthlib); transport is
requests. Importing this module loads none of the server's libraries
(Flask, cheroot, pyOpenSSL, trustme): the only thing it shares with the
server is the problem vocabulary in :mod:`mockxero.problems`."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import oauthlib.oauth1
import requests
import requests.adapters
import requests.utils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import pkcs12
from requests_oauthlib import OAuth1

from .client_errors import (
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
    error_from_response,
)

__all__ = [
    "API_PATH",
    "ApiError",
    "BadVerifier",
    "ClientCertificateRefused",
    "ConsumerError",
    "ConsumerKeyUnknown",
    "NonceUsed",
    "NotAvailable",
    "NotFound",
    "OAuthError",
    "ParameterAbsent",
    "ParameterRejected",
    "PartnerClient",
    "PermissionDenied",
    "RateLimited",
    "RequestToken",
    "SignatureError",
    "SignatureInvalid",
    "SignatureMethodRejected",
    "TimestampRefused",
    "TokenExpired",
    "TokenRejected",
    "Tokens",
    "ValidationError",
    "VersionRejected",
    "XeroError",
]

XERO_PARTNER_URL = "https://api-partner.network.xero.com"
XERO_AUTHORIZE_URL = "https://api.xero.com/oauth/Authorize"
API_PATH = "/api.xro/2.0/"


@dataclasses.dataclass(frozen=True)
class RequestToken:
    """The first leg's answer: send the user to the Authorize page with it."""

    token: str
    secret: str
    callback_confirmed: bool = True


@dataclasses.dataclass(frozen=True)
class Tokens:
    """A connection's credentials, everything needed to resume after a
    restart. Times are epoch seconds on this machine's clock.

    ``org`` is the ``xero_org_muid`` the exchange returned: Xero's id of the
    organisation the user picked. The OAuth exchange gives no other
    identifier, and asking the API for the Organisation's GUID would cost
    every exchange an API call (and a rate-limit slot); renewals keep it."""

    token: str
    secret: str
    session_handle: str | None
    expires_at: float
    authorization_expires_at: float | None = None
    org: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Tokens:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("saved tokens must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            tokens = cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:  # a required field missing
            raise ValueError(f"saved tokens: {exc}") from None
        if not (isinstance(tokens.token, str) and isinstance(tokens.secret, str)
                and isinstance(tokens.expires_at, (int, float))):
            raise ValueError("saved tokens need token and secret (text) and expires_at (epoch seconds)")
        return tokens


class _SessionClient(oauthlib.oauth1.Client):  # type: ignore[misc]
    """oauthlib's Client with ``oauth_session_handle`` among the protocol
    parameters (the OAuth Session extension), so oauthlib signs it and it travels
    in the Authorization header, never in a URL that ends up in logs."""

    session_handle: str | None = None

    def get_oauth_params(self, request: Any) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = super().get_oauth_params(request)
        if self.session_handle:
            params.append(("oauth_session_handle", self.session_handle))
        return params


class _ContextAdapter(requests.adapters.HTTPAdapter):
    """An HTTPS adapter whose every connection uses one SSLContext: the trust
    and the client certificate are fixed when the client is made, and
    nothing from the environment (``REQUESTS_CA_BUNDLE``) or a call can
    change them. The pattern requests documents for a custom context."""

    def __init__(self, context: ssl.SSLContext, verify: bool) -> None:
        self._context = context
        self._cert_reqs = "CERT_REQUIRED" if verify else "CERT_NONE"
        # Threads share a client: keep a connection for each of up to 32.
        super().__init__(pool_maxsize=32)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        for key in ("ca_certs", "ca_cert_dir", "cert_file", "key_file", "key_password"):
            pool_kwargs.pop(key, None)
        pool_kwargs["ssl_context"] = self._context
        pool_kwargs["cert_reqs"] = self._cert_reqs
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would set the pool's CA file (urllib3 then adds it to the
        # shared context) and client-cert files: the context has both already.
        conn.cert_reqs = self._cert_reqs
        conn.ca_certs = conn.ca_cert_dir = None
        conn.cert_file = conn.key_file = None


ClientCert = tuple[str | os.PathLike[str], Any]
"""``(cert_path, key_path)`` PEM files, or ``(p12_path, password)``."""


def _ssl_context(verify: bool | str, client_cert: ClientCert | None) -> ssl.SSLContext:
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        context = ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)
    elif os.path.isdir(verify):
        context = ssl.create_default_context(capath=verify)
    else:
        context = ssl.create_default_context(cafile=verify)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        _load_client_cert(context, client_cert)
    return context


def _load_client_cert(context: ssl.SSLContext, client_cert: ClientCert) -> None:
    """A ``(cert_path, key_path)`` PEM pair goes straight to OpenSSL. A
    ``(p12_path, password)`` Entrust bundle is opened with cryptography;
    Python's ssl module loads a certificate and key only from files, so they
    are written once as PEM with the key encrypted under a random password
    that exists only in memory, in a private temporary folder, loaded into
    the context, and removed at once: no key is ever on disk unencrypted,
    and nothing at all remains once the client is made."""
    first, second = client_cert
    data = Path(first).read_bytes()
    if b"-----BEGIN" in data:
        context.load_cert_chain(os.fspath(first), os.fspath(second))
        return
    password = second.encode() if isinstance(second, str) else second
    key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    if key is None or cert is None:
        raise ValueError(f"{first}: the PKCS#12 bundle holds no key and certificate")
    transient = secrets.token_bytes(32)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *extra])
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(transient))
    with tempfile.TemporaryDirectory(prefix="mockxero-cert-") as folder:
        cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_path.write_bytes(chain)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key_pem)
        context.load_cert_chain(cert_path, key_path, password=transient)


def _load_rsa_key(rsa_key: str | bytes | os.PathLike[str] | RSAPrivateKey) -> RSAPrivateKey:
    if isinstance(rsa_key, RSAPrivateKey):
        return rsa_key
    if isinstance(rsa_key, bytes):
        pem = rsa_key
    elif isinstance(rsa_key, str) and "-----BEGIN" in rsa_key:
        pem = rsa_key.encode()
    else:
        pem = Path(rsa_key).read_bytes()
    key = serialization.load_pem_private_key(pem, None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the application key must be an RSA private key (RSA-SHA1)")
    return key


class PartnerClient:
    """One partner application's connection to one organisation.

    Thread-safe: threads may share a client. Renewal happens inside the
    calls — proactively ``renew_margin`` seconds before the token's expiry
    (at most a quarter of its lifetime, for a mock set to short tokens)
    (on this machine's clock) and, if Xero still answers ``token_expired``,
    once more with the call retried once — and exactly once however many
    threads find the token stale together. A revoked connection raises
    :class:`TokenRejected`; nothing loops.

    ``on_token_update(tokens)`` runs after every exchange and renewal (under
    the client's lock, so saves arrive in order); an exception from it
    reaches the caller, because tokens that were not saved are lost when the
    old ones stop working.

    ``verify`` works as in requests (True: the CAs requests trusts; a path:
    that CA file or folder; False: no check) but is fixed when the client
    is made: ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` can neither
    replace nor extend it.
    """

    #: Renew this many seconds before the access token expires.
    renew_margin = 120.0

    def __init__(
        self,
        consumer_key: str,
        rsa_key: str | bytes | os.PathLike[str] | RSAPrivateKey,
        *,
        consumer_secret: str | None = None,
        client_cert: ClientCert | None = None,
        verify: bool | str | os.PathLike[str] = True,
        base_url: str = XERO_PARTNER_URL,
        authorize_url: str = XERO_AUTHORIZE_URL,
        tokens: Tokens | None = None,
        on_token_update: Callable[[Tokens], object] | None = None,
        timeout: float = 30,
    ) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        # Loaded once: given a PEM, oauthlib (through PyJWT) would parse it on every signature.
        self._rsa_key = _load_rsa_key(rsa_key)
        self.verify: bool | str = verify if isinstance(verify, bool) else os.fspath(verify)
        self.base_url = base_url.rstrip("/")
        self.authorize_url = authorize_url
        self.timeout = timeout
        self.on_token_update = on_token_update
        self._tokens = tokens
        #: How long before expiry the current tokens are renewed.
        self._margin = self.renew_margin
        self._lock = threading.Lock()
        #: The token whose renewal Xero refused, and how: later callers holding
        #: the same token get the same error without asking again.
        self._refused: tuple[str, XeroError] | None = None
        self.session = requests.Session()
        self.session.mount("https://", _ContextAdapter(_ssl_context(self.verify, client_cert),
                                                       verify=self.verify is not False))

    # -- lifecycle ----------------------------------------------------------------
    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> PartnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tokens(self) -> Tokens | None:
        """The current tokens (None before the exchange)."""
        return self._tokens

    # -- the dance ----------------------------------------------------------------
    def fetch_request_token(self, callback: str = "oob") -> RequestToken:
        """Leg one: a request token; ``callback`` is where Xero sends the
        user back (``oob``: the Authorize page shows the verifier instead)."""
        data = self._form(self._send("POST", "/oauth/RequestToken", self._auth(callback=callback or "oob")))
        return RequestToken(data["oauth_token"], data["oauth_token_secret"],
                            data.get("oauth_callback_confirmed", "true") == "true")

    def authorization_url(self, request_token: RequestToken | str) -> str:
        """Leg two: where to send the user to allow access."""
        token = request_token if isinstance(request_token, str) else request_token.token
        separator = "&" if "?" in self.authorize_url else "?"
        return f"{self.authorize_url}{separator}{urlencode({'oauth_token': token})}"

    def fetch_access_token(self, request_token: RequestToken, verifier: str) -> Tokens:
        """Leg three: swap the authorised request token for access tokens."""
        started = time.time()
        auth = self._auth(request_token.token, request_token.secret, verifier=verifier)
        data = self._form(self._send("POST", "/oauth/AccessToken", auth))
        with self._lock:
            return self._store(self._tokens_from(data, started, org=data.get("xero_org_muid")))

    def renew(self) -> Tokens:
        """Renew now (the calls do it by themselves when it is due)."""
        with self._lock:
            return self._renew_locked(self._current())

    # -- the API ------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api.xro/2.0/<path>``; the JSON body parsed (the text if the
        caller asked for another type with an ``Accept`` header). Keyword
        arguments go to requests (``params``, ``json``, ``headers``, ``data``)."""
        headers = {"Accept": "application/json", **(kwargs.pop("headers", None) or {})}
        relative = path.lstrip("/")
        if relative.lower().startswith(API_PATH.lstrip("/")):
            relative = relative[len(API_PATH) - 1:]
        url_path = API_PATH + relative
        tokens = self._current()
        if self._due(tokens):
            tokens = self._renew_if_still(tokens)
        response = self._signed(method, url_path, tokens, headers, kwargs)
        if response.status_code == 401:
            error = error_from_response(response)
            if isinstance(error, TokenExpired):
                response = self._signed(method, url_path, self._renew_if_still(tokens), headers, kwargs)
            elif isinstance(error, TokenRejected):
                # Another thread's renewal may have superseded the token this
                # call carried; the lock waits for one still under way.
                with self._lock:
                    current = self._current()
                if current is not tokens:
                    response = self._signed(method, url_path, current, headers, kwargs)
        if response.status_code >= 400:
            raise error_from_response(response)
        if "json" in response.headers.get("Content-Type", ""):
            return response.json()
        return response.text

    def get(self, path: str, params: Any = None, **kwargs: Any) -> Any:
        return self.request("GET", path, params=params, **kwargs)

    def put(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("PUT", path, json=json, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)

    # -- renewal --------------------------------------------------------------------
    def _current(self) -> Tokens:
        tokens = self._tokens
        if tokens is None:
            raise RuntimeError("no access tokens yet: fetch_access_token() first, or pass tokens=")
        return tokens

    def _due(self, tokens: Tokens) -> bool:
        return time.time() >= tokens.expires_at - self._margin

    def _renew_if_still(self, seen: Tokens) -> Tokens:
        """Renew unless another thread already did since ``seen`` was read."""
        with self._lock:
            current = self._current()
            if current is not seen:
                return current
            return self._renew_locked(current)

    def _renew_locked(self, tokens: Tokens) -> Tokens:
        refused = self._refused
        if refused is not None and refused[0] == tokens.token:
            earlier = refused[1]  # a fresh exception per caller: threads must not share a traceback
            raise type(earlier)(earlier.status, earlier.problem, earlier.advice, earlier.response)
        if not tokens.session_handle:
            raise RuntimeError("these tokens have no session handle: they cannot be renewed")
        started = time.time()
        auth = self._auth(tokens.token, tokens.secret, session_handle=tokens.session_handle)
        try:
            data = self._form(self._send("POST", "/oauth/AccessToken", auth))
        except (TokenRejected, PermissionDenied) as exc:
            self._refused = (tokens.token, exc)
            raise
        return self._store(self._tokens_from(data, started, org=tokens.org,
                                             session_handle=tokens.session_handle))

    def _store(self, tokens: Tokens) -> Tokens:
        self._tokens = tokens
        self._margin = min(self.renew_margin, (tokens.expires_at - time.time()) / 4)
        if self.on_token_update is not None:
            self.on_token_update(tokens)
        return tokens

    @staticmethod
    def _tokens_from(data: dict[str, str], started: float, org: str | None,
                     session_handle: str | None = None) -> Tokens:
        authorization = data.get("oauth_authorization_expires_in")
        return Tokens(
            token=data["oauth_token"],
            secret=data["oauth_token_secret"],
            session_handle=data.get("oauth_session_handle") or session_handle,
            expires_at=started + float(data.get("oauth_expires_in") or 1800),
            authorization_expires_at=started + float(authorization) if authorization else None,
            org=org,
        )

    # -- signing and sending ---------------------------------------------------------
    def _auth(self, token: str | None = None, secret: str | None = None, *, verifier: str | None = None,
              callback: str | None = None, session_handle: str | None = None) -> OAuth1:
        auth = OAuth1(self.consumer_key, client_secret=self.consumer_secret,
                      resource_owner_key=token, resource_owner_secret=secret,
                      verifier=verifier, callback_uri=callback,
                      signature_method=oauthlib.oauth1.SIGNATURE_RSA, rsa_key=self._rsa_key,
                      client_class=_SessionClient)
        auth.client.session_handle = session_handle
        return auth

    def _signed(self, method: str, path: str, tokens: Tokens, headers: dict[str, str],
                kwargs: dict[str, Any]) -> requests.Response:
        return self._send(method, path, self._auth(tokens.token, tokens.secret), check=False,
                          headers=headers, **kwargs)

    def _send(self, method: str, path: str, auth: OAuth1, check: bool = True,
              **kwargs: Any) -> requests.Response:
        # verify on every request: requests replaces a Session's verify with
        # REQUESTS_CA_BUNDLE when that is set. The adapter ignores it anyway.
        if "verify" in kwargs or "cert" in kwargs:
            raise TypeError("verify and the client certificate are fixed when the PartnerClient is made")
        response = self.session.request(method, self.base_url + path, auth=auth, verify=self.verify,
                                        timeout=kwargs.pop("timeout", self.timeout), **kwargs)
        if check and response.status_code != 200:
            raise error_from_response(response)
        return response

    @staticmethod
    def _form(response: requests.Response) -> dict[str, str]:
        data = dict(parse_qsl(response.text, keep_blank_values=True))
        if "oauth_token" not in data or "oauth_token_secret" not in data:
            raise XeroError(response.status_code, None,
                            f"the answer holds no token: {response.text[:200]!r}", response)
        return data

