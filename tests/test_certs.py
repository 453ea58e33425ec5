"""SPEC.md §8: the certificates ``mockxero certs`` writes, the seed's
``openssl`` split commands on its ``entrust-client.p12``, and the
application key pair. Everything through the real console script, the real
``openssl`` binary and a real server."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from mockxero import MockXero

from .cli_support import FILES, assert_one_line_error, run_cli
from .helpers import Partner, parse_form

OPENSSL = shutil.which("openssl") or "openssl"
PRIVATE = {"ca-key.pem", "server-key.pem", "entrust-ca-key.pem", "entrust-private-nopass.pem",
           "entrust-client.p12", "privatekey.pem", "consumer.json"}
VARIANTS = {"expired": "expired", "not-yet-valid": "not yet valid", "foreign-ca": "unknown issuer"}
DEFAULT_NAMES = {"localhost", "127.0.0.1", "::1", "mockxero", "api.xero.com", "api-partner.network.xero.com"}




def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def server_names(directory: Path) -> set[str]:
    san = load_cert(directory / "server.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ({str(n) for n in san.value.get_values_for_type(x509.DNSName)}
            | {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)})


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``mockxero certs DIR --variants`` for the module."""
    directory = tmp_path_factory.mktemp("cli") / "certs"
    result = run_cli("certs", str(directory), "--variants")
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def served(written: Path) -> Iterator[MockXero]:
    """A server on the folder the console script wrote."""
    with MockXero(port=0, certs=written) as mock:
        yield mock


def partner_for(mock: MockXero, cert: tuple[str, str] | None, rsa_key: str | None = None) -> Partner:
    return Partner(mock, mock.certs.consumer_key, mock.certs.consumer_secret,
                   rsa_key=rsa_key or mock.certs.application_key, cert=cert)


# -- what is written ----------------------------------------------------------------------------------
def test_certs_writes_exactly_the_fixed_file_names(tmp_path: Path) -> None:
    directory = tmp_path / "fresh"
    result = run_cli("certs", str(directory))
    assert result.returncode == 0, result.stderr
    assert {p.name for p in directory.iterdir()} == FILES
    for name in PRIVATE:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name

    consumer = json.loads((directory / "consumer.json").read_text())
    assert set(consumer) == {"consumer_key", "consumer_secret", "p12_password"}
    assert re.fullmatch(r"[A-Z0-9]{30}", consumer["consumer_key"])
    assert re.fullmatch(r"[A-Z0-9]{30}", consumer["consumer_secret"])
    assert consumer["consumer_key"] in result.stdout

    ca, server = load_cert(directory / "ca.pem"), load_cert(directory / "server.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    assert server_names(directory) >= DEFAULT_NAMES

    entrust_ca, client = load_cert(directory / "entrust-ca.pem"), load_cert(directory / "entrust-cert.pem")
    client.verify_directly_issued_by(entrust_ca)
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert entrust_ca.subject != ca.subject  # two CAs: the server's and the Entrust stand-in

    key = serialization.load_pem_private_key((directory / "entrust-private-nopass.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)  # `openssl rsa` in the seed needs an RSA key
    assert key.public_key().public_numbers() == client.public_key().public_numbers()  # type: ignore[union-attr]

    # the .p12 holds the same certificate and key, behind the password
    p12 = (directory / "entrust-client.p12").read_bytes()
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(p12, b"not the password")
    p12_key, p12_cert, _ = pkcs12.load_key_and_certificates(p12, consumer["p12_password"].encode())
    assert p12_cert == client
    assert p12_key is not None and p12_key.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_an_existing_set_is_kept_unless_force(tmp_path: Path) -> None:
    directory = tmp_path / "kept"
    assert run_cli("certs", str(directory)).returncode == 0
    before = snapshot(directory)
    again = run_cli("certs", str(directory))
    assert again.returncode == 0 and "kept" in again.stdout
    assert snapshot(directory) == before

    forced = run_cli("certs", str(directory), "--force")
    assert forced.returncode == 0, forced.stderr
    after = snapshot(directory)
    assert set(after) == FILES
    for name in ("ca.pem", "entrust-ca.pem", "entrust-cert.pem", "consumer.json", "publickey.cer"):
        assert after[name] != before[name], name


def test_hostname_adds_names_and_an_existing_set_keeps_its_ca(tmp_path: Path) -> None:
    directory = tmp_path / "named"
    first = run_cli("certs", str(directory), "--hostname", "xero.compose.internal", "--hostname", "mock.test")
    assert first.returncode == 0, first.stderr
    assert server_names(directory) >= DEFAULT_NAMES | {"xero.compose.internal", "mock.test"}

    ca_before = (directory / "ca.pem").read_bytes()
    consumer_before = (directory / "consumer.json").read_bytes()
    more = run_cli("certs", str(directory), "--hostname", "another.test")
    assert more.returncode == 0, more.stderr
    # a new server certificate with every name, from the CA clients already trust
    assert server_names(directory) >= DEFAULT_NAMES | {"xero.compose.internal", "mock.test", "another.test"}
    assert (directory / "ca.pem").read_bytes() == ca_before
    assert (directory / "consumer.json").read_bytes() == consumer_before

    with MockXero(port=0, certs=directory) as mock:
        ctx = ssl.create_default_context(cafile=str(directory / "ca.pem"))
        for name in ("another.test", "xero.compose.internal", "api-partner.network.xero.com"):
            with socket.create_connection(("127.0.0.1", mock.port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.getpeercert() is not None


def test_a_partial_folder_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    directory = tmp_path / "partial"
    assert run_cli("certs", str(directory)).returncode == 0
    (directory / "server-key.pem").unlink()
    (directory / "entrust-ca-key.pem").unlink()
    for args in (("certs", str(directory)), ("serve", "--certs", str(directory), "--port", "0")):
        result = run_cli(*args)
        assert_one_line_error(result, str(directory), "server-key.pem", "entrust-ca-key.pem")
        assert result.returncode == 2
    # --force is the way out
    assert run_cli("certs", str(directory), "--force").returncode == 0
    assert {p.name for p in directory.iterdir()} == FILES


def test_a_folder_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "certs"
    not_a_folder.write_text("oops")
    assert_one_line_error(run_cli("certs", str(not_a_folder)), "Not a directory")


# -- the variants ----------------------------------------------------------------------------------
def test_variants_are_written_and_refused_with_the_right_reason(written: Path, served: MockXero) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    for variant, reason in VARIANTS.items():
        cert_path = written / f"entrust-{variant}-cert.pem"
        key_path = written / f"entrust-{variant}-key.pem"
        cert = load_cert(cert_path)
        serialization.load_pem_private_key(key_path.read_bytes(), None)
        if variant == "expired":
            assert cert.not_valid_after_utc < now
        elif variant == "not-yet-valid":
            assert cert.not_valid_before_utc > now
        else:
            with pytest.raises(ValueError):
                cert.verify_directly_issued_by(load_cert(written / "entrust-ca.pem"))

        served.reset()
        # registered to the consumer, so that the check named is the only one failing
        served.register_client_certificate(served.certs.consumer_key, cert_path.read_text())
        partner = partner_for(served, (str(cert_path), str(key_path)))
        try:
            response = partner.request_token()
        finally:
            partner.close()
        assert response.status_code == 403, response.text
        assert "HTTP Error 403.7 - Forbidden" in response.text
        assert f"mockxero: client certificate {reason}" in response.text, (variant, response.text)


# -- the seed's openssl commands -------------------------------------------------------------------
def test_the_seed_openssl_split_commands_give_a_working_certificate_and_key(
        written: Path, served: MockXero, tmp_path: Path) -> None:
    password = json.loads((written / "consumer.json").read_text())["p12_password"]
    work = tmp_path / "split"
    work.mkdir()
    (work / "entrust-client.p12").write_bytes((written / "entrust-client.p12").read_bytes())

    def openssl(*args: str) -> None:
        done = subprocess.run([OPENSSL, *args], cwd=work, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (args, done.stderr)

    # the three commands of seed/partner-applications.txt, answered on the command line
    openssl("pkcs12", "-in", "entrust-client.p12", "-clcerts", "-nokeys", "-out", "entrust-cert.pem",
            "-passin", f"pass:{password}")
    openssl("pkcs12", "-in", "entrust-client.p12", "-nocerts", "-out", "entrust-private.pem",
            "-passin", f"pass:{password}", "-passout", "pass:a key password")
    openssl("rsa", "-in", "entrust-private.pem", "-out", "entrust-private-nopass.pem",
            "-passin", "pass:a key password")

    assert load_cert(work / "entrust-cert.pem") == load_cert(written / "entrust-cert.pem")
    encrypted = (work / "entrust-private.pem").read_bytes()
    assert b"ENCRYPTED" in encrypted
    with pytest.raises(TypeError):  # the second command put a password on the key
        serialization.load_pem_private_key(encrypted, None)
    plain = serialization.load_pem_private_key((work / "entrust-private-nopass.pem").read_bytes(), None)
    assert isinstance(plain, rsa.RSAPrivateKey)  # ...and the third took it off

    served.reset()
    partner = partner_for(served, (str(work / "entrust-cert.pem"), str(work / "entrust-private-nopass.pem")))
    try:
        tokens = partner.connect()
        assert partner.api(tokens, "Organisation").status_code == 200
    finally:
        partner.close()
    assert [e["status"] for e in served.journal()] == [200, 200, 200]


# -- the application key pair ----------------------------------------------------------------------
def test_application_key_pair_is_self_signed_rsa_and_signs_what_the_server_accepts(
        written: Path, served: MockXero) -> None:
    cert = load_cert(written / "publickey.cer")
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)  # self-signed, as `openssl req -x509` makes it
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size >= 2048
    in_a_year = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)
    assert cert.not_valid_after_utc > in_a_year
    private = serialization.load_pem_private_key((written / "privatekey.pem").read_bytes(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()

    served.reset()
    good = (str(written / "entrust-cert.pem"), str(written / "entrust-private-nopass.pem"))
    signer = partner_for(served, good, rsa_key=(written / "privatekey.pem").read_text())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    impostor = partner_for(served, good, rsa_key=other_key)
    try:
        assert signer.request_token().status_code == 200
        refused = impostor.request_token()
        assert refused.status_code == 401
        assert parse_form(refused.text)["oauth_problem"] == "signature_invalid"
    finally:
        signer.close()
        impostor.close()
