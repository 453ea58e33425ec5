"""The compose stack's sample application: a Xero partner app written with
``mockxero.client``, pointed at the mock under Xero's own host names.

It does what a real partner integration does — request token, the user's
approval, access token, API calls, a renewal through the OAuth Session
extension — and prints each step. Nobody clicks Allow in a container, so the
approval goes through the mock's control API (``POST /_mockxero/authorize``);
open the printed Authorize URL in a browser to do it by hand instead.

Settings (environment): XERO_BASE_URL, XERO_AUTHORIZE_URL, MOCKXERO_URL (the
control API), MOCKXERO_CERTS (the mock's certificates folder),
MOCKXERO_ADMIN_TOKEN (if the mock wants one).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from mockxero.client import PartnerClient, Tokens, XeroError

CERTS = Path(os.environ.get("MOCKXERO_CERTS", "/certs"))
BASE_URL = os.environ.get("XERO_BASE_URL", "https://api-partner.network.xero.com:8443")
AUTHORIZE_URL = os.environ.get("XERO_AUTHORIZE_URL", "https://api.xero.com:8443/oauth/Authorize")
CONTROL_URL = os.environ.get("MOCKXERO_URL", "https://mockxero:8443").rstrip("/") + "/_mockxero"


def step(what: str, detail: object = "") -> None:
    print(f"sample-app: {what:<28} {detail}", flush=True)


def approve(request_token: str) -> str:
    """What the user's click on Allow does, through the mock's control API;
    returns the verifier the callback (or the oob page) would carry."""
    context = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MOCKXERO_ADMIN_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["MOCKXERO_ADMIN_TOKEN"]
    request = urllib.request.Request(CONTROL_URL + "/authorize", method="POST", headers=headers,
                                     data=json.dumps({"oauth_token": request_token}).encode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    with opener.open(request, timeout=10) as response:
        decision: dict[str, Any] = json.load(response)
    return str(decision["oauth_verifier"])


def main() -> int:
    consumer = json.loads((CERTS / "consumer.json").read_text())

    def saved(tokens: Tokens) -> None:  # a real app would store them for the next run
        step("tokens saved", f"{tokens.token} (session handle {tokens.session_handle})")

    client = PartnerClient(
        consumer["consumer_key"], CERTS / "privatekey.pem",
        consumer_secret=consumer["consumer_secret"],
        # The Entrust bundle, as Xero handed it to partners, and its password.
        client_cert=(CERTS / "entrust-client.p12", consumer["p12_password"]),
        verify=CERTS / "ca.pem",
        base_url=BASE_URL, authorize_url=AUTHORIZE_URL,
        on_token_update=saved,
    )
    with client:
        request_token = client.fetch_request_token()
        step("1. request token", request_token.token)
        step("2. user would open", client.authorization_url(request_token))
        verifier = approve(request_token.token)
        step("   approved; verifier", verifier)
        tokens = client.fetch_access_token(request_token, verifier)
        step("3. access token", f"expires in {tokens.expires_at - time.time():.0f} s")
        organisation = client.get("Organisation")["Organisations"][0]
        step("4. GET Organisation", organisation["Name"])
        contacts = client.get("Contacts")["Contacts"]
        step("5. GET Contacts", f"{len(contacts)} contacts, first {contacts[0]['Name']!r}")
        renewed = client.renew()
        step("6. renewed", f"new token {renewed.token}, same session: "
                           f"{renewed.session_handle == tokens.session_handle}")
        step("7. GET Organisation again", client.get("Organisation")["Organisations"][0]["Name"])
    step("done", "the connection is on the Add-ons page (from the host: https://localhost:8443/addons)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except XeroError as exc:
        print(f"sample-app: Xero refused: {exc}", file=sys.stderr)
        sys.exit(1)
