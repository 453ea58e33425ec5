"""A small signing client for the tests: requests + requests-oauthlib, an
independent OAuth 1.0a implementation, over real mutual TLS."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import oauthlib.oauth1
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from requests_oauthlib import OAuth1

from mockxero import MockXero

RSA = oauthlib.oauth1.SIGNATURE_RSA
HMAC = oauthlib.oauth1.SIGNATURE_HMAC
HEADER = oauthlib.oauth1.SIGNATURE_TYPE_AUTH_HEADER
QUERY = oauthlib.oauth1.SIGNATURE_TYPE_QUERY
BODY = oauthlib.oauth1.SIGNATURE_TYPE_BODY


class ExtraParamsClient(oauthlib.oauth1.Client):  # type: ignore[misc]
    """oauthlib's Client, able to put more oauth_* parameters (such as
    oauth_session_handle) among the signed protocol parameters, wherever the
    signature type puts them."""

    extra_oauth: tuple[tuple[str, str], ...] = ()

    def get_oauth_params(self, request: Any) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = super().get_oauth_params(request)
        return params + list(self.extra_oauth)


def load_rsa_key(pem: str) -> RSAPrivateKey:
    # Validation is skipped: the tests only load keys they made themselves.
    key = load_pem_private_key(pem.encode(), None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, RSAPrivateKey)
    return key


OAUTH_PROBLEM_CONTENT_TYPE = "text/html; charset=utf-8"


def assert_problem(response: requests.Response, status: int, problem: str,
                   advice: str | None = None, advice_contains: str | None = None) -> dict[str, str]:
    """The response is a Xero-shaped OAuth refusal: status, Content-Type,
    both keys present, the problem (and advice), nothing in WWW-Authenticate."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == OAUTH_PROBLEM_CONTENT_TYPE
    data = parse_form(response.text)
    assert "oauth_problem" in data and "oauth_problem_advice" in data, response.text
    assert data["oauth_problem"] == problem, response.text
    if advice is not None:
        assert data["oauth_problem_advice"] == advice, response.text
    if advice_contains is not None:
        assert advice_contains in data["oauth_problem_advice"], response.text
    assert "oauth_problem" not in response.headers.get("WWW-Authenticate", "")
    return data


class Control:
    """The ``/_mockxero`` JSON API over real HTTPS."""

    def __init__(self, xero: MockXero, admin_token: str | None = None) -> None:
        self.xero = xero
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(xero.ca_path)
        if admin_token is not None:
            self.session.headers["Authorization"] = f"Bearer {admin_token}"

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.xero.url + "/_mockxero" + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, json=json, **kwargs)

    def ok(self, method: str, path: str, json: Any = None, status: int = 200, **kwargs: Any) -> Any:
        """Call and insist on ``status``; the decoded JSON."""
        response = self.call(method, path, json=json, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text)
        return response.json()


def parse_form(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


@dataclasses.dataclass
class Tokens:
    oauth_token: str
    oauth_token_secret: str
    oauth_session_handle: str | None = None
    raw: dict[str, str] = dataclasses.field(default_factory=dict)


class Partner:
    """One consumer talking to the mock: a requests Session presenting the
    client certificate (if any), signing each request with OAuth1."""

    def __init__(self, xero: MockXero, consumer_key: str, consumer_secret: str = "",
                 rsa_key: str | RSAPrivateKey | None = None, cert: tuple[str, str] | None = None,
                 signature_method: str = RSA) -> None:
        self.xero = xero
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        # oauthlib (through PyJWT) takes a key object as well as a PEM; given
        # the PEM it loads and validates the key on every signature (~45 ms).
        self.rsa_key = load_rsa_key(rsa_key) if isinstance(rsa_key, str) else rsa_key
        self.signature_method = signature_method
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.session.verify = str(xero.ca_path)
        self.session.cert = cert

    def close(self) -> None:
        self.session.close()

    def auth(self, token: str | None = None, token_secret: str | None = None,
             verifier: str | None = None, callback: str | None = None,
             signature_type: str = HEADER, extra_oauth: dict[str, str] | None = None,
             **client_kwargs: Any) -> OAuth1:
        auth = OAuth1(
            self.consumer_key,
            client_secret=self.consumer_secret or None,
            resource_owner_key=token,
            resource_owner_secret=token_secret,
            verifier=verifier,
            callback_uri=callback,
            signature_method=client_kwargs.pop("signature_method", self.signature_method),
            signature_type=signature_type,
            rsa_key=self.rsa_key,
            client_class=ExtraParamsClient,
            **client_kwargs,
        )
        auth.client.extra_oauth = tuple((extra_oauth or {}).items())
        return auth

    def request(self, method: str, path: str, *, auth: OAuth1 | None = None,
                **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.xero.url + path, auth=auth, **kwargs)

    # -- the dance ---------------------------------------------------------------
    def request_token(self, callback: str | None = None, method: str = "POST",
                      signature_type: str = HEADER) -> requests.Response:
        return self.request(method, "/oauth/RequestToken",
                            auth=self.auth(callback=callback, signature_type=signature_type))

    def get_request_token(self, callback: str | None = None) -> Tokens:
        response = self.request_token(callback)
        assert response.status_code == 200, response.text
        data = parse_form(response.text)
        return Tokens(data["oauth_token"], data["oauth_token_secret"], raw=data)

    def exchange(self, request_token: Tokens, verifier: str | None, method: str = "POST",
                 signature_type: str = HEADER) -> requests.Response:
        return self.request(method, "/oauth/AccessToken", auth=self.auth(
            request_token.oauth_token, request_token.oauth_token_secret, verifier=verifier,
            signature_type=signature_type))

    def connect(self, org: str | None = None) -> Tokens:
        """The whole dance, approving through the control operations."""
        rt = self.get_request_token()
        decision = self.xero.authorize(rt.oauth_token, org=org)
        response = self.exchange(rt, decision["oauth_verifier"])
        assert response.status_code == 200, response.text
        data = parse_form(response.text)
        return Tokens(data["oauth_token"], data["oauth_token_secret"],
                      data.get("oauth_session_handle"), raw=data)

    def renew(self, tokens: Tokens, placement: str = "query", method: str = "POST",
              session_handle: str | None = None) -> requests.Response:
        """Renew with the session handle in the query, the form body or the
        Authorization header."""
        handle = session_handle if session_handle is not None else tokens.oauth_session_handle
        assert handle is not None
        kwargs: dict[str, Any] = {}
        extra: dict[str, str] = {}
        signature_type = HEADER
        if placement == "query":
            kwargs["params"] = {"oauth_session_handle": handle}
        elif placement == "body":
            kwargs["data"] = {"oauth_session_handle": handle}
        elif placement == "header":
            extra["oauth_session_handle"] = handle
        else:
            raise ValueError(placement)
        auth = self.auth(tokens.oauth_token, tokens.oauth_token_secret, signature_type=signature_type,
                         extra_oauth=extra)
        return self.request(method, "/oauth/AccessToken", auth=auth, **kwargs)

    def api(self, tokens: Tokens, path: str, method: str = "GET", **kwargs: Any) -> requests.Response:
        return self.request(method, "/api.xro/2.0/" + path.lstrip("/"),
                            auth=self.auth(tokens.oauth_token, tokens.oauth_token_secret), **kwargs)


def race(calls: list[Callable[[], requests.Response]], timeout: float = 60) -> list[requests.Response]:
    """Run the calls in threads released at the same instant; every response."""
    barrier = threading.Barrier(len(calls))
    results: list[requests.Response] = []
    lock = threading.Lock()

    def run(call: Callable[[], requests.Response]) -> None:
        barrier.wait()
        response = call()
        with lock:
            results.append(response)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert len(results) == len(calls), "a racer did not finish"
    return results


def tokens_from(response: requests.Response) -> Tokens:
    data = parse_form(response.text)
    return Tokens(data["oauth_token"], data["oauth_token_secret"], data.get("oauth_session_handle"),
                  raw=data)


def problem_of(response: requests.Response) -> dict[str, str]:
    """The parsed oauth_problem body; fails the test if it is not one."""
    data = parse_form(response.text)
    assert "oauth_problem" in data and "oauth_problem_advice" in data, response.text
    return data


CSRF_COOKIE = "mockxero_csrf"


def csrf_form(session: requests.Session, xero: Any, **fields: str) -> dict[str, str]:
    """``fields`` plus the CSRF token a browser would post: the token of the
    double-submit cookie, fetched from the Add-ons page if the session has
    none yet."""
    if CSRF_COOKIE not in session.cookies:
        assert session.get(xero.url + "/addons").status_code == 200
    return {**fields, "csrf_token": str(session.cookies[CSRF_COOKIE])}
