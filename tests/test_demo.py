"""``mockxero demo`` end to end: the real command in a subprocess, against
a mock this test runs, and against the one it starts by itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mockxero import MockXero

from .cli_support import MOCKXERO, assert_one_line_error, clean_env, run_cli

DONE = "All 7 steps behaved as Xero would."

#: A person at a browser: loads the Authorize page (its cookie and hidden
#: fields), keeps the first organisation, clicks Allow, and follows the
#: redirect to the callback.
FAKE_BROWSER = r'''
import os, re, sys
import requests
url = sys.argv[1]
session = requests.Session()
session.trust_env = False
ca = os.environ["FAKE_BROWSER_CA"]
page = session.get(url, verify=ca, timeout=30)
page.raise_for_status()
form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
form["org"] = re.search(r'<option value="([^"]+)" selected', page.text).group(1)
form["action"] = "allow"
action = url.split("?")[0]
done = session.post(action, data=form, verify=ca, timeout=30)
sys.exit(0 if done.status_code == 200 and "back to the terminal" in done.text else 1)
'''


def test_demo_against_a_running_mock(xero: MockXero, certs_dir: Path) -> None:
    before = xero.clock()["offset"]
    result = run_cli("demo", "--server", xero.url, "--certs", str(certs_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert DONE in result.stdout and result.stderr == ""
    for step in ("Request token", "Authorize", "Access token", "API call", "Time passes",
                 "renews by itself", "Xero said token_expired; the client renewed once", "disconnects"):
        assert step in result.stdout

    # What the mock saw is the story told.
    seen = [(e["method"], e["path"], e["status"], e["oauth_problem"]) for e in xero.journal()]
    api = "/api.xro/2.0/Contacts"
    assert seen == [
        ("POST", "/oauth/RequestToken", 200, None),
        ("POST", "/oauth/AccessToken", 200, None),
        ("GET", "/api.xro/2.0/Organisation", 200, None),
        ("GET", api, 200, None),
        ("GET", api, 401, "token_expired"),
        ("POST", "/oauth/AccessToken", 200, None),
        ("GET", api, 200, None),
        ("GET", api, 401, "token_rejected"),
    ]
    assert xero.connections() == []  # revoked
    assert abs(xero.clock()["offset"] - before) < 5  # the shared clock put back


def test_demo_starts_its_own_mock(tmp_path: Path) -> None:
    result = run_cli_in(tmp_path, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert DONE in result.stdout
    started = re.search(r"Started a mock in this process at (https://\S+) \(certificates in (.+)\)",
                        result.stdout)
    assert started, result.stdout
    assert not Path(started.group(2)).exists()  # its temporary certificates are gone
    assert list(tmp_path.iterdir()) == []


def test_demo_in_process_with_a_certs_folder(certs_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in certs_dir.iterdir()}
    result = run_cli("demo", "--certs", str(certs_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"(certificates in {certs_dir})" in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in certs_dir.iterdir()} == before  # used, not rewritten


def test_demo_exits_1_when_a_step_does_not_go_as_xero_would(xero: MockXero, certs_dir: Path) -> None:
    xero.change_settings(rate_limit="100/2")  # step 4 uses the day's two calls; step 6 is refused
    result = run_cli("demo", "--server", xero.url, "--certs", str(certs_dir))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: RateLimited" in result.stdout
    assert "Step 6 did not behave as Xero would." in result.stdout
    assert DONE not in result.stdout
    assert abs(xero.clock()["offset"]) < 5


def test_demo_with_another_token_lifetime(certs_dir: Path) -> None:
    with MockXero(port=0, certs=certs_dir, access_token_ttl=120) as short:
        result = run_cli("demo", "--server", short.url, "--certs", str(certs_dir))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "valid for 2 minutes (this mock is set so; Xero gave 30)" in result.stdout
        assert "clock moves 3 minutes on" in result.stdout
        assert DONE in result.stdout


def test_demo_help_names_its_options() -> None:
    result = run_cli("demo", "--help")
    assert result.returncode == 0
    for option in ("--server", "--certs", "--browser", "MOCKXERO_ADMIN_TOKEN"):
        assert option in result.stdout


def test_demo_with_an_admin_token(certs_dir: Path) -> None:
    with MockXero(port=0, certs=certs_dir, admin_token="demo-admin-secret") as guarded:
        refused = run_cli("demo", "--server", guarded.url, "--certs", str(certs_dir))
        assert_one_line_error(refused, "MOCKXERO_ADMIN_TOKEN")
        assert refused.returncode == 2
        allowed = run_cli("demo", "--server", guarded.url, "--certs", str(certs_dir),
                          env={"MOCKXERO_ADMIN_TOKEN": "demo-admin-secret"})
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        assert DONE in allowed.stdout


def test_demo_without_the_mocks_certificates(xero: MockXero, tmp_path: Path) -> None:
    result = run_cli("demo", "--server", xero.url, "--certs", str(tmp_path))
    assert_one_line_error(result, "lacks", "--certs")
    assert result.returncode == 2


def test_demo_with_nothing_listening(certs_dir: Path) -> None:
    result = run_cli("demo", "--server", "https://127.0.0.1:1", "--certs", str(certs_dir))
    assert_one_line_error(result, "cannot reach")
    assert result.returncode == 2


def test_demo_in_the_browser(xero: MockXero, certs_dir: Path, tmp_path: Path) -> None:
    browser = tmp_path / "browser.py"
    browser.write_text(FAKE_BROWSER)
    result = run_cli("demo", "--server", xero.url, "--certs", str(certs_dir), "--browser",
                     env={"BROWSER": f"{sys.executable} {browser} %s",
                          "FAKE_BROWSER_CA": str(certs_dir / "ca.pem")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the browser came back to the callback" in result.stdout
    assert DONE in result.stdout
    rt = [e for e in xero.journal() if e["path"] == "/oauth/Authorize"]
    assert [e["method"] for e in rt] == ["GET", "POST"]


def run_cli_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command run in ``folder``, to see what it leaves there."""
    return subprocess.run([MOCKXERO, *args], capture_output=True, text=True, timeout=60,
                          env=clean_env(), cwd=folder)
