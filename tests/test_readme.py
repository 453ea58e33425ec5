"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import certifi
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # the example writes ./certs
    # Another bundle in the environment must not get in the way (requests
    # lets it override a session's verify, never a request's).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert (tmp_path / "certs" / "ca.pem").exists()
