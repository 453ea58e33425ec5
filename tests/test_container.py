"""The container files, checked without a container engine: hadolint on the
Dockerfiles, the build context ``.dockerignore`` leaves, and the image's own
command line — read from the Dockerfile, not copied — run in a fresh virtual
environment to prove that it serves, that its health check passes only once
the server is ready, and that SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from mockxero import MockXero

from .cli_support import FILES, clean_env

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


# -- reading a Dockerfile --------------------------------------------------------------------
@dataclass
class Dockerfile:
    """The instructions this suite relies on, as the builder would read them."""

    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    expose: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    shell_forms: list[str] = field(default_factory=list)

    @property
    def command(self) -> list[str]:
        return self.entrypoint + self.cmd


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, rest = logical.partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def _exec_form(keyword: str, args: str, doc: Dockerfile) -> list[str]:
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
        return value
    doc.shell_forms.append(keyword)
    return ["/bin/sh", "-c", args]


def parse_dockerfile(path: Path) -> Dockerfile:
    doc = Dockerfile()
    for keyword, args in _instructions(path.read_text()):
        if keyword == "FROM":
            doc.base = args.split()[0]
        elif keyword == "ENV":
            words = shlex.split(args)
            if words and "=" not in words[0]:  # the legacy "ENV KEY value" form
                doc.env[words[0]] = args.split(None, 1)[1]
            else:
                doc.env.update(word.split("=", 1) for word in words)  # type: ignore[misc]
        elif keyword == "USER":
            doc.user = args
        elif keyword == "EXPOSE":
            doc.expose += args.split()
        elif keyword == "VOLUME":
            doc.volumes += json.loads(args) if args.startswith("[") else args.split()
        elif keyword == "ENTRYPOINT":
            doc.entrypoint = _exec_form(keyword, args, doc)
            doc.cmd = []  # ENTRYPOINT resets an inherited CMD
        elif keyword == "CMD":
            doc.cmd = _exec_form(keyword, args, doc)
        elif keyword == "HEALTHCHECK":
            options, sep, command = args.partition(" CMD ")
            if not sep and args.startswith("CMD "):
                options, command = "", args[4:]
            for option in options.split():
                name, _, value = option.lstrip("-").partition("=")
                doc.healthcheck_options[name] = value
            doc.healthcheck = _exec_form(keyword, command.strip(), doc)
    return doc


@pytest.fixture(scope="module")
def image() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE)


# -- static checks ---------------------------------------------------------------------------
def dockerfiles() -> list[Path]:
    return [DOCKERFILE, *sorted((ROOT / "examples").rglob("*Dockerfile*"))]


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes(path: Path) -> None:
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The check above can fail: an unpinned apt-get and shell-form CMD are flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\n"
                   "RUN apt-get update && apt-get install -y curl\n"
                   "CMD mockxero serve\n")
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3008" in result.stdout and "DL3025" in result.stdout, result.stdout


def test_the_image_keeps_its_promises(image: Dockerfile) -> None:
    assert image.base == "python:3.11-slim"
    # Settings through the MOCKXERO_* variables: all interfaces, the exposed port, the volume.
    assert image.env["MOCKXERO_HOST"] == "0.0.0.0"
    assert image.expose == [image.env["MOCKXERO_PORT"]] == ["8443"]
    assert image.volumes == [image.env["MOCKXERO_CERTS"]] == ["/certs"]
    # A non-root user, numeric so that the host and sibling containers can resolve it.
    uid = image.user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, image.user
    # Exec form everywhere: the server is PID 1 and receives SIGTERM itself.
    assert image.shell_forms == []
    assert image.command[0] == "mockxero" and "serve" in image.command
    assert image.healthcheck and not {"curl", "wget"} & set(image.healthcheck)
    assert "start-period" in image.healthcheck_options


# -- the build context -----------------------------------------------------------------------
def _pattern_matches(pattern: str, path: str) -> bool:
    """Docker's matching: anchored at the context root, '*' stays within one
    path segment, '**' spans any, and a pattern matching a parent folder
    matches everything beneath it."""
    regex = "".join(
        ".*" if token == "**" else "[^/]*" if token == "*" else "[^/]" if token == "?" else re.escape(token)
        for token in re.split(r"(\*\*|\*|\?)", pattern.strip("/"))
    )
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))


def build_context(root: Path) -> list[str]:
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!")))
    kept = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if d not in (".git", ".venv")]  # excluded by '*', and large
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            included = True
            for negated, pattern in rules:
                if _pattern_matches(pattern, rel):
                    included = negated
            if included:
                kept.append(rel)
    return sorted(kept)


def test_dockerignore_keeps_the_context_small() -> None:
    context = build_context(ROOT)
    assert {"pyproject.toml", "README.md", "mockxero/__init__.py", "mockxero/cli.py",
            "mockxero/templates/authorize.html", "mockxero/py.typed"} <= set(context)
    strays = [p for p in context if p not in ("pyproject.toml", "README.md")
              and not p.startswith(("mockxero/", "pytest_plugin/"))]
    assert strays == []
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]
    assert sum((ROOT / p).stat().st_size for p in context) < 1_000_000


def test_dockerignore_matching_follows_docker() -> None:
    """The matcher the test above relies on, on the cases that matter."""
    assert _pattern_matches("*", "tests/test_api.py")  # a top-level folder takes its contents
    assert _pattern_matches("mockxero/", "mockxero/templates/base.html")
    assert _pattern_matches("**/__pycache__", "mockxero/__pycache__/cli.cpython-311.pyc")
    assert not _pattern_matches("*.md", "docs/decisions.md")
    assert not _pattern_matches("mockxero/", "mockxeroish/file")


# -- the image's command line, in a fresh virtual environment --------------------------------
@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with this checkout installed by pip, as the
    image's ``pip install`` does; its bin folder."""
    venv = tmp_path_factory.mktemp("image-venv")
    # No pip inside (this suite's pip installs into it) and no byte-compiling:
    # half the time of a plain venv + pip install, the same packages.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install",
                             "--quiet", "--no-compile", str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def image_env(image: Dockerfile, bin_dir: Path, **overrides: str) -> dict[str, str]:
    """The image's ENV over a clean environment, with the fresh venv first on PATH."""
    env = clean_env({**image.env, **overrides})
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_argv(argv: list[str], env: dict[str, str], bin_dir: Path,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    program = shutil.which(argv[0], path=env["PATH"])
    assert program is not None and Path(program).parent == bin_dir, program
    return subprocess.run([program, *argv[1:]], capture_output=True, text=True, env=env, timeout=timeout)


def test_image_command_serves_health_check_passes_and_sigterm_stops(
        image: Dockerfile, fresh_venv: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs"  # stands in for the /certs volume
    port = free_port()
    env = image_env(image, fresh_venv, MOCKXERO_CERTS=str(certs), MOCKXERO_PORT=str(port))

    before = run_argv(image.healthcheck, env, fresh_venv)
    assert before.returncode != 0, "healthy before the server started"
    assert "ca.pem" in before.stderr

    program = shutil.which(image.command[0], path=env["PATH"])
    assert program is not None and Path(program).parent == fresh_venv
    server = subprocess.Popen([program, *image.command[1:]], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            check = run_argv(image.healthcheck, env, fresh_venv)
            if check.returncode == 0:
                break
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, check.stderr
            time.sleep(0.2)
        assert f"https://localhost:{port}/_mockxero/health is ok" in check.stdout
        # Healthy means the certificates are all there for other containers to read.
        assert {p.name for p in certs.iterdir()} >= FILES
        assert json.loads((certs / "consumer.json").read_text())["consumer_key"]

        # The check verifies the server against ca.pem: another CA does not pass.
        other = tmp_path / "other"
        other.mkdir()
        trustme.CA().cert_pem.write_to_path(str(other / "ca.pem"))
        foreign = run_argv(image.healthcheck, {**env, "MOCKXERO_CERTS": str(other)}, fresh_venv)
        assert foreign.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in foreign.stderr

        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    assert "mockxero stopped" in out
    assert "Traceback" not in err
    after = run_argv(image.healthcheck, env, fresh_venv)
    assert after.returncode != 0 and "not answering" in after.stderr


def test_health_check_sends_the_admin_token(image: Dockerfile, certs_dir: Path) -> None:
    """With MOCKXERO_ADMIN_TOKEN set (on the server and so in the container's
    environment) the check still passes; a wrong token does not."""
    with MockXero(port=0, certs=certs_dir, admin_token="let-me-in") as mock:
        env = image_env(image, BIN, MOCKXERO_CERTS=str(certs_dir), MOCKXERO_PORT=str(mock.port),
                        MOCKXERO_ADMIN_TOKEN="let-me-in")
        assert run_argv(image.healthcheck, env, BIN).returncode == 0
        wrong = run_argv(image.healthcheck, {**env, "MOCKXERO_ADMIN_TOKEN": "guess"}, BIN)
        assert wrong.returncode != 0 and "answered 401" in wrong.stderr
