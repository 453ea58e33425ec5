"""``mockxero demo``: a partner integration's whole life against the mock,
told step by step for a person watching.

It uses :class:`mockxero.client.PartnerClient` exactly as an application
would (the RSA key, the Entrust ``.p12`` bundle, the mock's CA), and the
``/_mockxero`` control API for what a person or time would do: approve the
request token (unless ``--browser``), move the clock past the token's 30
minutes, revoke the connection. Each step checks that what happened is what
Xero did; the exit status is 0 only if every one did."""

from __future__ import annotations

import http.server
import json
import os
import sys
import tempfile
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlparse

import requests

from .client import PartnerClient, RequestToken, TokenRejected, Tokens, XeroError
from .mock import MockXero

ADMIN_TOKEN_ENV = "MOCKXERO_ADMIN_TOKEN"
#: How far past the access token's expiry the demo moves the mock's clock.
PAST_EXPIRY = 60
BROWSER_TIMEOUT = 300.0


class StepFailed(Exception):
    """A step did not behave as Xero would have."""


class SetupError(Exception):
    """The demo cannot start: no mock to talk to, or no certificates for it."""


class Control:
    """The ``/_mockxero`` control API over HTTPS, trusting the mock's CA."""

    def __init__(self, url: str, ca: Path, admin_token: str | None) -> None:
        self.url = url.rstrip("/") + "/_mockxero"
        self.ca = str(ca)
        self.session = requests.Session()
        self.session.trust_env = False  # the mock is local: no proxy, and only its own CA
        if admin_token:
            self.session.headers["Authorization"] = f"Bearer {admin_token}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> Any:
        try:
            response = self.session.request(method, self.url + path, json=body, params=params,
                                            verify=self.ca, timeout=30)
        except requests.RequestException as exc:
            raise SetupError(f"cannot reach the control API at {self.url}: {exc}") from None
        if response.status_code == 401:
            raise SetupError(f"the control API wants an admin token: set {ADMIN_TOKEN_ENV}")
        if response.status_code >= 400:
            raise StepFailed(f"control API {method} {path} answered {response.status_code}: "
                             f"{response.text[:200]}")
        return response.json()

    def journal(self, consumer_key: str, since: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.call("GET", "/requests",
                                                  params={"consumer_key": consumer_key, "since": since})
        return entries

    def close(self) -> None:
        self.session.close()


class Story:
    """The steps, their narration and their checks."""

    def __init__(self, url: str, certs: Path, control: Control, out: TextIO, browser: bool) -> None:
        self.url = url
        self.certs = certs
        self.control = control
        self.out = out
        self.browser = browser
        self.step = 0
        self.clock_moved = 0
        self.lifetime = 1800.0
        self.saves: list[Tokens] = []
        consumer = _consumer(certs)
        self.consumer_key: str = consumer["consumer_key"]
        self.client = PartnerClient(
            self.consumer_key, certs / "privatekey.pem",
            client_cert=(certs / "entrust-client.p12", consumer["p12_password"]),
            verify=str(certs / "ca.pem"), base_url=url, authorize_url=url + "/oauth/Authorize",
            on_token_update=self.saves.append)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def begin(self, title: str) -> None:
        self.step += 1
        self.say(f"\n{self.step}. {title}")

    def note(self, text: str) -> None:
        self.say(f"   {text}")

    def ok(self, text: str) -> None:
        self.say(f"   ok: {text}")

    def mark(self) -> int:
        entries = self.control.journal(self.consumer_key, 0)
        return int(entries[-1]["id"]) if entries else 0

    def calls_since(self, mark: int) -> list[str]:
        return [f"{e['method']} {e['path']} {e['status']}" + (f" {e['oauth_problem']}" if e["oauth_problem"]
                                                               else "")
                for e in self.control.journal(self.consumer_key, mark)]

    # -- the story --------------------------------------------------------------------
    def run(self) -> None:
        request_token, verifier = self.connect()
        tokens = self.exchange(request_token, verifier)
        self.api_call()
        self.expire()
        self.renewal(tokens)
        self.revoke()

    def connect(self) -> tuple[RequestToken, str]:
        self.begin("Request token: the application asks Xero to start a connection")
        with self.callback_listener() as (callback, wait):
            request_token = self.client.fetch_request_token(callback)
            self.note("POST /oauth/RequestToken, signed RSA-SHA1 with privatekey.pem, over mutual TLS "
                      "with the Entrust bundle entrust-client.p12")
            self.ok(f"request token {request_token.token}")

            self.begin("Authorize: the user allows the application into an organisation")
            url = self.client.authorization_url(request_token)
            self.note(url)
            if wait is not None:
                verifier = self.browser_approval(url, wait)
            else:
                decision = self.control.call("POST", "/authorize", {"oauth_token": request_token.token})
                verifier = str(decision["oauth_verifier"])
                self.note(f"approved through the control API, as a user clicking Allow for the first "
                          f"organisation (short code {decision['org']})")
            self.ok(f"verifier {verifier}")
        return request_token, verifier

    def browser_approval(self, url: str, wait: Callable[[float], dict[str, str] | None]) -> str:
        self.note("opening it in your browser: pick an organisation and click Allow. The browser will "
                  "not know the mock's CA (ca.pem): accept the warning or trust that file.")
        if not webbrowser.open(url):
            self.note("no browser could be started here: open the address above yourself")
        answer = wait(BROWSER_TIMEOUT)
        if answer is None:
            raise StepFailed(f"no answer from the browser within {BROWSER_TIMEOUT:.0f} s")
        if answer.get("error"):
            raise StepFailed(f"the user denied access ({answer['error']}): Xero would stop here too")
        verifier = answer.get("oauth_verifier")
        if not verifier:
            raise StepFailed(f"the callback carried no oauth_verifier: {answer}")
        self.note(f"the browser came back to the callback with organisation {answer.get('org')}")
        return verifier

    def exchange(self, request_token: RequestToken, verifier: str) -> Tokens:
        self.begin("Access token: the application swaps the verifier for an access token "
                   "(30 minutes at Xero)")
        tokens = self.client.fetch_access_token(request_token, verifier)
        self.lifetime = tokens.expires_at - time.time()
        minutes = self.lifetime / 60
        self.note(f"access token {tokens.token}, session handle {tokens.session_handle}, "
                  f"organisation {tokens.org}")
        if not tokens.session_handle or self.lifetime <= 0:
            raise StepFailed(f"expected a session handle and a lifetime; got {tokens}")
        if self.saves != [tokens]:
            raise StepFailed("on_token_update did not receive the new tokens")
        configured = "" if 29 <= minutes <= 30 else " (this mock is set so; Xero gave 30)"
        self.ok(f"valid for {minutes:.0f} minutes{configured}; saved through on_token_update")
        return tokens

    def api_call(self) -> None:
        self.begin("API call: read the organisation and its contacts")
        organisation = self.client.get("Organisation")["Organisations"][0]
        contacts = self.client.get("Contacts")["Contacts"]
        self.ok(f"GET Organisation: {organisation['Name']} ({organisation['BaseCurrency']}); "
                f"GET Contacts: {len(contacts)} contacts")

    def expire(self) -> None:
        step = int(self.lifetime) + PAST_EXPIRY
        self.begin(f"Time passes: the mock's clock moves {step / 60:.0f} minutes on")
        state = self.control.call("POST", "/clock", {"advance": step})
        self.clock_moved = step
        self.ok(f"the mock's clock is {state['offset'] / 60:.0f} minutes ahead; the access token has expired")

    def renewal(self, tokens: Tokens) -> None:
        self.begin("API call with the expired token: the client renews by itself")
        mark = self.mark()
        contacts = self.client.get("Contacts")["Contacts"]
        calls = self.calls_since(mark)
        for call in calls:
            self.note(call)
        api = "/api.xro/2.0/Contacts"
        expected = [f"GET {api} 401 token_expired", "POST /oauth/AccessToken 200", f"GET {api} 200"]
        renewed = self.client.tokens
        if calls != expected or renewed is None or renewed.token == tokens.token:
            raise StepFailed(f"expected {expected}; the mock saw {calls}")
        if len(self.saves) != 2 or self.saves[-1] != renewed:
            raise StepFailed("on_token_update did not receive the renewed tokens")
        self.ok(f"Xero said token_expired; the client renewed once (new token {renewed.token}, same "
                f"session handle, saved through on_token_update), retried, and got {len(contacts)} contacts")

    def revoke(self) -> None:
        self.begin("The user disconnects the application (Settings > Add-ons > Disconnect)")
        tokens = self.client.tokens
        assert tokens is not None
        self.control.call("POST", "/revoke", {"oauth_token": tokens.token})
        self.note("revoked through the control API")
        mark = self.mark()
        try:
            self.client.get("Contacts")
        except TokenRejected as exc:
            calls = self.calls_since(mark)
            if calls != ["GET /api.xro/2.0/Contacts 401 token_rejected"]:
                raise StepFailed(f"expected one refused call and no renewal; the mock saw {calls}") from None
            self.ok(f"the client raised {type(exc).__name__}: {exc.advice}")
            self.note("(no renewal was tried: the application must start again from a request token)")
            return
        raise StepFailed("the call after the revocation succeeded")

    def restore_clock(self) -> None:
        """Put a shared mock's clock back where the demo found it."""
        if self.clock_moved:
            step, self.clock_moved = self.clock_moved, 0
            self.control.call("POST", "/clock", {"advance": -step})

    # -- the browser's way back ---------------------------------------------------------
    @contextmanager
    def callback_listener(self) -> Iterator[tuple[str, Callable[[float], dict[str, str] | None] | None]]:
        """``oob`` and no waiting, or (with --browser) a loopback HTTP
        listener that the Authorize page redirects the browser to."""
        if not self.browser:
            yield "oob", None
            return
        answers: list[dict[str, str]] = []
        arrived = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                if urlparse(self.path).path != "/callback" or not query:
                    self.send_error(404)
                    return
                page = b"<!DOCTYPE html><title>mockxero demo</title><p>Done: back to the terminal.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                answers.append(query)
                arrived.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=listener.serve_forever, daemon=True)
        thread.start()

        def wait(timeout: float) -> dict[str, str] | None:
            return answers[0] if arrived.wait(timeout) else None

        try:
            yield f"http://127.0.0.1:{listener.server_address[1]}/callback", wait
        finally:
            listener.shutdown()
            listener.server_close()


def _consumer(certs: Path) -> dict[str, str]:
    missing = [name for name in ("consumer.json", "privatekey.pem", "entrust-client.p12", "ca.pem")
               if not (certs / name).is_file()]
    if missing:
        raise SetupError(f"{certs} lacks {', '.join(missing)}: give --certs the folder the mock uses")
    data: dict[str, str] = json.loads((certs / "consumer.json").read_text())
    return data


def run(server: str | None = None, certs: Path | None = None, browser: bool = False,
        out: TextIO | None = None) -> int:
    """The demo; 0 if every step behaved as Xero would, 1 if one did not,
    2 if it could not start."""
    out = out or sys.stdout
    try:
        if server is not None:
            return _tell(server.rstrip("/"), certs or Path("certs"), browser, out)
        with tempfile.TemporaryDirectory(prefix="mockxero-demo-") as scratch:
            folder = certs or Path(scratch)
            with MockXero(port=0, certs=folder) as mock:
                print(f"Started a mock in this process at {mock.url} (certificates in {folder})",
                      file=out, flush=True)
                return _tell(mock.url, folder, browser, out)
    except SetupError as exc:
        print(f"mockxero demo: {exc}", file=sys.stderr)
        return 2


def _tell(url: str, certs: Path, browser: bool, out: TextIO) -> int:
    _consumer(certs)  # the certificates first: without the CA the control API cannot be reached
    control = Control(url, certs / "ca.pem", os.environ.get(ADMIN_TOKEN_ENV))
    try:
        control.call("GET", "/health")
        try:
            story = Story(url, certs, control, out, browser)
        except (ValueError, TypeError, OSError) as exc:  # an unreadable key or .p12, a wrong password
            raise SetupError(f"cannot load the application's keys from {certs}: {exc}") from None
        print(f"mockxero demo: a Xero partner application's life, against {url} "
              "(a mock: nothing reaches the real Xero)", file=out, flush=True)
        try:
            story.run()
        except (StepFailed, XeroError, requests.RequestException) as exc:
            print(f"\n   FAILED: {type(exc).__name__}: {exc}", file=out, flush=True)
            print(f"\nStep {story.step} did not behave as Xero would.", file=out, flush=True)
            return 1
        finally:
            story.client.close()
            story.restore_clock()
        print(f"\nAll {story.step} steps behaved as Xero would.", file=out, flush=True)
        return 0
    finally:
        control.close()
