"""The docker-compose example (examples/compose), checked without an engine:
``docker-compose config`` accepts it, its wiring holds together (names the
certificate covers, the shared certificates volume, start order), and its
sample application runs against a real mock over mutual TLS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mockxero import MockXero

from .cli_support import clean_env

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "compose"
COMPOSE_FILE = EXAMPLE / "docker-compose.yml"
COMPOSE = str(Path(sys.executable).with_name("docker-compose"))
REAL_HOSTS = {"api.xero.com", "api-partner.network.xero.com"}


def compose(*args: str, file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMPOSE, "-f", str(file), *args], capture_output=True, text=True,
                          timeout=60, cwd=file.parent, env=clean_env())


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    """The compose file as the engine would read it (normalised by compose itself)."""
    result = compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_compose_config_accepts_the_file() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is an error, not ignored."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("depends_on:", "depend_on:", 1))
    result = compose("config", "-q", file=broken)
    assert result.returncode != 0
    assert "depend_on" in result.stderr


def hostnames_in(command: list[str]) -> set[str]:
    return {command[i + 1] for i, word in enumerate(command[:-1]) if word == "--hostname"}


def test_the_mock_answers_to_its_real_names_and_its_certificate_covers_them(stack: dict[str, Any]) -> None:
    mock = stack["services"]["mockxero"]
    assert Path(mock["build"]["context"], mock["build"]["dockerfile"]) == ROOT / "Dockerfile"
    assert set(mock["networks"]["xero"]["aliases"]) == REAL_HOSTS
    assert hostnames_in(mock["command"]) >= REAL_HOSTS | {"mockxero"}
    assert mock["command"][0] == "serve"
    assert [(v["source"], v["target"]) for v in mock["volumes"]] == [("certs", "/certs")]
    assert {p["target"] for p in mock["ports"]} == {8443}


def test_the_sample_app_and_the_tests_reach_the_mock_by_those_names(stack: dict[str, Any]) -> None:
    services = stack["services"]
    covered = REAL_HOSTS | {"mockxero"}
    app = services["sample-app"]
    for name in ("XERO_BASE_URL", "XERO_AUTHORIZE_URL", "MOCKXERO_URL"):
        url = urlsplit(app["environment"][name])
        assert url.scheme == "https" and url.hostname in covered and url.port == 8443, name
    command = services["pytest"]["command"]
    url = urlsplit(command[command.index("--mockxero-url") + 1])
    assert url.hostname in covered and url.port == 8443
    assert command[command.index("--mockxero-certs") + 1] == "/certs"
    assert (EXAMPLE / command[-1]).is_file()
    assert (ROOT / services["pytest"]["build"]["dockerfile"]).is_file()


@pytest.mark.parametrize("service", ["sample-app", "pytest"])
def test_clients_wait_for_a_healthy_mock_and_read_its_certificates(
        stack: dict[str, Any], service: str) -> None:
    spec = stack["services"][service]
    assert spec["depends_on"]["mockxero"]["condition"] == "service_healthy"
    certs = [v for v in spec["volumes"] if v["target"] == "/certs"]
    assert certs == [{"type": "volume", "source": "certs", "target": "/certs", "read_only": True,
                      "volume": {}}]
    for bind in (v for v in spec["volumes"] if v["type"] == "bind"):
        assert Path(bind["source"]).is_file() and bind["source"].startswith(str(EXAMPLE))


def test_the_tests_start_after_the_sample_app_finished(stack: dict[str, Any]) -> None:
    """The tests reset the mock between tests: they must not pull the sample
    app's request token from under it."""
    depends = stack["services"]["pytest"]["depends_on"]
    assert depends["sample-app"]["condition"] == "service_completed_successfully"


def test_the_sample_app_goes_through_the_dance_against_a_real_mock(xero_server: MockXero) -> None:
    """The sample app as its container runs it, with the in-process mock in
    place of the mockxero service: same certificates folder layout, same
    control API, same environment variables."""
    xero_server.reset()
    env = clean_env({"MOCKXERO_CERTS": str(xero_server.certs.directory),
                     "XERO_BASE_URL": xero_server.url,
                     "XERO_AUTHORIZE_URL": xero_server.url + "/oauth/Authorize",
                     "MOCKXERO_URL": xero_server.url})
    result = subprocess.run([sys.executable, str(EXAMPLE / "sample_app.py")], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any("4. GET Organisation" in line and "Demo Company (NZ)" in line for line in lines), lines
    assert any("6. renewed" in line and "same session: True" in line for line in lines), lines
    # The mock saw it all, signed and over mutual TLS.
    calls = [(e["path"], e["status"]) for e in xero_server.journal()]
    assert ("/oauth/RequestToken", 200) in calls and ("/api.xro/2.0/Contacts", 200) in calls
    assert [c["consumer_key"] for c in xero_server.connections()] == [xero_server.certs.consumer_key]
