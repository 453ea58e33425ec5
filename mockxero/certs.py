"""The mock's certificates, made with trustme and written to one folder.

The file names are fixed: the seed's instructions and compose stacks use
them. Nothing here is ever committed; ``mockxero certs DIR`` or the first
``mockxero serve`` writes them.

Safe defaults, and why:

* The TLS certificates (server CA, server, Entrust CA) are ECDSA: trustme
  makes them in well under a millisecond and every client stack speaks it.
* The Entrust *client* key is RSA, because the seed tells partners to run
  ``openssl rsa`` on it, which refuses an EC key. ``generate(...,
  client_key_type=trustme.KeyType.ECDSA)`` makes it ECDSA instead, for the
  pytest plugin: a fresh set then costs one RSA key (the application's)
  rather than two, and each new TLS connection a cheaper handshake.
* The application key pair (``privatekey.pem`` / ``publickey.cer``) is RSA
  2048, self-signed for five years: RSA-SHA1 needs an RSA key, and this is
  the ``openssl req -x509`` certificate Xero asked partners to upload.
* The two CA private keys are kept (``ca-key.pem``, ``entrust-ca-key.pem``)
  so more client certificates, or a server certificate for a new host name,
  can be issued later without changing what clients already trust.
"""

from __future__ import annotations

import datetime
import json
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from .store import new_token

#: Names the server certificate always covers (SPEC.md §2).
DEFAULT_HOSTNAMES = (
    "localhost",
    "127.0.0.1",
    "::1",
    "mockxero",
    "api.xero.com",
    "api-partner.network.xero.com",
)

CA = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
ENTRUST_CA = "entrust-ca.pem"
ENTRUST_CA_KEY = "entrust-ca-key.pem"
ENTRUST_CERT = "entrust-cert.pem"
ENTRUST_KEY = "entrust-private-nopass.pem"
ENTRUST_P12 = "entrust-client.p12"
APP_KEY = "privatekey.pem"
APP_CERT = "publickey.cer"
CONSUMER = "consumer.json"

ALL_FILES = (CA, CA_KEY, SERVER_CERT, SERVER_KEY, ENTRUST_CA, ENTRUST_CA_KEY, ENTRUST_CERT,
             ENTRUST_KEY, ENTRUST_P12, APP_KEY, APP_CERT, CONSUMER)

#: Test variants ``mockxero certs --variants`` writes: name → (not_before, not_after)
#: relative to now in days, or None for a certificate from a foreign CA.
VARIANTS: dict[str, tuple[int, int] | None] = {
    "expired": (-60, -1),
    "not-yet-valid": (30, 400),
    "foreign-ca": None,
}


class CertificatesError(RuntimeError):
    """The certificates folder cannot be used as it is."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def make_application_keypair(common_name: str = "mockxero partner application",
                             days: int = 1825) -> tuple[bytes, bytes]:
    """(private key PEM, self-signed certificate PEM), as
    ``openssl req -x509 -newkey rsa:2048 -days 1825`` would make them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


class CertBundle:
    """A certificates folder: load it, or make it with :meth:`ensure`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        missing = [name for name in ALL_FILES if not (self.directory / name).exists()]
        if missing:
            raise CertificatesError(
                f"certificates folder {self.directory} lacks {', '.join(missing)}; "
                "empty it (or pick a new one) and mockxero will write a full set"
            )
        self.server_ca = trustme.CA.from_pem(self.read(CA), self.read(CA_KEY))
        self.client_ca = trustme.CA.from_pem(self.read(ENTRUST_CA), self.read(ENTRUST_CA_KEY))
        data = json.loads(self.read(CONSUMER))
        self.consumer_key: str = data["consumer_key"]
        self.consumer_secret: str = data["consumer_secret"]
        self.p12_password: str = data["p12_password"]

    # -- making --------------------------------------------------------------
    @classmethod
    def ensure(cls, directory: str | Path, hostnames: Iterable[str] = ()) -> CertBundle:
        """Load the folder, writing a full set first if it is empty or absent,
        and re-issuing the server certificate if it lacks one of
        ``hostnames`` (from the same CA, keeping the names it had, so clients
        and earlier ``--hostname`` runs keep working)."""
        path = Path(directory)
        if not path.exists() or not any(p.name in ALL_FILES for p in path.iterdir()):
            return cls.generate(path, hostnames)
        bundle = cls(path)
        had = bundle.server_hostnames()
        if not set(hostnames) <= set(had):
            bundle.issue_server_cert([*had, *hostnames])
        return bundle

    @classmethod
    def generate(cls, directory: str | Path, hostnames: Iterable[str] = (),
                 consumer_key: str | None = None, consumer_secret: str | None = None,
                 client_key_type: trustme.KeyType = trustme.KeyType.RSA) -> CertBundle:
        """Write a new full set into ``directory`` (overwriting those files).
        ``client_key_type`` is the Entrust client key's (RSA by default, see
        the module's docstring)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        server_ca = trustme.CA(organization_name="mockxero", organization_unit_name="mockxero server CA")
        client_ca = trustme.CA(organization_name="mockxero",
                               organization_unit_name="mockxero Entrust client CA (stand-in)")
        _write(path / CA, server_ca.cert_pem.bytes())
        _write(path / CA_KEY, server_ca.private_key_pem.bytes(), private=True)
        _write(path / ENTRUST_CA, client_ca.cert_pem.bytes())
        _write(path / ENTRUST_CA_KEY, client_ca.private_key_pem.bytes(), private=True)
        consumer = {
            "consumer_key": consumer_key or new_token(),
            "consumer_secret": consumer_secret or new_token(),
            "p12_password": secrets.token_urlsafe(12),
        }
        _write(path / CONSUMER, (json.dumps(consumer, indent=2) + "\n").encode(), private=True)
        app_key, app_cert = make_application_keypair()
        _write(path / APP_KEY, app_key, private=True)
        _write(path / APP_CERT, app_cert)
        bundle = cls.__new__(cls)
        bundle.directory = path
        bundle.server_ca, bundle.client_ca = server_ca, client_ca
        bundle.consumer_key = consumer["consumer_key"]
        bundle.consumer_secret = consumer["consumer_secret"]
        bundle.p12_password = consumer["p12_password"]
        bundle.issue_server_cert(hostnames)
        leaf = bundle.issue_client_cert(key_type=client_key_type)
        _write(path / ENTRUST_CERT, leaf.cert_chain_pems[0].bytes())
        _write(path / ENTRUST_KEY, leaf.private_key_pem.bytes(), private=True)
        _write(path / ENTRUST_P12, bundle.p12(leaf, bundle.p12_password), private=True)
        return cls(path)

    def issue_server_cert(self, hostnames: Iterable[str] = ()) -> None:
        names = list(dict.fromkeys([*DEFAULT_HOSTNAMES, *hostnames]))
        leaf = self.server_ca.issue_cert(*names, common_name="mockxero",
                                         organization_name="mockxero")
        _write(self.directory / SERVER_CERT, leaf.cert_chain_pems[0].bytes())
        _write(self.directory / SERVER_KEY, leaf.private_key_pem.bytes(), private=True)

    def issue_client_cert(self, not_before: datetime.datetime | None = None,
                          not_after: datetime.datetime | None = None,
                          foreign: bool = False,
                          name: str = "partner.mockxero.test",
                          key_type: trustme.KeyType = trustme.KeyType.RSA) -> trustme.LeafCert:
        """A new Entrust-style client certificate (RSA unless ``key_type``
        says). ``foreign`` issues it from a throwaway CA that the mock does
        not trust."""
        ca = trustme.CA(organization_unit_name="not the Entrust CA") if foreign else self.client_ca
        return ca.issue_cert(name, common_name=name, organization_name="mockxero partner",
                             not_before=not_before, not_after=not_after,
                             key_type=key_type)

    def write_variants(self) -> list[Path]:
        """``entrust-<variant>-cert.pem`` and ``-key.pem`` for each of
        :data:`VARIANTS`; returns the paths written."""
        written = []
        now = _utcnow()
        for variant, days in VARIANTS.items():
            if days is None:
                leaf = self.issue_client_cert(foreign=True)
            else:
                leaf = self.issue_client_cert(now + datetime.timedelta(days=days[0]),
                                              now + datetime.timedelta(days=days[1]))
            cert_path = self.directory / f"entrust-{variant}-cert.pem"
            key_path = self.directory / f"entrust-{variant}-key.pem"
            _write(cert_path, leaf.cert_chain_pems[0].bytes())
            _write(key_path, leaf.private_key_pem.bytes(), private=True)
            written += [cert_path, key_path]
        return written

    @staticmethod
    def p12(leaf: trustme.LeafCert, password: str) -> bytes:
        # A key trustme has just made: RSA's costly consistency check (about
        # 0.1 s) is skipped.
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None,
                                                 unsafe_skip_rsa_key_validation=True)
        cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        return pkcs12.serialize_key_and_certificates(
            b"entrust-client", key, cert, None,
            serialization.BestAvailableEncryption(password.encode()),
        )

    # -- reading -------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.directory / name

    def read(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()

    def server_hostnames(self) -> Sequence[str]:
        cert = x509.load_pem_x509_certificate(self.read(SERVER_CERT))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(n.value) for n in san]

    @property
    def client_ca_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.read(ENTRUST_CA))

    @property
    def client_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.read(ENTRUST_CERT))

    @property
    def application_certificate(self) -> str:
        return self.read(APP_CERT).decode()

    @property
    def application_key(self) -> str:
        return self.read(APP_KEY).decode()
