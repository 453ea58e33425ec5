"""``mockxero serve`` and ``mockxero certs`` as real subprocesses: the
banner, TLS on the port it picked, signals, MOCKXERO_* variables, help, and
one-line errors."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import pytest
import requests

from mockxero import MockXero
from mockxero.certs import CertBundle

from .cli_support import FILES, MOCKXERO, assert_one_line_error, clean_env, run_cli
from .helpers import Partner, parse_form

BANNER_END = "Press Ctrl+C to stop."





class Serving:
    """A running ``mockxero serve``; its output is read as it comes."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([MOCKXERO, "serve", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=clean_env(env))
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str | None] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout.put), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.output: list[str] = []

    @staticmethod
    def _pump(stream: IO[str], put: Any) -> None:
        for line in stream:
            put(line.rstrip("\n"))
        put(None)

    def banner(self, timeout: float = 30) -> str:
        while True:
            try:
                line = self.stdout.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no banner within {timeout} s: {self.output}") from None
            if line is None:
                raise AssertionError(f"exited {self.proc.wait()}: {self.output} {self.stderr}")
            self.output.append(line)
            if line == BANNER_END:
                return "\n".join(self.output)

    @property
    def url(self) -> str:
        found = re.search(r"Base URL\s+(https://\S+)", "\n".join(self.output))
        assert found, self.output
        return found.group(1)

    def stop(self, signum: int, timeout: float = 10) -> tuple[int, str]:
        """Send ``signum``; the exit code and what was printed after the banner."""
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        rest = []
        while (line := self.stdout.get(timeout=timeout)) is not None:
            rest.append(line)
        return code, "\n".join(rest)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def serving() -> Iterator[list[Serving]]:
    started: list[Serving] = []
    yield started
    for s in started:
        s.kill()


@pytest.fixture(scope="module")
def certs_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("serve") / "certs"
    assert run_cli("certs", str(directory)).returncode == 0
    return directory


class Remote:
    """What tests.helpers.Partner needs of a mock, for one in another process."""

    def __init__(self, url: str, certs: Path, admin_token: str | None = None) -> None:
        self.url = url
        self.certs = CertBundle(certs)
        self.ca_path = certs / "ca.pem"
        self.control = requests.Session()
        self.control.trust_env = False
        self.control.verify = str(certs / "ca.pem")
        if admin_token:
            self.control.headers["Authorization"] = f"Bearer {admin_token}"

    def authorize(self, oauth_token: str, org: str | None = None) -> dict[str, Any]:
        response = self.control.post(self.url + "/_mockxero/authorize", json={"oauth_token": oauth_token})
        assert response.status_code == 200, response.text
        return cast(dict[str, Any], response.json())

    def partner(self) -> Partner:
        cert = (str(self.certs.path("entrust-cert.pem")), str(self.certs.path("entrust-private-nopass.pem")))
        return Partner(cast(MockXero, self), self.certs.consumer_key, self.certs.consumer_secret,
                       rsa_key=self.certs.application_key, cert=cert)


# -- serve --------------------------------------------------------------------------------------------
def test_serve_on_an_empty_folder_port_0_banner_tls_and_sigterm(
        tmp_path: Path, serving: list[Serving]) -> None:
    certs = tmp_path / "new-certs"
    certs.mkdir()  # empty, as a compose volume starts
    server = Serving("--port", "0", "--certs", str(certs))
    serving.append(server)
    banner = server.banner()
    assert {p.name for p in certs.iterdir()} == FILES  # written on first start

    url = server.url
    port = int(url.rsplit(":", 1)[1])
    assert url == f"https://127.0.0.1:{port}" and port not in (0, 8443)
    consumer = json.loads((certs / "consumer.json").read_text())
    for needle in (consumer["consumer_key"], str(certs / "ca.pem"), str(certs / "entrust-cert.pem"),
                   str(certs / "entrust-private-nopass.pem"), str(certs / "entrust-client.p12"),
                   f"{url}/oauth/Authorize?oauth_token=", f"{url}/addons"):
        assert needle in banner, needle

    remote = Remote(url, certs)
    assert remote.control.get(url + "/_mockxero/health").json() == {"status": "ok"}  # TLS, our CA
    partner = remote.partner()
    tokens = partner.connect()
    assert partner.api(tokens, "Organisation").status_code == 200
    assert partner.renew(tokens).status_code == 200
    partner.close()
    remote.control.close()

    code, after = server.stop(signal.SIGTERM)
    assert code == 0 and "stopped" in after
    assert not any("Traceback" in line for line in server.stderr if line)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_serve_from_environment_variables_and_sigint(certs_folder: Path, serving: list[Serving]) -> None:
    token = "an-admin-token"
    server = Serving(env={"MOCKXERO_PORT": "0", "MOCKXERO_AUTO_APPROVE": "true",
                          "MOCKXERO_ADMIN_TOKEN": token, "MOCKXERO_CERTS": str(certs_folder),
                          "MOCKXERO_RATE_LIMIT": "off"})
    serving.append(server)
    banner = server.banner()
    assert "auto-approve is on" in banner and "admin token required" in banner
    assert re.search(r"Rate limit\s+off", banner)
    url = server.url
    assert str(certs_folder / "ca.pem") in banner

    anonymous = Remote(url, certs_folder)
    assert anonymous.control.get(url + "/_mockxero/settings").status_code == 401
    admin = Remote(url, certs_folder, admin_token=token)
    runtime = admin.control.get(url + "/_mockxero/settings")
    assert runtime.status_code == 200 and runtime.json()["auto_approve"] is True

    # auto-approve: the Authorize page (no certificate) hands out the verifier at once
    partner = admin.partner()
    rt = partner.get_request_token()
    page = anonymous.control.get(url + "/oauth/Authorize", params={"oauth_token": rt.oauth_token})
    assert page.status_code == 200
    verifier = re.search(r'<span id="verifier" class="code">([A-Z0-9]+)</span>', page.text)
    assert verifier is not None, page.text
    exchanged = partner.exchange(rt, verifier.group(1))
    assert exchanged.status_code == 200 and "oauth_session_handle" in parse_form(exchanged.text)
    partner.close()
    anonymous.control.close()
    admin.control.close()

    code, after = server.stop(signal.SIGINT)
    assert code == 0 and "stopped" in after
    assert not any("Traceback" in line for line in server.stderr if line)


def test_a_port_in_use_is_a_clear_message(certs_folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--certs", str(certs_folder))
    line = assert_one_line_error(result, f"127.0.0.1:{port}", "already in use")
    assert result.returncode == 1, line


@pytest.mark.parametrize(("args", "env", "needles"), [
    (["--rate-limit", "nonsense"], {}, ["--rate-limit", "nonsense", "MINUTE/DAY"]),
    (["--port", "70000"], {}, ["port 70000 is out of range"]),
    (["--port", "eighty"], {}, ["--port", "eighty"]),
    ([], {"MOCKXERO_PORT": "abc"}, ["MOCKXERO_PORT", "abc"]),
    ([], {"MOCKXERO_AUTO_APPROVE": "maybe"}, ["boolean", "maybe"]),
    ([], {"MOCKXERO_RATE_LIMIT": "lots"}, ["rate limit", "lots"]),
])
def test_a_bad_setting_exits_non_zero_with_one_clear_line(
        certs_folder: Path, args: list[str], env: dict[str, str], needles: list[str]) -> None:
    result = run_cli("serve", "--certs", str(certs_folder), *args, env=env)
    assert_one_line_error(result, *needles)
    assert result.returncode == 2
    assert result.stdout == ""  # refused before serving anything


def test_help_is_useful() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "serve" in top.stdout and "certs" in top.stdout
    serve = run_cli("serve", "--help")
    assert serve.returncode == 0
    for needle in ("--port", "0 picks a free one", "--certs", "--hostname", "--auto-approve",
                   "--admin-token", "--rate-limit", "MOCKXERO_", "SIGTERM"):
        assert needle in serve.stdout, needle
    certs = run_cli("certs", "--help")
    assert certs.returncode == 0
    for needle in ("DIR", "--force", "--variants", "--hostname", "entrust-client.p12", "consumer.json",
                   "api.xero.com"):
        assert needle in certs.stdout, needle
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("mockxero ")
