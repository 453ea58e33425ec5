from mockxero import MockXero

from .helpers import Partner, parse_form


def test_dance_api_call_and_renewal(xero: MockXero, partner: Partner) -> None:
    tokens = partner.connect()
    assert tokens.raw["oauth_expires_in"] == "1800"
    assert partner.api(tokens, "Organisation").status_code == 200
    renewed = partner.renew(tokens)
    assert renewed.status_code == 200, renewed.text
    assert parse_form(renewed.text)["oauth_session_handle"] == tokens.oauth_session_handle
