"""SPEC.md §5: OAuth Session renewal, expiry and revocation."""

from __future__ import annotations

import functools
import re

import pytest
import requests

from mockxero import MockXero

from .helpers import HMAC, Control, Partner, Tokens, assert_problem, csrf_form, race, tokens_from
from .oauth_support import assert_form_success

RENEWAL_FIELDS = ["oauth_token", "oauth_token_secret", "oauth_expires_in", "oauth_session_handle",
                  "oauth_authorization_expires_in"]
REVOKED = "The access token has not been authorized, or has been revoked by the user"


def renewed(response: requests.Response) -> Tokens:
    fields = assert_form_success(response)
    assert [k for k, _ in fields] == RENEWAL_FIELDS
    return tokens_from(response)


def rejected_advice(token: str) -> str:
    return f"Token {token} does not match an expected REQUEST token"


@pytest.mark.parametrize(("method", "placement"), [("GET", "header"), ("GET", "query"), ("POST", "header"),
                                                    ("POST", "query"), ("POST", "body")])
def test_renewal_from_every_placement(xero: MockXero, partner: Partner, method: str, placement: str) -> None:
    tokens = partner.connect()
    response = partner.renew(tokens, placement=placement, method=method)
    sent = response.request
    if placement == "header":
        assert b"oauth_session_handle=" in sent.headers["Authorization"]
    elif placement == "query":
        assert "oauth_session_handle=" in (sent.url or "")
    else:
        body = sent.body.decode() if isinstance(sent.body, bytes) else sent.body
        assert body == f"oauth_session_handle={tokens.oauth_session_handle}"
    new = renewed(response)
    data = new.raw
    assert data["oauth_expires_in"] == "1800"
    assert data["oauth_session_handle"] == tokens.oauth_session_handle
    assert data["oauth_authorization_expires_in"].isdigit()
    assert new.oauth_token != tokens.oauth_token and new.oauth_token_secret != tokens.oauth_token_secret
    # the old token stops working at once; the new one works
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_rejected")
    assert partner.api(new, "Organisation").status_code == 200


def test_authorization_expires_in_is_the_remaining_time(xero: MockXero, partner: Partner) -> None:
    xero.move_clock(freeze=True)
    tokens = partner.connect()
    assert tokens.raw["oauth_authorization_expires_in"] == "31536000"
    xero.advance(1000)
    first = renewed(partner.renew(tokens))
    assert first.raw["oauth_authorization_expires_in"] == str(31536000 - 1000)
    xero.advance(5000)
    second = renewed(partner.renew(first))
    assert second.raw["oauth_authorization_expires_in"] == str(31536000 - 6000)


def test_renewal_chain(xero: MockXero, partner: Partner) -> None:
    tokens = partner.connect()
    seen = {tokens.oauth_token}
    for _ in range(4):
        tokens = renewed(partner.renew(tokens))
        assert tokens.oauth_token not in seen
        seen.add(tokens.oauth_token)
    assert partner.api(tokens, "Organisation").status_code == 200
    assert len(xero.connections(xero.certs.consumer_key)) == 1


def test_early_renewal_is_allowed(partner: Partner) -> None:
    tokens = partner.connect()
    assert renewed(partner.renew(tokens)).raw["oauth_expires_in"] == "1800"


def test_expired_token_on_the_api_then_renewal(xero: MockXero, partner: Partner) -> None:
    tokens = partner.connect()
    xero.advance(xero.settings.access_token_ttl + 1)
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_expired",
                   advice="The access token has expired")
    new = renewed(partner.renew(tokens))
    assert partner.api(new, "Organisation").status_code == 200
    xero.advance(xero.settings.access_token_ttl - 10)
    assert partner.api(new, "Organisation").status_code == 200  # a fresh 30 minutes


def test_expire_through_the_control_api(xero: MockXero, partner: Partner, control: Control) -> None:
    tokens = partner.connect()
    result = control.ok("POST", "/expire", json={"oauth_token": tokens.oauth_token})
    assert result["status"] == "expired"
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_expired",
                   advice="The access token has expired")
    assert partner.api(renewed(partner.renew(tokens)), "Organisation").status_code == 200


def test_access_token_without_session_handle(partner: Partner) -> None:
    tokens = partner.connect()
    response = partner.request("POST", "/oauth/AccessToken",
                               auth=partner.auth(tokens.oauth_token, tokens.oauth_token_secret))
    data = assert_problem(response, 400, "parameter_absent")
    assert data["oauth_parameters_absent"] == "oauth_session_handle"
    assert partner.api(tokens, "Organisation").status_code == 200  # nothing happened


def test_wrong_session_handle(partner: Partner) -> None:
    tokens = partner.connect()
    response = partner.renew(tokens, session_handle="WRONGHANDLE0000000000000000000")
    assert_problem(response, 401, "token_rejected", advice=rejected_advice(tokens.oauth_token))
    assert partner.api(tokens, "Organisation").status_code == 200


def test_another_connections_handle(xero: MockXero, partner: Partner) -> None:
    nz = partner.connect()
    au = partner.connect(org=xero.organisations()[1]["short_code"])
    response = partner.renew(nz, session_handle=au.oauth_session_handle)
    assert_problem(response, 401, "token_rejected", advice=rejected_advice(nz.oauth_token))


def test_superseded_token(partner: Partner) -> None:
    tokens = partner.connect()
    renewed(partner.renew(tokens))
    response = partner.renew(tokens)
    assert_problem(response, 401, "token_rejected", advice=rejected_advice(tokens.oauth_token))


def test_unknown_token_with_a_handle(partner: Partner) -> None:
    tokens = partner.connect()
    stranger = Tokens("NOSUCHACCESSTOKEN0000000000000", "x", tokens.oauth_session_handle)
    assert_problem(partner.renew(stranger), 401, "token_rejected",
                   advice=rejected_advice(stranger.oauth_token))


def test_token_of_a_replaced_connection(partner: Partner) -> None:
    first = partner.connect()
    partner.connect()
    assert_problem(partner.renew(first), 401, "token_rejected", advice=rejected_advice(first.oauth_token))


def test_authorisation_expired(xero: MockXero, partner: Partner) -> None:
    tokens = partner.connect()
    xero.advance(xero.settings.authorization_ttl + 1)
    assert_problem(partner.renew(tokens), 401, "permission_denied")
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_expired")


def test_authorisation_just_before_expiry(xero: MockXero, partner: Partner) -> None:
    xero.move_clock(freeze=True)
    tokens = partner.connect()
    xero.advance(xero.settings.authorization_ttl - 100)
    new = renewed(partner.renew(tokens))
    assert new.raw["oauth_authorization_expires_in"] == "100"


def start_again(xero: MockXero, partner: Partner) -> None:
    """After a revocation, the dance from RequestToken works again."""
    fresh = partner.connect()
    assert partner.api(fresh, "Organisation").status_code == 200
    assert renewed(partner.renew(fresh)).oauth_session_handle == fresh.oauth_session_handle


@pytest.mark.parametrize("by", ["oauth_token", "session_handle"])
def test_revoked_through_the_control_api(xero: MockXero, partner: Partner, control: Control, by: str) -> None:
    tokens = partner.connect()
    ref = tokens.oauth_token if by == "oauth_token" else tokens.oauth_session_handle
    result = control.ok("POST", "/revoke", json={by: ref})
    assert result["status"] == "revoked"
    assert result["connection"]["session_handle"] == tokens.oauth_session_handle
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_rejected", advice=REVOKED)
    assert_problem(partner.renew(tokens), 401, "token_rejected", advice=REVOKED)
    assert xero.connections(xero.certs.consumer_key) == []
    assert control.post("/revoke", json={by: ref}).status_code == 400  # already gone
    start_again(xero, partner)


def test_revoked_from_the_addons_page(xero: MockXero, partner: Partner) -> None:
    tokens = partner.connect()
    browser = requests.Session()
    browser.trust_env = False
    browser.verify = str(xero.ca_path)
    try:
        page = browser.get(xero.url + "/addons")
        assert page.status_code == 200
        assert "mockxero demo partner app" in page.text
        form = re.search(r'<form method="post" action="([^"]+)">\s*'
                         r'<input type="hidden" name="session_handle" value="([A-Z0-9]+)">\s*'
                         r'<input type="hidden" name="csrf_token"', page.text)
        assert form, page.text
        action, handle = form.groups()
        assert handle == tokens.oauth_session_handle
        response = browser.post(xero.url + action, data=csrf_form(browser, xero, session_handle=handle),
                                allow_redirects=False)
        assert response.status_code == 303
        after = browser.get(xero.url + response.headers["Location"])
        assert "Disconnected mockxero demo partner app" in after.text
        assert tokens.oauth_session_handle and tokens.oauth_session_handle not in after.text
        again = browser.post(xero.url + action, data=csrf_form(browser, xero, session_handle=handle),
                             allow_redirects=False)
        assert again.status_code == 400
    finally:
        browser.close()
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_rejected", advice=REVOKED)
    assert_problem(partner.renew(tokens), 401, "token_rejected", advice=REVOKED)
    start_again(xero, partner)


def test_revoking_one_connection_leaves_the_other(xero: MockXero, partner: Partner, control: Control) -> None:
    nz = partner.connect()
    au = partner.connect(org=xero.organisations()[1]["short_code"])
    control.ok("POST", "/revoke", json={"session_handle": nz.oauth_session_handle})
    assert_problem(partner.api(nz, "Organisation"), 401, "token_rejected", advice=REVOKED)
    assert partner.api(au, "Organisation").status_code == 200
    assert renewed(partner.renew(au)).oauth_session_handle == au.oauth_session_handle


def test_rotate_session_handle_setting(xero: MockXero, partner: Partner,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xero.settings, "rotate_session_handle", True)
    tokens = partner.connect()
    new = renewed(partner.renew(tokens))
    assert new.oauth_session_handle != tokens.oauth_session_handle
    assert re.fullmatch(r"[A-Z0-9]{30}", new.oauth_session_handle or "")
    # the old handle went with the old token
    stale = Tokens(new.oauth_token, new.oauth_token_secret, tokens.oauth_session_handle)
    assert_problem(partner.renew(stale), 401, "token_rejected")
    assert renewed(partner.renew(new)).oauth_session_handle != new.oauth_session_handle
    assert [c["session_handle"] for c in xero.connections()] != [tokens.oauth_session_handle]


def test_handle_kept_by_default(xero: MockXero, partner: Partner) -> None:
    assert xero.settings.rotate_session_handle is False
    tokens = partner.connect()
    new = renewed(partner.renew(tokens))
    assert new.oauth_session_handle == tokens.oauth_session_handle
    assert [c["session_handle"] for c in xero.connections()] == [tokens.oauth_session_handle]


def test_racing_renewals_with_one_token(xero: MockXero, partner: Partner,
                                        client_cert: tuple[str, str]) -> None:
    tokens = partner.connect()
    racers = [Partner(xero, partner.consumer_key, partner.consumer_secret, rsa_key=partner.rsa_key,
                      cert=client_cert) for _ in range(16)]
    placements = ["header", "query", "body"]
    results = race([functools.partial(r.renew, tokens, placement=placements[i % 3])
                    for i, r in enumerate(racers)])
    for r in racers:
        r.close()
    winners = [r for r in results if r.status_code == 200]
    assert len(winners) == 1, sorted(r.text for r in results)
    for loser in results:
        if loser is not winners[0]:
            assert_problem(loser, 401, "token_rejected", advice=rejected_advice(tokens.oauth_token))
    won = renewed(winners[0])
    # the store is consistent: one connection, holding the winner's token
    conns = xero.connections(xero.certs.consumer_key)
    assert len(conns) == 1
    assert conns[0]["oauth_token"] == won.oauth_token
    assert conns[0]["session_handle"] == tokens.oauth_session_handle
    assert xero.store.connection_for_token(tokens.oauth_token) is None
    assert partner.api(won, "Organisation").status_code == 200
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_rejected")
    assert partner.api(renewed(partner.renew(won)), "Organisation").status_code == 200


def test_public_app_revoked_or_replaced_token_is_token_rejected(xero: MockXero, control: Control) -> None:
    """HMAC-SHA1 cannot be verified without the token's secret; a revoked,
    replaced or unknown token must still read token_rejected, not
    signature_invalid, so the client knows to start again."""
    data = control.ok("POST", "/consumers", json={"app_type": "public"}, status=201)
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], signature_method=HMAC)
    try:
        first = p.connect()
        second = p.connect()  # replaces the first
        assert_problem(p.api(first, "Organisation"), 401, "token_rejected")
        control.ok("POST", "/revoke", json={"oauth_token": second.oauth_token})
        assert_problem(p.api(second, "Organisation"), 401, "token_rejected", advice=REVOKED)
        unknown = Tokens("NOSUCHACCESSTOKEN0000000000000", "x")
        assert_problem(p.api(unknown, "Organisation"), 401, "token_rejected")
        assert_problem(p.exchange(unknown, "v"), 401, "token_rejected",
                       advice=rejected_advice(unknown.oauth_token))
        third = p.connect()
        assert p.api(third, "Organisation").status_code == 200
        # a known token with the wrong secret is still a bad signature
        forged = Tokens(third.oauth_token, "WRONGSECRET")
        assert_problem(p.api(forged, "Organisation"), 401, "signature_invalid")
    finally:
        p.close()
