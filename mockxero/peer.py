"""The client certificate a TLS connection presented, as the listener hands
it to the application. Its own small module so that the OAuth checks and
the gateway's verdict can name the type without importing the transport."""

from __future__ import annotations

import dataclasses

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

#: The WSGI environ key holding the connection's :class:`PeerCertificate` (or None).
PEER_ENVIRON = "mockxero.peer"


@dataclasses.dataclass(frozen=True)
class PeerCertificate:
    """The client certificate a connection presented, read once per connection."""

    leaf: x509.Certificate
    #: The rest of the chain the client sent; on the server side it never
    #: includes the leaf.
    chain: tuple[x509.Certificate, ...]
    #: SHA-256 of the leaf's DER, lower-case hex.
    fingerprint: str
    pem: str

    @classmethod
    def from_certificates(cls, leaf: x509.Certificate,
                          chain: list[x509.Certificate]) -> PeerCertificate:
        return cls(
            leaf=leaf,
            chain=tuple(c for c in chain if c != leaf),
            fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
            pem=leaf.public_bytes(serialization.Encoding.PEM).decode(),
        )
