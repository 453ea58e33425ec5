"""Rate limits (per consumer and organisation, rolling windows on the mock
clock, changed at runtime) and the queued faults of the control API, on
API calls."""

from __future__ import annotations

import pytest
import requests

from mockxero import MockXero
from mockxero.app import OFFLINE_BODY

from .api_support import JSON, get_json
from .helpers import Control, Partner, Tokens, assert_problem, tokens_from

RATE_LIMIT_BODY = ("oauth_problem=rate%20limit%20exceeded"
                   "&oauth_problem_advice=please%20wait%20before%20retrying%20the%20xero%20api")


def assert_rate_limited(response: requests.Response, window: str) -> None:
    assert response.status_code == 503, response.text
    assert response.text == RATE_LIMIT_BODY
    assert response.headers["X-Rate-Limit-Problem"] == window
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"


def renewed(partner: Partner, tokens: Tokens) -> Tokens:
    response = partner.renew(tokens)
    assert response.status_code == 200, response.text
    return tokens_from(response)


def calls(partner: Partner, tokens: Tokens, n: int, path: str = "Contacts") -> list[int]:
    return [partner.api(tokens, path).status_code for _ in range(n)]


# -- rate limits ------------------------------------------------------------------------------

def test_default_limits_are_xeros(xero: MockXero, control: Control) -> None:
    assert xero.rate_limit == (60, 5000)
    assert control.call("GET", "/settings").json()["rate_limit"] == "60/5000"


def test_minute_window(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    xero.move_clock(freeze=True)
    xero.change_settings(rate_limit="3/100")
    assert calls(partner, tokens, 3, "Organisation") == [200] * 3
    assert_rate_limited(partner.api(tokens, "Invoices"), "minute")  # every resource counts
    assert_rate_limited(partner.api(tokens, "Contacts", headers=JSON), "minute")
    xero.advance(59)
    assert_rate_limited(partner.api(tokens, "Contacts"), "minute")
    xero.advance(1.5)  # the window rolls: the first calls are a minute old
    assert calls(partner, tokens, 3) == [200] * 3
    assert_rate_limited(partner.api(tokens, "Contacts"), "minute")


def test_day_window(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    xero.move_clock(freeze=True)
    xero.change_settings(rate_limit="100/4")
    assert calls(partner, tokens, 2) == [200, 200]
    xero.advance(3 * 3600)
    tokens = renewed(partner, tokens)  # 30-minute tokens: renewals are not API calls
    assert calls(partner, tokens, 2) == [200, 200]
    assert_rate_limited(partner.api(tokens, "Contacts"), "day")
    xero.advance(61)  # a new minute does not help
    assert_rate_limited(partner.api(tokens, "Contacts"), "day")
    xero.advance(86400 - 3 * 3600 - 61 + 1)  # the first two calls leave the rolling day
    tokens = renewed(partner, tokens)
    assert calls(partner, tokens, 2) == [200, 200]
    assert_rate_limited(partner.api(tokens, "Contacts"), "day")


def test_limits_are_per_consumer_and_organisation(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    xero.change_settings(rate_limit="2/100")
    assert calls(partner, tokens, 2) == [200, 200]
    assert_rate_limited(partner.api(tokens, "Contacts"), "minute")
    au = partner.connect(org=xero.organisations()[1]["short_code"])
    assert calls(partner, au, 2) == [200, 200]
    assert_rate_limited(partner.api(au, "Contacts"), "minute")


def test_refused_calls_do_not_count(xero: MockXero, partner: Partner, tokens: Tokens) -> None:
    xero.move_clock(freeze=True)
    xero.change_settings(rate_limit="2/100")
    assert calls(partner, tokens, 2) == [200, 200]
    for _ in range(5):
        assert_rate_limited(partner.api(tokens, "Contacts"), "minute")
    xero.advance(60.5)
    assert calls(partner, tokens, 3) == [200, 200, 503]


def test_runtime_setting_over_the_control_api(xero: MockXero, partner: Partner, tokens: Tokens,
                                              control: Control) -> None:
    response = control.call("POST", "/settings", json={"rate_limit": "2/10"})
    assert response.json()["rate_limit"] == "2/10"
    assert xero.rate_limit == (2, 10)
    assert calls(partner, tokens, 3) == [200, 200, 503]
    assert control.call("POST", "/settings", json={"rate_limit": "off"}).json()["rate_limit"] == "off"
    assert xero.rate_limit is None
    assert calls(partner, tokens, 8) == [200] * 8
    assert control.call("POST", "/settings", json={"rate_limit": "lots"}).status_code == 400
    xero.reset()
    assert xero.rate_limit == (60, 5000)  # a reset puts the setting back


# -- faults ------------------------------------------------------------------------------------

def test_problem_fault_for_the_next_n_matching_requests(xero: MockXero, partner: Partner, tokens: Tokens,
                                                        control: Control) -> None:
    created = control.call("POST", "/faults", json={
        "kind": "problem", "path": "/api.xro/2.0/Contacts", "count": 2, "problem": "token_rejected",
        "advice": "chaos monkey"})
    assert created.status_code == 201, created.text
    fault_id = created.json()["id"]
    assert partner.api(tokens, "Invoices").status_code == 200  # another path: untouched
    assert_problem(partner.api(tokens, "Contacts"), 401, "token_rejected", "chaos monkey")
    [queued] = control.call("GET", "/faults").json()
    assert (queued["id"], queued["count"]) == (fault_id, 1)
    assert_problem(partner.api(tokens, "contacts"), 401, "token_rejected")  # paths match any case
    assert control.call("GET", "/faults").json() == []
    assert partner.api(tokens, "Contacts").status_code == 200
    entries = [e for e in xero.journal() if e.get("fault") == fault_id]
    assert [e["oauth_problem"] for e in entries] == ["token_rejected", "token_rejected"]


def test_problem_fault_with_its_own_status(partner: Partner, tokens: Tokens, control: Control) -> None:
    control.call("POST", "/faults", json={"kind": "problem", "path": "/api.xro/2.0/*",
                                          "problem": "token_expired", "status": 401})
    response = partner.api(tokens, "Invoices")
    assert_problem(response, 401, "token_expired", "The access token has expired")
    control.call("POST", "/faults", json={"kind": "problem", "path": "*", "problem": "nonce_used",
                                          "status": 400})
    assert_problem(partner.api(tokens, "Organisation"), 400, "nonce_used")


def test_fault_for_one_consumer_only(xero: MockXero, partner: Partner, tokens: Tokens,
                                     control: Control) -> None:
    other = xero.add_consumer(certificate=xero.certs.application_certificate)
    control.call("POST", "/faults", json={"kind": "offline", "path": "/api.xro/2.0/*",
                                          "consumer_key": other["consumer_key"]})
    assert calls(partner, tokens, 2) == [200, 200]
    [queued] = control.call("GET", "/faults").json()
    assert queued["consumer_key"] == other["consumer_key"]
    control.call("POST", "/faults", json={"kind": "offline", "path": "/api.xro/2.0/*",
                                          "consumer_key": partner.consumer_key})
    assert partner.api(tokens, "Contacts").status_code == 503


def test_offline_fault(partner: Partner, tokens: Tokens, control: Control) -> None:
    control.call("POST", "/faults", json={"kind": "offline", "path": "/api.xro/2.0/Invoices", "count": 1})
    response = partner.api(tokens, "Invoices", headers=JSON)
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.text == OFFLINE_BODY == "The Xero API is currently offline for maintenance"
    assert "X-Rate-Limit-Problem" not in response.headers
    assert get_json(partner, tokens, "Invoices")["Invoices"]


def test_rate_limit_fault(xero: MockXero, partner: Partner, tokens: Tokens, control: Control) -> None:
    xero.change_settings(rate_limit="off")
    control.call("POST", "/faults", json={"kind": "rate_limit", "path": "/api.xro/2.0/*", "window": "day"})
    assert_rate_limited(partner.api(tokens, "Organisation"), "day")
    xero.add_fault("rate_limit", path="/api.xro/2.0/organisation")  # the Python face, minute by default
    assert_rate_limited(partner.api(tokens, "Organisation"), "minute")
    assert partner.api(tokens, "Organisation").status_code == 200


def test_delay_fault(xero: MockXero, partner: Partner, tokens: Tokens, control: Control) -> None:
    fault = control.call("POST", "/faults", json={"kind": "delay", "path": "/api.xro/2.0/Contacts",
                                                  "delay": 0.2}).json()
    response = partner.api(tokens, "Contacts", headers=JSON)
    assert response.status_code == 200  # late, not refused
    assert response.json()["Contacts"]
    [entry] = [e for e in xero.journal() if e.get("fault") == fault["id"]]
    assert entry["path"] == "/api.xro/2.0/Contacts"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 200


def test_clearing_faults(partner: Partner, tokens: Tokens, control: Control) -> None:
    first = control.call("POST", "/faults", json={"kind": "offline", "path": "/api.xro/2.0/Contacts"}).json()
    control.call("POST", "/faults", json={"kind": "offline", "path": "/api.xro/2.0/Invoices", "count": 5})
    assert control.call("DELETE", f"/faults/{first['id']}").json() == {"cleared": 1}
    assert control.call("DELETE", f"/faults/{first['id']}").status_code == 404
    assert partner.api(tokens, "Contacts").status_code == 200
    assert control.call("DELETE", "/faults").json() == {"cleared": 1}
    assert partner.api(tokens, "Invoices").status_code == 200
    assert control.call("GET", "/faults").json() == []


@pytest.mark.parametrize("body", [
    {"kind": "explode"}, {"kind": "problem"}, {"kind": "delay", "delay": 0}, {"kind": "offline", "count": 0},
    {"kind": "rate_limit", "window": "week"}, {"kind": "problem", "problem": "x", "status": 99},
])
def test_bad_faults_are_refused(control: Control, body: dict[str, object]) -> None:
    response = control.call("POST", "/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"]
