"""``MockXero(state=FILE)`` in process: what a restart brings back, what a
reset does to the file, and a change the file cannot take is not made."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mockxero import MockXero
from mockxero.settings import Settings
from mockxero.statefile import StateFileError

from .helpers import Partner, Tokens, problem_of


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    return {"certs": tmp_path / "certs", "state": tmp_path / "state.sqlite"}


def mock(paths: dict[str, Path], port: int = 0, **settings: Any) -> MockXero:
    return MockXero(port=port, certs=paths["certs"], state=paths["state"], rate_limit=None, **settings)


@pytest.fixture
def first(paths: dict[str, Path]) -> Iterator[MockXero]:
    xero = mock(paths).start()
    yield xero
    xero.close()


def demo_partner(xero: MockXero) -> Partner:
    return Partner(xero, xero.certs.consumer_key, rsa_key=xero.certs.application_key,
                   cert=xero.client_cert)


def organisation_call(partner: Partner, tokens: Tokens) -> requests.Response:
    return partner.api(tokens, "Organisation", headers={"Accept": "application/json"})


def test_a_restart_in_process_brings_everything_back(paths: dict[str, Path], first: MockXero) -> None:
    first.move_clock(freeze=True, set=1_800_000_000)
    partner = demo_partner(first)
    tokens = partner.connect()
    private = first.add_consumer(app_type="private", certificate=first.certs.application_certificate,
                                 organisation="Demo Company (AU)", name="Back office")
    org = first.add_organisation(name="Restart Ltd", short_code="!RST", country_code="GB",
                                 base_currency="GBP")
    first.add_organisation(name="Empty Ltd", short_code="!EMP", seed_data=False)
    loaded = first.load_data(org="!RST", contacts=[{"Name": "Kept Contact", "EmailAddress": "k@kept.co"}])
    first.change_settings(auto_approve=True, rate_limit="7/70", access_token_ttl=600, organisation="!RST")
    pending = partner.get_request_token()
    before = {"consumers": first.consumers(), "organisations": first.organisations(),
              "data": first.data("!RST"), "connections": first.connections(),
              "settings": first.runtime_settings(), "now": first.clock()["now"]}
    partner.close()
    first.close()

    second = mock(paths).start()
    try:
        after = {"consumers": second.consumers(), "organisations": second.organisations(),
                 "data": second.data("!RST"), "connections": second.connections(),
                 "settings": second.runtime_settings(), "now": second.clock()["now"]}
        assert after == before
        assert second.clock()["frozen"] is True
        assert private["consumer_key"] in {c["consumer_key"] for c in after["consumers"]}
        assert org["organisation_id"] in {o["organisation_id"] for o in after["organisations"]}
        assert loaded["Contacts"][0]["ContactID"] in {c["ContactID"] for c in after["data"]["Contacts"]}
        second.load_data(org="!EMP", contacts=[{"Name": "First In"}])
        assert [c["Name"] for c in second.data("!EMP")["Contacts"]] == ["First In"]
        partner = demo_partner(second)
        assert organisation_call(partner, tokens).status_code == 200
        # the pending request token too, on the restored (frozen) clock
        verifier = second.authorize(pending.oauth_token)["oauth_verifier"]
        assert partner.exchange(pending, verifier).status_code == 200
        partner.close()
    finally:
        second.close()


def test_a_reset_with_a_state_file_resets_the_file(paths: dict[str, Path], first: MockXero) -> None:
    start = (first.consumers(), first.organisations(), first.data())
    partner = demo_partner(first)
    tokens = partner.connect()
    first.add_consumer(name="gone")
    first.change_settings(auto_approve=True)
    first.move_clock(advance=86400)
    first.reset()
    partner.close()
    first.close()

    second = mock(paths).start()
    try:
        assert (second.consumers(), second.organisations(), second.data()) == start
        assert second.connections() == []
        assert second.runtime_settings()["auto_approve"] is False
        assert second.clock()["frozen"] is False and abs(second.clock()["offset"]) < 60
        partner = demo_partner(second)
        assert problem_of(organisation_call(partner, tokens))["oauth_problem"] == "token_rejected"
        partner.close()
    finally:
        second.close()


def test_a_per_consumer_reset_is_kept(paths: dict[str, Path], first: MockXero) -> None:
    partner = demo_partner(first)
    tokens = partner.connect()
    first.change_settings(auto_approve=True)
    first.reset(first.certs.consumer_key)
    partner.close()
    first.close()
    second = mock(paths)
    try:
        assert second.connections() == []
        assert second.runtime_settings()["auto_approve"] is True  # a per-consumer reset leaves switches
        assert second.store.connection_for_token(tokens.oauth_token) is None
    finally:
        second.close()


def test_a_second_mock_on_the_same_file_is_refused(paths: dict[str, Path], first: MockXero) -> None:
    with pytest.raises(StateFileError, match="in use by another process"):
        mock(paths)


def test_another_certificates_folder_is_refused(paths: dict[str, Path], first: MockXero,
                                                tmp_path: Path) -> None:
    first.close()
    with pytest.raises(StateFileError, match="belongs to another certificates folder"):
        MockXero(port=0, certs=tmp_path / "other", state=paths["state"])


def test_a_change_the_file_cannot_take_is_not_made(paths: dict[str, Path], first: MockXero) -> None:
    partner = demo_partner(first)
    tokens = partner.connect()
    consumers = first.consumers()
    clock = first.clock()
    assert first._state_file is not None
    first._state_file.close()  # stands for a disk gone full or away
    with pytest.raises(StateFileError):
        first.add_consumer(name="not kept")
    with pytest.raises(StateFileError):
        first.move_clock(advance=3600)
    assert first.consumers() == consumers
    assert first.clock()["offset"] == pytest.approx(clock["offset"], abs=5)
    response = partner.renew(tokens)
    assert response.status_code == 503
    assert "cannot keep this change" in response.text
    assert organisation_call(partner, tokens).status_code == 200  # the old token still holds
    control = requests.post(first.url + "/_mockxero/consumers", json={"name": "x"},
                            verify=str(first.ca_path), timeout=10)
    assert control.status_code == 503
    assert "is closed" in control.json()["error"]
    partner.close()


def test_without_a_state_file_nothing_is_written(tmp_path: Path) -> None:
    with MockXero(port=0, certs=tmp_path / "certs") as xero:
        xero.add_consumer(name="memory only")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["certs"]


def test_the_setting_comes_from_the_environment(tmp_path: Path) -> None:
    assert Settings.from_env({"MOCKXERO_STATE": str(tmp_path / "s.sqlite")}).state == tmp_path / "s.sqlite"
    assert Settings.from_env({"MOCKXERO_STATE": ""}).state is None
    assert Settings.from_env({}).state is None


def test_the_file_holds_what_the_api_wrote(paths: dict[str, Path], first: MockXero) -> None:
    """A record the API saved is in the file, readable with nothing but sqlite3."""
    partner = demo_partner(first)
    tokens = partner.connect()
    contacts = len(first.data()["Contacts"])
    response = partner.api(tokens, "Contacts", method="POST", json={"Name": "Written Through"},
                           headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    org_id = first.organisations()[0]["organisation_id"]
    first.close()
    db = sqlite3.connect(paths["state"])
    bodies = [b for (b,) in db.execute("SELECT body FROM records WHERE collection='Contacts'"
                                       " AND organisation_id=?", (org_id,))]
    db.close()
    assert len(bodies) == contacts + 1
    assert sum('"Written Through"' in b for b in bodies) == 1
    partner.close()



def test_replay_protection_does_not_outlive_a_restart(paths: dict[str, Path], first: MockXero) -> None:
    """As docs/decisions.md says: nonces are not kept, so a request signed
    before a restart is taken once more after it (within its timestamp
    window), while its token's fate (here: still current) is kept."""
    partner = demo_partner(first)
    tokens = partner.connect()
    signed = requests.Request("GET", first.url + "/api.xro/2.0/Organisation",
                              auth=partner.auth(tokens.oauth_token, tokens.oauth_token_secret)).prepare()
    assert partner.session.send(signed).status_code == 200
    assert problem_of(partner.session.send(signed))["oauth_problem"] == "nonce_used"
    partner.close()
    port = first.port  # the signature covers it
    first.close()

    second = mock(paths, port=port).start()
    try:
        partner = demo_partner(second)
        assert partner.session.send(signed).status_code == 200
        assert problem_of(partner.session.send(signed))["oauth_problem"] == "nonce_used"
        partner.close()
    finally:
        second.close()


def test_a_row_mockxero_cannot_use_is_a_clear_error(paths: dict[str, Path], first: MockXero) -> None:
    first.close()
    db = sqlite3.connect(paths["state"])
    db.execute("UPDATE consumers SET certificate='-----BEGIN CERTIFICATE-----\nbroken'")
    db.commit()
    db.close()
    with pytest.raises(StateFileError, match="holds something mockxero cannot use"):
        mock(paths)
    with pytest.raises(StateFileError, match="holds something mockxero cannot use"):
        mock(paths)  # the refusal let go of the file


def test_the_test_helpers_mock_ignores_a_state_file_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MOCKXERO_STATE set for a container must not reach the throwaway mock
    of the pytest plugin (fresh certificates every time: the file would be
    refused, or shared by parallel workers)."""
    from mockxero.testing import in_process_mock

    monkeypatch.setenv("MOCKXERO_STATE", str(tmp_path / "state.sqlite"))
    with in_process_mock() as xero:
        assert xero.settings.state is None
        xero.add_consumer(name="throwaway")
    assert not (tmp_path / "state.sqlite").exists()
