"""The README's pytest examples run as written: each ```python FILE block
becomes that test file, and pytest (with the plugin) runs them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

pytest_plugins = ["pytester"]


def test_the_readme_pytest_examples_pass(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MOCKXERO_URL", "MOCKXERO_CERTS", "MOCKXERO_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    files = dict(re.findall(r"```python (test_\w+\.py)\n(.*?)```", README.read_text(), re.S))
    assert {"test_with_mockxero.py", "test_my_integration.py"} <= set(files)
    for name, source in files.items():
        (pytester.path / name).write_text(source)
    expected = sum(len(re.findall(r"^def test_", source, re.M)) for source in files.values())
    result = pytester.runpytest("-p", "no:randomly", "-v")
    result.assert_outcomes(passed=expected)
