"""Running the ``mockxero`` command in the tests: the installed console
script beside this interpreter, with no MOCKXERO_* settings leaking in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MOCKXERO = str(Path(sys.executable).with_name("mockxero"))

#: The fixed file names of a certificates folder (SPEC.md §8 and issue 3),
#: written out here rather than taken from mockxero.certs, so that a change
#: there shows up as a failing test.
FILES = {"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "entrust-ca.pem", "entrust-ca-key.pem",
         "entrust-cert.pem", "entrust-private-nopass.pem", "entrust-client.p12", "privatekey.pem",
         "publickey.cer", "consumer.json"}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKXERO_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOCKXERO, *args], capture_output=True, text=True, timeout=60, env=clean_env(env))


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A refusal: non-zero exit, no traceback, one line on stderr naming the problem."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mockxero")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
