"""The Authorization-header fast path must read every header exactly as
oauthlib's parser does (it replaces it only for speed)."""

from __future__ import annotations

import random

import pytest
from oauthlib.oauth1.rfc5849 import utils

from mockxero.oauth import parse_oauth_header
from mockxero.problems import OAuthProblem

CASES = [
    'OAuth realm="", oauth_nonce="123", oauth_timestamp="1", oauth_signature="a%2Bb%3D"',
    'OAuth oauth_nonce="1",oauth_token=""',
    'OAuth oauth_nonce = "1" , oauth_x="2"  ',
    "OAuth ",
    "OAuth   ",
    'OAuth oauth_version=1.0, oauth_nonce="x"',
    'OAuth oauth_nonce="1", oauth_nonce="2"',
    'OAuth a="x,y", b="z"',
    'OAuth a="%E2%82%AC"',
    'OAuth a="1",, b="2"',
    'OAuth a="1" b="2"',
    'OAuth a="1",',
    'OAuth a="1", \t',
    'OAuth a="\\"q\\""',
]


def oauthlib_reading(header: str) -> list[tuple[str, str]] | str:
    try:
        return list(utils.parse_authorization_header(header))
    except (ValueError, IndexError):
        return "malformed"


def our_reading(header: str) -> list[tuple[str, str]] | str:
    try:
        return parse_oauth_header(header)
    except OAuthProblem as problem:
        assert problem.problem == "parameter_rejected"
        return "malformed"


@pytest.mark.parametrize("header", CASES)
def test_known_headers_read_as_oauthlib_reads_them(header: str) -> None:
    assert our_reading(header) == oauthlib_reading(header)


def test_random_headers_read_as_oauthlib_reads_them() -> None:
    rng = random.Random(5849)
    alphabet = 'ab=", \t%\\x'
    for _ in range(20000):
        header = "OAuth " + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert our_reading(header) == oauthlib_reading(header), header
