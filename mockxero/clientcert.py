"""The Entrust gateway's verdict on a client certificate (SPEC.md §2).

The chain is verified with ``cryptography.x509.verification`` against the
mock's client CA at the **mock clock's** time, so moving the clock past a
certificate's expiry turns a working connection into a 403.

Two deliberate departures from cryptography's defaults, and why:

* trustme marks SubjectAlternativeName and ExtendedKeyUsage critical, which
  the webpki end-entity defaults forbid; both are allowed at any
  criticality here, and a validator still insists on the clientAuth EKU.
* Building a verifier and checking a chain costs ~110 us, so the outcome is
  remembered per leaf, together with the time span over which the whole
  chain is valid; a later request at a mock time inside that span reuses it.
"""

from __future__ import annotations

import datetime
import threading
from collections import OrderedDict

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .peer import PeerCertificate
from .problems import (
    CERT_EXPIRED,
    CERT_MISSING,
    CERT_NOT_REGISTERED,
    CERT_NOT_YET_VALID,
    CERT_UNKNOWN_ISSUER,
    ClientCertificateRefused,
)
from .store import Consumer


def _require_client_auth(policy: Policy, cert: x509.Certificate,
                         eku: x509.ExtendedKeyUsage) -> None:
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise ValueError("the certificate is not for client authentication (no clientAuth EKU)")


_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _require_client_auth)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()

# (error or None, valid from, valid until) of a verified chain
_Verdict = tuple[str | None, datetime.datetime, datetime.datetime]


class ClientCertificateChecker:
    def __init__(self, trusted: list[x509.Certificate], cache_size: int = 1024) -> None:
        self._store = Store(trusted)
        self._cache: OrderedDict[str, _Verdict] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def check(self, consumer: Consumer, peer: PeerCertificate | None,
              now: datetime.datetime) -> None:
        """Return quietly, or raise :class:`ClientCertificateRefused`."""
        if not consumer.require_client_cert:
            return
        if peer is None:
            raise ClientCertificateRefused(CERT_MISSING, "no client certificate was presented")
        leaf = peer.leaf
        if now > leaf.not_valid_after_utc:
            raise ClientCertificateRefused(
                CERT_EXPIRED, f"it expired at {leaf.not_valid_after_utc.isoformat()}, "
                              f"mock time is {now.isoformat(timespec='seconds')}")
        if now < leaf.not_valid_before_utc:
            raise ClientCertificateRefused(
                CERT_NOT_YET_VALID, f"it is valid from {leaf.not_valid_before_utc.isoformat()}, "
                                    f"mock time is {now.isoformat(timespec='seconds')}")
        error = self._chain_error(peer, now)
        if error is not None:
            raise ClientCertificateRefused(CERT_UNKNOWN_ISSUER, error)
        if peer.fingerprint not in consumer.client_certificates:
            raise ClientCertificateRefused(
                CERT_NOT_REGISTERED,
                f"{leaf.subject.rfc4514_string()} (sha256 {peer.fingerprint[:16]}...) "
                f"is not one of the {len(consumer.client_certificates)} registered to "
                f"{consumer.consumer_key}")

    def _chain_error(self, peer: PeerCertificate, now: datetime.datetime) -> str | None:
        with self._lock:
            cached = self._cache.get(peer.fingerprint)
        if cached is not None and cached[1] <= now <= cached[2]:
            return cached[0]
        verdict = self._verify(peer, now)
        with self._lock:
            self._cache[peer.fingerprint] = verdict
            self._cache.move_to_end(peer.fingerprint)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return verdict[0]

    def _verify(self, peer: PeerCertificate, now: datetime.datetime) -> _Verdict:
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(now)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        leaf = peer.leaf
        try:
            verified = verifier.verify(leaf, list(peer.chain))
        except VerificationError as exc:
            # The chain check does not depend on time once the leaf is in its
            # own validity window (checked before); remember it for that span.
            # cryptography's message is long and internal: one short sentence.
            return (_chain_failure(str(exc)), leaf.not_valid_before_utc, leaf.not_valid_after_utc)
        valid_from = max(c.not_valid_before_utc for c in verified.chain)
        valid_until = min(c.not_valid_after_utc for c in verified.chain)
        return None, valid_from, valid_until


def _chain_failure(message: str) -> str:
    """The failed check, said in one short sentence, from cryptography's
    verification error."""
    if "clientAuth" in message:
        return "it is not made for client authentication (no clientAuth extended key usage)"
    return "it was not issued by the mock's Entrust client CA"
