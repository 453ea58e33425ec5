"""``mockxero serve --state FILE`` as a user runs it: a real process, real
clients signing with requests-oauthlib over mutual TLS, killed with SIGKILL
in the middle of their dances and renewals, restarted on the same file."""

from __future__ import annotations

import dataclasses
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, cast

import pytest
import requests

from mockxero import MockXero
from mockxero.certs import CertBundle
from mockxero.problems import REVOKED_ADVICE
from mockxero.statefile import StateFile

from .cli_support import MOCKXERO, assert_one_line_error, clean_env, run_cli
from .helpers import Partner, Tokens, problem_of, tokens_from


class Served:
    """One ``mockxero serve`` process, with what ``Partner`` needs of a mock
    (``url``, ``certs``, ``authorize``) done over the control API."""

    def __init__(self, certs: Path, state: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.certs_dir = certs
        self.state = state
        self.args = args
        self.env = env
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: IO[str] | None = None

    def start(self, *, state_flag: bool = True) -> Served:
        args = [MOCKXERO, "serve", "--port", "0", "--certs", str(self.certs_dir), "--rate-limit", "off",
                *self.args]
        if state_flag:
            args += ["--state", str(self.state)]
        self.stderr = (self.state.parent / "serve.err").open("a+")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=clean_env(self.env))
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = re.search(r"Base URL\s+(https://\S+)", line)
            if found:
                self.url = found.group(1)
                break
        else:
            self.stderr.seek(0)
            raise AssertionError(f"mockxero serve did not start: {self.stderr.read()}")
        # the banner's remaining lines, so the pipe never fills
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.control = requests.Session()
        self.control.trust_env = False
        self.control.verify = str(self.certs_dir / "ca.pem")
        return self

    @property
    def certs(self) -> CertBundle:
        return CertBundle(self.certs_dir)

    @property
    def ca_path(self) -> Path:
        return self.certs_dir / "ca.pem"

    def ok(self, method: str, path: str, json: Any = None) -> Any:
        response = self.control.request(method, f"{self.url}/_mockxero{path}", json=json, timeout=10)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    def authorize(self, oauth_token: str, org: str | None = None) -> dict[str, Any]:
        return cast(dict[str, Any], self.ok("POST", "/authorize", {"oauth_token": oauth_token, "org": org}))

    def signal(self, signum: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=30)
        self.control.close()
        return code


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One certificates folder for the module: making one is the slow part of a start."""
    folder = tmp_path_factory.mktemp("certs")
    CertBundle.ensure(folder)
    return folder


@pytest.fixture
def served(certs: Path, tmp_path: Path) -> Any:
    servers: list[Served] = []

    def make(*args: str, env: dict[str, str] | None = None) -> Served:
        server = Served(certs, tmp_path / "state.sqlite", *args, env=env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        if server.stderr is not None:
            server.stderr.close()


def partner_for(server: Served, consumer_key: str) -> Partner:
    certs = server.certs
    return Partner(cast(MockXero, server), consumer_key, rsa_key=certs.application_key,
                   cert=(str(certs.path("entrust-cert.pem")), str(certs.path("entrust-private-nopass.pem"))))


def api_status(partner: Partner, tokens: Tokens, path: str = "Organisation") -> requests.Response:
    return partner.api(tokens, path, headers={"Accept": "application/json"}, timeout=10)


@dataclasses.dataclass
class Ledger:
    """What one client was told, i.e. what the server acknowledged."""

    consumer_key: str
    current: Tokens | None = None
    superseded: list[Tokens] = dataclasses.field(default_factory=list)
    revoked: list[Tokens] = dataclasses.field(default_factory=list)
    contacts: dict[str, str] = dataclasses.field(default_factory=dict)  # ContactID → Name
    in_flight: str | None = None
    done: int = 0


def run_client(server: Served, ledger: Ledger, number: int, killed: threading.Event) -> None:
    """Dance, then renew and write through the API over and over until the
    server dies under it; every third client revokes its connection now and
    then and dances again."""
    partner = partner_for(server, ledger.consumer_key)
    try:
        while True:
            if ledger.current is None:
                ledger.in_flight = "dance"
                ledger.current = partner.connect()
            ledger.in_flight = "renew"
            response = partner.renew(ledger.current)
            assert response.status_code == 200, response.text
            ledger.superseded.append(ledger.current)
            ledger.current = tokens_from(response)
            ledger.in_flight = "write"
            name = f"Client {number} contact {ledger.done}"
            response = partner.api(ledger.current, "Contacts", method="POST", json={"Name": name},
                                   headers={"Accept": "application/json"})
            assert response.status_code == 200, response.text
            ledger.contacts[response.json()["Contacts"][0]["ContactID"]] = name
            if number % 3 == 0 and ledger.done % 4 == 3:
                ledger.in_flight = "revoke"
                server.ok("POST", "/revoke", {"oauth_token": ledger.current.oauth_token})
                ledger.revoked.append(ledger.current)
                ledger.current = None
            ledger.in_flight = None
            ledger.done += 1
    except (requests.RequestException, AssertionError):
        if not killed.is_set():
            raise
    finally:
        partner.close()


def test_a_killed_server_keeps_every_acknowledged_token_and_record(served: Any) -> None:
    server: Served = served().start()
    server.ok("POST", "/clock", {"advance": 7200})
    app_cert = server.certs.application_certificate
    ledgers = [Ledger(server.ok("POST", "/consumers", {"certificate": app_cert, "name": f"client {n}"})
                      ["consumer_key"]) for n in range(6)]
    killed = threading.Event()
    threads = [threading.Thread(target=run_client, args=(server, ledger, n, killed))
               for n, ledger in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while sum(ledger.done for ledger in ledgers) < 40 or min(ledger.done for ledger in ledgers) < 4:
        assert time.monotonic() < deadline, "the clients made no progress"
        assert all(thread.is_alive() for thread in threads), "a client failed"
        time.sleep(0.01)
    killed.set()
    assert server.signal(signal.SIGKILL) == -signal.SIGKILL  # mid-flight: the clients are busy
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert all(ledger.in_flight for ledger in ledgers)  # each was cut off in the middle of something

    server.start()
    offset = server.ok("GET", "/clock")["offset"]
    assert 7200 - 5 < offset < 7200 + 60  # the mock clock's offset came back
    connections = {c["consumer_key"]: c for c in server.ok("GET", "/connections")}
    checked = {"current": 0, "superseded": 0, "revoked": 0, "contacts": 0}
    for ledger in ledgers:
        partner = partner_for(server, ledger.consumer_key)
        working = None
        if ledger.current is not None:
            response = api_status(partner, ledger.current)
            if response.status_code == 200:
                working = ledger.current
                checked["current"] += 1
            elif ledger.in_flight == "renew":  # done, but the kill swallowed the answer:
                problem = problem_of(response)  # superseded by a token the server holds
                assert problem["oauth_problem"] == "token_rejected"
                assert problem["oauth_problem_advice"] != REVOKED_ADVICE
                conn = connections[ledger.consumer_key]
                assert conn["oauth_token"] != ledger.current.oauth_token
                assert conn["session_handle"] == ledger.current.oauth_session_handle
            else:  # a revocation the kill cut off may have been made
                assert ledger.in_flight == "revoke", (ledger, response.text)
                assert problem_of(response)["oauth_problem_advice"] == REVOKED_ADVICE
        for old in ledger.superseded:
            if ledger.current is not None and old.oauth_token == ledger.current.oauth_token:
                continue
            response = api_status(partner, old)
            assert problem_of(response)["oauth_problem_advice"] == \
                f"Token {old.oauth_token} does not match an expected ACCESS token"
            checked["superseded"] += 1
        for revoked in ledger.revoked:
            response = api_status(partner, revoked)
            assert problem_of(response) == {"oauth_problem": "token_rejected",
                                            "oauth_problem_advice": REVOKED_ADVICE}
            checked["revoked"] += 1
        if working is None:
            working = partner.connect()
        # the session handle renews after the restart too
        response = partner.renew(working)
        assert response.status_code == 200, response.text
        working = tokens_from(response)
        for contact_id, name in ledger.contacts.items():
            response = api_status(partner, working, f"Contacts/{contact_id}")
            assert response.status_code == 200, response.text
            assert response.json()["Contacts"][0]["Name"] == name
            checked["contacts"] += 1
        partner.close()
    assert checked["superseded"] >= 20 and checked["revoked"] >= 2 and checked["contacts"] >= 20, checked
    server.signal(signal.SIGTERM)


def test_a_reset_resets_the_file(served: Any) -> None:
    server: Served = served().start()
    orgs_before = server.ok("GET", "/organisations")
    partner = partner_for(server, server.certs.consumer_key)
    tokens = partner.connect()
    response = partner.api(tokens, "Contacts", method="POST", json={"Name": "Gone after reset"})
    assert response.status_code == 200, response.text
    server.ok("POST", "/consumers", {"name": "gone after reset"})
    server.ok("POST", "/clock", {"freeze": True, "advance": 86400})
    server.ok("POST", "/reset")
    partner.close()
    server.signal(signal.SIGKILL)

    server.start()
    assert server.ok("GET", "/organisations") == orgs_before  # the same ids: the baseline is in the file
    assert [c["consumer_key"] for c in server.ok("GET", "/consumers")] == [server.certs.consumer_key]
    assert server.ok("GET", "/connections") == []
    assert server.ok("GET", "/clock")["frozen"] is False
    partner = partner_for(server, server.certs.consumer_key)
    assert problem_of(api_status(partner, tokens))["oauth_problem"] == "token_rejected"
    fresh = partner.connect()
    names = [c["Name"] for c in api_status(partner, fresh, "Contacts").json()["Contacts"]]
    assert "Gone after reset" not in names
    partner.close()
    server.signal(signal.SIGTERM)


def test_a_stopped_server_comes_back_from_the_environment_variable(served: Any, tmp_path: Path) -> None:
    server: Served = served(env={"MOCKXERO_STATE": str(tmp_path / "state.sqlite")})
    server.start(state_flag=False)
    server.ok("POST", "/clock", {"freeze": True, "set": 1_900_000_000})
    partner = partner_for(server, server.certs.consumer_key)
    tokens = partner.connect()
    partner.close()
    assert server.signal(signal.SIGTERM) == 0
    assert not Path(f"{tmp_path / 'state.sqlite'}-wal").exists()  # closed cleanly

    server.start(state_flag=False)
    assert server.ok("GET", "/clock") == {"now": 1_900_000_000, "frozen": True,
                                          "offset": pytest.approx(1_900_000_000 - time.time(), abs=60)}
    partner = partner_for(server, server.certs.consumer_key)
    response = api_status(partner, tokens)
    assert response.status_code == 200, response.text
    # the frozen clock still says the token has 30 minutes left: expire it on mock time
    server.ok("POST", "/clock", {"advance": 1801})
    server.signal(signal.SIGKILL)
    server.start(state_flag=False)
    assert problem_of(api_status(partner, tokens))["oauth_problem"] == "token_expired"
    partner.close()
    server.signal(signal.SIGTERM)


def test_two_servers_cannot_share_a_file(served: Any, certs: Path, tmp_path: Path) -> None:
    server: Served = served().start()
    result = run_cli("serve", "--port", "0", "--certs", str(certs),
                     "--state", str(tmp_path / "state.sqlite"))
    assert_one_line_error(result, "in use by another process")
    server.signal(signal.SIGTERM)


def test_a_state_file_from_another_certificates_folder_is_refused(certs: Path, tmp_path: Path) -> None:
    StateFile.open(tmp_path / "state.sqlite", "e5" * 32).close()  # made with another folder
    result = run_cli("serve", "--port", "0", "--certs", str(certs),
                     "--state", str(tmp_path / "state.sqlite"))
    assert_one_line_error(result, "belongs to another certificates folder")


def test_a_bad_state_file_is_one_clear_line(certs: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    content = b"not a database at all\n" * 100
    state.write_bytes(content)
    result = run_cli("serve", "--port", "0", "--certs", str(certs), "--state", str(state))
    assert_one_line_error(result, "not a SQLite database", str(state))
    assert state.read_bytes() == content
