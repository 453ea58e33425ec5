"""SPEC.md §7 / the README's control-API table: every ``/_mockxero`` route
over real HTTPS, its refusals (400 with a message, never a 500), and the
admin token."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mockxero import MockXero

from .helpers import HMAC, Control, Partner, Tokens, assert_problem, parse_form
from .oauth_support import assert_form_success, register

TOKEN_SHAPE = re.compile(r"^[A-Z0-9]{30}$")


def assert_json_error(response: requests.Response, status: int = 400, contains: str = "") -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and message
    assert contains.lower() in message.lower(), message
    return message


# -- health, clock, settings ---------------------------------------------------------------
def test_health(control: Control) -> None:
    response = control.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_clock_read_freeze_advance_set_reset(xero: MockXero, control: Control) -> None:
    state = control.ok("GET", "/clock")
    assert set(state) == {"now", "frozen", "offset"}
    assert state["frozen"] is False and abs(state["offset"]) < 1
    frozen = control.ok("POST", "/clock", json={"freeze": True})
    assert frozen["frozen"] is True
    assert control.ok("GET", "/clock")["now"] == frozen["now"]
    assert control.ok("POST", "/clock", json={"advance": 100})["now"] == frozen["now"] + 100
    assert control.ok("POST", "/clock", json={"advance": 0.5})["now"] == frozen["now"] + 100.5
    assert control.ok("POST", "/clock", json={"set": 2_000_000_000})["now"] == 2_000_000_000
    assert xero.now() == 2_000_000_000
    running = control.ok("POST", "/clock", json={"freeze": False})
    assert running["frozen"] is False and running["now"] >= 2_000_000_000
    back = control.ok("POST", "/clock", json={"reset": True})
    assert back["frozen"] is False and abs(back["offset"]) < 1
    moved = control.ok("POST", "/clock", json={"advance": 3600})
    assert abs(moved["offset"] - 3600) < 1
    both = control.ok("POST", "/clock", json={"freeze": True, "advance": 60})
    assert both["frozen"] is True and abs(both["offset"] - 3660) < 1


def test_clock_moves_lifetimes(xero: MockXero, partner: Partner, control: Control) -> None:
    tokens = partner.connect()
    control.ok("POST", "/clock", json={"advance": 1801})
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_expired")


def test_settings(xero: MockXero, control: Control) -> None:
    nz, au = (o["short_code"] for o in xero.organisations())
    started = {"auto_approve": False, "rate_limit": "60/5000", "access_token_ttl": 1800,
               "authorization_ttl": 31536000, "request_token_ttl": 1800, "organisation": nz}
    assert control.ok("GET", "/settings") == started
    changed = control.ok("POST", "/settings", json={"auto_approve": True, "rate_limit": "10/100"})
    assert changed == {**started, "auto_approve": True, "rate_limit": "10/100"}
    assert xero.auto_approve is True and xero.rate_limit == (10, 100)
    assert control.ok("POST", "/settings", json={"rate_limit": "off"})["rate_limit"] == "off"
    assert xero.rate_limit is None
    lifetimes = {"access_token_ttl": 60, "authorization_ttl": 600, "request_token_ttl": 30}
    changed = control.ok("POST", "/settings", json={**lifetimes, "organisation": "Demo Company (AU)"})
    assert changed == {**started, "auto_approve": True, "rate_limit": "off", **lifetimes, "organisation": au}
    assert xero.settings.access_token_ttl == 60 and xero.settings.request_token_ttl == 30
    # All or nothing: one bad value changes none.
    assert control.call("POST", "/settings", json={"rate_limit": "5/5", "access_token_ttl": -1}
                        ).status_code == 400
    assert control.ok("POST", "/settings", json={}) == changed
    control.ok("POST", "/reset")
    assert control.ok("GET", "/settings") == started


# -- consumers and certificates ------------------------------------------------------------
def test_register_and_list_consumers(xero: MockXero, control: Control) -> None:
    listed = control.ok("GET", "/consumers")
    assert [c["consumer_key"] for c in listed] == [xero.certs.consumer_key]
    demo = listed[0]
    assert demo["app_type"] == "partner" and demo["has_certificate"] is True
    assert demo["require_client_cert"] is True and len(demo["client_certificates"]) == 1
    response = control.post("/consumers", json={"app_type": "public", "name": "My public app",
                                                "callback_domain": "example.com"})
    assert response.status_code == 201
    data = response.json()
    assert TOKEN_SHAPE.match(data["consumer_key"]) and TOKEN_SHAPE.match(data["consumer_secret"])
    assert data["app_type"] == "public" and data["name"] == "My public app"
    assert data["callback_domain"] == "example.com" and data["require_client_cert"] is False
    chosen = register(control, consumer_key="MYKEY", consumer_secret="MYSECRET", require_client_cert=False,
                      certificate=xero.certs.application_certificate)
    assert chosen["consumer_key"] == "MYKEY" and chosen["consumer_secret"] == "MYSECRET"
    assert chosen["has_certificate"] is True and chosen["certificate_expires"]
    keys = [c["consumer_key"] for c in control.ok("GET", "/consumers")]
    assert keys == [xero.certs.consumer_key, data["consumer_key"], "MYKEY"]
    # the new consumer works at once
    p = Partner(xero, data["consumer_key"], data["consumer_secret"], signature_method=HMAC)
    try:
        assert_form_success(p.request_token("https://example.com/cb"))
    finally:
        p.close()


def test_issue_register_and_unregister_client_certificates(xero: MockXero, control: Control, tmp_path: Path,
                                                           partner: Partner) -> None:
    key = xero.certs.consumer_key
    old_fp = control.ok("GET", "/consumers")[0]["client_certificates"][0]
    unregistered = control.ok("POST", "/client-certificates", json={}, status=201)
    assert unregistered["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in unregistered["private_key"] and len(unregistered["fingerprint"]) == 64
    cert_file, key_file = tmp_path / "new-cert.pem", tmp_path / "new-key.pem"
    cert_file.write_text(unregistered["certificate"])
    key_file.write_text(unregistered["private_key"])
    rotated = Partner(xero, key, xero.certs.consumer_secret, rsa_key=xero.certs.application_key,
                      cert=(str(cert_file), str(key_file)))
    try:
        response = rotated.request_token()
        assert response.status_code == 403 and "not registered" in response.text
        added = control.ok("POST", f"/consumers/{key}/client-certificates",
                           json={"certificate": unregistered["certificate"]}, status=201)
        assert added == {"consumer_key": key, "fingerprint": unregistered["fingerprint"]}
        assert_form_success(rotated.request_token())
        assert_form_success(partner.request_token())  # old and new side by side
        removed = control.ok("DELETE", f"/consumers/{key}/client-certificates/{old_fp}")
        assert removed == {"consumer_key": key, "removed": old_fp}
        assert partner.request_token().status_code == 403
        assert_form_success(rotated.request_token())
    finally:
        rotated.close()
    issued = control.ok("POST", "/client-certificates", json={"consumer_key": key}, status=201)
    fps = control.ok("GET", "/consumers")[0]["client_certificates"]
    assert issued["fingerprint"] in fps and unregistered["fingerprint"] in fps and old_fp not in fps
    expired = control.ok("POST", "/client-certificates",
                         json={"not_before": time.time() - 86400, "not_after": time.time() - 3600,
                               "foreign": False}, status=201)
    assert expired["certificate"] != issued["certificate"]


def test_organisations(xero: MockXero, partner: Partner, control: Control) -> None:
    listed = control.ok("GET", "/organisations")
    assert [o["name"] for o in listed] == ["Demo Company (NZ)", "Demo Company (AU)"]
    assert {"organisation_id", "short_code", "org_muid", "country_code", "base_currency"} <= set(listed[0])
    added = control.ok("POST", "/organisations", json={"name": "Test Org Ltd", "short_code": "!TEST1",
                                                       "country_code": "GB", "base_currency": "GBP"},
                       status=201)
    assert added["name"] == "Test Org Ltd" and added["short_code"] == "!TEST1"
    assert added["country_code"] == "GB" and added["base_currency"] == "GBP"
    bare = control.ok("POST", "/organisations", json={"name": "Empty Ltd", "seed_data": False}, status=201)
    assert bare["counts"] == {"Contacts": 0, "Invoices": 0}
    assert listed[0]["counts"] == {"Contacts": 6, "Invoices": 5}
    assert [o["name"] for o in control.ok("GET", "/organisations")][2:] == ["Test Org Ltd", "Empty Ltd"]
    rt = partner.get_request_token()
    decision = control.ok("POST", "/authorize", json={"oauth_token": rt.oauth_token, "org": "!TEST1"})
    fields = dict(assert_form_success(partner.exchange(rt, decision["oauth_verifier"])))
    assert fields["xero_org_muid"] == added["org_muid"]


# -- authorize, revoke, expire, connections ------------------------------------------------
def test_authorize_and_deny(xero: MockXero, partner: Partner, control: Control) -> None:
    rt = partner.get_request_token("http://localhost:9000/cb")
    decision = control.ok("POST", "/authorize", json={"oauth_token": rt.oauth_token})
    assert decision["oauth_token"] == rt.oauth_token and decision["denied"] is False
    assert TOKEN_SHAPE.match(decision["oauth_verifier"])
    assert decision["org"] == xero.organisations()[0]["short_code"]
    assert decision["redirect"].startswith(f"http://localhost:9000/cb?oauth_token={rt.oauth_token}&")
    assert control.post("/authorize", json={"oauth_token": rt.oauth_token}).status_code == 400  # not pending
    oob = partner.get_request_token()
    second = xero.organisations()[1]["short_code"]
    decision = control.ok("POST", "/authorize", json={"oauth_token": oob.oauth_token, "org": second})
    assert decision["redirect"] is None and decision["org"] == second
    denied = partner.get_request_token()
    decision = control.ok("POST", "/authorize", json={"oauth_token": denied.oauth_token, "deny": True})
    assert decision["denied"] is True and decision["org"] is None and decision["oauth_verifier"] is None


def test_connections_revoke_and_expire(xero: MockXero, partner: Partner, control: Control) -> None:
    assert control.ok("GET", "/connections") == []
    nz = partner.connect()
    au = partner.connect(org=xero.organisations()[1]["short_code"])
    conns = control.ok("GET", "/connections")
    assert sorted(c["session_handle"] for c in conns) == sorted(
        [str(nz.oauth_session_handle), str(au.oauth_session_handle)])
    assert {"consumer_key", "organisation_id", "session_handle", "oauth_token", "token_expires_at",
            "authorization_expires_at", "created_at"} <= set(conns[0])
    assert len(control.ok("GET", "/connections", params={"consumer_key": xero.certs.consumer_key})) == 2
    assert control.ok("GET", "/connections", params={"consumer_key": "SOMEONEELSE"}) == []
    expired = control.ok("POST", "/expire", json={"session_handle": nz.oauth_session_handle})
    assert expired["connection"]["token_expires_at"] <= xero.now()
    assert_problem(partner.api(nz, "Organisation"), 401, "token_expired")
    assert partner.api(au, "Organisation").status_code == 200
    control.ok("POST", "/revoke", json={"oauth_token": au.oauth_token})
    assert [c["session_handle"] for c in control.ok("GET", "/connections")] == [nz.oauth_session_handle]
    assert_problem(partner.api(au, "Organisation"), 401, "token_rejected")


# -- reset ---------------------------------------------------------------------------------------
def test_reset_keeps_startup_state_and_drops_the_rest(xero: MockXero, partner: Partner,
                                                      control: Control) -> None:
    added = register(control, app_type="public")
    control.ok("POST", "/organisations", json={"name": "Gone Ltd"}, status=201)
    tokens = partner.connect()
    control.ok("POST", "/clock", json={"advance": 86400, "freeze": True})
    control.ok("POST", "/settings", json={"auto_approve": True})
    control.ok("POST", "/faults", json={"kind": "offline", "path": "/nothing"}, status=201)
    assert control.ok("GET", "/requests")
    assert control.ok("POST", "/reset") == {"status": "reset"}
    assert [c["consumer_key"] for c in control.ok("GET", "/consumers")] == [xero.certs.consumer_key]
    names = [o["name"] for o in control.ok("GET", "/organisations")]
    assert names == ["Demo Company (NZ)", "Demo Company (AU)"]
    assert control.ok("GET", "/connections") == []
    assert control.ok("GET", "/faults") == []
    assert control.ok("GET", "/requests") == []
    clock = control.ok("GET", "/clock")
    assert clock["frozen"] is False and abs(clock["offset"]) < 1
    assert control.ok("GET", "/settings")["auto_approve"] is False
    assert xero.store.nonce_count() == 0
    assert_problem(partner.api(tokens, "Organisation"), 401, "token_rejected")
    gone = Partner(xero, added["consumer_key"], added["consumer_secret"], signature_method=HMAC)
    try:
        assert_problem(gone.request_token(), 401, "consumer_key_unknown")
    finally:
        gone.close()
    assert_form_success(partner.request_token())  # the startup consumer still works


def test_reset_one_consumer(xero: MockXero, partner: Partner, control: Control) -> None:
    other = register(control, app_type="public")
    p = Partner(xero, other["consumer_key"], other["consumer_secret"], signature_method=HMAC)
    try:
        theirs = p.connect()
        mine = partner.connect()
        result = control.ok("POST", "/reset", json={"consumer_key": other["consumer_key"]})
        assert result == {"status": "reset", "consumer_key": other["consumer_key"]}
        assert [c["consumer_key"] for c in control.ok("GET", "/connections")] == [xero.certs.consumer_key]
        assert {e["consumer_key"] for e in control.ok("GET", "/requests")} == {xero.certs.consumer_key}
        assert_problem(p.api(theirs, "Organisation"), 401, "token_rejected")
        assert partner.api(mine, "Organisation").status_code == 200
        assert p.connect().oauth_token  # the consumer itself is kept
    finally:
        p.close()


# -- the journal ---------------------------------------------------------------------------------
def test_requests_journal(xero: MockXero, partner: Partner, control: Control) -> None:
    assert control.ok("GET", "/requests") == []
    assert_form_success(partner.request_token())
    assert_problem(partner.exchange(Tokens("NOSUCHTOKEN", "x"), "v"), 401, "token_rejected")
    entries = control.ok("GET", "/requests")
    assert [(e["method"], e["path"], e["status"], e["oauth_problem"]) for e in entries] == [
        ("POST", "/oauth/RequestToken", 200, None), ("POST", "/oauth/AccessToken", 401, "token_rejected")]
    assert all(e["consumer_key"] == xero.certs.consumer_key for e in entries)
    assert entries[1]["advice"] == "Token NOSUCHTOKEN does not match an expected REQUEST token"
    assert {"id", "time", "mock_time", "duration_ms"} <= set(entries[0])
    assert "base_string" not in entries[1]
    later = control.ok("GET", "/requests", params={"since": entries[0]["id"]})
    assert [e["id"] for e in later] == [entries[1]["id"]]
    assert control.ok("GET", "/requests", params={"consumer_key": "SOMEONEELSE"}) == []
    control.ok("GET", "/health")
    assert len(control.ok("GET", "/requests")) == 2  # control calls are not journalled


def test_requests_wait(xero: MockXero, partner: Partner, control: Control) -> None:
    assert_form_success(partner.request_token())
    since = control.ok("GET", "/requests")[-1]["id"]
    found: list[requests.Response] = []
    waiter_control = Control(xero)

    def wait() -> None:
        found.append(waiter_control.get("/requests/wait", params={
            "path": "/oauth/accesstoken", "consumer_key": xero.certs.consumer_key, "since": since,
            "status": 401, "timeout": 10}))

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        assert_problem(partner.exchange(Tokens("NOSUCHTOKEN", "x"), "v"), 401, "token_rejected")
    finally:
        waiter.join(15)
        waiter_control.close()
    assert len(found) == 1 and found[0].status_code == 200, found
    entry = found[0].json()
    assert entry["path"] == "/oauth/AccessToken" and entry["status"] == 401 and entry["id"] > since
    # an entry that is already there comes back at once
    assert control.ok("GET", "/requests/wait", params={"path": "/oauth/RequestToken"})["status"] == 200


def test_requests_wait_times_out_with_408(control: Control) -> None:
    response = control.get("/requests/wait", params={"path": "/never", "timeout": 0.2})
    assert_json_error(response, 408)


# -- faults -----------------------------------------------------------------------------------------
def test_faults_offline_list_and_clear(xero: MockXero, partner: Partner, control: Control) -> None:
    fault = control.ok("POST", "/faults", json={"kind": "offline", "path": "/oauth/*", "count": 2},
                       status=201)
    assert fault["kind"] == "offline" and fault["count"] == 2 and isinstance(fault["id"], int)
    assert [f["id"] for f in control.ok("GET", "/faults")] == [fault["id"]]
    response = partner.request_token()
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "offline" in response.text
    assert control.ok("GET", "/faults")[0]["count"] == 1
    entry = control.ok("GET", "/requests")[-1]
    assert entry["status"] == 503 and entry["fault"] == fault["id"]
    assert control.ok("DELETE", "/faults") == {"cleared": 1}
    assert control.ok("GET", "/faults") == []
    assert_form_success(partner.request_token())


def test_fault_problem_rate_limit_delay_and_single_clear(partner: Partner, control: Control) -> None:
    problem = control.ok("POST", "/faults", json={"kind": "problem", "problem": "token_rejected",
                                                  "advice": "Injected", "path": "/OAUTH/RequestToken"},
                         status=201)
    assert_problem(partner.request_token(), 401, "token_rejected", advice="Injected")
    assert control.ok("GET", "/faults") == []  # used up
    control.ok("POST", "/faults", json={"kind": "rate_limit", "window": "day"}, status=201)
    response = partner.request_token()
    assert_problem(response, 503, "rate limit exceeded")
    assert response.headers["X-Rate-Limit-Problem"] == "day"
    control.ok("POST", "/faults", json={"kind": "delay", "delay": 0.01}, status=201)
    assert_form_success(partner.request_token())
    assert control.ok("GET", "/faults") == []
    other = control.ok("POST", "/faults", json={"kind": "offline", "consumer_key": "SOMEONEELSE"}, status=201)
    assert_form_success(partner.request_token())  # not this consumer's fault
    assert control.ok("DELETE", f"/faults/{other['id']}") == {"cleared": 1}
    assert_json_error(control.call("DELETE", f"/faults/{other['id']}"), 404)
    assert_json_error(control.call("DELETE", f"/faults/{problem['id']}"), 404)


# -- ca.pem ------------------------------------------------------------------------------------------
def test_ca_pem(xero: MockXero, control: Control) -> None:
    response = control.get("/ca.pem")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-pem-file"
    assert response.text == xero.ca_path.read_text()
    assert response.text.startswith("-----BEGIN CERTIFICATE-----")


# -- refusals --------------------------------------------------------------------------------------
BAD_REQUESTS: list[tuple[str, str, Any, str]] = [
    ("POST", "/clock", b"{not json", "not valid JSON"),
    ("POST", "/clock", b"\xff\xfe", "not valid JSON"),
    ("POST", "/clock", [1, 2], "JSON object"),
    ("POST", "/clock", "advance", "JSON object"),
    ("POST", "/clock", {}, "advance"),
    ("POST", "/clock", {"advance": "10"}, "wrong type"),
    ("POST", "/clock", {"advance": True}, "wrong type"),
    ("POST", "/clock", {"advance": None}, "wrong type"),
    ("POST", "/clock", {"freeze": 1}, "wrong type"),
    ("POST", "/clock", {"tick": 1}, "unknown field"),
    ("POST", "/clock", {"advance": 1, "set": 2}, "one of"),
    ("POST", "/clock", {"set": -1}, "set"),
    ("POST", "/clock", {"set": 1e20}, "set"),
    ("POST", "/clock", {"set": 253402300800}, "set"),
    ("POST", "/clock", {"advance": 1e308}, "advance"),
    ("POST", "/clock", {"advance": -1e12}, "advance"),
    ("POST", "/clock", b'{"advance": NaN}', "advance"),
    ("POST", "/clock", b'{"set": Infinity}', "set"),
    ("POST", "/settings", {"auto_approve": "yes"}, "wrong type"),
    ("POST", "/settings", {"rate_limit": "lots"}, "rate limit"),
    ("POST", "/settings", {"rate_limit": "0/10"}, "rate limit"),
    ("POST", "/settings", {"journal_size": 10}, "unknown field"),
    ("POST", "/settings", {"access_token_ttl": 0}, "access_token_ttl must be positive"),
    ("POST", "/settings", {"authorization_ttl": 1.5}, "wrong type"),
    ("POST", "/settings", {"organisation": "nowhere"}, "no organisation 'nowhere'"),
    ("POST", "/reset", {"consumer_key": "NOSUCHCONSUMER"}, "NOSUCHCONSUMER"),
    ("POST", "/reset", {"consumer_key": 5}, "wrong type"),
    ("POST", "/consumers", {"app_type": "enterprise"}, "app_type"),
    ("POST", "/consumers", {"certificate": "not a pem"}, "certificate"),
    ("POST", "/consumers", {"client_certificates": [1]}, "client_certificates"),
    ("POST", "/consumers", {"client_certificates": ["not a pem"]}, "PEM"),
    ("POST", "/consumers", {"client_certificates": "x"}, "wrong type"),
    ("POST", "/consumers", {"require_client_cert": "no"}, "wrong type"),
    ("POST", "/consumers", {"app_type": "private", "organisation": "!NOPE"}, "organisation"),
    ("POST", "/consumers", {"colour": "blue"}, "unknown field"),
    ("POST", "/consumers/NOSUCHCONSUMER/client-certificates", {"certificate": "x"}, "PEM"),
    ("POST", "/consumers/{key}/client-certificates", {}, "certificate"),
    ("DELETE", "/consumers/{key}/client-certificates/abcdef", None, "abcdef"),
    ("POST", "/client-certificates", {"not_after": "soon"}, "wrong type"),
    ("POST", "/client-certificates", {"consumer_key": "NOSUCHCONSUMER"}, "NOSUCHCONSUMER"),
    ("POST", "/consumers", {"name": "bad\u0001name"}, "name"),
    ("POST", "/consumers", {"name": "lone \ud800 surrogate"}, "name"),
    ("POST", "/consumers", {"consumer_key": "has spaces in it"}, "consumer_key"),
    ("POST", "/consumers", {"consumer_secret": ""}, "consumer_secret"),
    ("POST", "/organisations", {}, "name"),
    ("POST", "/organisations", {"name": ""}, "name"),
    ("POST", "/organisations", {"name": "x" * 256}, "name"),
    ("POST", "/organisations", {"name": "Tab\tCo"}, "name"),
    ("POST", "/organisations", {"name": 5}, "wrong type"),
    ("POST", "/organisations", {"name": "x", "seed_data": "yes"}, "wrong type"),
    ("POST", "/authorize", {}, "oauth_token"),
    ("POST", "/authorize", {"oauth_token": "NOSUCHTOKEN"}, "NOSUCHTOKEN"),
    ("POST", "/authorize", {"oauth_token": "NOSUCHTOKEN", "org": "!NOPE"}, "!NOPE"),
    ("POST", "/authorize", {"oauth_token": "T", "deny": "true"}, "wrong type"),
    ("POST", "/revoke", {}, "oauth_token"),
    ("POST", "/revoke", {"oauth_token": "NOSUCHTOKEN"}, "connection"),
    ("POST", "/revoke", {"session_handle": 5}, "wrong type"),
    ("POST", "/expire", {}, "oauth_token"),
    ("POST", "/expire", {"session_handle": "NOSUCHHANDLE"}, "connection"),
    ("GET", "/requests?since=abc", None, "since"),
    ("GET", "/requests?since=nan", None, "since"),
    ("GET", "/requests?since=inf", None, "since"),
    ("GET", "/requests/wait?timeout=-1", None, "timeout"),
    ("GET", "/requests/wait?timeout=abc", None, "timeout"),
    ("GET", "/requests/wait?timeout=nan", None, "timeout"),
    ("GET", "/requests/wait?timeout=0&status=abc", None, "status"),
    ("GET", "/requests/wait?timeout=0&since=nan", None, "since"),
    ("POST", "/faults", {}, "kind"),
    ("POST", "/faults", {"kind": "meteor"}, "kind"),
    ("POST", "/faults", {"kind": "problem"}, "problem"),
    ("POST", "/faults", {"kind": "offline", "count": 0}, "count"),
    ("POST", "/faults", {"kind": "offline", "count": 1.5}, "wrong type"),
    ("POST", "/faults", {"kind": "delay", "delay": 100}, "delay"),
    ("POST", "/faults", {"kind": "offline", "window": "hour"}, "window"),
    ("POST", "/faults", {"kind": "offline", "status": 42}, "status"),
]


@pytest.mark.parametrize(("method", "path", "body", "contains"), BAD_REQUESTS,
                         ids=[f"{m} {p} {b!r}"[:60] for m, p, b, _ in BAD_REQUESTS])
def test_bad_control_requests_get_400_with_a_message(xero: MockXero, control: Control, method: str, path: str,
                                                     body: Any, contains: str) -> None:
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs = {"data": body, "headers": {"Content-Type": "application/json"}}
    elif body is not None:
        kwargs = {"json": body}
    response = control.call(method, path.replace("{key}", xero.certs.consumer_key), **kwargs)
    assert_json_error(response, 400, contains)


def test_nothing_changed_by_refused_requests(xero: MockXero, partner: Partner, control: Control) -> None:
    assert control.post("/clock", json={"advance": 10, "set": 5}).status_code == 400
    assert control.post("/clock", json={"freeze": True, "set": 1e20}).status_code == 400
    assert control.post("/clock", json={"freeze": True, "advance": 1e308}).status_code == 400
    assert_form_success(partner.request_token())  # the clock is still usable
    control.post("/settings", json={"auto_approve": True, "rate_limit": "bad"})
    assert xero.clock()["frozen"] is False and abs(xero.clock()["offset"]) < 1
    assert xero.auto_approve is False and xero.rate_limit == (60, 5000)


def test_unknown_control_route_and_wrong_method(control: Control) -> None:
    assert_json_error(control.get("/nope"), 404)
    assert_json_error(control.get("/consumers/x/y/z"), 404)
    assert_json_error(control.call("DELETE", "/health"), 405)
    assert_json_error(control.call("PUT", "/clock", json={}), 405)


# -- the admin token -----------------------------------------------------------------------------------
#: (method, path, body) of every control route, in an order that works as a script.
def admin_script(key: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/health", None),
        ("GET", "/clock", None),
        ("POST", "/clock", {"advance": 0}),
        ("GET", "/settings", None),
        ("POST", "/settings", {"auto_approve": False}),
        ("GET", "/consumers", None),
        ("POST", "/consumers", {"app_type": "public"}),
        ("POST", "/client-certificates", {}),
        ("POST", f"/consumers/{key}/client-certificates", {"certificate": "{cert}"}),
        ("DELETE", f"/consumers/{key}/client-certificates/{{fingerprint}}", None),
        ("GET", "/organisations", None),
        ("POST", "/organisations", {"name": "Admin Ltd"}),
        ("POST", "/authorize", {"oauth_token": "{request_token}"}),
        ("GET", "/connections", None),
        ("POST", "/expire", {"session_handle": "{session_handle}"}),
        ("POST", "/revoke", {"session_handle": "{session_handle}"}),
        ("GET", "/requests", None),
        ("GET", "/requests/wait?path=/oauth/RequestToken&timeout=1", None),
        ("POST", "/faults", {"kind": "offline", "path": "/nothing"}),
        ("GET", "/faults", None),
        ("DELETE", "/faults/{fault}", None),
        ("DELETE", "/faults", None),
        ("GET", "/ca.pem", None),
        ("POST", "/reset", None),
    ]


@pytest.fixture
def guarded(certs_dir: Path) -> Iterator[MockXero]:
    with MockXero(port=0, certs=certs_dir, admin_token="s3cret") as server:
        yield server


def test_admin_token_guards_every_control_route(guarded: MockXero) -> None:
    certs = guarded.certs
    cert = (str(certs.path("entrust-cert.pem")), str(certs.path("entrust-private-nopass.pem")))
    partner = Partner(guarded, certs.consumer_key, certs.consumer_secret, rsa_key=certs.application_key,
                      cert=cert)
    anonymous = Control(guarded)
    wrong = Control(guarded, admin_token="nope")
    admin = Control(guarded, admin_token="s3cret")
    lower = Control(guarded)
    lower.session.headers["Authorization"] = "bearer s3cret"
    try:
        # the OAuth endpoints and the pages need no admin token
        rt = partner.get_request_token()
        page = anonymous.session.get(guarded.url + "/oauth/Authorize", params={"oauth_token": rt.oauth_token})
        assert page.status_code == 200
        assert anonymous.session.get(guarded.url + "/addons").status_code == 200
        values: dict[str, str] = {"request_token": rt.oauth_token}
        for method, path, body in admin_script(certs.consumer_key):
            for refused_by in (anonymous, wrong):
                response = refused_by.call(method, path.format(**values) if "{" in path else path, json=body)
                assert_json_error(response, 401, "Bearer")
                assert response.headers["WWW-Authenticate"] == 'Bearer realm="mockxero"'
            if isinstance(body, dict):
                body = {k: v.format(**values) if isinstance(v, str) and "{" in v else v
                        for k, v in body.items()}
            response = admin.call(method, path.format(**values) if "{" in path else path, json=body)
            assert response.status_code in (200, 201), (method, path, response.text)
            data = response.json() if path != "/ca.pem" else {}
            if path == "/client-certificates":
                values["cert"], values["fingerprint"] = data["certificate"], data["fingerprint"]
            elif path == "/authorize":
                exchanged = partner.exchange(rt, data["oauth_verifier"])
                values["session_handle"] = parse_form(exchanged.text)["oauth_session_handle"]
            elif path == "/faults" and method == "POST":
                values["fault"] = str(data["id"])
        assert lower.ok("GET", "/health") == {"status": "ok"}
        # refused calls changed nothing
        anonymous.post("/settings", json={"auto_approve": True})
        assert guarded.auto_approve is False
    finally:
        for c in (anonymous, wrong, admin, lower):
            c.close()
        partner.close()


def test_no_admin_token_by_default(control: Control) -> None:
    assert control.get("/health").status_code == 200
    assert control.call("GET", "/health", headers={"Authorization": "Bearer whatever"}).status_code == 200
