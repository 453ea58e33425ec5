"""A reset is cheap because the baseline is shared, not copied: consumers,
organisations and records are immutable values and collections are
replaced, never changed. This holds that to account: whatever a test
changes, through the API over sockets and through the operations, the
next reset gives back the very same state, cycle after cycle."""

from __future__ import annotations

from typing import Any

from mockxero import MockXero

from .helpers import Partner


def snapshot(xero: MockXero) -> dict[str, Any]:
    orgs = xero.organisations()
    return {
        "consumers": xero.consumers(),
        "organisations": orgs,
        "data": {o["organisation_id"]: xero.data(o["organisation_id"]) for o in orgs},
        "connections": xero.connections(),
        "journal": xero.journal(),
        "faults": xero.faults(),
        "sizes": xero.store.sizes(),
        "settings": xero.runtime_settings(),
    }


def change_everything(xero: MockXero, partner: Partner) -> None:
    consumer = xero.certs.consumer_key
    tokens = partner.connect()
    contact = {"Contacts": [{"Name": "Made In A Test"}]}
    assert partner.api(tokens, "Contacts", method="PUT", json=contact,
                       headers={"Accept": "application/json"}).status_code == 200
    assert partner.api(tokens, "Organisation").status_code == 200
    xero.update_consumer(consumer, name="renamed in a test", callback_domain="example.com")
    xero.issue_client_certificate(consumer)
    xero.load_data(contacts=[{"Name": "Loaded"}])
    second = xero.organisations()[1]["short_code"]
    xero.load_data(org=second, replace=True)
    xero.add_organisation("Added Ltd")
    xero.add_consumer(app_type="public", name="added app")
    xero.add_fault("offline", path="/nowhere")
    xero.change_settings(auto_approve=True, rate_limit="5/50")
    xero.advance(3600)


def test_reset_gives_back_the_same_state_cycle_after_cycle(xero: MockXero, partner: Partner) -> None:
    start = snapshot(xero)
    assert start["journal"] == [] and start["connections"] == []
    for _ in range(3):
        change_everything(xero, partner)
        changed = snapshot(xero)
        for key in ("consumers", "organisations", "data", "connections", "journal", "faults", "settings"):
            assert changed[key] != start[key], key
        xero.reset()
        assert snapshot(xero) == start
        assert abs(xero.clock()["offset"]) < 1
